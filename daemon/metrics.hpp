#pragma once

#include <string>
#include <string_view>
#include <vector>

// Every metric of fqdnd, declared once: the daemon fills values by name,
// `fqdnctl metrics` prints them in the Prometheus text format with this help.
namespace fqdnd::metrics {

struct Info {
    std::string_view name;
    std::string_view type; // counter, gauge, histogram
    std::string_view help;
};

inline constexpr Info table[] = {
    {"fqdnd_active_names", "gauge", "Names in the cache (per endpoint)."},
    {"fqdnd_active_addresses", "gauge", "Addresses in the cache (per endpoint and name)."},
    {"fqdnd_connection_addresses", "gauge", "Addresses kept only by live connections (source connection)."},
    {"fqdnd_live_flows", "gauge", "Live flows to addresses that FQDN rules allowed, from conntrack."},
    {"fqdnd_gc_deletions_total", "counter", "Addresses removed from the cache: expired, idle or over a limit."},
    {"fqdnd_cache_evictions_total", "counter",
     "Lookup addresses evicted early because the cache was over max-names or max-addresses (removed, or kept as connection while flows live)."},
    {"fqdnd_dns_queries_total", "counter", "DNS queries seen, by verdict (allowed, refused, malformed)."},
    {"fqdnd_dns_answers_total", "counter",
     "DNS answers seen, by result (learned, inspected without addresses, unmatched, wrong-question, malformed)."},
    {"fqdnd_dns_malformed_total", "counter",
     "Queries and answers dropped or ignored as malformed, by reason (a compression loop is unparsable; two OPT records are edns)."},
    {"fqdnd_dns_packets_undecodable_total", "counter",
     "Packets of DNS flows fqdnd could not decode (a fragment, more than 8 IPv6 extension headers): dropped."},
    {"fqdnd_dns_tcp_segments_dropped_total", "counter",
     "TCP segments of DNS flows dropped because fqdnd could not follow them, by reason (unknown-stream: data on a "
     "connection not seen from its start, the client reset; gap; urgent: URG set; second-syn: a SYN with another "
     "sequence number on an open connection; retransmit-changed; unacked-full; oversized: a query longer than 4 KiB; "
     "after-refusal: the server's data once fqdnd refused in its name)."},
    {"fqdnd_dns_tcp_queries_blanked_total", "counter",
     "Refused queries overwritten in a TCP segment passed for the allowed queries it also held."},
    {"fqdnd_dns_tcp_streams_freed_total", "counter",
     "TCP DNS streams forgotten, by reason (evicted: the table of 4096 was full; expired: idle 60 s, or closed)."},
    {"fqdnd_answer_hold_seconds", "histogram",
     "How long answers that changed the sets were held until the kernel acknowledged the update."},
    {"fqdnd_datapath_update_timeouts_total", "counter",
     "Set updates not acknowledged within response-max-delay (the answer was released anyway)."},
    {"fqdnd_datapath_update_errors_total", "counter", "Set updates the kernel refused."},
    {"fqdnd_nfqueue_packets_total", "counter", "Packets fqdnd received from NFQUEUE."},
    {"fqdnd_nfqueue_enobufs_total", "counter", "Times NFQUEUE packets were lost to a full socket buffer (ENOBUFS)."},
    {"fqdnd_nfqueue_kernel_dropped_total", "counter",
     "DNS packets the kernel dropped before fqdnd saw them: a full queue with fail-open off, or a full socket (by reason)."},
    {"fqdnd_drop_log_packets_total", "counter", "Dropped packets read from the NFLOG group (at most log-rate a second)."},
    {"fqdnd_drop_log_enobufs_total", "counter", "Times logged drops were lost to a full socket buffer (ENOBUFS)."},
    {"fqdnd_conntrack_overruns_total", "counter", "Times conntrack events were lost (ENOBUFS); each forces a resync."},
    {"fqdnd_state_write_errors_total", "counter",
     "State file and journal writes that failed (directory unwritable or full); enforcement goes on."},
    {"fqdnd_state_unexplained_elements_total", "counter",
     "Elements found in the FQDN sets at start that neither the state file nor the journal explains: removed."},
    {"fqdnd_ruleset_reloads_total", "counter", "Reloads of the configuration that were applied."},
    {"fqdnd_ruleset_reload_failures_total", "counter", "Reloads refused (configuration errors) or failed (kernel)."},
    {"fqdnd_ruleset_restores_total", "counter", "Times the table was put back after someone else changed it."},
    {"fqdnd_ruleset_unit_changes_total", "counter",
     "Times the ruleset was put in place again because the cgroup of a unit that a policy names came, went or was replaced."},
    {"fqdnd_units_without_cgroup", "gauge",
     "Units that policies name and that have no cgroup now (not running): their rules match nothing."},
};

struct Sample {
    std::string name;   // one of the table's, with _bucket/_sum/_count for histograms
    std::string labels; // "verdict=\"allowed\"" or ""
    double value;
};

// The Prometheus text format: HELP and TYPE from the table, then the samples.
std::string format_prometheus(const std::vector<Sample>& samples);

} // namespace fqdnd::metrics
