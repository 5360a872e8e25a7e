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

    // Connects, takes the name, and serves on `event`. Returns 0 or a
    // negative errno (logged); fqdnd runs on without its bus then.
    int start(sd_event* event);

private:
    Manager& manager_;
    std::unique_ptr<sd_bus, SdBusUnref> bus_;
    std::unique_ptr<sd_bus_slot, SdBusSlotUnref> slot_;
};

} // namespace fqdnd
