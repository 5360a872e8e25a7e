#pragma once

#include "dns/engine.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

// Every metric of fqdnd, declared once: the daemon gives each a value by
// its constant, `fqdnctl metrics` prints them in the Prometheus text format
// with this help.
namespace fqdnd::metrics {

struct Info {
    std::string_view name;
    std::string_view type; // counter, gauge, histogram
    std::string_view help;
};

// Each metric is a constant, so that the daemon names it by identifier: a
// misspelt metric does not compile.
inline constexpr Info active_names{"fqdnd_active_names", "gauge",
    "Names in the cache (per endpoint)."};
inline constexpr Info active_addresses{"fqdnd_active_addresses", "gauge",
    "Addresses in the cache (per endpoint and name)."};
inline constexpr Info connection_addresses{"fqdnd_connection_addresses", "gauge",
    "Addresses kept only by live connections (source connection)."};
inline constexpr Info live_flows{"fqdnd_live_flows", "gauge",
    "Live flows to addresses that FQDN rules allowed, from conntrack."};
inline constexpr Info gc_deletions_total{"fqdnd_gc_deletions_total", "counter",
    "Addresses removed from the cache: expired, idle or over a limit."};
inline constexpr Info cache_evictions_total{"fqdnd_cache_evictions_total", "counter",
    "Lookup addresses evicted early because the cache was over max-names or max-addresses (removed, or kept as connection while flows live)."};
inline constexpr Info dns_queries_total{"fqdnd_dns_queries_total", "counter",
    "DNS queries seen, by verdict (allowed, refused, malformed)."};
inline constexpr Info dns_answers_total{"fqdnd_dns_answers_total", "counter",
    "DNS answers seen, by result (learned, inspected without addresses, unmatched, wrong-question, malformed)."};
inline constexpr Info dns_malformed_total{"fqdnd_dns_malformed_total", "counter",
    "Queries and answers dropped or ignored as malformed, by reason (a compression loop is unparsable; two OPT records are edns)."};
inline constexpr Info dns_packets_undecodable_total{"fqdnd_dns_packets_undecodable_total", "counter",
    "Packets of DNS flows fqdnd could not decode (a fragment, more than 8 IPv6 extension headers): dropped."};
inline constexpr Info dns_tcp_segments_dropped_total{"fqdnd_dns_tcp_segments_dropped_total", "counter",
    "TCP segments of DNS flows dropped because fqdnd could not follow them, by reason (unknown-stream: data on a "
     "connection not seen from its start, the client reset; gap; urgent: URG set; second-syn: a SYN with another "
     "sequence number on an open connection, the same SYN after the handshake, or a SYN-ACK of another connection; "
     "retransmit-changed; unacked-full; oversized: a query longer than 4 KiB; after-refusal: the server's data once "
     "fqdnd refused in its name; resent-acknowledged: client data the server had acknowledged, sent again; "
     "after-server-close: client data after the server's FIN, the client reset; bad-ack: client data acknowledging "
     "more than the server sent, less than before, or nothing; cookie-shaped: client data whose ACK would be a valid SYN cookie where fqdnd's reading has no message boundary, "
     "the client reset; gap also counts a FIN past what was passed)."};
inline constexpr Info dns_tcp_queries_blanked_total{"fqdnd_dns_tcp_queries_blanked_total", "counter",
    "Refused queries overwritten in a TCP segment passed for the allowed queries it also held."};
inline constexpr Info dns_tcp_resets_ignored_total{"fqdnd_dns_tcp_resets_ignored_total", "counter",
    "RSTs on TCP DNS connections at a sequence number their receiver would not take (RFC 5961): passed, the "
     "connection still followed (a blind forgery in a client's name does not cut it)."};
inline constexpr Info dns_tcp_streams_freed_total{"fqdnd_dns_tcp_streams_freed_total", "counter",
    "TCP DNS streams forgotten, by reason (evicted: the table of 4096 was full; expired: idle 60 s, or closed; "
     "stalled: the server's bytes unacknowledged by the client, or its window closed, for 30 s)."};
inline constexpr Info dns_queries_forgotten_total{"fqdnd_dns_queries_forgotten_total", "counter",
    "Queries passed whose answer never came while remembered, by reason (evicted: beyond the last 65536 queries, or "
    "beyond 4 questions under one client port and id; expired: 10 s passed). An answer that comes later is dropped, "
    "and its client asks again."};
inline constexpr Info answer_hold_seconds{"fqdnd_answer_hold_seconds", "histogram",
    "How long answers that changed the sets were held until the kernel acknowledged the update."};
inline constexpr Info datapath_update_timeouts_total{"fqdnd_datapath_update_timeouts_total", "counter",
    "Set updates not acknowledged within response-max-delay (the answer was released anyway)."};
inline constexpr Info datapath_update_errors_total{"fqdnd_datapath_update_errors_total", "counter",
    "Set updates the kernel refused."};
inline constexpr Info nfqueue_packets_total{"fqdnd_nfqueue_packets_total", "counter",
    "Packets fqdnd received from NFQUEUE."};
inline constexpr Info nfqueue_enobufs_total{"fqdnd_nfqueue_enobufs_total", "counter",
    "Times NFQUEUE packets were lost to a full socket buffer (ENOBUFS)."};
inline constexpr Info nfqueue_kernel_dropped_total{"fqdnd_nfqueue_kernel_dropped_total", "counter",
    "DNS packets the kernel dropped before fqdnd saw them: a full queue with fail-open off, or a full socket (by reason)."};
inline constexpr Info nfqueue_unread_dropped_total{"fqdnd_nfqueue_unread_dropped_total", "counter",
    "Drops of queued packets fqdnd did not read: packets queued while its queues were being bound (binding), and drops of whatever the kernel still held below an id skipped, e.g. after ENOBUFS (skipped-id, one per drop sent)."};
inline constexpr Info drop_log_packets_total{"fqdnd_drop_log_packets_total", "counter",
    "Dropped packets read from the NFLOG group (at most log-rate a second)."};
inline constexpr Info drop_log_enobufs_total{"fqdnd_drop_log_enobufs_total", "counter",
    "Times logged drops were lost to a full socket buffer (ENOBUFS)."};
inline constexpr Info conntrack_overruns_total{"fqdnd_conntrack_overruns_total", "counter",
    "Times conntrack events were lost (ENOBUFS); each forces a resync."};
inline constexpr Info state_write_errors_total{"fqdnd_state_write_errors_total", "counter",
    "State file and journal writes that failed (directory unwritable or full); enforcement goes on."};
inline constexpr Info state_unexplained_elements_total{"fqdnd_state_unexplained_elements_total", "counter",
    "Elements found in the FQDN sets that fqdnd's cache does not explain (at start, from a lost state file or by "
    "hand; while running, added by someone else): removed."};
inline constexpr Info ruleset_reloads_total{"fqdnd_ruleset_reloads_total", "counter",
    "Reloads of the configuration that were applied."};
inline constexpr Info ruleset_reload_failures_total{"fqdnd_ruleset_reload_failures_total", "counter",
    "Reloads refused (configuration errors) or failed (kernel)."};
inline constexpr Info ruleset_restores_total{"fqdnd_ruleset_restores_total", "counter",
    "Times the table was put back after someone else changed it."};
inline constexpr Info ruleset_restore_failures_total{"fqdnd_ruleset_restore_failures_total", "counter",
    "Times the table could not be put back (another process owns its name, or the kernel refused); fqdnd tries again, "
    "never more than 5 s apart, and until it succeeds its rules are not in force as configured."};

inline constexpr Info ruleset_unit_changes_total{"fqdnd_ruleset_unit_changes_total", "counter",
    "Times the ruleset was put in place again because the cgroup of a unit that a policy names came, went or was replaced."};
inline constexpr Info units_without_cgroup{"fqdnd_units_without_cgroup", "gauge",
    "Units that policies name and that have no cgroup now (not running): their rules match nothing."};
inline constexpr Info dns_query_copies_total{"fqdnd_dns_query_copies_total", "counter",
    "Copies of queries passed unheld under a DNS rule allowing every name, by result (remembered; unread: not a UDP "
    "query fqdnd can read, its answer is dropped; unallowed: no rule allows it now; lost: copies dropped by a full "
    "socket buffer, ENOBUFS, counted once per loss)."};
inline constexpr Info kernel_renewals_total{"fqdnd_kernel_renewals_total", "counter",
    "Set element timeouts by how they were renewed (written; deferred: an answer that needed no write, the kernel "
    "holding more than half of the last grant)."};
inline constexpr Info audit_entries{"fqdnd_audit_entries", "gauge",
    "Names and flows recorded for `fqdnctl policy suggest` (audit policies, and what enforcing ones dropped)."};
inline constexpr Info audit_evictions_total{"fqdnd_audit_evictions_total", "counter",
    "Recorded names and flows evicted, the least recently seen first, to keep the recording within its bounds."};

// In the order `fqdnctl metrics` prints them.
inline constexpr const Info* table[] = {
    &active_names,
    &active_addresses,
    &connection_addresses,
    &live_flows,
    &gc_deletions_total,
    &cache_evictions_total,
    &dns_queries_total,
    &dns_answers_total,
    &dns_malformed_total,
    &dns_packets_undecodable_total,
    &dns_tcp_segments_dropped_total,
    &dns_tcp_queries_blanked_total,
    &dns_tcp_resets_ignored_total,
    &dns_tcp_streams_freed_total,
    &dns_queries_forgotten_total,
    &answer_hold_seconds,
    &datapath_update_timeouts_total,
    &datapath_update_errors_total,
    &nfqueue_packets_total,
    &nfqueue_enobufs_total,
    &nfqueue_unread_dropped_total,
    &nfqueue_kernel_dropped_total,
    &drop_log_packets_total,
    &drop_log_enobufs_total,
    &conntrack_overruns_total,
    &state_write_errors_total,
    &state_unexplained_elements_total,
    &ruleset_reloads_total,
    &ruleset_reload_failures_total,
    &ruleset_restores_total,
    &ruleset_restore_failures_total,
    &ruleset_unit_changes_total,
    &units_without_cgroup,
    &dns_query_copies_total,
    &kernel_renewals_total,
    &audit_entries,
    &audit_evictions_total,
};

struct Sample {
    std::string name;   // one of the table's, with _bucket/_sum/_count for histograms
    std::string labels; // "verdict=\"allowed\"" or ""
    double value;
};

// A sample of `info` (a histogram's with suffix _bucket, _sum or _count).
inline Sample sample(const Info& info, std::string labels, double value, std::string_view suffix = "")
{
    return Sample{std::string(info.name) + std::string(suffix), std::move(labels), value};
}

// Every value the metrics show, gathered by the daemon from its parts.
struct Counters {
    uint64_t names = 0, addresses = 0, connection_addresses = 0, live_flows = 0, gc_deletions = 0, evictions = 0;
    dns::Stats dns;
    uint64_t datapath_timeouts = 0, datapath_errors = 0;
    uint64_t nfqueue_packets = 0, nfqueue_enobufs = 0, kernel_queue_full = 0, kernel_undelivered = 0;
    uint64_t nfqueue_dropped_binding = 0, nfqueue_unseen_drops = 0;
    uint64_t drop_log_packets = 0, drop_log_enobufs = 0, conntrack_overruns = 0;
    uint64_t state_write_errors = 0, unexplained_elements = 0;
    uint64_t reloads = 0, reload_failures = 0, restores = 0, restore_failures = 0;
    uint64_t unit_changes = 0, units_without_cgroup = 0;
    uint64_t audit_entries = 0, audit_evictions = 0;
    uint64_t query_copies_lost = 0, renewals_written = 0, renewals_deferred = 0;
    // Answer holds: bucket i counts holds under 2^i microseconds.
    std::array<uint64_t, 24> hold_us{};
};

// The samples of every metric of the table, from `c`.
std::vector<Sample> collect(const Counters& c);

// The bound, in microseconds, under which a fraction `q` of the answer
// holds of `hold_us` fall: a power of two, as the buckets count them; 0
// when nothing was held.
uint64_t hold_quantile(const std::array<uint64_t, 24>& hold_us, double q);

// The counters in one line, for the log (SIGUSR1).
std::string summary(const Counters& c);

// The Prometheus text format: HELP and TYPE from the table, then the
// samples; a sample of no metric in the table (a newer fqdnd than this
// fqdnctl) is printed after them, untyped, never dropped.
std::string format_prometheus(const std::vector<Sample>& samples);

} // namespace fqdnd::metrics
