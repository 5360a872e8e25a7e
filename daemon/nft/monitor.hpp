#pragma once

#include "nft/netlink.hpp"
#include "nft/table.hpp"

#include <cstdint>
#include <string>
#include <vector>

struct nlmsghdr;

// nf_tables events (the NFNLGRP_NFTABLES group), as `nft monitor` reads
// them: fqdnd watches who changes its table.
namespace fqdnd::nft {

// The table an nf_tables event is about, or "" when it cannot tell (set
// elements and generation ids are about no table here).
std::string event_table(const nlmsghdr* nlh);

class Monitor {
public:
    // Joins the group with a receive buffer of `buffer` bytes (beyond
    // rmem_max where CAP_NET_ADMIN allows). 0 or a negative errno.
    int open(int buffer);
    int fd() const noexcept { return nl_.fd(); }
    // The transactions of these ports (fqdnd's own sockets) are dropped in
    // the kernel, before they wake the socket. 0 or a negative errno.
    int ignore(const std::vector<uint32_t>& portids);

    // A set element another port added or deleted in the table.
    struct ElementChange {
        bool added; // else deleted
        std::string set;
        Table::ListedElement element;
    };
    struct Seen {
        bool changed = false; // an event about the table, not its elements, that another port made
        bool lost = false;    // events were lost (ENOBUFS): anything may have changed
        std::vector<ElementChange> elements;
        bool elements_dropped = false; // more element changes came than `max_elements`
        bool retry = false; // the table could not be put back last time: put it back (Keeper)
    };
    // Reads every event waiting, adding to `seen`. Events of `own_portid`
    // (fqdnd's own batches, which come back too) do not count; of element
    // changes at most `max_elements` are kept in all. True when any event
    // counted.
    bool read(const std::string& table, uint32_t own_portid, size_t max_elements, Seen& seen);

private:
    Netlink nl_;
    std::vector<uint32_t> ignored_;
};

} // namespace fqdnd::nft
