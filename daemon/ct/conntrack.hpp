#pragma once

#include "config/address.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

struct nfct_handle;

// Conntrack through libnetfilter_conntrack: NEW, UPDATE and DESTROY events of the
// flows fqdnd's rules marked (the kernel filters them by mark), and dumps of
// those flows. Overruns are expected under load: the receive buffer grows,
// the caller resyncs with a dump, the overrun is counted (as conntrackd does).
namespace fqdnd::ct {

struct Flow {
    uint32_t id = 0;  // conntrack's id of the entry
    Address src, dst; // original direction
    bool alive = true; // false: destroyed, or a TCP flow that is closing
};

struct NfctClose {
    void operator()(nfct_handle* h) const noexcept;
};
using NfctPtr = std::unique_ptr<nfct_handle, NfctClose>;

class Conntrack {
public:
    // Events of flows whose mark has `mark_bits`; `buffer` is the receive
    // buffer to start with (it grows on overruns up to `max_buffer`).
    int open(uint32_t mark_bits, int buffer = 1 << 20, int max_buffer = 64 << 20) noexcept;
    int fd() const noexcept;

    // Reads every event waiting. Returns true when events were lost (the
    // caller must resync with dump()).
    bool receive(const std::function<void(const Flow&)>& on) noexcept;

    // Every live flow with the mark, now. Returns 0 or a negative errno.
    int dump(std::vector<Flow>& out) noexcept;

    uint64_t overruns() const noexcept { return overruns_; }
    int buffer() const noexcept { return buffer_; }

private:
    NfctPtr events_;
    uint32_t mark_ = 0;
    int buffer_ = 0, max_buffer_ = 0;
    uint64_t overruns_ = 0;
};

} // namespace fqdnd::ct
