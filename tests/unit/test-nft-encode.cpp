// fqdnd's netlink for the rules that queue DNS, with the native `queue`
// statement, which a kernel without CONFIG_NFT_QUEUE (as the one these tests
// were written on) never takes, and for the lookups of a selector's tag:
// each rule as fqdnd encodes it, read back from the batch and printed by
// libnftnl, against what `nft --debug=netlink` prints for the same rule
// written as text. nft prints its netlink before the kernel answers, so this
// holds on any kernel; it needs the nft command and a network namespace of
// its own (nft reads the ruleset there first).
#define DOCTEST_CONFIG_IMPLEMENT
#include "config/loader.hpp"
#include "nft/encode.hpp"
#include "ruleset/compile.hpp"

#include <doctest/doctest.h>
#include <libmnl/libmnl.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

using namespace fqdnd;

namespace {

// One rule as nft --debug=netlink prints it: the anonymous sets it binds
// (with their elements), then the rule's expressions and userdata.
struct Printed {
    std::string chain;
    std::string text;
};

std::string rstrip_lines(const std::string& s)
{
    std::istringstream in(s);
    std::string line, out;
    while (std::getline(in, line)) {
        line.erase(line.find_last_not_of(" \t") + 1);
        if (!line.empty())
            out += line + "\n";
    }
    return out;
}

// An anonymous set as compared: its elements sorted, one a line, and its
// header without the size hint nft gives (the kernel picks a set type by
// it; for fqdnd's sets, of protocols, ports and address intervals, the
// same one without). The order of a constant set's elements means nothing;
// nor does the interval end at address 0 that nft 1.0.6 puts first in an
// interval set (nothing starts before it), which fqdnd leaves out.
bool zero_interval_end(const std::string& element)
{
    std::istringstream in(element);
    std::string word, key_word;
    in >> word; // "element"
    bool zero = true;
    while (in >> key_word && key_word != ":")
        zero = zero && key_word == "00000000";
    in >> word; // flags
    return zero && word == std::to_string(NFT_SET_ELEM_INTERVAL_END);
}

std::string as_set(const std::string& text)
{
    std::string header = text.substr(0, text.find('\n'));
    if (const auto size = header.find(" size "); size != std::string::npos)
        header.erase(size);
    std::vector<std::string> elements;
    std::istringstream in(text.substr(header.size() < text.size() ? text.find('\n') + 1 : text.size()));
    std::string item;
    while (std::getline(in, item, '\t'))
        if (item.erase(item.find_last_not_of(" \n") + 1); !item.empty() && !zero_interval_end(item))
            elements.push_back(item);
    std::sort(elements.begin(), elements.end());
    std::string out = header + "\n";
    for (const std::string& e : elements)
        out += "  " + e + "\n";
    return out;
}

// Blocks of a --debug=netlink print: a line at the margin and the indented
// lines after it. Rules keep the set blocks printed before them; table and
// chain blocks are not compared.
std::vector<Printed> group(const std::vector<std::string>& blocks)
{
    std::vector<Printed> rules;
    std::string sets;
    for (const std::string& b : blocks) {
        const std::string text = rstrip_lines(b);
        if (text.rfind("__set", 0) == 0)
            sets += as_set(text);
        else if (text.rfind("inet fqdnd ", 0) == 0) {
            const std::string header = text.substr(0, text.find('\n'));
            rules.push_back(Printed{header.substr(std::string("inet fqdnd ").size()),
                                    sets + "rule\n" + text.substr(header.size() + 1)});
            sets.clear();
        }
    }
    return rules;
}

struct RuleFree {
    void operator()(nftnl_rule* r) const noexcept { nftnl_rule_free(r); }
};
struct SetFree {
    void operator()(nftnl_set* s) const noexcept { nftnl_set_free(s); }
};

// A copy of an elements message that libnftnl can parse back: it numbers
// the elements it builds 1, 2, 3... (the kernel reads them whatever their
// type) but parses only NFTA_LIST_ELEM.
std::vector<char> numbered_as_list(const nlmsghdr* nlh)
{
    std::vector<char> copy(reinterpret_cast<const char*>(nlh), reinterpret_cast<const char*>(nlh) + nlh->nlmsg_len);
    auto* m = reinterpret_cast<nlmsghdr*>(copy.data());
    const char* end = copy.data() + m->nlmsg_len;
    for (auto* attr = static_cast<nlattr*>(mnl_nlmsg_get_payload_offset(m, sizeof(nfgenmsg)));
         mnl_attr_ok(attr, static_cast<int>(end - reinterpret_cast<char*>(attr))); attr = mnl_attr_next(attr)) {
        if (mnl_attr_get_type(attr) != NFTA_SET_ELEM_LIST_ELEMENTS)
            continue;
        const char* nest_end = reinterpret_cast<char*>(attr) + attr->nla_len;
        for (auto* elem = static_cast<nlattr*>(mnl_attr_get_payload(attr));
             mnl_attr_ok(elem, static_cast<int>(nest_end - reinterpret_cast<char*>(elem))); elem = mnl_attr_next(elem))
            elem->nla_type = NLA_F_NESTED | NFTA_LIST_ELEM;
    }
    return copy;
}

// The rules of `rs` with an expression of type T, encoded for the native
// queue statement, each message of the batch parsed back and printed as nft
// prints its own.
template <typename T>
std::vector<Printed> fqdnd_rules_with(const ruleset::Ruleset& rs, const cgroup::UnitCgroups& units = {})
{
    nft::Netlink nl; // never opened: a batch only numbers its messages with it
    nft::Batch batch(nl);
    uint32_t set_id = 1;
    for (const ruleset::Chain& c : rs.chains)
        for (const ruleset::Rule& r : c.rules)
            for (const ruleset::Expr& e : r.exprs)
                if (std::holds_alternative<T>(e)) {
                    std::string problem;
                    REQUIRE(nft::encode_rule(batch, rs.table, c.name, r, nft::QueueMode::native, units, set_id, &problem) == 0);
                    break;
                }
    std::vector<std::string> blocks;
    std::array<char, 8192> buf{};
    const std::string_view data = batch.data();
    int len = static_cast<int>(data.size());
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(data.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
        switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
        case NFT_MSG_NEWSET: {
            std::unique_ptr<nftnl_set, SetFree> s(nftnl_set_alloc());
            REQUIRE(nftnl_set_nlmsg_parse(nlh, s.get()) >= 0);
            nftnl_set_snprintf(buf.data(), buf.size(), s.get(), NFTNL_OUTPUT_DEFAULT, 0);
            blocks.emplace_back(buf.data());
            break;
        }
        case NFT_MSG_NEWSETELEM: {
            std::unique_ptr<nftnl_set, SetFree> s(nftnl_set_alloc());
            std::vector<char> copy = numbered_as_list(nlh);
            REQUIRE(nftnl_set_elems_nlmsg_parse(reinterpret_cast<const nlmsghdr*>(copy.data()), s.get()) >= 0);
            nftnl_set_snprintf(buf.data(), buf.size(), s.get(), NFTNL_OUTPUT_DEFAULT, 0);
            blocks.emplace_back(buf.data());
            break;
        }
        case NFT_MSG_NEWRULE: {
            std::unique_ptr<nftnl_rule, RuleFree> r(nftnl_rule_alloc());
            REQUIRE(nftnl_rule_nlmsg_parse(nlh, r.get()) >= 0);
            nftnl_rule_snprintf(buf.data(), buf.size(), r.get(), NFTNL_OUTPUT_DEFAULT, 0);
            blocks.emplace_back(buf.data());
            break;
        }
        default: break;
        }
    }
    return group(blocks);
}

