#include "ct/conntrack.hpp"

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>

#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>

namespace fqdnd::ct {

void NfctClose::operator()(nfct_handle* h) const noexcept
{
    nfct_close(h);
}

namespace {

struct Callback {
    const std::function<void(const Flow&)>* on = nullptr;
    std::vector<Flow>* dump = nullptr;
};

// A TCP flow past its FIN or RST is over for fqdnd, though conntrack keeps
// the entry for its close timeouts (TIME_WAIT: two minutes).
bool closing(const nf_conntrack* ct)
{
    if (nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO) != IPPROTO_TCP || !nfct_attr_is_set(ct, ATTR_TCP_STATE))
        return false;
    switch (nfct_get_attr_u8(ct, ATTR_TCP_STATE)) {
    case TCP_CONNTRACK_FIN_WAIT:
    case TCP_CONNTRACK_CLOSE_WAIT:
    case TCP_CONNTRACK_LAST_ACK:
    case TCP_CONNTRACK_TIME_WAIT:
    case TCP_CONNTRACK_CLOSE:
        return true;
    default:
        return false;
    }
}

bool flow_of(const nf_conntrack* ct, Flow& f)
{
    const uint8_t l3 = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
    if (l3 == AF_INET) {
        const uint32_t src = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC), dst = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST);
        f.src = Address::v4(reinterpret_cast<const uint8_t*>(&src));
        f.dst = Address::v4(reinterpret_cast<const uint8_t*>(&dst));
        return true;
    }
    if (l3 == AF_INET6) {
        const auto* src = static_cast<const uint8_t*>(nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC));
        const auto* dst = static_cast<const uint8_t*>(nfct_get_attr(ct, ATTR_ORIG_IPV6_DST));
        if (!src || !dst)
            return false;
        f.src = Address::v6(src);
        f.dst = Address::v6(dst);
        return true;
    }
    return false;
}

int on_conntrack(enum nf_conntrack_msg_type type, struct nf_conntrack* ct, void* data)
{
    auto* cb = static_cast<Callback*>(data);
    Flow f;
    if (!flow_of(ct, f))
        return NFCT_CB_CONTINUE;
    f.id = nfct_get_attr_u32(ct, ATTR_ID);
    f.alive = type != NFCT_T_DESTROY && !closing(ct);
    if (cb->dump) {
        if (f.alive)
            cb->dump->push_back(f);
    } else if (cb->on) {
        (*cb->on)(f);
    }
    return NFCT_CB_CONTINUE;
}

} // namespace

int Conntrack::open(uint32_t mark_bits, int buffer, int max_buffer) noexcept
{
    mark_ = mark_bits;
    max_buffer_ = max_buffer;
    events_.reset(
        nfct_open(CONNTRACK, NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY));
    if (!events_)
        return -errno;
    // Only flows fqdnd's rules marked reach us: filtered in the kernel.
    nfct_filter* filter = nfct_filter_create();
    if (!filter)
        return -ENOMEM;
    const nfct_filter_dump_mark mark{mark_bits, mark_bits};
    nfct_filter_add_attr(filter, NFCT_FILTER_MARK, &mark);
    const int r = nfct_filter_attach(nfct_fd(events_.get()), filter);
    nfct_filter_destroy(filter);
    if (r < 0)
        return -errno;
    buffer_ = buffer;
    setsockopt(nfct_fd(events_.get()), SOL_SOCKET, SO_RCVBUFFORCE, &buffer_, sizeof(buffer_));
    fcntl(nfct_fd(events_.get()), F_SETFL, fcntl(nfct_fd(events_.get()), F_GETFL) | O_NONBLOCK);
    return 0;
}

int Conntrack::fd() const noexcept
{
    return nfct_fd(events_.get());
}

bool Conntrack::receive(const std::function<void(const Flow&)>& on) noexcept
{
    Callback cb{&on, nullptr};
    nfct_callback_register(events_.get(), NFCT_T_ALL, on_conntrack, &cb);
    bool lost = false;
    while (true) {
        const int r = nfct_catch(events_.get());
        if (r >= 0)
            continue;
        if (errno == ENOBUFS) {
            // Events were dropped: grow the buffer (up to the cap) and
            // have the caller resync.
            ++overruns_;
            lost = true;
            if (buffer_ < max_buffer_) {
                buffer_ = std::min(buffer_ * 2, max_buffer_);
                setsockopt(fd(), SOL_SOCKET, SO_RCVBUFFORCE, &buffer_, sizeof(buffer_));
            }
            continue;
        }
        break; // EAGAIN: drained
    }
    nfct_callback_unregister(events_.get());
    return lost;
}

int Conntrack::dump(std::vector<Flow>& out) noexcept
{
    NfctPtr h(nfct_open(CONNTRACK, 0));
    if (!h)
        return -errno;
    Callback cb{nullptr, &out};
    nfct_callback_register(h.get(), NFCT_T_ALL, on_conntrack, &cb);
    nfct_filter_dump* filter = nfct_filter_dump_create();
    if (!filter)
        return -ENOMEM;
    const nfct_filter_dump_mark mark{mark_, mark_};
    nfct_filter_dump_set_attr(filter, NFCT_FILTER_DUMP_MARK, &mark);
    const int r = nfct_query(h.get(), NFCT_Q_DUMP_FILTER, filter);
    nfct_filter_dump_destroy(filter);
    return r < 0 ? -errno : 0;
}

} // namespace fqdnd::ct
