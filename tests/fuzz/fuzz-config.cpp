// The configuration loader on arbitrary bytes: the first half as fqdnd.toml,
// the whole as a policy file. It must report, never crash or throw.
#include "config/loader.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string text(reinterpret_cast<const char*>(data), size);
    const auto r = fqdnd::config::load_config_text(text.substr(0, size / 2), "fuzz/fqdnd.toml",
                                                   {{"fuzz/policy.toml", text}});
    if (r.config)
        (void)fqdnd::config::summary(*r.config);
    for (const auto& e : r.errors)
        (void)e.to_string();
    return 0;
}
