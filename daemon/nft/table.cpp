#include "nft/table.hpp"
#include "log.hpp"
#include "nft/objects.hpp"

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>


#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <set>

namespace fqdnd::nft {

using namespace ruleset;

std::string_view to_string(Refresh r) noexcept
{
    return r == Refresh::readd ? "re-add" : "delete-add";
}

std::string describe(const Features& f)
{
    return std::string("NFQUEUE: ")
        + (f.queue_mode == QueueMode::native ? "native nft queue expression" : "xtables NFQUEUE target (nft compat)")
        + "; set element refresh: " + std::string(to_string(f.refresh))
        + "; idempotent element delete: " + (f.destroy_elements ? "yes" : "no");
}

namespace {

// NFT_MSG_DESTROYSETELEM (Linux 6.3), which older headers lack: the
// 31st of enum nf_tables_msg_types (after NFT_MSG_GETRULE_RESET, 25, and the
// DESTROY of table, chain, rule and set, 26-29).
constexpr uint16_t msg_destroy_setelem = 30;


uint32_t hook_number(Hook h)
{
    switch (h) {
    case Hook::forward: return NF_INET_FORWARD;
    case Hook::output: return NF_INET_LOCAL_OUT;
    case Hook::input: return NF_INET_LOCAL_IN;
    case Hook::prerouting: return NF_INET_PRE_ROUTING;
    }
    return NF_INET_FORWARD;
}

void add_table(Batch& b, const std::string& table)
{
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
    nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nlmsghdr* nlh = b.add(NFT_MSG_NEWTABLE, NFPROTO_INET, NLM_F_CREATE, "table inet " + table);
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    b.commit(nlh);
}

void delete_table(Batch& b, const std::string& table)
{
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
    nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nlmsghdr* nlh = b.add(NFT_MSG_DELTABLE, NFPROTO_INET, 0, "deleting table inet " + table);
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    b.commit(nlh);
}

void add_chain(Batch& b, const std::string& table, const std::string& name, const std::optional<Hook>& hook,
               int priority)
{
    ChainPtr c(nftnl_chain_alloc());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, name.c_str());
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    if (hook) {
        nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM, hook_number(*hook));
        nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, priority);
        nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, "filter");
        nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
    }
    nlmsghdr* nlh = b.add(NFT_MSG_NEWCHAIN, NFPROTO_INET, NLM_F_CREATE, "chain " + name);
    nftnl_chain_nlmsg_build_payload(nlh, c.get());
    b.commit(nlh);
}

void delete_chain(Batch& b, const std::string& table, const std::string& name)
{
    ChainPtr c(nftnl_chain_alloc());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, name.c_str());
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    nlmsghdr* nlh = b.add(NFT_MSG_DELCHAIN, NFPROTO_INET, 0, "deleting chain " + name);
    nftnl_chain_nlmsg_build_payload(nlh, c.get());
    b.commit(nlh);
}

void flush_table_rules(Batch& b, const std::string& table)
{
    RulePtr r(nftnl_rule_alloc());
    nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
    nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
    nlmsghdr* nlh = b.add(NFT_MSG_DELRULE, NFPROTO_INET, 0, "flushing the rules of table " + table);
    nftnl_rule_nlmsg_build_payload(nlh, r.get());
    b.commit(nlh);
}

SetPtr set_ref(const std::string& table, const std::string& set)
{
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.c_str());
    nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
    return s;
}

void delete_set(Batch& b, const std::string& table, const std::string& set)
{
    SetPtr s = set_ref(table, set);
    nlmsghdr* nlh = b.add(NFT_MSG_DELSET, NFPROTO_INET, 0, "deleting set " + set);
    nftnl_set_nlmsg_build_payload(nlh, s.get());
    b.commit(nlh);
}

