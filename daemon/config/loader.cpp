#include "config/loader.hpp"

#include "config/policy-reader.hpp"
#include "config/settings.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

namespace fqdnd::config {

namespace {

std::optional<toml::table> parse(std::string_view text, const std::string& file, Diagnostics& errors)
{
    try {
        return toml::parse(text, file);
    } catch (const toml::parse_error& e) {
        errors.push_back(Diagnostic{SourceLocation{file, e.source().begin.line, e.source().begin.column},
                                    std::string(e.description())});
        return std::nullopt;
    }
}

std::optional<std::string> read_file(const std::filesystem::path& path, Diagnostics& errors)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::error_code ec(errno, std::generic_category());
        errors.push_back(Diagnostic{SourceLocation{path.string()}, "cannot read: " + ec.message()});
        return std::nullopt;
    }
    std::ostringstream s;
    s << in.rdbuf();
    return std::move(s).str();
}

class Assembler {
public:
    Assembler(const std::filesystem::path& base_dir) : settings_(default_settings(base_dir)), base_dir_(base_dir) {}

    void settings_text(std::string_view text, const std::string& file)
    {
        files_.push_back(file);
        if (auto root = parse(text, file, errors_)) {
            TomlReader reader(file, errors_);
            read_settings(*root, reader, base_dir_, settings_);
        }
    }

    void policy_text(std::string_view text, const std::string& file)
    {
        files_.push_back(file);
        if (auto root = parse(text, file, errors_)) {
            TomlReader reader(file, errors_);
            read_policies(*root, reader, policies_);
        }
    }

    const Settings& settings() const { return settings_; }
    Diagnostics& errors() { return errors_; }

    LoadResult finish()
    {
        std::map<std::string, const Policy*> by_name;
        for (const Policy& p : policies_) {
            auto [it, inserted] = by_name.emplace(p.name, &p);
            if (!inserted)
                errors_.push_back(Diagnostic{p.where, "policy \"" + p.name + "\" is already defined at "
                    + it->second->where.to_string()});
        }
        LoadResult result;
        if (!errors_.empty()) {
            result.errors = std::move(errors_);
            return result;
        }
        std::sort(policies_.begin(), policies_.end(),
                  [](const Policy& a, const Policy& b) { return a.name < b.name; });
        result.config = Config{std::move(settings_), std::move(policies_), std::move(files_)};
        return result;
    }

private:
    Settings settings_;
    std::filesystem::path base_dir_;
    std::vector<Policy> policies_;
    std::vector<std::string> files_;
    Diagnostics errors_;
};

} // namespace

LoadResult load_config(const std::filesystem::path& config_file, bool must_exist)
{
    const std::filesystem::path base_dir = std::filesystem::absolute(config_file).parent_path();
    Assembler a(base_dir);

    std::error_code ec;
    const bool exists = std::filesystem::exists(config_file, ec);
    if (exists || must_exist) {
        if (auto text = read_file(config_file, a.errors()))
            a.settings_text(*text, config_file.string());
    }

    const std::filesystem::path dir = a.settings().policy_directory;
    if (std::filesystem::is_directory(dir, ec)) {
        std::vector<std::filesystem::path> files;
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
            if (entry.path().extension() == ".toml" && !entry.is_directory())
                files.push_back(entry.path());
        if (ec)
            a.errors().push_back(Diagnostic{SourceLocation{dir.string()}, "cannot list: " + ec.message()});
        std::sort(files.begin(), files.end());
        for (const auto& f : files)
            if (auto text = read_file(f, a.errors()))
                a.policy_text(*text, f.string());
    } else if (std::filesystem::exists(dir, ec)) {
        a.errors().push_back(Diagnostic{SourceLocation{dir.string()}, "policy-directory is not a directory"});
    }
    // A missing policy directory means no policies: fqdnd then governs nothing.
    return a.finish();
}

LoadResult load_config_text(std::string_view config_text, const std::string& file,
                            const std::vector<std::pair<std::string, std::string>>& policy_files)
{
    Assembler a(std::filesystem::path(file).parent_path());
    a.settings_text(config_text, file);
    for (const auto& [name, text] : policy_files)
        a.policy_text(text, name);
    return a.finish();
}

namespace {

std::string count(size_t n, std::string_view one, std::string_view many)
{
    return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

} // namespace

std::string fixed_until_restart(const Settings& running, const Settings& next)
{
    if (next.queue != running.queue || next.queues != running.queues)
        return "queue and queues change only at a restart (running: queue " + std::to_string(running.queue)
            + ", queues " + std::to_string(running.queues) + ")";
    if (next.state_directory != running.state_directory)
        return "state-directory changes only at a restart (running: " + running.state_directory + ")";
    return "";
}

ReloadCheck check_reload(const Config& running, LoadResult loaded)
{
    ReloadCheck c;
    if (!loaded.config) {
        for (const auto& d : loaded.errors)
            c.errors.push_back(d.to_string());
        c.summary = ": " + std::to_string(c.errors.size()) + (c.errors.size() == 1 ? " error" : " errors");
        return c;
    }
    if (*loaded.config == running) {
        c.verdict = ReloadCheck::Verdict::unchanged;
        return c;
    }
    if (std::string fixed = fixed_until_restart(running.settings, loaded.config->settings); !fixed.empty()) {
        c.errors.push_back(std::move(fixed));
        return c;
    }
    c.verdict = ReloadCheck::Verdict::apply;
    c.config = std::move(loaded.config);
    return c;
}

std::string summary(const Config& c)
{
    size_t rules = 0;
    for (const Policy& p : c.policies)
        rules += p.egress.size();
    return count(c.files.size(), "file", "files") + ", " + count(c.policies.size(), "policy", "policies") + ", "
        + count(rules, "egress rule", "egress rules") + ", "
        + count(c.fqdn_selectors().size(), "FQDN selector", "FQDN selectors");
}

std::vector<FqdnSelector> Config::fqdn_selectors() const
{
    std::vector<FqdnSelector> all;
    for (const Policy& p : policies)
        for (const EgressRule& r : p.egress)
            all.insert(all.end(), r.to_fqdns.begin(), r.to_fqdns.end());
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    return all;
}

std::vector<std::string> Config::units() const
{
    std::vector<std::string> all;
    for (const Policy& p : policies)
        all.insert(all.end(), p.selector.units.begin(), p.selector.units.end());
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    return all;
}

std::string_view to_string(RejectCode c) noexcept
{
    return c == RejectCode::refused ? "refused" : "name-error";
}

std::string_view to_string(Protocol p) noexcept
{
    switch (p) {
    case Protocol::tcp: return "tcp";
    case Protocol::udp: return "udp";
    case Protocol::any: return "any";
    }
    return "?";
}

std::string_view to_string(ReversePath r) noexcept
{
    switch (r) {
    case ReversePath::strict: return "strict";
    case ReversePath::loose: return "loose";
    case ReversePath::off: return "off";
    }
    return "?";
}

} // namespace fqdnd::config
