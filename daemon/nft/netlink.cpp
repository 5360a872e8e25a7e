#include "nft/netlink.hpp"

#include <algorithm>

#include <libnftnl/common.h>
#include <linux/netfilter/nfnetlink.h>

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/time.h>

namespace fqdnd::nft {

namespace {

// Large enough for an error with its echoed request and extended ack.
constexpr size_t receive_buffer = 1 << 16;

} // namespace

void RawBuffer::grow(size_t n, size_t keep)
{
    if (n <= size_)
        return;
    std::unique_ptr<char[]> bigger(new char[n]);
    if (keep)
        std::memcpy(bigger.get(), data_.get(), std::min(keep, size_));
    data_ = std::move(bigger);
    size_ = n;
}

namespace {

// Forces the socket's buffer `option` to at least `bytes`; `given` is what
// it was given before (a system call only when more is wanted).
void ensure_buffer(int fd, int option, size_t& given, size_t bytes) noexcept
{
    if (bytes <= given)
        return;
    const int n = static_cast<int>(std::min<size_t>(bytes, size_t{1} << 30));
    if (setsockopt(fd, SOL_SOCKET, option, &n, sizeof(n)) == 0)
        given = bytes;
}

} // namespace

void Netlink::ensure_send_buffer(size_t bytes) noexcept
{
    ensure_buffer(fd(), SO_SNDBUFFORCE, send_buffer_, bytes);
}

void Netlink::ensure_receive_buffer(size_t bytes) noexcept
{
    ensure_buffer(fd(), SO_RCVBUFFORCE, receive_buffer_, bytes);
}

std::vector<char> Netlink::take_batch_buffer(size_t size)
{
    if (spare_batch_.size() >= size)
        return std::move(spare_batch_);
    return std::vector<char>(size);
}

void Netlink::give_back_batch_buffer(std::vector<char> buf) noexcept
{
    if (buf.size() >= spare_batch_.size())
        spare_batch_ = std::move(buf);
}

int Netlink::open(unsigned groups) noexcept
{
    MnlSocketPtr s(mnl_socket_open(NETLINK_NETFILTER));
    if (!s)
        return -errno;
    if (mnl_socket_bind(s.get(), groups, MNL_SOCKET_AUTOPID) < 0)
        return -errno;
    // Acks of a large batch, or a burst of events, must not overrun.
    int size = 4 << 20;
    receive_buffer_ = setsockopt(mnl_socket_get_fd(s.get()), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) == 0
        ? static_cast<size_t>(size)
        : 0;
    send_buffer_ = 0;
    replies_ = RawBuffer(receive_buffer);
    // Replies to requests must not hang the caller forever.
    if (groups == 0) {
        timeval tv{5, 0};
        setsockopt(mnl_socket_get_fd(s.get()), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    portid_ = mnl_socket_get_portid(s.get());
    sock_ = std::move(s);
    return 0;
}

int Netlink::dump(const nlmsghdr* request, const std::function<void(const nlmsghdr*)>& each) noexcept
{
    if (mnl_socket_sendto(sock_.get(), request, request->nlmsg_len) < 0)
        return -errno;
    RawBuffer& buf = replies_;
    while (true) {
        const ssize_t n = mnl_socket_recvfrom(sock_.get(), buf.data(), buf.size());
        if (n < 0)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        size_t len = static_cast<size_t>(n);
        for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, static_cast<int>(len));
             nlh = mnl_nlmsg_next(nlh, reinterpret_cast<int*>(&len))) {
            if (nlh->nlmsg_seq != request->nlmsg_seq)
                continue;
            if (nlh->nlmsg_type == NLMSG_DONE)
                return 0;
            if (nlh->nlmsg_type == NLMSG_ERROR) {
                // An error, or the ack that ends a request that is not a dump.
                const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
                if (err->error != 0 || !(request->nlmsg_flags & NLM_F_DUMP))
                    return err->error;
                continue;
            }
            each(nlh);
        }
    }
}

// Room for the batch begin and one message of add()'s default size. Set
// updates come every round of the DNS path: the buffer is the socket's, and
// only what a batch wrote is zeroed again, not all of it.
Batch::Batch(Netlink& nl) : nl_(nl), buf_(nl.take_batch_buffer((1 << 17) + 256)), first_seq_(nl.next_seq())
{
    nftnl_batch_begin(buf_.data(), first_seq_);
    size_ = NLMSG_ALIGN(reinterpret_cast<nlmsghdr*>(buf_.data())->nlmsg_len);
}

Batch::~Batch()
{
    // What was written: the messages committed, and the one built or the
    // batch end at size_ (its own length says how far it went).
    size_t written = size_;
    if (size_ + sizeof(nlmsghdr) <= buf_.size())
        written += NLMSG_ALIGN(reinterpret_cast<const nlmsghdr*>(buf_.data() + size_)->nlmsg_len);
    std::memset(buf_.data(), 0, std::min(written, buf_.size()));
    nl_.give_back_batch_buffer(std::move(buf_));
}

nlmsghdr* Batch::add(uint16_t type, uint16_t family, uint16_t flags, std::string what, size_t max)
{
    if (buf_.size() < size_ + max + 64)
        buf_.resize(std::max(buf_.size() * 2, size_ + max + 64));
    what_.push_back(std::move(what));
    const uint32_t seq = nl_.next_seq();
    return nftnl_nlmsg_build_hdr(buf_.data() + size_, type, family, flags | NLM_F_ACK, seq);
}

void Batch::commit(nlmsghdr* nlh)
{
    size_ += NLMSG_ALIGN(nlh->nlmsg_len);
}

std::string Batch::Error::to_string() const
{
    return what + ": " + std::strerror(-error);
}

int Batch::send(std::vector<Error>* errors) noexcept
{
    const uint32_t end_seq = nl_.next_seq();
    if (buf_.size() < size_ + 64)
        buf_.resize(size_ + 64);
    nftnl_batch_end(buf_.data() + size_, end_seq);
    const size_t total = size_ + NLMSG_ALIGN(reinterpret_cast<nlmsghdr*>(buf_.data() + size_)->nlmsg_len);

    // The kernel takes a batch only whole: the socket's send buffer must hold it.
    nl_.ensure_send_buffer(std::max<size_t>(total * 2, 1 << 20));
    // And the receive buffer every ack at once: the kernel sends them all
    // before we read one, and an ack lost to ENOBUFS leaves the batch's fate
    // unknown (it may well have been applied). About 1 KiB each, truesize.
    nl_.ensure_receive_buffer(std::min<size_t>(what_.size() * 1024 + (1 << 20), size_t{256} << 20));
    if (mnl_socket_sendto(nl_.get(), buf_.data(), total) < 0)
        return -errno;

    // One ack per message (all carry NLM_F_ACK), errors included.
    int first_error = 0;
    size_t acks = 0;
    RawBuffer& rbuf = nl_.replies();
    while (acks < what_.size()) {
        const ssize_t n = mnl_socket_recvfrom(nl_.get(), rbuf.data(), rbuf.size());
        if (n < 0) {
            const int e = errno == EAGAIN ? -ETIMEDOUT : -errno;
            return first_error ? first_error : e;
        }
        int len = static_cast<int>(n);
        for (auto* nlh = reinterpret_cast<const nlmsghdr*>(rbuf.data()); mnl_nlmsg_ok(nlh, len);
             nlh = mnl_nlmsg_next(nlh, &len)) {
            if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_seq <= first_seq_ || nlh->nlmsg_seq >= end_seq)
                continue;
            ++acks;
            const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
            if (err->error == 0)
                continue;
            if (!first_error)
                first_error = err->error;
            if (errors)
                errors->push_back(Error{err->error, what_[nlh->nlmsg_seq - first_seq_ - 1]});
        }
    }
    return first_error;
}

} // namespace fqdnd::nft