ObjPtr limit_ref(const std::string& table, const std::string& name)
{
    ObjPtr o(nftnl_obj_alloc());
    nftnl_obj_set_str(o.get(), NFTNL_OBJ_TABLE, table.c_str());
    nftnl_obj_set_str(o.get(), NFTNL_OBJ_NAME, name.c_str());
    nftnl_obj_set_u32(o.get(), NFTNL_OBJ_FAMILY, NFPROTO_INET);
    nftnl_obj_set_u32(o.get(), NFTNL_OBJ_TYPE, NFT_OBJECT_LIMIT);
    return o;
}

void add_limit(Batch& b, const std::string& table, const LimitObject& l)
{
    ObjPtr o = limit_ref(table, l.name);
    nftnl_obj_set_u64(o.get(), NFTNL_OBJ_LIMIT_RATE, l.rate);
    nftnl_obj_set_u64(o.get(), NFTNL_OBJ_LIMIT_UNIT, 1); // per second
    nftnl_obj_set_u32(o.get(), NFTNL_OBJ_LIMIT_BURST, l.burst);
    nftnl_obj_set_u32(o.get(), NFTNL_OBJ_LIMIT_TYPE, NFT_LIMIT_PKTS);
    nftnl_obj_set_u32(o.get(), NFTNL_OBJ_LIMIT_FLAGS, 0);
    nlmsghdr* nlh = b.add(NFT_MSG_NEWOBJ, NFPROTO_INET, NLM_F_CREATE, "limit " + l.name);
    nftnl_obj_nlmsg_build_payload(nlh, o.get());
    b.commit(nlh);
}

void delete_limit(Batch& b, const std::string& table, const std::string& name)
{
    ObjPtr o = limit_ref(table, name);
    nlmsghdr* nlh = b.add(NFT_MSG_DELOBJ, NFPROTO_INET, 0, "deleting limit " + name);
    nftnl_obj_nlmsg_build_payload(nlh, o.get());
    b.commit(nlh);
}

// Elements in messages of at most this many, to bound each message's size.
constexpr size_t elements_per_message = 1024;

// A set element's key: the address, after the selector's tag in a tagged
// set (two host-order mark fields, then the address in network order).
struct Key {
    std::array<uint8_t, tag_len + 16> bytes;
    uint32_t len;
};

Key key_of(const std::optional<uint64_t>& tag, const Address& a)
{
    Key k{};
    if (tag) {
        const auto halves = tag_halves(*tag);
        std::memcpy(k.bytes.data(), halves.data(), tag_len);
        k.len = tag_len;
    }
    std::memcpy(k.bytes.data() + k.len, a.bytes.data(), a.size());
    k.len += static_cast<uint32_t>(a.size());
    return k;
}

void element_messages(Batch& b, uint16_t type, const std::string& table, const std::string& set,
                      const std::vector<Key>& keys, const std::vector<Duration>* timeouts)
{
    for (size_t start = 0; start < keys.size(); start += elements_per_message) {
        SetPtr s = set_ref(table, set);
        const size_t end = std::min(keys.size(), start + elements_per_message);
        for (size_t i = start; i < end; ++i) {
            nftnl_set_elem* e = nftnl_set_elem_alloc();
            nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, keys[i].bytes.data(), keys[i].len);
            if (timeouts) {
                const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>((*timeouts)[i]).count();
                nftnl_set_elem_set_u64(e, NFTNL_SET_ELEM_TIMEOUT, static_cast<uint64_t>(std::max<int64_t>(ms, 1)));
            }
            nftnl_set_elem_add(s.get(), e);
        }
        nlmsghdr* nlh = b.add(type, NFPROTO_INET, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0,
                              std::string(type == NFT_MSG_NEWSETELEM ? "adding" : "deleting") + " "
                                  + std::to_string(end - start) + " elements of set " + set,
                              256 + (end - start) * 104);
        nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
        b.commit(nlh);
    }
}

int fail(std::string* problem, const std::vector<Batch::Error>& errors, int r)
{
    if (problem) {
        *problem = errors.empty() ? errno_text(r) : errors.front().to_string();
        for (size_t i = 1; i < errors.size(); ++i)
            *problem += "; " + errors[i].to_string();
    }
    return r;
}

} // namespace

