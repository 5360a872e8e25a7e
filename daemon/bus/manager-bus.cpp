#include "bus/manager-bus.hpp"

#include "audit/suggest.hpp"
#include "bus/names.hpp"
#include "build-config.hpp"
#include "cache/format.hpp"
#include "fqdn/matcher.hpp"
#include "fqdn/name.hpp"
#include "log.hpp"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

namespace fqdnd {

namespace sig = bus::signature;

namespace {

bus::Backend& manager_of(void* userdata)
{
    return static_cast<ManagerBus*>(userdata)->backend();
}

// Whether the user database puts `uid` in group `gid` (its primary group
// or a member): what dbus-daemon checks for <policy group="...">, so that
// fqdnd and the bus policy agree. The caller's /proc, where its groups
// are, is hidden from fqdnd by ProtectProc=invisible.
bool user_in_group(uid_t uid, gid_t gid)
{
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found)
        return false;
    if (pw.pw_gid == gid)
        return true;
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
        groups.resize(static_cast<size_t>(n)); // n is now how many there are
        if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0)
            return false;
    }
    groups.resize(static_cast<size_t>(n));
    return std::find(groups.begin(), groups.end(), gid) != groups.end();
}

// The caller's right: reading needs root or the fqdnd group; changing
// needs root. Checked on every call, whatever the bus policy said. The uid
// is the bus driver's word (SO_PEERCRED), never the caller's.
int check_access(sd_bus_message* m, bool change, sd_bus_error* error, const std::string& read_group)
{
    sd_bus_creds* raw = nullptr;
    int r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &raw);
    if (r < 0)
        return sd_bus_error_set_errnof(error, -r, "cannot tell who is calling: %s", std::strerror(-r));
    SdBusCredsPtr creds(raw);
    uid_t uid = 0;
    if (sd_bus_creds_get_euid(creds.get(), &uid) < 0)
        return sd_bus_error_set(error, fqdnd::bus::error_access_denied, "cannot tell who is calling");
    if (uid == 0)
        return 0;
    if (change)
        return sd_bus_error_set(error, fqdnd::bus::error_access_denied, "only root may change fqdnd's state");
    std::vector<char> buf(16384);
    group gr{};
    group* g = nullptr;
    if (getgrnam_r(read_group.c_str(), &gr, buf.data(), buf.size(), &g) == 0 && g && user_in_group(uid, g->gr_gid))
        return 0;
    return sd_bus_error_set(error, fqdnd::bus::error_access_denied,
                            ("reading fqdnd's state is for root and the " + read_group + " group").c_str());
}

// Appends to a message, keeping the first error: after one, nothing more is
// appended and result() says what went wrong, so that a reply or signal is
// sent whole or not at all.
class Builder {
public:
    explicit Builder(sd_bus_message* m) : m_(m) {}
    template <typename... Args>
    Builder& append(const char* signature, Args... args)
    {
        if (r_ >= 0)
            r_ = sd_bus_message_append(m_, signature, args...);
        return *this;
    }
    Builder& open(char type, const char* contents)
    {
        if (r_ >= 0)
            r_ = sd_bus_message_open_container(m_, type, contents);
        return *this;
    }
    Builder& close()
    {
        if (r_ >= 0)
            r_ = sd_bus_message_close_container(m_);
        return *this;
    }
    Builder& strings(const std::vector<std::string>& list)
    {
        open('a', "s");
        for (const auto& x : list)
            append("s", x.c_str());
        return close();
    }
    int result() const noexcept { return r_; }

private:
    sd_bus_message* m_;
    int r_ = 0;
};

// Builds a method's reply with `fill` and sends it.
template <typename Fill>
int reply_with(sd_bus_message* m, Fill fill)
{
    sd_bus_message* reply = nullptr;
    if (int r = sd_bus_message_new_method_return(m, &reply); r < 0)
        return r;
    SdBusMessagePtr owned(reply);
    Builder b(reply);
    fill(b);
    if (b.result() < 0)
        return b.result();
    return sd_bus_send(nullptr, reply, nullptr);
}

uint64_t ms(cache::Time t)
{
    return static_cast<uint64_t>(t.time_since_epoch().count());
}