// What nft emits for `rules` (the body of table inet fqdnd), checked, not
// committed: the kernel may refuse the queue statement, nft has printed its
// netlink by then.
std::vector<Printed> nft_rules(const std::string& rules)
{
    char path[] = "/tmp/fqdnd-nft-encode.XXXXXX";
    const int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    const std::unique_ptr<char, int (*)(const char*)> remove(path, unlink);
    std::ofstream(path) << "table inet fqdnd {\n" << rules << "}\n";
    const std::string command = std::string("nft --debug=netlink -c -f ") + path + " 2>/dev/null";
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(command.c_str(), "r"), pclose);
    REQUIRE(p);
    std::vector<std::string> blocks;
    char line[4096];
    while (std::fgets(line, sizeof line, p.get())) {
        if (line[0] != ' ' && line[0] != '\t' && line[0] != '\n')
            blocks.emplace_back();
        if (!blocks.empty())
            blocks.back() += line;
    }
    return group(blocks);
}

ruleset::Ruleset compile(const std::string& settings, const std::string& policies)
{
    auto r = config::load_config_text(settings, "/etc/fqdnd/fqdnd.toml", {{"p.toml", policies}});
    for (const auto& e : r.errors)
        MESSAGE(e.to_string());
    REQUIRE(r.config);
    return ruleset::compile(*r.config);
}

