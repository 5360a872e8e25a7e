#include "config/check.hpp"

#include "build-config.hpp"
#include "config/loader.hpp"

#include <ostream>

namespace fqdnd::config {

std::filesystem::path default_config_file()
{
    return std::filesystem::path(FQDND_SYSCONFDIR) / "fqdnd.toml";
}

int check_config(const std::filesystem::path& config_file, bool must_exist, std::ostream& out, std::ostream& err)
{
    const LoadResult r = load_config(config_file, must_exist);
    if (!r.config) {
        for (const Diagnostic& d : r.errors)
            err << d.to_string() << '\n';
        err << config_file.string() << ": configuration refused: " << r.errors.size()
            << (r.errors.size() == 1 ? " error" : " errors") << '\n';
        return 1;
    }
    out << config_file.string() << ": configuration ok: " << summary(*r.config) << '\n';
    return 0;
}

} // namespace fqdnd::config
