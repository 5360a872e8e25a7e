// The state file and pre-cache loader on arbitrary bytes, and what it
// accepts restored into a cache; then the same bytes as a journal replayed
// over it.
#include "cache/cache.hpp"
#include "cache/journal.hpp"
#include "cache/persist.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string error;
    const std::string text(reinterpret_cast<const char*>(data), size);
    const auto records = fqdnd::cache::from_json(text, error);
    fqdnd::cache::Cache cache;
    std::vector<fqdnd::cache::ElementOp> ops;
    const fqdnd::cache::Time now{std::chrono::milliseconds(1'800'000'000'000)};
    cache.set_selectors({*fqdnd::FqdnSelector::parse_pattern("*", nullptr)}, now, ops);
    if (records)
        fqdnd::cache::restore_all(cache, *records, now, ops);
    fqdnd::cache::replay_journal(text, cache, now, ops);
    cache.flows_reset({}, now);
    cache.expire(now + std::chrono::hours(24), ops);
    (void)fqdnd::cache::to_json(cache.entries());
    return 0;
}