void check_same(const std::vector<Printed>& fqdnd, const std::vector<Printed>& nft)
{
    REQUIRE_MESSAGE(!nft.empty(), "nft printed no netlink: is the rule text valid?");
    CHECK(fqdnd.size() == nft.size());
    for (size_t i = 0; i < std::min(fqdnd.size(), nft.size()); ++i) {
        CAPTURE(i);
        CHECK(fqdnd[i].chain == nft[i].chain);
        CHECK_MESSAGE(fqdnd[i].text == nft[i].text, "fqdnd:\n" << fqdnd[i].text << "nft:\n" << nft[i].text);
    }
}

const std::string policy = R"(
[[policy]]
name = "pods"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53", "2001:db8:4::53"]
dns = [{ match-pattern = "*" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.52/31", "203.0.113.60"]
dns = [{ match-pattern = "*.k8s.intra" }]
ports = [{ port = 5353, protocol = "udp" }, { port = 53, protocol = "any" }]
)";

// The rules of `policy` that queue, as docs/ruleset.md describes them, with
// the queue statement `q` for queries and `a` for answers.
std::string queue_rules_text(const std::string& q, const std::string& a)
{
    const std::string dns_flow = "ct mark & 0x00100000 == 0x00100000 ct direction ";
    const std::string l4 = " meta l4proto { tcp, udp } counter ";
    const std::string to_server = " ct mark set ct mark | 0x00900000 counter " + q
        + " comment \"DNS to an allowed server: queries are checked by fqdnd\"\n";
    return "chain forward {\n"
           "  " + dns_flow + "original" + l4 + q + " comment \"DNS flows: queries are checked by fqdnd\"\n"
           "  " + dns_flow + "reply" + l4 + a + " comment \"DNS flows: answers are inspected by fqdnd\"\n"
           "}\nchain output {\n"
           "  " + dns_flow + "original" + l4 + q + " comment \"DNS flows: queries are checked by fqdnd\"\n"
           "  " + dns_flow + "reply oifname != \"lo\"" + l4 + a
        + " comment \"DNS flows: this host's answers to clients are inspected by fqdnd\"\n"
          "}\nchain input {\n"
          "  " + dns_flow + "reply" + l4 + a + " comment \"DNS flows: answers are inspected by fqdnd\"\n"
          "  " + dns_flow + "original iifname != \"lo\"" + l4 + q
        + " comment \"DNS flows: clients' queries to this host are checked by fqdnd\"\n"
          "}\nchain dns_pods {\n"
          "  ip daddr { 203.0.113.52/31, 203.0.113.60 } meta l4proto udp th dport 5353" + to_server +
          "  ip daddr { 203.0.113.52/31, 203.0.113.60 } meta l4proto { tcp, udp } th dport 53" + to_server +
          "  ip daddr 203.0.113.53 meta l4proto { tcp, udp } th dport 53" + to_server +
          "  ip6 daddr 2001:db8:4::53 meta l4proto { tcp, udp } th dport 53" + to_server + "}\n";
}

} // namespace

TEST_CASE("native queue: queries and answers on two queues each, bypass when fail-open")
{
    const auto rs = compile("[daemon]\nqueue = 5300\nqueues = 2\nfail-open = true\n", policy);
    check_same(fqdnd_rules_with<ruleset::Queue>(rs), nft_rules(queue_rules_text("queue num 5300-5301 bypass", "queue num 5302-5303 bypass")));
}

TEST_CASE("native queue: one queue each, no bypass when fail-closed")
{
    const auto rs = compile("[daemon]\nqueue = 100\nqueues = 1\nfail-open = false\n", policy);
    check_same(fqdnd_rules_with<ruleset::Queue>(rs), nft_rules(queue_rules_text("queue num 100", "queue num 101")));
}

