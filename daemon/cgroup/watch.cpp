#include "cgroup/watch.hpp"

#include <linux/magic.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

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

constexpr uint32_t watch_mask = IN_CREATE | IN_DELETE | IN_ONLYDIR;

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

bool unchanged(const UnitCgroups& known)
{
    for (const auto& [unit, cgroup] : known) {
        struct stat st {};
        if (!cgroup || stat(cgroup->path.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_ino) != cgroup->id)
            return false;
    }
    return true;
}

int Watch::watch(const std::string& root, const std::vector<std::string>& units)
{
    units_ = std::set<std::string>(units.begin(), units.end());
    if (fd_ && root == root_)
        return 0;
    close();
    UniqueFd fd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!fd)
        return -errno;
    fd_ = std::move(fd);
    root_ = root;
    int error = 0;
    add(root_, 0, error);
    if (error < 0) {
        close();
        return error;
    }
    return 0;
}

void Watch::close() noexcept
{
    fd_.reset();
    dirs_.clear();
    wds_.clear();
}

bool Watch::add(const std::string& path, uint32_t level, int& error)
{
    const int wd = inotify_add_watch(fd_.get(), path.c_str(), watch_mask);
    if (wd < 0) {
        // Removed already: there is nothing to watch.
        if (errno != ENOENT && errno != ENOTDIR && error == 0)
            error = -errno;
        return false;
    }
    dirs_[wd] = Dir{path, level};
    wds_[path] = wd;
    bool named = false;
    std::error_code ec;
    for (auto it = fs::directory_iterator(path, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
        std::error_code type_ec;
        if (!it->is_directory(type_ec))
            continue;
        if (units_.contains(it->path().filename().string()))
            named = true;
        if (level + 1 < max_unit_level && add(it->path().string(), level + 1, error))
            named = true;
    }
    return named;
}

void Watch::forget(const std::string& path)
{
    const auto it = wds_.find(path);
    if (it == wds_.end())
        return;
    // The kernel does not always drop a watch on a removed cgroup at once
    // (no IN_IGNORED was seen on 6.18): drop it here.
    inotify_rm_watch(fd_.get(), it->second);
    dirs_.erase(it->second);
    wds_.erase(it);
}

Watch::Seen Watch::read()
{
    Seen seen;
    alignas(inotify_event) char buf[16384];
    for (;;) {
        const ssize_t n = ::read(fd_.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; // EAGAIN: every event is read
        for (const char* p = buf; p < buf + n;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(p);
            p += sizeof(inotify_event) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                // Anything may have come or gone: watch everything afresh.
                seen.named = true;
                for (const auto& [wd, dir] : dirs_)
                    inotify_rm_watch(fd_.get(), wd);
                dirs_.clear();
                wds_.clear();
                add(root_, 0, seen.error);
                continue;
            }
            const auto d = dirs_.find(ev->wd);
            if (d == dirs_.end())
                continue;
            if (ev->mask & IN_IGNORED) {
                // The path may be watched again already, by another descriptor.
                if (const auto w = wds_.find(d->second.path); w != wds_.end() && w->second == ev->wd)
                    wds_.erase(w);
                dirs_.erase(d);
                continue;
            }
            if (!(ev->mask & IN_ISDIR) || ev->len == 0)
                continue;
            const std::string name(ev->name);
            const std::string path = d->second.path + "/" + name;
            const uint32_t level = d->second.level + 1;
            if (units_.contains(name))
                seen.named = true;
            if ((ev->mask & IN_CREATE) && level < max_unit_level && add(path, level, seen.error))
                seen.named = true;
            if (ev->mask & IN_DELETE)
                forget(path);
        }
    }
    return seen;
}

} // namespace fqdnd::cgroup