int Table::list(const std::string& table, Existing& out)
{
    out = Existing{};
    std::array<char, 8192> buf_storage{};
    char* buf = buf_storage.data();

    // The table, its chains, its sets.
    {
        TablePtr t(nftnl_table_alloc());
        nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
        nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_INET, NLM_F_ACK, nl_.next_seq());
        nftnl_table_nlmsg_build_payload(nlh, t.get());
        int r = nl_.dump(nlh, [&](const nlmsghdr*) { out.table = true; });
        if (r == -ENOENT)
            return 0;
        if (r < 0)
            return r;
        out.table = true;
    }
    {
        ChainPtr c(nftnl_chain_alloc());
        nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
        nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, NFPROTO_INET, NLM_F_DUMP, nl_.next_seq());
        nftnl_chain_nlmsg_build_payload(nlh, c.get());
        int r = nl_.dump(nlh, [&](const nlmsghdr* m) {
            ChainPtr got(nftnl_chain_alloc());
            if (nftnl_chain_nlmsg_parse(m, got.get()) < 0)
                return;
            if (table != nftnl_chain_get_str(got.get(), NFTNL_CHAIN_TABLE))
                return;
            Existing::ChainInfo info{nftnl_chain_get_str(got.get(), NFTNL_CHAIN_NAME),
                                     nftnl_chain_is_set(got.get(), NFTNL_CHAIN_HOOKNUM), 0, 0};
            if (info.base) {
                info.hook = nftnl_chain_get_u32(got.get(), NFTNL_CHAIN_HOOKNUM);
                info.priority = nftnl_chain_get_s32(got.get(), NFTNL_CHAIN_PRIO);
            }
            out.chains.push_back(std::move(info));
        });
        if (r < 0 && r != -ENOENT)
            return r;
    }
    {
        SetPtr s(nftnl_set_alloc());
        nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
        nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSET, NFPROTO_INET, NLM_F_DUMP, nl_.next_seq());
        nftnl_set_nlmsg_build_payload(nlh, s.get());
        int r = nl_.dump(nlh, [&](const nlmsghdr* m) {
            SetPtr got(nftnl_set_alloc());
            if (nftnl_set_nlmsg_parse(m, got.get()) < 0)
                return;
            if (nftnl_set_get_u32(got.get(), NFTNL_SET_FLAGS) & NFT_SET_ANONYMOUS)
                return;
            out.sets.emplace_back(nftnl_set_get_str(got.get(), NFTNL_SET_NAME));
        });
        if (r < 0 && r != -ENOENT)
            return r;
    }
    {
        ObjPtr o(nftnl_obj_alloc());
        nftnl_obj_set_str(o.get(), NFTNL_OBJ_TABLE, table.c_str());
        nftnl_obj_set_u32(o.get(), NFTNL_OBJ_TYPE, NFT_OBJECT_LIMIT);
        nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETOBJ, NFPROTO_INET, NLM_F_DUMP, nl_.next_seq());
        nftnl_obj_nlmsg_build_payload(nlh, o.get());
        int r = nl_.dump(nlh, [&](const nlmsghdr* m) {
            ObjPtr got(nftnl_obj_alloc());
            if (nftnl_obj_nlmsg_parse(m, got.get()) < 0)
                return;
            if (table != nftnl_obj_get_str(got.get(), NFTNL_OBJ_TABLE)
                || nftnl_obj_get_u32(got.get(), NFTNL_OBJ_TYPE) != NFT_OBJECT_LIMIT)
                return;
            out.limits.push_back(LimitObject{nftnl_obj_get_str(got.get(), NFTNL_OBJ_NAME),
                                             nftnl_obj_get_u64(got.get(), NFTNL_OBJ_LIMIT_RATE),
                                             nftnl_obj_get_u32(got.get(), NFTNL_OBJ_LIMIT_BURST)});
        });
        if (r < 0 && r != -ENOENT)
            return r;
    }
    return 0;
}

bool Table::exists(const std::string& table)
{
    Existing e;
    return list(table, e) == 0 && e.table;
}

