// fqdnd: allows egress by DNS name. This file only reads the command line
// and hands over to the Manager, which owns everything else.
#include "build-config.hpp"
#include "config/check.hpp"
#include "config/loader.hpp"
#include "log.hpp"
#include "manager.hpp"

#include <getopt.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>

namespace {

void usage(std::FILE* to)
{
    std::fprintf(to,
                 "Usage: fqdnd [OPTION]...\n"
                 "Firewall daemon that allows egress by DNS name; runs in the foreground.\n"
                 "\n"
                 "  -c, --config PATH          daemon settings (default %s)\n"
                 "      --check-config         validate the settings and policies, touch nothing, and exit\n"
                 "      --remove-rules         delete fqdnd's nftables table and exit\n"
                 "      --queue-mode MODE      native or compat NFQUEUE statement (default: probe the kernel)\n"
                 "      --element-refresh HOW  re-add or delete-add to renew set elements (default: probe)\n"
                 "      --log-dns              log every DNS query and answer; SIGUSR1 logs the cache\n"
                 "      --conntrack-buffer N   initial receive buffer of conntrack events, bytes (tests)\n"
                 "      --read-group GROUP     group that may read over the bus besides root (default fqdnd)\n"
                 "  -h, --help                 show this help and exit\n"
                 "      --version              show the version and exit\n",
                 fqdnd::config::default_config_file().c_str());
}

int remove_rules(const std::filesystem::path& path, bool given)
{
    std::string table = "fqdnd";
    const auto loaded = fqdnd::config::load_config(path, given);
    if (loaded.config)
        table = loaded.config->settings.table;
    else
        fqdnd::log::warning("configuration does not load; removing the default table inet fqdnd");
    fqdnd::nft::Netlink nl;
    if (int r = nl.open(); r < 0) {
        fqdnd::log::error(std::string("cannot open a netfilter netlink socket: ") + std::strerror(-r));
        return 1;
    }
    std::string problem;
    fqdnd::nft::Table t(nl);
    if (!t.exists(table)) {
        fqdnd::log::info("no table inet " + table + " to remove");
        return 0;
    }
    // fqdnd's table never has an owner: one that has is another process's.
    if (uint32_t owner = 0; t.owner(table, owner) == 0 && owner != 0) {
        fqdnd::log::warning("table inet " + table + " is another process's (flags owner, netlink port "
                            + std::to_string(owner) + "), not fqdnd's; left alone");
        return 0;
    }
    if (t.remove(table, &problem) < 0) {
        fqdnd::log::error("cannot remove table inet " + table + ": " + problem);
        return 1;
    }
    fqdnd::log::info("table inet " + table + " removed");
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    enum { opt_check_config = 0x100, opt_version, opt_remove_rules, opt_queue_mode, opt_element_refresh, opt_log_dns,
           opt_conntrack_buffer, opt_read_group };
    static const option options[] = {
        {"config", required_argument, nullptr, 'c'},
        {"check-config", no_argument, nullptr, opt_check_config},
        {"remove-rules", no_argument, nullptr, opt_remove_rules},
        {"queue-mode", required_argument, nullptr, opt_queue_mode},
        {"element-refresh", required_argument, nullptr, opt_element_refresh},
        {"log-dns", no_argument, nullptr, opt_log_dns},
        {"conntrack-buffer", required_argument, nullptr, opt_conntrack_buffer},
        {"read-group", required_argument, nullptr, opt_read_group},
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, opt_version},
        {nullptr, 0, nullptr, 0},
    };

    fqdnd::Options opts;
    bool check = false, remove = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", options, nullptr)) != -1) {
        switch (c) {
        case 'c':
            opts.config_file = optarg;
            opts.config_given = true;
            break;
        case opt_check_config:
            check = true;
            break;
        case opt_remove_rules:
            remove = true;
            break;
        case opt_queue_mode:
            if (std::strcmp(optarg, "native") == 0)
                opts.queue_mode = fqdnd::nft::QueueMode::native;
            else if (std::strcmp(optarg, "compat") == 0)
                opts.queue_mode = fqdnd::nft::QueueMode::compat;
            else {
                std::fprintf(stderr, "fqdnd: --queue-mode takes native or compat\n");
                return 2;
            }
            break;
        case opt_element_refresh:
            if (std::strcmp(optarg, "re-add") == 0)
                opts.element_refresh = fqdnd::nft::Refresh::readd;
            else if (std::strcmp(optarg, "delete-add") == 0)
                opts.element_refresh = fqdnd::nft::Refresh::delete_add;
            else {
                std::fprintf(stderr, "fqdnd: --element-refresh takes re-add or delete-add\n");
                return 2;
            }
            break;
        case opt_log_dns:
            opts.log_dns = true;
            break;
        case opt_conntrack_buffer: {
            char* end = nullptr;
            const long v = std::strtol(optarg, &end, 10);
            if (!end || *end || v < 1024 || v > (1L << 30)) {
                std::fprintf(stderr, "fqdnd: --conntrack-buffer takes a size in bytes (1024 to 1 GiB)\n");
                return 2;
            }
            opts.conntrack_buffer = static_cast<int>(v);
            break;
        }
        case opt_read_group:
            opts.read_group = optarg;
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
    if (!opts.config_given)
        opts.config_file = fqdnd::config::default_config_file();

    if (check)
        return fqdnd::config::check_config(opts.config_file, opts.config_given, std::cout, std::cerr);
    if (remove)
        return remove_rules(opts.config_file, opts.config_given);

    fqdnd::Manager manager(std::move(opts));
    if (manager.start() < 0)
        return 1;
    return manager.run() < 0 ? 1 : 0;
}
