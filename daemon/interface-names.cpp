#include "interface-names.hpp"

#include <net/if.h>

namespace fqdnd {

std::string InterfaceNames::name(uint32_t index)
{
    auto it = names_.find(index);
    if (it != names_.end())
        return it->second;
    char name[IF_NAMESIZE] = {};
    std::string n = if_indextoname(index, name) ? name : "";
    if (names_.size() > max_names)
        names_.clear();
    names_.emplace(index, n);
    return n;
}

} // namespace fqdnd
