#pragma once

#include "config/loader.hpp"

#include <doctest/doctest.h>

#include <string>

// The configuration the loader makes of `policies` (one file of policy.d)
// and `settings` (fqdnd.toml); each error is shown when it refuses them.
inline fqdnd::config::Config config_of(const std::string& policies, const std::string& settings = "",
                                       const std::string& file = "p.toml")
{
    auto r = fqdnd::config::load_config_text(settings, "/etc/fqdnd/fqdnd.toml", {{file, policies}});
    for (const auto& e : r.errors)
        MESSAGE(e.to_string());
    REQUIRE(r.config);
    return *r.config;
}