int Table::owner(const std::string& table, uint32_t& portid)
{
    portid = 0;
    std::array<char, 512> buf{};
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETTABLE, NFPROTO_INET, NLM_F_ACK, nl_.next_seq());
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    int r = nl_.dump(nlh, [&](const nlmsghdr* m) {
        TablePtr got(nftnl_table_alloc());
        if (nftnl_table_nlmsg_parse(m, got.get()) < 0)
            return;
        if (nftnl_table_is_set(got.get(), NFTNL_TABLE_FLAGS)
            && (nftnl_table_get_u32(got.get(), NFTNL_TABLE_FLAGS) & NFT_TABLE_F_OWNER)
            && nftnl_table_is_set(got.get(), NFTNL_TABLE_OWNER))
            portid = nftnl_table_get_u32(got.get(), NFTNL_TABLE_OWNER);
    });
    return r == -ENOENT ? 0 : r;
}

bool Table::matches(const Ruleset& rs)
{
    Existing e;
    if (list(rs.table, e) < 0 || !e.table || e.chains.size() != rs.chains.size() || e.sets.size() != rs.sets.size()
        || e.limits.size() != rs.limits.size())
        return false;
    for (const Chain& c : rs.chains) {
        auto have = std::find_if(e.chains.begin(), e.chains.end(), [&](const auto& x) { return x.name == c.name; });
        if (have == e.chains.end() || have->base != c.hook.has_value()
            || (have->base && (have->hook != hook_number(*c.hook) || have->priority != c.priority)))
            return false;
    }
    for (const AddressSet& s : rs.sets)
        if (std::find(e.sets.begin(), e.sets.end(), s.name) == e.sets.end())
            return false;
    for (const LimitObject& l : rs.limits)
        if (std::none_of(e.limits.begin(), e.limits.end(),
                         [&](const LimitObject& x) { return x.name == l.name && x.rate == l.rate && x.burst == l.burst; }))
            return false;
    // Rules, counted per chain in one dump of the table's rules.
    std::map<std::string, size_t> rules;
    std::array<char, 1024> buf{};
    RulePtr r(nftnl_rule_alloc());
    nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, rs.table.c_str());
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, nl_.next_seq());
    nftnl_rule_nlmsg_build_payload(nlh, r.get());
    const int res = nl_.dump(nlh, [&](const nlmsghdr* m) {
        RulePtr got(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(m, got.get()) < 0 || rs.table != nftnl_rule_get_str(got.get(), NFTNL_RULE_TABLE))
            return;
        ++rules[nftnl_rule_get_str(got.get(), NFTNL_RULE_CHAIN)];
    });
    if (res < 0)
        return false;
    for (const Chain& c : rs.chains) {
        auto it = rules.find(c.name);
        if ((it == rules.end() ? 0 : it->second) != c.rules.size())
            return false;
    }
    return true;
}

