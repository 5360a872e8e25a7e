#pragma once

#include "bus/names.hpp"
#include "sd-util.hpp"

#include <systemd/sd-bus.h>

#include <memory>
#include <string>

// fqdnctl's side of org.fqdnd1: one connection, calls that print what goes
// wrong in words and return an exit code.
namespace fqdnctl {

using MessagePtr = fqdnd::SdBusMessagePtr;

class Client {
public:
    // Returns 0, or 1 after printing why fqdnd cannot be reached.
    int connect();

    // Calls a Manager method; `append` adds the arguments. Returns the reply,
    // or nothing after printing the error in words.
    template <typename... Args>
    MessagePtr call(const char* method, const char* signature, Args... args)
    {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message* reply = nullptr;
        const int r = sd_bus_call_method(bus_.get(), fqdnd::bus::service, fqdnd::bus::object_path, fqdnd::bus::manager_interface, method, &error,
                                         &reply, signature, args...);
        if (r < 0) {
            report(method, &error, r);
            sd_bus_error_free(&error);
            return nullptr;
        }
        return MessagePtr(reply);
    }

    sd_bus* bus() const noexcept { return bus_.get(); }

private:
    static void report(const char* method, const sd_bus_error* error, int r);
    fqdnd::SdBusPtr bus_;
};

// Connects and calls a Manager method: the reply, or nothing after printing
// why (fqdnd unreachable, or its error in words). The reply keeps what it
// needs of the connection.
template <typename... Args>
MessagePtr ask(const char* method, const char* signature, Args... args)
{
    Client c;
    if (c.connect())
        return nullptr;
    return c.call(method, signature, args...);
}

} // namespace fqdnctl
