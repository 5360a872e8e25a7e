// fqdnctl: the command-line client of fqdnd. Verbs are looked up in one
// table, as resolvectl does; each verb parses its own options.
#include "build-config.hpp"
#include "config/check.hpp"

#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <span>
#include <string_view>

namespace {

struct Verb {
    std::string_view noun; // "" for one-word verbs
    std::string_view name;
    std::string_view args;
    std::string_view help;
    int (*run)(int argc, char** argv);
};

int verb_check_config(int argc, char** argv);

constexpr Verb verbs[] = {
    {"", "check-config", "[PATH]",
     "validate fqdnd.toml and the policy directory without a daemon (default " FQDND_SYSCONFDIR "/fqdnd.toml)",
     verb_check_config},
};

void usage(std::FILE* to)
{
    std::fprintf(to, "Usage: fqdnctl [--help] [--version] VERB [ARG]...\n\nVerbs:\n");
    for (const Verb& v : verbs) {
        std::string line(v.noun);
        if (!line.empty())
            line += ' ';
        line += v.name;
        line += ' ';
        line += v.args;
        std::fprintf(to, "  %-24s %.*s\n", line.c_str(), static_cast<int>(v.help.size()), v.help.data());
    }
}

void verb_usage(const Verb& v, std::FILE* to)
{
    std::fprintf(to, "Usage: fqdnctl %.*s%s%.*s %.*s\n\n%.*s\n", static_cast<int>(v.noun.size()), v.noun.data(),
                 v.noun.empty() ? "" : " ", static_cast<int>(v.name.size()), v.name.data(),
                 static_cast<int>(v.args.size()), v.args.data(), static_cast<int>(v.help.size()), v.help.data());
}

// Parses only --help for verbs without options of their own; returns -1 to
// go on, or the exit code.
int simple_options(const Verb& v, int argc, char** argv)
{
    static const option options[] = {{"help", no_argument, nullptr, 'h'}, {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", options, nullptr)) != -1) {
        if (c == 'h') {
            verb_usage(v, stdout);
            return 0;
        }
        verb_usage(v, stderr);
        return 2;
    }
    return -1;
}

int verb_check_config(int argc, char** argv)
{
    if (int r = simple_options(verbs[0], argc, argv); r >= 0)
        return r;
    if (argc - optind > 1) {
        verb_usage(verbs[0], stderr);
        return 2;
    }
    const bool given = optind < argc;
    const std::filesystem::path path = given ? std::filesystem::path(argv[optind])
                                             : fqdnd::config::default_config_file();
    return fqdnd::config::check_config(path, given, std::cout, std::cerr);
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
            return v.run(argc - 1, argv + 1);
        if (!v.noun.empty() && first == v.noun && argc >= 3 && v.name == argv[2])
            return v.run(argc - 2, argv + 2);
    }
    std::fprintf(stderr, "fqdnctl: unknown verb \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
