#include "metrics.hpp"

#include <cstdio>
#include <vector>

namespace fqdnd::metrics {

namespace {

// The metric a sample belongs to: its name, or its name and a histogram's
// suffix.
bool belongs(const Sample& s, const Info& info)
{
    if (s.name.compare(0, info.name.size(), info.name) != 0)
        return false;
    const std::string_view rest = std::string_view(s.name).substr(info.name.size());
    return rest.empty() || (info.type == "histogram" && (rest == "_bucket" || rest == "_sum" || rest == "_count"));
}

void append(std::string& out, const Sample& s)
{
    char value[64];
    std::snprintf(value, sizeof(value), "%.17g", s.value);
    out += s.name + (s.labels.empty() ? "" : "{" + s.labels + "}") + " " + value + "\n";
}

} // namespace

std::string format_prometheus(const std::vector<Sample>& samples)
{
    std::string out;
    std::vector<bool> printed(samples.size());
    for (const Info* info : table) {
        out += "# HELP " + std::string(info->name) + " " + std::string(info->help) + "\n";
        out += "# TYPE " + std::string(info->name) + " " + std::string(info->type) + "\n";
        for (size_t i = 0; i < samples.size(); ++i)
            if (!printed[i] && belongs(samples[i], *info)) {
                append(out, samples[i]);
                printed[i] = true;
            }
    }
    for (size_t i = 0; i < samples.size(); ++i)
        if (!printed[i]) {
            out += "# TYPE " + samples[i].name + " untyped\n";
            append(out, samples[i]);
        }
    return out;
}

std::vector<Sample> collect(const Counters& c)
{
    std::vector<Sample> out{
        sample(active_names, "", static_cast<double>(c.names)),
        sample(active_addresses, "", static_cast<double>(c.addresses)),
        sample(connection_addresses, "", static_cast<double>(c.connection_addresses)),
        sample(live_flows, "", static_cast<double>(c.live_flows)),
        sample(gc_deletions_total, "", static_cast<double>(c.gc_deletions)),
        sample(cache_evictions_total, "", static_cast<double>(c.evictions)),
        sample(dns_queries_total, "verdict=\"allowed\"", static_cast<double>(c.dns.queries_allowed)),
        sample(dns_queries_total, "verdict=\"refused\"", static_cast<double>(c.dns.queries_refused)),
        sample(dns_queries_total, "verdict=\"malformed\"", static_cast<double>(c.dns.queries_malformed)),
        sample(dns_answers_total, "result=\"learned\"", static_cast<double>(c.dns.answers_learned)),
        sample(dns_answers_total, "result=\"inspected\"",
         static_cast<double>(c.dns.answers_inspected - c.dns.answers_learned)),
        sample(dns_answers_total, "result=\"unmatched\"",
         static_cast<double>(c.dns.answers_unmatched - c.dns.answers_wrong_question)),
        sample(dns_answers_total, "result=\"wrong-question\"", static_cast<double>(c.dns.answers_wrong_question)),
        sample(dns_answers_total, "result=\"malformed\"", static_cast<double>(c.dns.answers_malformed)),
        sample(dns_packets_undecodable_total, "", static_cast<double>(c.dns.packets_undecodable)),
        sample(dns_tcp_segments_dropped_total, "reason=\"unknown-stream\"", static_cast<double>(c.dns.tcp_unknown_stream)),
        sample(dns_tcp_segments_dropped_total, "reason=\"gap\"", static_cast<double>(c.dns.tcp_gap)),
        sample(dns_tcp_segments_dropped_total, "reason=\"urgent\"", static_cast<double>(c.dns.tcp_urgent)),
        sample(dns_tcp_segments_dropped_total, "reason=\"second-syn\"", static_cast<double>(c.dns.tcp_second_syn)),
        sample(dns_tcp_segments_dropped_total, "reason=\"retransmit-changed\"",
         static_cast<double>(c.dns.tcp_retransmit_changed)),
        sample(dns_tcp_segments_dropped_total, "reason=\"unacked-full\"", static_cast<double>(c.dns.tcp_unacked_full)),
        sample(dns_tcp_segments_dropped_total, "reason=\"oversized\"", static_cast<double>(c.dns.tcp_oversized)),
        sample(dns_tcp_segments_dropped_total, "reason=\"after-refusal\"", static_cast<double>(c.dns.tcp_after_refusal)),
        sample(dns_tcp_segments_dropped_total, "reason=\"resent-acknowledged\"",
         static_cast<double>(c.dns.tcp_resent_acknowledged)),
        sample(dns_tcp_segments_dropped_total, "reason=\"after-server-close\"",
         static_cast<double>(c.dns.tcp_after_server_close)),
        sample(dns_tcp_segments_dropped_total, "reason=\"bad-ack\"", static_cast<double>(c.dns.tcp_bad_ack)),
        sample(dns_tcp_segments_dropped_total, "reason=\"cookie-shaped\"", static_cast<double>(c.dns.tcp_cookie_shaped)),
        sample(dns_tcp_queries_blanked_total, "", static_cast<double>(c.dns.tcp_queries_blanked)),
        sample(dns_tcp_resets_ignored_total, "", static_cast<double>(c.dns.tcp_resets_ignored)),
        sample(dns_tcp_streams_freed_total, "reason=\"evicted\"", static_cast<double>(c.dns.tcp_streams_evicted)),
        sample(dns_tcp_streams_freed_total, "reason=\"expired\"", static_cast<double>(c.dns.tcp_streams_expired)),
        sample(dns_tcp_streams_freed_total, "reason=\"stalled\"", static_cast<double>(c.dns.tcp_streams_stalled)),
        sample(dns_queries_forgotten_total, "reason=\"evicted\"", static_cast<double>(c.dns.queries_evicted)),
        sample(dns_queries_forgotten_total, "reason=\"expired\"", static_cast<double>(c.dns.queries_expired)),
        sample(datapath_update_timeouts_total, "", static_cast<double>(c.datapath_timeouts)),
        sample(datapath_update_errors_total, "", static_cast<double>(c.datapath_errors)),
        sample(nfqueue_packets_total, "", static_cast<double>(c.nfqueue_packets)),
        sample(nfqueue_enobufs_total, "", static_cast<double>(c.nfqueue_enobufs)),
        sample(nfqueue_unread_dropped_total, "reason=\"binding\"", static_cast<double>(c.nfqueue_dropped_binding)),
        sample(nfqueue_unread_dropped_total, "reason=\"skipped-id\"", static_cast<double>(c.nfqueue_unseen_drops)),
        sample(nfqueue_kernel_dropped_total, "reason=\"queue-full\"", static_cast<double>(c.kernel_queue_full)),
        sample(nfqueue_kernel_dropped_total, "reason=\"socket\"", static_cast<double>(c.kernel_undelivered)),
        sample(drop_log_packets_total, "", static_cast<double>(c.drop_log_packets)),
        sample(drop_log_enobufs_total, "", static_cast<double>(c.drop_log_enobufs)),
        sample(conntrack_overruns_total, "", static_cast<double>(c.conntrack_overruns)),
        sample(state_write_errors_total, "", static_cast<double>(c.state_write_errors)),
        sample(state_unexplained_elements_total, "", static_cast<double>(c.unexplained_elements)),
        sample(ruleset_reloads_total, "", static_cast<double>(c.reloads)),
        sample(ruleset_reload_failures_total, "", static_cast<double>(c.reload_failures)),
        sample(ruleset_restores_total, "", static_cast<double>(c.restores)),
        sample(ruleset_restore_failures_total, "", static_cast<double>(c.restore_failures)),
        sample(ruleset_unit_changes_total, "", static_cast<double>(c.unit_changes)),
        sample(units_without_cgroup, "", static_cast<double>(c.units_without_cgroup)),
        sample(dns_query_copies_total, "result=\"remembered\"",
               static_cast<double>(c.dns.queries_copied - c.dns.queries_copied_unread - c.dns.queries_copied_unallowed)),
        sample(dns_query_copies_total, "result=\"unread\"", static_cast<double>(c.dns.queries_copied_unread)),
        sample(dns_query_copies_total, "result=\"unallowed\"", static_cast<double>(c.dns.queries_copied_unallowed)),
        sample(dns_query_copies_total, "result=\"lost\"", static_cast<double>(c.query_copies_lost)),
        sample(kernel_renewals_total, "how=\"written\"", static_cast<double>(c.renewals_written)),
        sample(kernel_renewals_total, "how=\"deferred\"", static_cast<double>(c.renewals_deferred)),
        sample(audit_entries, "", static_cast<double>(c.audit_entries)),
        sample(audit_evictions_total, "", static_cast<double>(c.audit_evictions)),
    };
    static constexpr const char* reasons[] = {"none", "unparsable", "not-a-query", "not-an-answer",
                                              "question-count", "cname-chain", "too-long", "edns"};
    static_assert(std::size(reasons) == static_cast<size_t>(dns::Malformed::count));
    for (size_t i = 1; i < c.dns.malformed.size(); ++i)
        out.push_back(sample(dns_malformed_total, std::string("reason=\"") + reasons[i] + "\"",
                       static_cast<double>(c.dns.malformed[i])));
    // Hold times: bucket i counted holds under 2^i microseconds.
    uint64_t cumulative = 0;
    double sum = 0;
    for (size_t i = 0; i < c.hold_us.size(); ++i) {
        cumulative += c.hold_us[i];
        const double le = static_cast<double>(uint64_t{1} << i) / 1e6;
        sum += static_cast<double>(c.hold_us[i]) * le * 0.75; // midpoint of [le/2, le)
        if (i >= 4 && i <= 20)
            out.push_back(sample(answer_hold_seconds, "le=\"" + std::to_string(le) + "\"",
                           static_cast<double>(cumulative), "_bucket"));
    }
    out.push_back(sample(answer_hold_seconds, "le=\"+Inf\"", static_cast<double>(cumulative), "_bucket"));
    out.push_back(sample(answer_hold_seconds, "", sum, "_sum"));
    out.push_back(sample(answer_hold_seconds, "", static_cast<double>(cumulative), "_count"));
    return out;
}

uint64_t hold_quantile(const std::array<uint64_t, 24>& hold_us, double q)
{
    uint64_t total = 0;
    for (uint64_t n : hold_us)
        total += n;
    uint64_t seen = 0;
    for (size_t i = 0; i < hold_us.size(); ++i) {
        seen += hold_us[i];
        if (total && static_cast<double>(seen) >= q * static_cast<double>(total))
            return uint64_t{1} << i;
    }
    return 0;
}

std::string summary(const Counters& c)
{
    uint64_t held = 0;
    for (uint64_t n : c.hold_us)
        held += n;
    const dns::Stats& st = c.dns;
    return "stats: queries allowed " + std::to_string(st.queries_allowed) + ", refused "
        + std::to_string(st.queries_refused) + ", malformed " + std::to_string(st.queries_malformed)
        + "; answers inspected " + std::to_string(st.answers_inspected) + ", learned "
        + std::to_string(st.answers_learned) + ", unmatched " + std::to_string(st.answers_unmatched)
        + "; cache names " + std::to_string(c.names) + ", addresses " + std::to_string(c.addresses) + ", connection "
        + std::to_string(c.connection_addresses) + ", live flows " + std::to_string(c.live_flows) + ", GC deletions "
        + std::to_string(c.gc_deletions) + ", conntrack overruns " + std::to_string(c.conntrack_overruns)
        + "; queue packets " + std::to_string(c.nfqueue_packets) + ", ENOBUFS " + std::to_string(c.nfqueue_enobufs)
        + ", dropped by the kernel " + std::to_string(c.kernel_queue_full) + "; set updates timed out "
        + std::to_string(c.datapath_timeouts) + ", failed " + std::to_string(c.datapath_errors)
        + "; answer hold: " + std::to_string(held) + " held, p50 < " + std::to_string(hold_quantile(c.hold_us, 0.5))
        + " us, p99 < " + std::to_string(hold_quantile(c.hold_us, 0.99)) + " us; state write errors "
        + std::to_string(c.state_write_errors);
}

} // namespace fqdnd::metrics
