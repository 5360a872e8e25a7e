#include "state/reconcile.hpp"

#include "log.hpp"
#include "nft/table.hpp"
#include "ruleset/compile.hpp"

#include <chrono>
#include <set>
#include <utility>

namespace fqdnd::state {

Unexplained unexplained(const std::vector<cache::ElementOp>& want, const std::vector<SetElement>& listed)
{
    std::set<std::pair<uint64_t, Address>> explained;
    for (const auto& op : want)
        explained.emplace(op.tag, op.address);
    Unexplained out;
    for (size_t i = 0; i < listed.size(); ++i) {
        const uint64_t tag = listed[i].tag.value_or(0);
        if (explained.contains({tag, listed[i].address}))
            continue;
        out.listed.push_back(i);
        out.by_tag[tag].push_back(listed[i].address);
    }
    return out;
}

std::string describe_unexplained(const Address& address, const std::string& set, const std::string* selector,
                                 Duration left, const std::vector<std::string>& names)
{
    std::string known;
    for (const auto& n : names)
        known += (known.empty() ? "" : ", ") + n;
    return "removing " + address.to_string() + " from set " + set + " (selector "
        + (selector ? *selector : "of no running policy") + ", "
        + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(left).count()) + " s left in the kernel"
        + (known.empty() ? ", no name in the cache" : ", the cache knows it as " + known)
        + "): the state does not explain it";
}

size_t reconcile_sets(nft::Table& kernel, const std::string& table, const std::vector<FqdnSelector>& selectors,
                      const cache::Cache& cache, cache::Time now, bool& complete)
{
    complete = true;
    std::vector<cache::ElementOp> want;
    cache.resync(now, want);
    std::map<uint64_t, std::string> selector_of;
    for (const FqdnSelector& s : selectors)
        selector_of.emplace(ruleset::selector_tag(s), s.to_string());
    size_t removed = 0, logged = 0;
    for (const Family f : {Family::ipv4, Family::ipv6}) {
        const std::string set = ruleset::fqdn_set(f);
        std::vector<nft::Table::ListedElement> listed;
        // A listing some transaction changed meanwhile may miss elements,
        // but what it shows is there: removed all the same, and checked again.
        if (int r = kernel.list_elements_stable(table, set, listed); r == -EAGAIN) {
            complete = false;
        } else if (r < 0) {
            log::warning("cannot list the set " + set + " to check it against the cache: " + errno_text(r));
            complete = false;
            continue;
        }
        std::vector<SetElement> elements;
        for (const auto& e : listed)
            elements.push_back({e.tag, e.address});
        const Unexplained extra = unexplained(want, elements);
        for (const size_t i : extra.listed) {
            if (++logged > 20)
                break; // the count says the rest
            const auto& e = listed[i];
            const auto sel = selector_of.find(e.tag.value_or(0));
            log::warning(describe_unexplained(e.address, set, sel != selector_of.end() ? &sel->second : nullptr,
                                              e.expires, cache.names_of(e.address, 4)));
        }
        for (const auto& [tag, addresses] : extra.by_tag) {
            std::string problem;
            removed += kernel.delete_each(table, set, tag, addresses, &problem);
            // What a listing hid (one taken while elements go is not sure
            // to show all): a check after removals finds it.
            complete = false;
            if (!problem.empty()) {
                log::warning("cannot remove unexplained elements from " + set + ": " + problem);
                complete = false;
            }
        }
    }
    return removed;
}

} // namespace fqdnd::state