TEST_CASE("a to-fqdns rule's lookup of its tag and address is what nft makes of its listing")
{
    // The tag typed as a mark (meta mark with every bit replaced), so that
    // nft lists it in a form it reads back: see docs/ruleset.md, Sets.
    const auto rs = compile("", R"(
[[policy]]
name = "pods"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }]
[[policy.egress]]
to-fqdns = [{ match-name = "api.github.com" }]
ports = [{ port = 443, protocol = "tcp" }]
)");
    const std::string k8s = "meta mark & 0x812a0c7f | 0x812a0c7f . meta mark & 0x411d30e5 | 0x411d30e5";
    const std::string gh = "meta mark & 0xfa389ee8 | 0xfa389ee8 . meta mark & 0xe515f21a | 0xe515f21a";
    const std::string allow = " ct mark set ct mark | 0x00c00000 accept comment ";
    check_same(fqdnd_rules_with<ruleset::AddrInSet>(rs),
               nft_rules("set fqdn4 { type mark . mark . ipv4_addr; flags timeout; }\n"
                         "set fqdn6 { type mark . mark . ipv6_addr; flags timeout; }\n"
                         "chain allow_pods {\n"
                         "  " + gh + " . ip daddr @fqdn4 tcp dport 443" + allow + "\"match-name: api.github.com.\"\n"
                         "  " + gh + " . ip6 daddr @fqdn6 tcp dport 443" + allow + "\"match-name: api.github.com.\"\n"
                         "  " + k8s + " . ip daddr @fqdn4" + allow + "\"match-pattern: *.k8s.intra.\"\n"
                         "  " + k8s + " . ip6 daddr @fqdn6" + allow + "\"match-pattern: *.k8s.intra.\"\n"
                         "}\n"));
}

TEST_CASE("conntrack states: related packets in forward only going back on a flow begun outside; invalid dropped")
{
    const auto rs = compile("", R"(
[[policy]]
name = "pods"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]
)");
    check_same(fqdnd_rules_with<ruleset::CtState>(rs),
               nft_rules("chain forward {\n"
                         "  ct state established accept comment \"established flows\"\n"
                         "  ct state related ct direction reply ct mark & 0x00800000 != 0x00800000 accept"
                         " comment \"related to a flow begun outside, going back\"\n"
                         "  ip saddr 192.0.2.0/29 ct state invalid counter drop"
                         " comment \"policy pods: packets conntrack calls invalid\"\n"
                         "  ip saddr 192.0.2.0/29 ct state related counter drop"
                         " comment \"policy pods: related to a flow, not allowed\"\n"
                         "}\nchain output {\n"
                         "  ct state established,related accept comment \"established and related flows\"\n"
                         "}\nchain input {\n"
                         "  ip saddr 192.0.2.0/29 iifname != \"lo\" meta l4proto { tcp, udp } th dport 53 ct state invalid"
                         " counter drop comment \"policy pods: DNS to this host conntrack calls invalid\"\n"
                         "}\n"));
}

TEST_CASE("addresses that merge into one range are a compare or a range, as nft makes of a one-element set")
{
    // nft reads a listed one-element anonymous set back as this, so a
    // saved and restored ruleset lists as fqdnd wrote it (test-save).
    ruleset::Ruleset rs;
    rs.table = "fqdnd";
    ruleset::Chain chain{"forward", std::nullopt, {}};
    auto rule = [&](Family f, std::vector<const char*> texts) {
        std::vector<Cidr> cidrs;
        for (const char* t : texts)
            cidrs.push_back(*Cidr::parse(t));
        chain.rules.push_back(ruleset::Rule{{ruleset::AddrInList{false, f, cidrs}, ruleset::Accept{}}, ""});
    };
    rule(Family::ipv4, {"203.0.113.53", "203.0.113.54"});       // a range
    rule(Family::ipv4, {"203.0.113.52", "203.0.113.53"});       // one prefix
    rule(Family::ipv4, {"192.0.2.0/30", "192.0.2.4/31", "192.0.2.6"}); // a range of three pieces
    rule(Family::ipv4, {"192.0.2.0/29", "192.0.2.8/29"});       // two prefixes, one /28
    rule(Family::ipv6, {"2001:db8::1", "2001:db8::2"});
    rule(Family::ipv6, {"2001:db8::/35", "2001:db8:2000::/35"}); // one /34
    rule(Family::ipv4, {"255.255.255.254", "255.255.255.255"}); // the top of the space
    rs.chains.push_back(chain);
    check_same(fqdnd_rules_with<ruleset::AddrInList>(rs),
               nft_rules("chain forward {\n"
                         "  ip daddr 203.0.113.53-203.0.113.54 accept\n"
                         "  ip daddr 203.0.113.52/31 accept\n"
                         "  ip daddr 192.0.2.0-192.0.2.6 accept\n"
                         "  ip daddr 192.0.2.0/28 accept\n"
                         "  ip6 daddr 2001:db8::1-2001:db8::2 accept\n"
                         "  ip6 daddr 2001:db8::/34 accept\n"
                         "  ip daddr 255.255.255.254/31 accept\n"
                         "}\n"));
}