// A caller's -p PATTERN as a matcher (none for ""), or InvalidArgument.
int pattern_filter(const char* pattern, std::optional<FqdnMatcher>& matcher, sd_bus_error* error)
{
    if (!*pattern)
        return 0;
    std::string why;
    auto sel = FqdnSelector::parse_pattern(pattern, &why);
    if (!sel)
        return sd_bus_error_setf(error, fqdnd::bus::error_invalid_argument, "%s", why.c_str());
    matcher.emplace(std::vector<FqdnSelector>{*sel});
    return 0;
}

int method_status(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, false, error, manager_of(userdata).read_group()); r < 0)
        return r;
    const bus::Status s = manager_of(userdata).status();
    return sd_bus_reply_method_return(m, sig::status, FQDND_VERSION, s.table.c_str(), s.queue_mode.c_str(),
                                      s.policies, s.names, s.addresses, s.connection_addresses, s.live_flows,
                                      s.selectors, s.queue_dropped, s.queue_user_dropped);
}

int method_list_cache(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, false, error, manager_of(userdata).read_group()); r < 0)
        return r;
    const char *pattern = nullptr, *endpoint = nullptr, *source = nullptr;
    if (int r = sd_bus_message_read(m, "sss", &pattern, &endpoint, &source); r < 0)
        return r;
    std::optional<FqdnMatcher> matcher;
    if (int r = pattern_filter(pattern, matcher, error); r < 0)
        return r;
    return reply_with(m, [&](Builder& b) {
        b.open('a', sig::cache_entry);
        for (const auto& e : manager_of(userdata).cache_entries()) {
            if (*endpoint && e.endpoint != endpoint)
                continue;
            if (matcher && matcher->match(e.name).empty())
                continue;
            for (const auto& mp : e.mappings) {
                const std::string src(cache::to_string(mp.source));
                if (*source && src != source)
                    continue;
                const auto ttl = std::chrono::duration_cast<std::chrono::seconds>(mp.expires - mp.lookup).count();
                b.open('r', sig::cache_entry_fields);
                b.append(sig::cache_entry_head, e.endpoint.c_str(), src.c_str(), e.name.c_str(),
                                      static_cast<uint32_t>(std::max<int64_t>(ttl, 0)), ms(mp.lookup), ms(mp.expires));
                b.append("as", 1, mp.address.to_string().c_str());
                b.close();
            }
        }
        b.close();
    });
}

int method_clean_cache(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, true, error, manager_of(userdata).read_group()); r < 0)
        return r;
    const char* pattern = nullptr;
    if (int r = sd_bus_message_read(m, "s", &pattern); r < 0)
        return r;
    std::optional<FqdnMatcher> matcher;
    if (int r = pattern_filter(pattern, matcher, error); r < 0)
        return r;
    const size_t removed = manager_of(userdata).clean_cache(
        matcher ? &*matcher : nullptr, *pattern ? std::optional<std::string>(pattern) : std::nullopt);
    return sd_bus_reply_method_return(m, "u", static_cast<uint32_t>(removed));
}

int method_list_selectors(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, false, error, manager_of(userdata).read_group()); r < 0)
        return r;
    return reply_with(m, [&](Builder& b) {
        b.open('a', sig::selector);
        for (const auto& s : manager_of(userdata).selectors()) {
            b.open('r', sig::selector_fields);
            b.append(sig::selector_head, s.selector.c_str(), s.set4.c_str(), s.set6.c_str());
            b.strings(s.names);
            b.strings(s.addresses);
            b.close();
        }
        b.close();
    });
}

int method_list_policies(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, false, error, manager_of(userdata).read_group()); r < 0)
        return r;
    return reply_with(m, [&](Builder& b) {
        b.open('a', sig::policy);
        for (const auto& p : manager_of(userdata).policies())
            b.append(sig::policy, p.name.c_str(), p.audit, p.where.to_string().c_str(),
                                  static_cast<uint32_t>(p.egress.size()));
        b.close();
    });
}

int method_reload(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, true, error, manager_of(userdata).read_group()); r < 0)
        return r;
    std::vector<std::string> errors;
    manager_of(userdata).reload(&errors);
    return reply_with(m, [&](Builder& b) {
        b.strings(errors);
    });
}

