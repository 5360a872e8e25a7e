#include "cgroup/watch.hpp"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

namespace fqdnd::cgroup {

namespace fs = std::filesystem;

namespace {

// Calls f(path, name, level) for every directory below `dir` (which is at
// `level`) down to max_unit_level.
template <typename F>
void walk(const std::string& dir, uint32_t level, F&& f)
{
    std::error_code ec;
    for (auto it = fs::directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
        std::error_code type_ec;
        if (!it->is_directory(type_ec))
            continue;
        const std::string path = it->path().string();
        f(path, it->path().filename().string(), level + 1);
        if (level + 1 < max_unit_level)
            walk(path, level + 1, f);
    }
}

} // namespace

std::optional<std::string> hierarchy_root()
{
    for (const char* p : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
        struct statfs st {};
        if (statfs(p, &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC)
            return p;
    }
    return std::nullopt;
}

Search find_units(const std::vector<std::string>& units)
{
    const auto root = hierarchy_root();
    if (!root) {
        Search s;
        for (const std::string& u : units) {
            s.cgroups[u] = std::nullopt;
            s.problems[u] = "unit " + u + ": no cgroup v2 hierarchy (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified)";
        }
        return s;
    }
    return find_units(*root, units);
}

Search find_units(const std::string& root, const std::vector<std::string>& units)
{
    UnitSearch search(units);
    if (!units.empty())
        walk(root, 0, [&](const std::string& path, const std::string& name, uint32_t level) {
            struct stat st {};
            if (search.wants(name) && stat(path.c_str(), &st) == 0)
                search.saw(name, UnitCgroup{path, level, static_cast<uint64_t>(st.st_ino)});
        });
    return search.result();
}

} // namespace fqdnd::cgroup
