#include "nflog/drop-log.hpp"

#include "log.hpp"

#include <sys/epoll.h>

#include <chrono>

namespace fqdnd::nflog {

void DropLog::open(sd_event* event, std::optional<uint16_t> group)
{
    if (group == group_ && (reader_.is_open() || !group))
        return;
    source_.reset();
    reader_.close();
    group_ = group;
    if (!group)
        return;
    if (int r = reader_.open(*group); r < 0) {
        // Only `fqdnctl monitor` and the audit recording lose the drops.
        log::warning("cannot read NFLOG group " + std::to_string(*group) + " (" + errno_text(r) + busy_hint(r)
                     + "): fqdnctl monitor will show no drops");
        return;
    }
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_io(event, &src, reader_.fd(), EPOLLIN, on_readable, this); r < 0) {
        log::warning("cannot watch NFLOG group " + std::to_string(*group) + ": " + errno_text(r));
        reader_.close();
        return;
    }
    source_.reset(src);
}

int DropLog::on_readable(sd_event_source*, int, uint32_t, void* self)
{
    auto* d = static_cast<DropLog*>(self);
    d->reader_.receive([d](const Logged& l) { d->on_logged(l); });
    return 0;
}

void DropLog::on_logged(const Logged& l)
{
    const auto d = attribute(l, prefix_);
    if (!d)
        return;
    const cache::Time t = now_();
    if (!(d->destination == last_address_) || t - last_time_ >= std::chrono::seconds(1)) {
        last_address_ = d->destination;
        last_names_ = names_of_(d->destination);
        last_time_ = t;
    }
    handler_(*d, last_names_, t);
}

} // namespace fqdnd::nflog
