#pragma once

#include "cache/cache.hpp"
#include "config/address.hpp"
#include "config/duration.hpp"
#include "nft/encode.hpp"
#include "nft/netlink.hpp"
#include "ruleset/model.hpp"

#include <linux/netfilter/nf_tables.h>
#include <optional>
#include <string>
#include <vector>

namespace fqdnd::nft {

// How a set element's timeout is renewed: re-adding it (kernels from 6.12
// update the timeout), or deleting and adding it in one batch (older ones
// answer success to a re-add and change nothing).
enum class Refresh : uint8_t { readd, delete_add };
std::string_view to_string(Refresh r) noexcept;

// What kernels differ in that fqdnd's table uses.
struct Features {
    QueueMode queue_mode = QueueMode::native;
    Refresh refresh = Refresh::readd;
    // Kernels from 6.3 delete set elements idempotently (NFT_MSG_DESTROYSETELEM):
    // one that is gone already does not fail the batch.
    bool destroy_elements = false;
};
// "NFQUEUE: native nft queue expression; set element refresh: re-add"
std::string describe(const Features& f);

struct Element {
    Address address;
    Duration timeout;
    bool exists = false; // already in the set (delete_add must delete it)
};

// fqdnd's table in the kernel: built and replaced in one transaction,
// adopted (set elements kept) when it is already there, removed only on
// request. Errors are negative errnos; `problem` says what failed.
class Table {
public:
    explicit Table(Netlink& nl) : nl_(nl) {}

    // Which NFQUEUE statement this kernel takes, and how element timeouts
    // are renewed; both tried in the table itself, leaving nothing behind.
    int probe_queue(const std::string& table, QueueMode& mode, std::string* problem);
    int probe_refresh(const std::string& table, Refresh& refresh, std::string* problem);
    // Whether the kernel takes NFT_MSG_DESTROYSETELEM; delete_each uses it from then on.
    bool probe_destroy(const std::string& table);
    // The same; 0 when the probe could run, else why not in `problem`.
    int probe_destroy(const std::string& table, std::string* problem);
    // What probe_destroy found with another Table on the same kernel.
    void assume_destroy(bool works) noexcept { destroy_ = works; }
    // Both, each as given (from the command line) or else probed; `problem`
    // then says which could not be told, and why.
    int probe(const std::string& table, std::optional<QueueMode> queue_mode, std::optional<Refresh> refresh,
              Features& out, std::string* problem);

    // Replaces the whole table with `rs` in one batch: the sets of FQDN
    // selectors that still exist keep their elements; sets of selectors that
    // are gone, and chains no longer wanted, are deleted. Rules that select
    // a unit's processes compare its cgroup in `units` (encode_rule).
    // `replaces`: another table of fqdnd's (a reload renamed it), deleted
    // in the same batch when it is there, so that packets meet one table.
    int apply(const ruleset::Ruleset& rs, QueueMode mode, const cgroup::UnitCgroups& units, std::string* problem,
              const std::string* replaces = nullptr);

    // Deletes the table. Returns 0 also when it was not there.
    int remove(const std::string& table, std::string* problem);

    bool exists(const std::string& table);
    // The netlink port of the process that holds `table` with `flags
    // owner` (the kernel refuses any other's changes to it, and deletes it
    // when that socket closes), in `portid`; 0 when the table is not there
    // or nobody owns it.
    int owner(const std::string& table, uint32_t& portid);

    // Whether the kernel's table is the one `rs` describes, as far as a
    // listing tells cheaply: the same chains (hooks, priorities), named
    // sets and limits, and as many rules in each chain. Used when change
    // events were lost, to tell our own large batches from someone else's.
    bool matches(const ruleset::Ruleset& rs);

    // Adds (or renews) elements of one set in one batch; in a tagged set
    // (ruleset::AddressSet), the elements of one selector's tag.
    int add_elements(const std::string& table, const std::string& set, std::optional<uint64_t> tag,
                     const std::vector<Element>& elements, Refresh refresh, std::string* problem);
    // `type`: NFT_MSG_DELSETELEM, or NFT_MSG_DESTROYSETELEM (delete_each).
    int delete_elements(const std::string& table, const std::string& set, std::optional<uint64_t> tag,
                        const std::vector<Address>& addresses, std::string* problem,
                        uint16_t type = NFT_MSG_DELSETELEM);
    // Deletes these where they are. With NFT_MSG_DESTROYSETELEM (see
    // probe_destroy) in one batch. Without it a batch with one that is gone
    // already (its timeout over) fails whole: then again, up to three
    // times, with those a new listing still shows, less those that end
    // within a second by themselves. How many are no longer there; when it
    // could not delete them all, 0 and why, in `problem`.
    size_t delete_each(const std::string& table, const std::string& set, std::optional<uint64_t> tag,
                       const std::vector<Address>& addresses, std::string* problem);

    // The element operations of one DNS answer (or round, or expiry) in
    // one batch, removals idempotent (NFT_MSG_DESTROYSETELEM) so that an
    // element the kernel expired already does not fail the others. Without
    // it (before 6.3) removals go after, with delete_each, and a failure
    // of theirs is -EIO. 0 or the first failure; `problem` says what failed.
    int update(const std::string& table, const std::vector<cache::ElementOp>& ops, Refresh refresh,
               std::string* problem);

    struct ListedElement {
        std::optional<uint64_t> tag; // in a tagged set
        Address address;
        Duration timeout;
        Duration expires;
    };
    int list_elements(const std::string& table, const std::string& set, std::vector<ListedElement>& out);
    // A listing no transaction changed while it was taken (a large set is
    // dumped in parts, and changes between them can hide elements): up to
    // three tries, then -EAGAIN with the last one in `out` (what it shows
    // is there; it may miss some).
    int list_elements_stable(const std::string& table, const std::string& set, std::vector<ListedElement>& out);
    // The ruleset's generation: every committed transaction changes it.
    int generation(uint32_t& out);
    // The elements of one element message (a listing's, or an event's),
    // with the table and set it names. False when it does not parse.
    static bool parse_elements(const nlmsghdr* nlh, std::string& table, std::string& set,
                               std::vector<ListedElement>& out);

private:
    bool destroy_ = false; // NFT_MSG_DESTROYSETELEM works (probe_destroy)
    struct Existing {
        bool table = false;
        struct ChainInfo {
            std::string name;
            bool base;
            uint32_t hook;
            int32_t priority;
        };
        std::vector<ChainInfo> chains;
        std::vector<std::string> sets; // named sets only
        std::vector<ruleset::LimitObject> limits;
    };
    int list(const std::string& table, Existing& out);

    Netlink& nl_;
};

} // namespace fqdnd::nft
