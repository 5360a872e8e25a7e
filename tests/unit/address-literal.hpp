#pragma once

#include "config/address.hpp"

// An address the test writes out: ip("203.0.113.2").
inline fqdnd::Address ip(const char* s)
{
    return *fqdnd::Address::parse(s);
}