// The level of every socket expression in the rules `rs` makes with `units`
// (libnftnl 1.2 does not print it).
std::vector<uint32_t> socket_levels(const ruleset::Ruleset& rs, const cgroup::UnitCgroups& units)
{
    nft::Netlink nl;
    nft::Batch batch(nl);
    uint32_t set_id = 1;
    for (const ruleset::Chain& c : rs.chains)
        for (const ruleset::Rule& r : c.rules) {
            std::string problem;
            REQUIRE(nft::encode_rule(batch, rs.table, c.name, r, nft::QueueMode::native, units, set_id, &problem) == 0);
        }
    std::vector<uint32_t> levels;
    const std::string_view data = batch.data();
    int len = static_cast<int>(data.size());
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(data.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
        if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFT_MSG_NEWRULE)
            continue;
        std::unique_ptr<nftnl_rule, RuleFree> r(nftnl_rule_alloc());
        REQUIRE(nftnl_rule_nlmsg_parse(nlh, r.get()) >= 0);
        nftnl_expr_iter* it = nftnl_expr_iter_create(r.get());
        for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it))
            if (std::string_view(nftnl_expr_get_str(e, NFTNL_EXPR_NAME)) == "socket")
                levels.push_back(nftnl_expr_get_u32(e, NFTNL_EXPR_SOCKET_LEVEL));
        nftnl_expr_iter_destroy(it);
    }
    return levels;
}

TEST_CASE("a unit's rules compare its cgroup's id at its level; without a cgroup, an id no cgroup has")
{
    // nft reads a cgroup only as a path below /sys/fs/cgroup, so the
    // expressions are compared as libnftnl prints them.
    const auto rs = compile("[daemon]\nlog-rate = 0\n", R"(
[[policy]]
name = "web"
[policy.selector]
units = ["web.service"]
[[policy.egress]]
to-cidrs = ["192.0.2.0/24"]
)");
    auto texts = [&](const cgroup::UnitCgroups& units) {
        std::vector<std::string> out;
        for (const Printed& p : fqdnd_rules_with<ruleset::SocketCgroup>(rs, units))
            out.push_back(p.text);
        return out;
    };
    const cgroup::UnitCgroups running{
        {"web.service", cgroup::UnitCgroup{"/sys/fs/cgroup/system.slice/web.service", 2, 0x1122334455667788}}};
    const cgroup::UnitCgroups stopped{{"web.service", std::nullopt}};
    const auto with_cgroup = texts(running);
    REQUIRE(!with_cgroup.empty());
    for (const std::string& t : with_cgroup) {
        CAPTURE(t);
        CHECK(t.find("[ socket load cgroupv2 => reg 1 ]\n  [ cmp eq reg 1 0x55667788 0x11223344 ]") != std::string::npos);
    }
    const auto without = texts(stopped);
    REQUIRE(without.size() == with_cgroup.size()); // the same rules, in the same places
    for (const std::string& t : without) {
        CAPTURE(t);
        CHECK(t.find("[ socket load cgroupv2 => reg 1 ]\n  [ cmp eq reg 1 0x00000000 0x00000000 ]") != std::string::npos);
    }
    CHECK(socket_levels(rs, running) == std::vector<uint32_t>(with_cgroup.size(), 2));
    CHECK(socket_levels(rs, stopped) == std::vector<uint32_t>(with_cgroup.size(), 1));

    // A unit never looked up is an error, not a rule that matches nothing.
    nft::Netlink nl;
    nft::Batch batch(nl);
    uint32_t set_id = 1;
    std::string problem;
    for (const ruleset::Chain& c : rs.chains)
        for (const ruleset::Rule& r : c.rules)
            if (std::holds_alternative<ruleset::SocketCgroup>(r.exprs.front())) {
                CHECK(nft::encode_rule(batch, rs.table, c.name, r, nft::QueueMode::native, {}, set_id, &problem)
                      == -ENOENT);
                CHECK(problem == "unit web.service was not looked up");
            }
}

int main(int argc, char** argv)
{
    // nft needs CAP_NET_ADMIN where it runs: a network namespace of our own,
    // in a user namespace of our own when not root.
    int r = -1;
    if (geteuid() == 0)
        r = unshare(CLONE_NEWNET);
    else if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) {
        const std::string uid = "0 " + std::to_string(geteuid()) + " 1\n";
        std::ofstream("/proc/self/uid_map") << uid;
        r = 0;
    }
    if (r != 0) {
        std::puts("SKIP: no network namespace of our own for nft");
        return 77;
    }
    if (system("nft --version >/dev/null 2>&1") != 0) {
        std::puts("SKIP: no nft command");
        return 77;
    }
    doctest::Context context(argc, argv);
    return context.run();
}
