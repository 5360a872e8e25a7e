#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <memory>

namespace fqdnd {

class Manager;

struct SdBusUnref {
    void operator()(sd_bus* b) const noexcept { sd_bus_flush_close_unref(b); }
};
struct SdBusSlotUnref {
    void operator()(sd_bus_slot* s) const noexcept { sd_bus_slot_unref(s); }
};

// org.fqdnd1.Manager at /org/fqdnd1 on the system bus (or the bus
// DBUS_SYSTEM_BUS_ADDRESS names). Reading is for root and the fqdnd group;
// changing state for root alone: the bus policy says so, and every method
// checks the caller's credentials again.
class ManagerBus {
public:
    explicit ManagerBus(Manager& m) : manager_(m) {}

    // Connects, takes the name, and serves on `event`. When the bus is not
    // there, or goes away (dbus restarted), fqdnd enforces on and tries
    // again every two seconds.
    void start(sd_event* event);

private:
    int connect();
    void retry_later();
    static int on_disconnected(sd_bus_message*, void* self, sd_bus_error*);
    static int on_retry(sd_event_source*, uint64_t, void* self);

    Manager& manager_;
    sd_event* event_ = nullptr;
    std::unique_ptr<sd_bus, SdBusUnref> bus_;
    std::unique_ptr<sd_bus_slot, SdBusSlotUnref> slot_, disconnect_slot_;
    struct SourceUnref {
        void operator()(sd_event_source* s) const noexcept { sd_event_source_disable_unref(s); }
    };
    std::unique_ptr<sd_event_source, SourceUnref> retry_;
    bool warned_ = false;
};

} // namespace fqdnd
