#include "audit/store.hpp"

#include "cache/persist.hpp"
#include "log.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace fqdnd::audit {

bool records_queries(const config::Config& config)
{
    return std::any_of(config.policies.begin(), config.policies.end(),
                       [](const config::Policy& p) { return p.audit; });
}

void Store::load()
{
    const std::filesystem::path file = file_();
    std::ifstream in(file);
    if (!in)
        return; // nothing recorded yet
    std::stringstream text;
    text << in.rdbuf();
    std::string problem;
    if (!recorder_.from_json(text.str(), &problem))
        log::warning("ignoring " + file.string() + ": " + problem);
}

void Store::save()
{
    armed_ = false;
    if (!recorder_.dirty())
        return;
    const std::filesystem::path file = file_();
    if (int r = cache::write_atomically(file, recorder_.to_json()); r < 0) {
        log::warning("cannot write " + file.string() + ": " + errno_text(r));
        return;
    }
    recorder_.mark_saved();
}

void Store::schedule_save()
{
    if (!recorder_.dirty() || armed_ || !event_)
        return;
    if (int r = event_reset_time_relative(event_, timer_, CLOCK_MONOTONIC, 60'000'000, 1'000'000, on_timer, this);
        r < 0)
        log::error("cannot arm the timer that saves the audit recording: " + errno_text(r));
    else
        armed_ = true;
}

int Store::on_timer(sd_event_source*, uint64_t, void* self)
{
    static_cast<Store*>(self)->save();
    return 0;
}

void Store::record_query(const config::Config& config, const dns::Event& e, cache::Time t)
{
    if (e.kind != dns::Event::Kind::query_allowed)
        return;
    for (const std::string& policy : policies_for_query(config, e.endpoint, e.server))
        recorder_.lookup(policy, e.question.name, e.server, t);
    schedule_save();
}

void Store::record_flow(const config::Config& config, const nflog::Drop& d, const std::vector<std::string>& names,
                        cache::Time t)
{
    if (std::none_of(config.policies.begin(), config.policies.end(),
                     [&](const config::Policy& p) { return p.name == d.policy; }))
        return;
    recorder_.flow(d.policy, d.destination, d.protocol, d.port, names, t);
    schedule_save();
}

size_t Store::forget(const std::optional<std::string>& policy)
{
    const size_t removed = recorder_.forget(policy);
    save();
    log::info("forgot " + std::to_string(removed) + " recorded entries" + (policy ? " of policy " + *policy : ""));
    return removed;
}

} // namespace fqdnd::audit
