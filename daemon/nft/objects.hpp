#pragma once

#include <libnftnl/chain.h>
#include <libnftnl/gen.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include "deleter.hpp"

#include <memory>

// Owning pointers for libnftnl's objects: each freed by its own function.
namespace fqdnd::nft {

using TablePtr = std::unique_ptr<nftnl_table, FreeWith<nftnl_table_free>>;
using ChainPtr = std::unique_ptr<nftnl_chain, FreeWith<nftnl_chain_free>>;
using RulePtr = std::unique_ptr<nftnl_rule, FreeWith<nftnl_rule_free>>;
using SetPtr = std::unique_ptr<nftnl_set, FreeWith<nftnl_set_free>>;
using ObjPtr = std::unique_ptr<nftnl_obj, FreeWith<nftnl_obj_free>>;
using GenPtr = std::unique_ptr<nftnl_gen, FreeWith<nftnl_gen_free>>;

} // namespace fqdnd::nft