int Table::apply(const Ruleset& rs, QueueMode mode, const cgroup::UnitCgroups& units, std::string* problem,
                 const std::string* replaces)
{
    Existing existing;
    if (int r = list(rs.table, existing); r < 0) {
        if (problem)
            *problem = "listing table inet " + rs.table + ": " + errno_text(r);
        return r;
    }
    // Not one that another process has taken (`flags owner`): not fqdnd's.
    uint32_t owned_by = 0;
    const bool remove_old = replaces && *replaces != rs.table && exists(*replaces)
        && owner(*replaces, owned_by) == 0 && owned_by == 0;

    Batch b(nl_);
    add_table(b, rs.table);
    if (existing.table) {
        // Every rule goes (with the anonymous sets bound to them); chains
        // and named sets stay unless no longer wanted, so set elements
        // survive. The batch is atomic: packets see the old table or the new.
        flush_table_rules(b, rs.table);
        for (const auto& c : existing.chains) {
            auto want = std::find_if(rs.chains.begin(), rs.chains.end(),
                                     [&](const Chain& w) { return w.name == c.name; });
            const bool same = want != rs.chains.end() && want->hook.has_value() == c.base
                && (!c.base || (hook_number(*want->hook) == c.hook && c.priority == want->priority));
            if (!same)
                delete_chain(b, rs.table, c.name);
        }
        for (const auto& s : existing.sets)
            if (std::none_of(rs.sets.begin(), rs.sets.end(), [&](const AddressSet& w) { return w.name == s; }))
                delete_set(b, rs.table, s);
        // A limit whose rate changed is made again: no rule uses it once
        // the rules are flushed, earlier in this batch.
        for (const auto& l : existing.limits)
            if (std::none_of(rs.limits.begin(), rs.limits.end(), [&](const LimitObject& w) {
                    return w.name == l.name && w.rate == l.rate && w.burst == l.burst;
                }))
                delete_limit(b, rs.table, l.name);
    }
    for (const LimitObject& l : rs.limits)
        if (std::none_of(existing.limits.begin(), existing.limits.end(), [&](const LimitObject& e) {
                return e.name == l.name && e.rate == l.rate && e.burst == l.burst;
            }))
            add_limit(b, rs.table, l);
    uint32_t set_id = 1;
    for (const AddressSet& s : rs.sets)
        if (std::find(existing.sets.begin(), existing.sets.end(), s.name) == existing.sets.end())
            encode_address_set(b, rs.table, s, set_id++);
    // Chains first (jumps need their target), then rules.
    for (const Chain& c : rs.chains) {
        auto have = std::find_if(existing.chains.begin(), existing.chains.end(),
                                 [&](const auto& e) { return e.name == c.name; });
        const bool keep = have != existing.chains.end() && have->base == c.hook.has_value()
            && (!have->base || (have->hook == hook_number(*c.hook) && have->priority == c.priority));
        if (!keep)
            add_chain(b, rs.table, c.name, c.hook, c.priority);
    }
    for (const Chain& c : rs.chains) {
        for (const Rule& rule : c.rules) {
            std::string why;
            if (int r = encode_rule(b, rs.table, c.name, rule, mode, units, set_id, &why); r < 0) {
                if (problem)
                    *problem = "chain " + c.name + ": " + why;
                return r;
            }
        }
    }
    if (remove_old)
        delete_table(b, *replaces);
    std::vector<Batch::Error> errors;
    if (int r = b.send(&errors); r < 0)
        return fail(problem, errors, r);
    return 0;
}

int Table::remove(const std::string& table, std::string* problem)
{
    Batch b(nl_);
    delete_table(b, table);
    std::vector<Batch::Error> errors;
    const int r = b.send(&errors);
    if (r == -ENOENT)
        return 0;
    return r < 0 ? fail(problem, errors, r) : 0;
}

int Table::add_elements(const std::string& table, const std::string& set, std::optional<uint64_t> tag,
                        const std::vector<Element>& elements, Refresh refresh, std::string* problem)
{
    Batch b(nl_);
    std::vector<Key> addresses, stale;
    std::vector<Duration> timeouts;
    for (const Element& e : elements) {
        addresses.push_back(key_of(tag, e.address));
        timeouts.push_back(e.timeout);
        if (refresh == Refresh::delete_add && e.exists)
            stale.push_back(key_of(tag, e.address));
    }
    if (!stale.empty())
        element_messages(b, NFT_MSG_DELSETELEM, table, set, stale, nullptr);
    element_messages(b, NFT_MSG_NEWSETELEM, table, set, addresses, &timeouts);
    std::vector<Batch::Error> errors;
    if (int r = b.send(&errors); r < 0)
        return fail(problem, errors, r);
    return 0;
}

