#pragma once

#include <systemd/sd-bus.h>

#include <memory>
#include <string>

// fqdnctl's side of org.fqdnd1: one connection, calls that print what goes
// wrong in words and return an exit code.
namespace fqdnctl {

struct BusUnref {
    void operator()(sd_bus* b) const noexcept { sd_bus_flush_close_unref(b); }
};
struct MessageUnref {
    void operator()(sd_bus_message* m) const noexcept { sd_bus_message_unref(m); }
};
using MessagePtr = std::unique_ptr<sd_bus_message, MessageUnref>;

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
        const int r = sd_bus_call_method(bus_.get(), "org.fqdnd1", "/org/fqdnd1", "org.fqdnd1.Manager", method, &error,
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
    std::unique_ptr<sd_bus, BusUnref> bus_;
};

} // namespace fqdnctl
