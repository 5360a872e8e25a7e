#pragma once

// A std::unique_ptr deleter that calls a C library's own free function:
// std::unique_ptr<sd_bus, FreeWith<sd_bus_flush_close_unref>>.
namespace fqdnd {

template <auto Free>
struct FreeWith {
    template <typename T>
    void operator()(T* p) const noexcept
    {
        Free(p);
    }
};

} // namespace fqdnd