int Table::update(const std::string& table, const std::vector<cache::ElementOp>& ops, Refresh refresh,
                  std::string* problem)
{
    // On the DNS path: the two FQDN sets, by family, with no lookup by name.
    struct PerSet {
        std::string set;
        std::vector<Key> add, renew_delete, destroy;
        std::vector<Duration> timeouts;
    };
    PerSet sets[2]{{fqdn_set(Family::ipv4), {}, {}, {}, {}}, {fqdn_set(Family::ipv6), {}, {}, {}, {}}};
    // Removals: idempotent, in the same batch, from 6.3; before, by set and
    // selector tag for delete_each, after it.
    std::map<std::pair<size_t, uint64_t>, std::vector<Address>> removals;
    for (const auto& op : ops) {
        const size_t index = op.family == Family::ipv6 ? 1 : 0;
        PerSet& s = sets[index];
        if (op.kind == cache::ElementOp::Kind::remove) {
            if (destroy_)
                s.destroy.push_back(key_of(op.tag, op.address));
            else
                removals[{index, op.tag}].push_back(op.address);
            continue;
        }
        const Key key = key_of(op.tag, op.address);
        s.add.push_back(key);
        s.timeouts.push_back(op.timeout);
        if (refresh == Refresh::delete_add && op.exists)
            s.renew_delete.push_back(key);
    }
    int result = 0;
    for (bool with_deletes : {true, false}) {
        Batch b(nl_);
        bool deletes = false, any = false;
        for (const PerSet& s : sets) {
            if (with_deletes && !s.renew_delete.empty()) {
                element_messages(b, NFT_MSG_DELSETELEM, table, s.set, s.renew_delete, nullptr);
                deletes = true;
            }
            if (!s.add.empty()) {
                element_messages(b, NFT_MSG_NEWSETELEM, table, s.set, s.add, &s.timeouts);
                any = true;
            }
            if (!s.destroy.empty()) {
                element_messages(b, msg_destroy_setelem, table, s.set, s.destroy, nullptr);
                any = true;
            }
        }
        if (!any)
            break;
        std::vector<Batch::Error> errors;
        result = b.send(&errors);
        if (result == 0)
            break;
        fail(problem, errors, result);
        // A renewal whose element the kernel just expired: add it afresh.
        if (!deletes || result == -ETIMEDOUT)
            break;
    }
    for (const auto& [where, addresses] : removals) {
        std::string why;
        if (delete_each(table, sets[where.first].set, where.second, addresses, &why) == 0 && result == 0) {
            result = -EIO; // delete_each tells no errno: it may have tried three times
            if (problem)
                *problem = "removing elements from " + sets[where.first].set + ": " + why;
        }
    }
    return result;
}

int Table::delete_elements(const std::string& table, const std::string& set, std::optional<uint64_t> tag,
                           const std::vector<Address>& addresses, std::string* problem, uint16_t type)
{
    Batch b(nl_);
    std::vector<Key> keys;
    for (const Address& a : addresses)
        keys.push_back(key_of(tag, a));
    element_messages(b, type, table, set, keys, nullptr);
    std::vector<Batch::Error> errors;
    if (int r = b.send(&errors); r < 0)
        return fail(problem, errors, r);
    return 0;
}

size_t Table::delete_each(const std::string& table, const std::string& set, std::optional<uint64_t> tag,
                          const std::vector<Address>& addresses, std::string* problem)
{
    if (destroy_)
        return delete_elements(table, set, tag, addresses, problem, msg_destroy_setelem) == 0 ? addresses.size() : 0;
    // Each failed batch costs the kernel an abort (an RCU grace period):
    // not one at a time, but again with what a listing still shows.
    std::vector<Address> left = addresses;
    std::string why;
    for (int attempt = 0; attempt < 3 && !left.empty(); ++attempt) {
        why.clear();
        if (delete_elements(table, set, tag, left, &why) == 0)
            return addresses.size();
        std::vector<ListedElement> listed;
        if (int r = list_elements(table, set, listed); r < 0) {
            why = "listing set " + set + ": " + errno_text(r);
            break;
        }
        std::set<Address> still;
        for (const auto& e : listed)
            if (e.tag == tag && !(e.timeout.count() > 0 && e.expires < std::chrono::seconds(1)))
                still.insert(e.address);
        std::erase_if(left, [&](const Address& a) { return !still.contains(a); });
    }
    if (left.empty())
        return addresses.size(); // the rest went by themselves
    if (problem)
        *problem = why;
    return 0;
}

