// fqdnctl: the command-line client of fqdnd. Verbs are looked up in one
// table, as resolvectl does; every verb takes --help.
#include "build-config.hpp"
#include "config/check.hpp"
#include "verbs.hpp"

#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
    std::string pattern, endpoint, source, type;
    bool json = false;
    bool force = false;
    std::vector<std::string> args;
};

struct Verb {
    std::string_view noun; // "" for one-word verbs
    std::string_view name;
    std::string_view usage;
    std::string_view help;
    std::string_view flags; // the short options it takes, of "opesft"
    size_t max_args;
    int (*run)(const Options&);
};

int run_check_config(const Options& o)
{
    const bool given = !o.args.empty();
    return fqdnd::config::check_config(given ? std::filesystem::path(o.args[0]) : fqdnd::config::default_config_file(),
                                       given, std::cout, std::cerr);
}

constexpr Verb verbs[] = {
    {"", "status", "[-o json]", "what fqdnd enforces: table, NFQUEUE mode, policies, cache sizes", "o", 0,
     [](const Options& o) { return fqdnctl::status(o.json); }},
    {"cache", "list", "[-p PATTERN] [-e ENDPOINT] [-s lookup|connection] [-o json]",
     "names and addresses fqdnd learned, like cilium fqdn cache list", "opes", 0,
     [](const Options& o) { return fqdnctl::cache_list(o.pattern, o.endpoint, o.source, o.json); }},
    {"cache", "clean", "[-p PATTERN] [-f]", "forget names (all, or those matching PATTERN) and close their addresses",
     "pf", 0, [](const Options& o) { return fqdnctl::cache_clean(o.pattern, o.force); }},
    {"", "selectors", "[-o json]", "each FQDN selector with its sets, names and addresses", "o", 0,
     [](const Options& o) { return fqdnctl::selectors(o.json); }},
    {"policy", "list", "[-o json]", "the policies in force", "o", 0,
     [](const Options& o) { return fqdnctl::policy_list(o.json); }},
    {"policy", "suggest", "[POLICY] [-o toml|json]",
     "a policy written from what audit policies recorded and enforcing ones dropped, ready for policy.d "
     "(review it first)",
     "o", 1, [](const Options& o) { return fqdnctl::policy_suggest(o.args.empty() ? "" : o.args[0], o.json); }},
    {"policy", "diff", "[POLICY] [-o json]",
     "what the recorded traffic needed that the policy lacks (+), and its rules that saw no use (-)", "o", 1,
     [](const Options& o) { return fqdnctl::policy_diff(o.args.empty() ? "" : o.args[0], o.json); }},
    {"policy", "forget", "[POLICY]", "forget what was recorded for a policy, or for all", "", 1,
     [](const Options& o) { return fqdnctl::policy_forget(o.args.empty() ? "" : o.args[0]); }},
    {"", "explain", "ADDRESS|NAME [-o json]",
     "why an address or a name is allowed or not: sets, names, endpoints, sources, until when, policies", "o", 1,
     [](const Options& o) {
         if (o.args.size() != 1) {
             std::fprintf(stderr, "fqdnctl: explain takes an address or a name\n");
             return 2;
         }
         return fqdnctl::explain(o.args[0], o.json);
     }},
    {"", "monitor", "[--type dns|drop] [-o json]",
     "live DNS events (queries allowed and refused, answers with the selectors that learned them) and drops, "
     "like hubble observe; -o json prints one object per line",
     "ot", 0, [](const Options& o) { return fqdnctl::monitor(o.type, o.json); }},
    {"", "metrics", "", "counters and gauges in the Prometheus text format", "", 0,
     [](const Options&) { return fqdnctl::metrics(); }},
    {"", "reload", "", "reload settings and policies; errors are printed as file:line:column", "", 0,
     [](const Options&) { return fqdnctl::reload(); }},
    {"", "check-config", "[PATH]",
     "validate fqdnd.toml and its policy directory without a daemon (default " FQDND_SYSCONFDIR "/fqdnd.toml)", "", 1,
     run_check_config},
};

