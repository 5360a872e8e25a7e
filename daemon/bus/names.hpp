#pragma once

// The D-Bus interface of fqdnd, shared by the daemon and fqdnctl; documented
// in org.fqdnd1(5).
namespace fqdnd::bus {

inline constexpr char service[] = "org.fqdnd1";
inline constexpr char object_path[] = "/org/fqdnd1";
inline constexpr char manager_interface[] = "org.fqdnd1.Manager";
inline constexpr char error_prefix[] = "org.fqdnd1.Error.";

} // namespace fqdnd::bus
