#include "client.hpp"

#include "bus/names.hpp"

#include <cstdio>
#include <cstring>

namespace fqdnctl {

int Client::connect()
{
    sd_bus* raw = nullptr;
    if (int r = sd_bus_open_system(&raw); r < 0) {
        std::fprintf(stderr, "fqdnctl: cannot connect to the system bus: %s\n", std::strerror(-r));
        return 1;
    }
    bus_.reset(raw);
    return 0;
}

void Client::report(const char* method, const sd_bus_error* error, int r)
{
    const std::string name = error && error->name ? error->name : "";
    if (name == "org.freedesktop.DBus.Error.ServiceUnknown" || name == "org.freedesktop.DBus.Error.NameHasNoOwner")
        std::fprintf(stderr, "fqdnctl: fqdnd is not running (nobody owns org.fqdnd1 on the system bus)\n");
    else if (name == fqdnd::bus::error_access_denied || name == "org.freedesktop.DBus.Error.AccessDenied")
        std::fprintf(stderr, "fqdnctl: access denied: %s\n",
                     error->message ? error->message : "reading is for root and the fqdnd group, changes for root");
    else
        std::fprintf(stderr, "fqdnctl: %s failed: %s\n", method,
                     error && error->message ? error->message : std::strerror(-r));
}

} // namespace fqdnctl
