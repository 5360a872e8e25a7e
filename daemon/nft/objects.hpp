#pragma once

#include <libnftnl/chain.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include <memory>

// Owning pointers for libnftnl's objects: each freed by its own function.
namespace fqdnd::nft {

template <auto Free>
struct NftnlFree {
    template <typename T>
    void operator()(T* p) const noexcept
    {
        Free(p);
    }
};

using TablePtr = std::unique_ptr<nftnl_table, NftnlFree<nftnl_table_free>>;
using ChainPtr = std::unique_ptr<nftnl_chain, NftnlFree<nftnl_chain_free>>;
using RulePtr = std::unique_ptr<nftnl_rule, NftnlFree<nftnl_rule_free>>;
using SetPtr = std::unique_ptr<nftnl_set, NftnlFree<nftnl_set_free>>;
using ObjPtr = std::unique_ptr<nftnl_obj, NftnlFree<nftnl_obj_free>>;

} // namespace fqdnd::nft