int Table::generation(uint32_t& out)
{
    std::array<char, 256> buf{};
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETGEN, NFPROTO_UNSPEC, NLM_F_ACK, nl_.next_seq());
    bool got = false;
    const int r = nl_.dump(nlh, [&](const nlmsghdr* m) {
        GenPtr gen(nftnl_gen_alloc());
        if (gen && NFNL_MSG_TYPE(m->nlmsg_type) == NFT_MSG_NEWGEN && nftnl_gen_nlmsg_parse(m, gen.get()) == 0) {
            out = nftnl_gen_get_u32(gen.get(), NFTNL_GEN_ID);
            got = true;
        }
    });
    if (r < 0)
        return r;
    return got ? 0 : -EPROTO;
}

int Table::list_elements_stable(const std::string& table, const std::string& set, std::vector<ListedElement>& out)
{
    for (int attempt = 0; attempt < 3; ++attempt) {
        uint32_t before = 0, after = 0;
        // A kernel that does not tell its generation: one listing, as is.
        const bool told = generation(before) == 0;
        out.clear();
        if (int r = list_elements(table, set, out); r < 0)
            return r;
        if (!told || (generation(after) == 0 && before == after))
            return 0;
    }
    return -EAGAIN; // `out` holds the last listing, which may miss some
}

bool Table::probe_destroy(const std::string& table)
{
    return probe_destroy(table, nullptr) == 0 && destroy_;
}

int Table::probe_destroy(const std::string& table, std::string* problem)
{
    const std::string set = "probe_destroy";
    Batch b(nl_);
    add_table(b, table);
    encode_address_set(b, table, AddressSet{set, Family::ipv4, "probe"}, 1);
    destroy_ = false;
    std::vector<Batch::Error> errors;
    if (int r = b.send(&errors); r < 0)
        return fail(problem, errors, r);
    // An element that is not there: only a kernel that knows the message
    // takes it.
    Batch destroy(nl_);
    element_messages(destroy, msg_destroy_setelem, table, set, {key_of(std::nullopt, *Address::parse("192.0.2.1"))},
                     nullptr);
    destroy_ = destroy.send() == 0;
    Batch cleanup(nl_);
    delete_set(cleanup, table, set);
    cleanup.send();
    return 0;
}

int Table::list_elements(const std::string& table, const std::string& set, std::vector<ListedElement>& out)
{
    std::array<char, 8192> buf_storage{};
    char* buf = buf_storage.data();
    SetPtr s = set_ref(table, set);
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, nl_.next_seq());
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    std::string got_table, got_set;
    return nl_.dump(nlh, [&](const nlmsghdr* m) { parse_elements(m, got_table, got_set, out); });
}

bool Table::parse_elements(const nlmsghdr* nlh, std::string& table, std::string& set,
                           std::vector<ListedElement>& out)
{
    SetPtr got(nftnl_set_alloc());
    if (!got || nftnl_set_elems_nlmsg_parse(nlh, got.get()) < 0)
        return false;
    const char* t = nftnl_set_get_str(got.get(), NFTNL_SET_TABLE);
    const char* n = nftnl_set_get_str(got.get(), NFTNL_SET_NAME);
    table = t ? t : "";
    set = n ? n : "";
    nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(got.get());
    if (!it)
        return false;
    for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it)) {
        uint32_t len = 0;
        const auto* key = static_cast<const uint8_t*>(nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len));
        if (!key)
            continue;
        ListedElement le{};
        if (len == tag_len + 4 || len == tag_len + 16) {
            std::array<uint32_t, 2> halves;
            std::memcpy(halves.data(), key, tag_len);
            le.tag = (uint64_t{halves[0]} << 32) | halves[1];
            key += tag_len;
            len -= tag_len;
        }
        if (len != 4 && len != 16)
            continue;
        le.address = len == 4 ? Address::v4(key) : Address::v6(key);
        if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_TIMEOUT))
            le.timeout = std::chrono::milliseconds(nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_TIMEOUT));
        if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION))
            le.expires = std::chrono::milliseconds(nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION));
        out.push_back(le);
    }
    nftnl_set_elems_iter_destroy(it);
    return true;
}

