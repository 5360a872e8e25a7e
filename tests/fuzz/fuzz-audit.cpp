// The audit recording's loader (audit.json) on arbitrary bytes, and the
// policy written from whatever it accepts: that policy must load, as
// `fqdnctl check-config` would load it, whatever the recording held.
#include "audit/record.hpp"
#include "audit/suggest.hpp"
#include "config/loader.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    fqdnd::audit::Limits limits;
    limits.per_policy = 64;
    limits.total = 128;
    limits.policies = 4;
    fqdnd::audit::Recorder rec(limits);
    std::string problem;
    if (!rec.from_json(std::string(reinterpret_cast<const char*>(data), size), &problem))
        return 0;
    if (rec.entries() > limits.total)
        std::abort();
    fqdnd::config::Policy policy;
    policy.name = "web";
    policy.audit = true;
    policy.selector.sources = {*fqdnd::Cidr::parse("192.0.2.0/29")};
    for (auto r : rec.records()) {
        r.policy = policy.name;
        const std::string toml = fqdnd::audit::to_toml(fqdnd::audit::suggest(r), &policy);
        const auto loaded = fqdnd::config::load_config_text("", "/etc/fqdnd/fqdnd.toml", {{"web.toml", toml}});
        if (!loaded.config) {
            for (const auto& e : loaded.errors)
                std::fprintf(stderr, "%s\n", e.to_string().c_str());
            std::fprintf(stderr, "%s", toml.c_str());
            std::abort();
        }
        (void)fqdnd::audit::diff(r, loaded.config->policies.at(0));
    }
    (void)rec.to_json();
    return 0;
}
