// fqdnd: allows egress by DNS name. This file only reads the command line
// and hands over; the work is done elsewhere.
#include "build-config.hpp"
#include "config/check.hpp"

#include <getopt.h>

#include <cstdio>
#include <iostream>
#include <optional>

namespace {

void usage(std::FILE* to)
{
    std::fprintf(to,
                 "Usage: fqdnd [OPTION]...\n"
                 "Firewall daemon that allows egress by DNS name.\n"
                 "\n"
                 "  -c, --config PATH   daemon settings (default %s)\n"
                 "      --check-config  validate the settings and policies, touch nothing, and exit\n"
                 "  -h, --help          show this help and exit\n"
                 "      --version       show the version and exit\n",
                 fqdnd::config::default_config_file().c_str());
}

} // namespace

int main(int argc, char** argv)
{
    enum { opt_check_config = 0x100, opt_version };
    static const option options[] = {
        {"config", required_argument, nullptr, 'c'},
        {"check-config", no_argument, nullptr, opt_check_config},
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, opt_version},
        {nullptr, 0, nullptr, 0},
    };

    std::optional<std::filesystem::path> config_file;
    bool check = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", options, nullptr)) != -1) {
        switch (c) {
        case 'c':
            config_file = optarg;
            break;
        case opt_check_config:
            check = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case opt_version:
            std::printf("fqdnd %s\n", FQDND_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        std::fprintf(stderr, "fqdnd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    const std::filesystem::path path = config_file.value_or(fqdnd::config::default_config_file());
    if (check)
        return fqdnd::config::check_config(path, config_file.has_value(), std::cout, std::cerr);

    std::fprintf(stderr, "fqdnd: this build only validates configuration (--check-config); "
                         "the enforcing daemon is not built yet\n");
    return 1;
}
