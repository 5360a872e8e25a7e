#pragma once

#include "bus/backend.hpp"
#include "dns/engine.hpp"
#include "nflog/nflog.hpp"
#include "sd-util.hpp"

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fqdnd {


// org.fqdnd1.Manager at /org/fqdnd1 on the system bus (or the bus
// DBUS_SYSTEM_BUS_ADDRESS names). Reading is for root and the fqdnd group;
// changing state for root alone: the bus policy says so, and every method
// checks the caller's credentials again.
class ManagerBus {
public:
    explicit ManagerBus(bus::Backend& backend) : backend_(backend) {}

    // Connects, takes the name, and serves on `event`. When the bus is not
    // there, or goes away (dbus restarted), fqdnd enforces on and tries
    // again every two seconds.
    void start(sd_event* event);

    bus::Backend& backend() noexcept { return backend_; }

    // `fqdnctl monitor` calls Subscribe; the events go, as signals, to each
    // subscriber alone (the names others looked up stay private) until it
    // unsubscribes or leaves the bus.
    bool monitoring() const noexcept { return subscribers_ != nullptr; }
    int subscribe(sd_bus_message* m);
    int unsubscribe(sd_bus_message* m);
    // A DNS event at `at`; an answer that taught, with the selectors whose
    // sets took its addresses and how long it waited for them.
    void emit(const dns::Event& e, cache::Time at, const std::vector<std::string>& selectors, uint64_t hold_us);
    // A drop the log told at `at`, with the forwarded packet's input
    // interface and the names the cache knows for its destination.
    void emit(const nflog::Drop& d, cache::Time at, const std::string& interface, const std::vector<std::string>& names);

private:
    template <typename Fill>
    void emit_signal(const char* member, Fill fill);
    static int on_subscribers_gone(sd_bus_track*, void* self);

    int connect();
    void retry_later();
    static int on_disconnected(sd_bus_message*, void* self, sd_bus_error*);
    static int on_retry(sd_event_source*, uint64_t, void* self);

    bus::Backend& backend_;
    sd_event* event_ = nullptr;
    SdBusPtr bus_;
    SdBusSlotPtr slot_, disconnect_slot_;
    SdEventSourcePtr retry_;
    bool warned_ = false;
    SdBusTrackPtr subscribers_;
};

} // namespace fqdnd
