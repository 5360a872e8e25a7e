#pragma once

#include "cache/cache.hpp"
#include "nflog/nflog.hpp"
#include "sd-util.hpp"

#include <systemd/sd-event.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace fqdnd::nflog {

// The NFLOG group of the drop rules (and of what audit policies would
// drop), read on the event loop: each drop of one of fqdnd's rules, with
// the names the cache gives its destination, goes to a handler. A flood to
// one address costs one walk over the cache a second.
class DropLog {
public:
    using NamesOf = std::function<std::vector<std::string>(const Address&)>;
    using Handler = std::function<void(const Drop&, const std::vector<std::string>& names, cache::Time)>;

    DropLog(std::string prefix, NamesOf names_of, std::function<cache::Time()> now, Handler handler)
        : prefix_(std::move(prefix)), names_of_(std::move(names_of)), now_(std::move(now)),
          handler_(std::move(handler))
    {
    }

    // Reads `group` (none: reads nothing). When the group cannot be bound
    // it warns and reads nothing: enforcement does not depend on it.
    void open(sd_event* event, std::optional<uint16_t> group);
    // One logged packet, as the reader hands it over.
    void on_logged(const Logged& l);

    uint64_t packets() const noexcept { return reader_.packets(); }
    uint64_t enobufs() const noexcept { return reader_.enobufs(); }

private:
    static int on_readable(sd_event_source*, int fd, uint32_t revents, void* self);

    std::string prefix_;
    NamesOf names_of_;
    std::function<cache::Time()> now_;
    Handler handler_;
    Reader reader_;
    SdEventSourcePtr source_;
    std::optional<uint16_t> group_;
    Address last_address_;
    std::vector<std::string> last_names_;
    cache::Time last_time_{};
};

} // namespace fqdnd::nflog
