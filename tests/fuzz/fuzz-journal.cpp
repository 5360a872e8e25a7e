// The journal on arbitrary bytes: every line replayed into a cache, as at
// start after a crash, then the cache's deadlines run and it is written out.
#include "cache/cache.hpp"
#include "cache/journal.hpp"
#include "cache/persist.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    fqdnd::cache::Cache cache;
    std::vector<fqdnd::cache::ElementOp> ops;
    const fqdnd::cache::Time now{std::chrono::milliseconds(1'800'000'000'000)};
    cache.set_selectors({*fqdnd::FqdnSelector::parse_pattern("*", nullptr)}, now, ops);
    fqdnd::cache::replay_journal(std::string_view(reinterpret_cast<const char*>(data), size), cache, now, ops);
    cache.flows_reset({}, now);
    cache.expire(now + std::chrono::hours(24), ops);
    (void)fqdnd::cache::to_json(cache.entries());
    return 0;
}