int method_explain(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, false, error, manager_of(userdata).read_group()); r < 0)
        return r;
    const char* what = nullptr;
    if (int r = sd_bus_message_read(m, "s", &what); r < 0)
        return r;
    const auto x = manager_of(userdata).explain(what);
    if (!x)
        return sd_bus_error_setf(error, fqdnd::bus::error_invalid_argument, "\"%s\" is neither an address nor a name",
                                 what);
    return reply_with(m, [&](Builder& b) {
        b.append(sig::explanation_head, x->is_address, x->subject.c_str(), x->allowed);
        b.open('a', sig::explained_mapping);
        for (const auto& h : x->holders) {
            b.open('r', sig::explained_mapping_fields);
            b.append(sig::explained_mapping_head, h.name.c_str(), h.endpoint.c_str(), h.source.c_str(),
                                  h.selector.c_str(), h.set.c_str(), ms(h.expires));
            b.strings(h.policies);
            b.close();
        }
        b.close();
        for (const auto* list : {&x->cidr_rules, &x->selector_uses, &x->dns_rules}) {
            b.strings(*list);
        }
    });
}

int method_metrics(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, false, error, manager_of(userdata).read_group()); r < 0)
        return r;
    return reply_with(m, [&](Builder& b) {
        b.open('a', sig::metric);
        for (const auto& s : manager_of(userdata).metric_samples())
            b.append(sig::metric, s.name.c_str(), s.labels.c_str(), s.value);
        b.close();
    });
}

// A caller's POLICY argument: "" for every policy; otherwise one that is
// configured or has a recording, or InvalidArgument.
int policy_argument(bus::Backend& b, const char* policy, std::optional<std::string>& out, sd_bus_error* error)
{
    if (!*policy)
        return 0;
    out = policy;
    const auto& ps = b.policies();
    if (std::none_of(ps.begin(), ps.end(), [&](const config::Policy& p) { return p.name == policy; })
        && b.recordings(out).empty())
        return sd_bus_error_setf(error, fqdnd::bus::error_invalid_argument,
                                 "no policy \"%s\" is configured or recorded", policy);
    return 0;
}

int format_argument(const char* format, bool& json, sd_bus_error* error)
{
    const std::string_view f = format;
    if (f != "" && f != "toml" && f != "json" && f != "text")
        return sd_bus_error_setf(error, fqdnd::bus::error_invalid_argument, "format \"%s\" is not toml, text or json",
                                 format);
    json = f == "json";
    return 0;
}

// SuggestPolicy and DiffPolicy: (policy, format) in, text out, read access.
using PolicyRenderer = std::string (*)(bus::Backend&, const std::optional<std::string>& which, bool json);

int reply_policy_text(sd_bus_message* m, void* userdata, sd_bus_error* error, PolicyRenderer render)
{
    bus::Backend& b = manager_of(userdata);
    if (int r = check_access(m, false, error, b.read_group()); r < 0)
        return r;
    const char *policy = nullptr, *format = nullptr;
    if (int r = sd_bus_message_read(m, "ss", &policy, &format); r < 0)
        return r;
    std::optional<std::string> which;
    bool json = false;
    if (int r = policy_argument(b, policy, which, error); r < 0)
        return r;
    if (int r = format_argument(format, json, error); r < 0)
        return r;
    return sd_bus_reply_method_return(m, "s", render(b, which, json).c_str());
}

int method_suggest_policy(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    return reply_policy_text(m, userdata, error, [](bus::Backend& b, const std::optional<std::string>& which, bool json) {
        return audit::render_suggestions(b.recordings(which), b.policies(), json);
    });
}

int method_diff_policy(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    return reply_policy_text(m, userdata, error, [](bus::Backend& b, const std::optional<std::string>& which, bool json) {
        std::vector<config::Policy> policies;
        for (const auto& p : b.policies())
            if (!which || p.name == *which)
                policies.push_back(p);
        return audit::render_diffs(b.recordings(which), policies, json);
    });
}