int Table::probe_queue(const std::string& table, QueueMode& mode, std::string* problem)
{
    // A throw-away chain with one queue rule, deleted in the same batch:
    // the kernel checks the expression when the rule is added.
    for (QueueMode m : {QueueMode::native, QueueMode::compat}) {
        Batch b(nl_);
        add_table(b, table);
        const std::string chain = "probe_queue";
        add_chain(b, table, chain, std::nullopt, chain_priority);
        uint32_t set_id = 1;
        Rule rule{{Queue{0, 1, true}}, ""};
        encode_rule(b, table, chain, rule, m, {}, set_id, nullptr);
        RulePtr flush(nftnl_rule_alloc());
        nftnl_rule_set_str(flush.get(), NFTNL_RULE_TABLE, table.c_str());
        nftnl_rule_set_str(flush.get(), NFTNL_RULE_CHAIN, chain.c_str());
        nftnl_rule_set_u32(flush.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
        nlmsghdr* nlh = b.add(NFT_MSG_DELRULE, NFPROTO_INET, 0, "flushing chain " + chain);
        nftnl_rule_nlmsg_build_payload(nlh, flush.get());
        b.commit(nlh);
        delete_chain(b, table, chain);
        std::vector<Batch::Error> errors;
        const int r = b.send(&errors);
        if (r == 0) {
            mode = m;
            return 0;
        }
        if (m == QueueMode::compat)
            return fail(problem, errors, r);
    }
    return -EOPNOTSUPP;
}

int Table::probe_refresh(const std::string& table, Refresh& refresh, std::string* problem)
{
    const std::string set = "probe_refresh";
    const Address probe = *Address::parse("192.0.2.1");
    Batch b(nl_);
    add_table(b, table);
    encode_address_set(b, table, AddressSet{set, Family::ipv4, "probe"}, 1);
    std::vector<Batch::Error> errors;
    if (int r = b.send(&errors); r < 0)
        return fail(problem, errors, r);

    std::vector<ListedElement> listed;
    int r = add_elements(table, set, std::nullopt, {{probe, std::chrono::hours(1), false}}, Refresh::readd, problem);
    if (r == 0)
        r = add_elements(table, set, std::nullopt, {{probe, std::chrono::hours(2), true}}, Refresh::readd, problem);
    if (r == 0)
        r = list_elements(table, set, listed);
    if (r == 0)
        refresh = !listed.empty() && listed[0].timeout > std::chrono::minutes(90) ? Refresh::readd : Refresh::delete_add;

    Batch cleanup(nl_);
    delete_set(cleanup, table, set);
    cleanup.send();
    if (r < 0 && problem && problem->empty())
        *problem = "probing element refresh: " + errno_text(r);
    return r;
}

int Table::probe(const std::string& table, std::optional<QueueMode> queue_mode, std::optional<Refresh> refresh,
                 Features& out, std::string* problem)
{
    std::string why;
    if (queue_mode)
        out.queue_mode = *queue_mode;
    else if (int r = probe_queue(table, out.queue_mode, &why); r < 0) {
        if (problem)
            *problem = "this kernel takes neither the nft queue expression nor the xtables NFQUEUE target: " + why;
        return r;
    }
    if (refresh)
        out.refresh = *refresh;
    else if (int r = probe_refresh(table, out.refresh, &why); r < 0) {
        if (problem)
            *problem = "cannot probe set element refresh: " + why;
        return r;
    }
    // Only a kernel that refused the message says no; a table that could
    // not be written (another process holds its name) is a failure.
    if (int r = probe_destroy(table, &why); r < 0) {
        if (problem)
            *problem = "cannot probe idempotent element deletion: " + why;
        return r;
    }
    out.destroy_elements = destroy_;
    return 0;
}

} // namespace fqdnd::nft
