#pragma once

#include <filesystem>
#include <iosfwd>

namespace fqdnd::config {

// `fqdnd --check-config` and `fqdnctl check-config`: loads without touching
// the kernel; prints a one-line summary and returns 0, or prints every error
// as file:line:column and returns 1.
int check_config(const std::filesystem::path& config_file, bool must_exist, std::ostream& out, std::ostream& err);

std::filesystem::path default_config_file();

} // namespace fqdnd::config