int method_forget_recording(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    bus::Backend& b = manager_of(userdata);
    if (int r = check_access(m, true, error, b.read_group()); r < 0)
        return r;
    const char* policy = nullptr;
    if (int r = sd_bus_message_read(m, "s", &policy); r < 0)
        return r;
    std::optional<std::string> which;
    if (int r = policy_argument(b, policy, which, error); r < 0)
        return r;
    return sd_bus_reply_method_return(m, "u", static_cast<uint32_t>(b.forget_recording(which)));
}

int method_subscribe(sd_bus_message* m, void* userdata, sd_bus_error* error)
{
    if (int r = check_access(m, false, error, manager_of(userdata).read_group()); r < 0)
        return r;
    if (int r = static_cast<ManagerBus*>(userdata)->subscribe(m); r < 0)
        return r;
    return sd_bus_reply_method_return(m, "");
}

int method_unsubscribe(sd_bus_message* m, void* userdata, sd_bus_error*)
{
    static_cast<ManagerBus*>(userdata)->unsubscribe(m);
    return sd_bus_reply_method_return(m, "");
}

// The properties, read from one status snapshot; each read is checked like
// a method call.
int get_property(sd_bus* bus, const char*, const char*, const char* property, sd_bus_message* reply, void* userdata,
                 sd_bus_error* error)
{
    if (sd_bus_message* call = sd_bus_get_current_message(bus))
        if (int r = check_access(call, false, error, manager_of(userdata).read_group()); r < 0)
            return r;
    const bus::Status s = manager_of(userdata).status();
    const std::string_view p = property;
    if (p == "Version")
        return sd_bus_message_append(reply, "s", FQDND_VERSION);
    if (p == "Table")
        return sd_bus_message_append(reply, "s", s.table.c_str());
    if (p == "QueueMode")
        return sd_bus_message_append(reply, "s", s.queue_mode.c_str());
    if (p == "Policies")
        return sd_bus_message_append(reply, "u", s.policies);
    if (p == "Names")
        return sd_bus_message_append(reply, "t", s.names);
    if (p == "Addresses")
        return sd_bus_message_append(reply, "t", s.addresses);
    if (p == "ConnectionAddresses")
        return sd_bus_message_append(reply, "t", s.connection_addresses);
    if (p == "LiveFlows")
        return sd_bus_message_append(reply, "t", s.live_flows);
    return sd_bus_message_append(reply, "t", s.selectors);
}

