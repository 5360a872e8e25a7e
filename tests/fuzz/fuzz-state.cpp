// The state file and pre-cache loader on arbitrary bytes, and what it
// accepts restored into a cache.
#include "cache/cache.hpp"
#include "cache/persist.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string error;
    const auto records = fqdnd::cache::from_json(std::string(reinterpret_cast<const char*>(data), size), error);
    if (!records)
        return 0;
    fqdnd::cache::Cache cache;
    std::vector<fqdnd::cache::ElementOp> ops;
    const fqdnd::cache::Time now{std::chrono::milliseconds(1'800'000'000'000)};
    cache.set_selectors({*fqdnd::FqdnSelector::parse_pattern("*", nullptr)}, now, ops);
    fqdnd::cache::restore_all(cache, *records, now, ops);
    cache.flows_reset({}, now);
    cache.expire(now + std::chrono::hours(24), ops);
    (void)fqdnd::cache::to_json(cache.entries());
    return 0;
}
