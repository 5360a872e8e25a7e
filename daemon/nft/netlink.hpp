#pragma once

#include <libmnl/libmnl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct nlmsghdr;

namespace fqdnd::nft {

struct MnlSocketClose {
    void operator()(mnl_socket* s) const noexcept { mnl_socket_close(s); }
};
using MnlSocketPtr = std::unique_ptr<mnl_socket, MnlSocketClose>;

// Bytes the kernel writes before they are read (replies): allocated, never
// zeroed. Never for what is sent: libmnl leaves attribute padding unwritten.
class RawBuffer {
public:
    explicit RawBuffer(size_t n = 0) : data_(n ? new char[n] : nullptr), size_(n) {}
    char* data() noexcept { return data_.get(); }
    const char* data() const noexcept { return data_.get(); }
    size_t size() const noexcept { return size_; }
    // At least `n` bytes, the first `keep` kept.
    void grow(size_t n, size_t keep);

private:
    std::unique_ptr<char[]> data_;
    size_t size_;
};

// A netfilter netlink socket (NETLINK_NETFILTER), optionally joined to
// multicast groups (a bitmask, as mnl_socket_bind takes it).
class Netlink {
public:
    // Returns 0 or a negative errno.
    int open(unsigned groups = 0) noexcept;

    bool is_open() const noexcept { return sock_ != nullptr; }
    mnl_socket* get() const noexcept { return sock_.get(); }
    int fd() const noexcept { return mnl_socket_get_fd(sock_.get()); }
    uint32_t portid() const noexcept { return portid_; }
    uint32_t next_seq() noexcept { return seq_++; }

    // Sends one request and calls `each` for every reply message, until the
    // dump's end (NLM_F_DUMP) or the ack (any other request must carry
    // NLM_F_ACK). Returns 0 or a negative errno (ENOENT: no such table or set).
    int dump(const nlmsghdr* request, const std::function<void(const nlmsghdr*)>& each) noexcept;

    // The socket's buffers forced to at least `bytes`: a system call only
    // when more than the socket was given before.
    void ensure_send_buffer(size_t bytes) noexcept;
    void ensure_receive_buffer(size_t bytes) noexcept;
    // Where replies are read into, kept for the socket's life.
    RawBuffer& replies() noexcept { return replies_; }

    // A zeroed buffer for a batch: the last one given back (its written
    // bytes zeroed again), or a new one of `size` bytes.
    std::vector<char> take_batch_buffer(size_t size);
    void give_back_batch_buffer(std::vector<char> buf) noexcept;

private:
    MnlSocketPtr sock_;
    size_t send_buffer_ = 0, receive_buffer_ = 0;
    RawBuffer replies_;
    std::vector<char> spare_batch_;
    uint32_t portid_ = 0;
    uint32_t seq_ = 1;
};

// One nf_tables transaction: every message is applied, or none. Each message
// names the object it changes, so that an error says which one failed.
class Batch {
public:
    explicit Batch(Netlink& nl);
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    // Room for a message of at most `max` bytes; returns its header, filled
    // in for `type` (NFT_MSG_*), with NLM_F_ACK added to `flags`.
    nlmsghdr* add(uint16_t type, uint16_t family, uint16_t flags, std::string what, size_t max = 65536);
    // Closes the message begun by add(), once its payload is built.
    void commit(nlmsghdr* nlh);

    size_t messages() const noexcept { return what_.size(); }
    size_t bytes() const noexcept { return size_; }
    // The messages so far, the batch-begin one first: what send() sends
    // but the batch end, for tests to read back.
    std::string_view data() const noexcept { return {buf_.data(), size_}; }

    struct Error {
        int error; // negative errno
        std::string what;
        std::string to_string() const;
    };
    // Sends the batch and reads every acknowledgement. Returns 0, or the
    // first error; `errors` gets all of them.
    int send(std::vector<Error>* errors = nullptr) noexcept;

private:
    Netlink& nl_;
    std::vector<char> buf_; // zeroed beyond what was written
    size_t size_ = 0;
    uint32_t first_seq_;
    std::vector<std::string> what_; // by seq - first_seq_ - 1
};

} // namespace fqdnd::nft