const sd_bus_vtable manager_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Version", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Table", "s", get_property, 0, 0),
    SD_BUS_PROPERTY("QueueMode", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Policies", "u", get_property, 0, 0),
    SD_BUS_PROPERTY("Names", "t", get_property, 0, 0),
    SD_BUS_PROPERTY("Addresses", "t", get_property, 0, 0),
    SD_BUS_PROPERTY("ConnectionAddresses", "t", get_property, 0, 0),
    SD_BUS_PROPERTY("LiveFlows", "t", get_property, 0, 0),
    SD_BUS_PROPERTY("Selectors", "t", get_property, 0, 0),
    SD_BUS_METHOD("Subscribe", "", "", method_subscribe, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("Unsubscribe", "", "", method_unsubscribe, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_NAMES("DnsEvent", sig::dns_event,
                             SD_BUS_PARAM(time) SD_BUS_PARAM(kind) SD_BUS_PARAM(endpoint) SD_BUS_PARAM(server)
                                 SD_BUS_PARAM(name) SD_BUS_PARAM(type) SD_BUS_PARAM(rcode) SD_BUS_PARAM(chain)
                                     SD_BUS_PARAM(addresses) SD_BUS_PARAM(ttl) SD_BUS_PARAM(selectors)
                                         SD_BUS_PARAM(hold_usec),
                             0),
    SD_BUS_SIGNAL_WITH_NAMES("Drop", sig::drop,
                             SD_BUS_PARAM(time) SD_BUS_PARAM(kind) SD_BUS_PARAM(policy) SD_BUS_PARAM(endpoint)
                                 SD_BUS_PARAM(source) SD_BUS_PARAM(destination) SD_BUS_PARAM(protocol)
                                     SD_BUS_PARAM(port) SD_BUS_PARAM(interface) SD_BUS_PARAM(names),
                             0),
    SD_BUS_METHOD_WITH_NAMES("Status", "", , sig::status,
                             SD_BUS_PARAM(version) SD_BUS_PARAM(table) SD_BUS_PARAM(queue_mode)
                                 SD_BUS_PARAM(policies) SD_BUS_PARAM(names) SD_BUS_PARAM(addresses)
                                     SD_BUS_PARAM(connection_addresses) SD_BUS_PARAM(live_flows)
                                         SD_BUS_PARAM(selectors) SD_BUS_PARAM(queue_dropped)
                                             SD_BUS_PARAM(queue_user_dropped),
                             method_status, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("ListCache", "sss", SD_BUS_PARAM(pattern) SD_BUS_PARAM(endpoint) SD_BUS_PARAM(source),
                             sig::cache_entries, SD_BUS_PARAM(entries), method_list_cache, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("CleanCache", "s", SD_BUS_PARAM(pattern), "u", SD_BUS_PARAM(removed),
                             method_clean_cache, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("ListSelectors", "", , sig::selectors, SD_BUS_PARAM(selectors), method_list_selectors,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("ListPolicies", "", , sig::policies, SD_BUS_PARAM(policies), method_list_policies,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Reload", "", , "as", SD_BUS_PARAM(errors), method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Metrics", "", , sig::metrics, SD_BUS_PARAM(samples), method_metrics,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Explain", "s", SD_BUS_PARAM(what), sig::explanation,
                             SD_BUS_PARAM(is_address) SD_BUS_PARAM(subject) SD_BUS_PARAM(allowed)
                                 SD_BUS_PARAM(holders) SD_BUS_PARAM(cidr_rules) SD_BUS_PARAM(selectors)
                                     SD_BUS_PARAM(dns_rules),
                             method_explain, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("SuggestPolicy", "ss", SD_BUS_PARAM(policy) SD_BUS_PARAM(format), "s", SD_BUS_PARAM(text),
                             method_suggest_policy, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("DiffPolicy", "ss", SD_BUS_PARAM(policy) SD_BUS_PARAM(format), "s", SD_BUS_PARAM(text),
                             method_diff_policy, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("ForgetRecording", "s", SD_BUS_PARAM(policy), "u", SD_BUS_PARAM(removed),
                             method_forget_recording, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

} // namespace

void ManagerBus::start(sd_event* event)
{
    event_ = event;
    if (connect() < 0)
        retry_later();
}

int ManagerBus::connect()
{
    subscribers_.reset(); // they were on the old connection
    slot_.reset();
    disconnect_slot_.reset();
    bus_.reset();
    sd_bus* raw = nullptr;
    // sd_bus_open_system honours DBUS_SYSTEM_BUS_ADDRESS.
    int r = sd_bus_open_system(&raw);
    if (r < 0) {
        if (!warned_)
            log::warning(std::string("no system bus, fqdnctl cannot reach fqdnd (will retry): ") + std::strerror(-r));
        warned_ = true;
        return r;
    }
    bus_.reset(raw);
    sd_bus_slot* slot = nullptr;
    if ((r = sd_bus_add_object_vtable(bus_.get(), &slot, bus::object_path, bus::manager_interface, manager_vtable,
                                      this))
        < 0) {
        log::warning(std::string("cannot serve ") + bus::object_path + ": " + std::strerror(-r));
        return r;
    }
    slot_.reset(slot);
    // sd-bus tells of a lost connection with this local signal.
    if ((r = sd_bus_match_signal(bus_.get(), &slot, "org.freedesktop.DBus.Local", nullptr, "org.freedesktop.DBus.Local",
                                 "Disconnected", on_disconnected, this))
        < 0)
        return r;
    disconnect_slot_.reset(slot);
    if ((r = sd_bus_request_name(bus_.get(), bus::service, 0)) < 0) {
        log::warning(std::string("cannot take the bus name ") + bus::service + ": " + std::strerror(-r));
        return r;
    }
    if ((r = sd_bus_attach_event(bus_.get(), event_, SD_EVENT_PRIORITY_NORMAL)) < 0)
        return r;
    if (warned_)
        log::info(std::string("serving ") + bus::service + " on the system bus again");
    warned_ = false;
    return 0;
}

void ManagerBus::retry_later()
{
    if (retry_)
        return;
    if (int r = event_reset_time_relative(event_, retry_, CLOCK_MONOTONIC, 2'000'000, 100'000, on_retry, this); r < 0)
        log::error("cannot arm the timer to reconnect to the bus: " + errno_text(r));
}

int ManagerBus::on_retry(sd_event_source*, uint64_t, void* self)
{
    auto* b = static_cast<ManagerBus*>(self);
    b->retry_.reset(); // a one-shot: gone once it fired
    if (b->connect() < 0)
        b->retry_later();
    return 0;
}

int ManagerBus::on_disconnected(sd_bus_message*, void* self, sd_bus_error*)
{
    // The bus went away (dbus restarted): enforcement goes on; reconnect
    // from the loop, not from inside the dying connection's callback.
    auto* b = static_cast<ManagerBus*>(self);
    log::warning("lost the system bus; reconnecting");
    b->warned_ = true;
    b->retry_later();
    return 0;
}

int ManagerBus::subscribe(sd_bus_message* m)
{
    if (!subscribers_) {
        sd_bus_track* t = nullptr;
        if (int r = sd_bus_track_new(bus_.get(), &t, on_subscribers_gone, this); r < 0)
            return r;
        subscribers_.reset(t);
    }
    return sd_bus_track_add_sender(subscribers_.get(), m);
}

int ManagerBus::unsubscribe(sd_bus_message* m)
{
    if (!subscribers_)
        return 0;
    return sd_bus_track_remove_sender(subscribers_.get(), m);
}

int ManagerBus::on_subscribers_gone(sd_bus_track*, void* self)
{
    // The last monitor left: events are no longer gathered.
    static_cast<ManagerBus*>(self)->subscribers_.reset();
    return 0;
}

template <typename Fill>
void ManagerBus::emit_signal(const char* member, Fill fill)
{
    if (!subscribers_ || !bus_)
        return;
    for (const char* name = sd_bus_track_first(subscribers_.get()); name; name = sd_bus_track_next(subscribers_.get())) {
        sd_bus_message* raw = nullptr;
        if (sd_bus_message_new_signal(bus_.get(), &raw, bus::object_path, bus::manager_interface, member) < 0)
            return;
        SdBusMessagePtr m(raw);
        if (sd_bus_message_set_destination(m.get(), name) < 0)
            continue;
        Builder b(m.get());
        fill(b);
        if (b.result() < 0) {
            log::warning(std::string("cannot build the signal ") + member + ": " + errno_text(b.result()));
            return;
        }
        sd_bus_send(bus_.get(), m.get(), nullptr);
    }
}

void ManagerBus::emit(const dns::Event& e, cache::Time at, const std::vector<std::string>& selectors, uint64_t hold_us)
{
    const bool answer = e.kind == dns::Event::Kind::answer;
    std::vector<std::string> addresses;
    if (answer)
        for (const auto& a : e.addresses)
            addresses.push_back(a.to_string());
    const std::string kind(dns::to_string(e.kind));
    const std::string server = e.server.to_string();
    emit_signal("DnsEvent", [&](Builder& b) {
        b.append("tssssqy", static_cast<uint64_t>(at.time_since_epoch().count()), kind.c_str(), e.endpoint.c_str(),
                 server.c_str(), e.question.name.c_str(), e.question.type, e.rcode)
            .strings(answer ? e.names : std::vector<std::string>{})
            .strings(addresses)
            .append("u", answer ? e.ttl : 0u)
            .strings(selectors)
            .append("t", hold_us);
    });
}

void ManagerBus::emit(const nflog::Drop& d, cache::Time at, const std::string& interface,
                      const std::vector<std::string>& names)
{
    const std::string endpoint = d.endpoint(), source = d.source.to_string(), destination = d.destination.to_string();
    emit_signal("Drop", [&](Builder& b) {
        b.append("tssssssqs", static_cast<uint64_t>(at.time_since_epoch().count()), d.kind.c_str(), d.policy.c_str(),
                 endpoint.c_str(), source.c_str(), destination.c_str(), d.protocol.c_str(), d.port, interface.c_str())
            .strings(names);
    });
}

} // namespace fqdnd