std::string verb_name(const Verb& v)
{
    return v.noun.empty() ? std::string(v.name) : std::string(v.noun) + " " + std::string(v.name);
}

void usage(std::FILE* to)
{
    std::fprintf(to, "Usage: fqdnctl [--help] [--version] VERB [OPTION]... [ARG]\n\nVerbs:\n");
    for (const Verb& v : verbs) {
        const std::string line = verb_name(v) + (v.usage.empty() ? "" : " ") + std::string(v.usage);
        std::fprintf(to, "  %s\n      %.*s\n", line.c_str(), static_cast<int>(v.help.size()), v.help.data());
    }
    std::fprintf(to, "\nExit status: 0 success, 1 failure, 2 usage error.\n");
}

void verb_usage(const Verb& v, std::FILE* to)
{
    std::fprintf(to, "Usage: fqdnctl %s %.*s\n\n%.*s\n", verb_name(v).c_str(), static_cast<int>(v.usage.size()),
                 v.usage.data(), static_cast<int>(v.help.size()), v.help.data());
}

int run(const Verb& v, int argc, char** argv)
{
    static const option long_options[] = {
        {"output", required_argument, nullptr, 'o'},  {"matchpattern", required_argument, nullptr, 'p'},
        {"endpoint", required_argument, nullptr, 'e'}, {"source", required_argument, nullptr, 's'},
        {"force", no_argument, nullptr, 'f'},          {"help", no_argument, nullptr, 'h'},
        {"type", required_argument, nullptr, 't'},
        {nullptr, 0, nullptr, 0},
    };
    Options o;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "o:p:e:s:ft:h", long_options, nullptr)) != -1) {
        if (c == 'h') {
            verb_usage(v, stdout);
            return 0;
        }
        if (c == '?' || v.flags.find(static_cast<char>(c)) == std::string_view::npos) {
            if (c != '?')
                std::fprintf(stderr, "fqdnctl: %s takes no -%c\n", verb_name(v).c_str(), c);
            verb_usage(v, stderr);
            return 2;
        }
        switch (c) {
        case 'o':
            if (v.name == "suggest" && std::strcmp(optarg, "toml") == 0)
                break; // its default
            if (std::strcmp(optarg, "json") != 0) {
                std::fprintf(stderr, "fqdnctl: -o takes json\n");
                return 2;
            }
            o.json = true;
            break;
        case 'p': o.pattern = optarg; break;
        case 'e': o.endpoint = optarg; break;
        case 's':
            if (std::strcmp(optarg, "lookup") != 0 && std::strcmp(optarg, "connection") != 0) {
                std::fprintf(stderr, "fqdnctl: -s takes lookup or connection\n");
                return 2;
            }
            o.source = optarg;
            break;
        case 'f': o.force = true; break;
        case 't':
            if (std::strcmp(optarg, "dns") != 0 && std::strcmp(optarg, "drop") != 0) {
                std::fprintf(stderr, "fqdnctl: --type takes dns or drop\n");
                return 2;
            }
            o.type = optarg;
            break;
        }
    }
    for (int i = optind; i < argc; ++i)
        o.args.emplace_back(argv[i]);
    if (o.args.size() > v.max_args) {
        verb_usage(v, stderr);
        return 2;
    }
    return v.run(o);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const std::string_view first = argv[1];
    if (first == "-h" || first == "--help") {
        usage(stdout);
        return 0;
    }
    if (first == "--version") {
        std::printf("fqdnctl %s\n", FQDND_VERSION);
        return 0;
    }
    for (const Verb& v : verbs) {
        if (v.noun.empty() && first == v.name)
            return run(v, argc - 1, argv + 1);
        if (!v.noun.empty() && first == v.noun && argc >= 3 && v.name == argv[2])
            return run(v, argc - 2, argv + 2);
    }
    std::fprintf(stderr, "fqdnctl: unknown verb \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
