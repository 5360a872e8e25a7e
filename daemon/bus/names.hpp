#pragma once

// The D-Bus interface of fqdnd, shared by the daemon and fqdnctl; documented
// in org.fqdnd1(5). Both sides take names and signatures from here, so that
// they cannot drift apart.
namespace fqdnd::bus {

inline constexpr char service[] = "org.fqdnd1";
inline constexpr char object_path[] = "/org/fqdnd1";
inline constexpr char manager_interface[] = "org.fqdnd1.Manager";
inline constexpr char error_access_denied[] = "org.fqdnd1.Error.AccessDenied";
inline constexpr char error_invalid_argument[] = "org.fqdnd1.Error.InvalidArgument";

namespace signature {

// Status: version, table, queue mode, policies, names, addresses,
// connection addresses, live flows, FQDN selectors, queue drops (full,
// undelivered).
inline constexpr char status[] = "sssuttttttt";
// ListCache: per endpoint, source, name and expiry: ttl, lookup and
// expiry (ms since the epoch), addresses.
inline constexpr char cache_entries[] = "a(sssuttas)";
inline constexpr char cache_entry[] = "(sssuttas)";
inline constexpr char cache_entry_fields[] = "sssuttas";
inline constexpr char cache_entry_head[] = "sssutt";
// ListSelectors: selector, set4, set6, policies, names.
inline constexpr char selectors[] = "a(sssasas)";
inline constexpr char selector[] = "(sssasas)";
inline constexpr char selector_fields[] = "sssasas";
inline constexpr char selector_head[] = "sss";
// ListPolicies: name, audit, file, rules.
inline constexpr char policies[] = "a(sbsu)";
inline constexpr char policy[] = "(sbsu)";
// Metrics: name, labels, value.
inline constexpr char metrics[] = "a(ssd)";
inline constexpr char metric[] = "(ssd)";
// Explain: is-address, subject, allowed, the mappings behind it (name,
// endpoint, source, selector, set, until, policies), and three lists.
inline constexpr char explanation[] = "bsba(ssssstas)asasas";
inline constexpr char explanation_head[] = "bsb";
inline constexpr char explained_mapping[] = "(ssssstas)";
inline constexpr char explained_mapping_fields[] = "ssssstas";
inline constexpr char explained_mapping_head[] = "ssssst";
// The signals.
inline constexpr char dns_event[] = "tssssqyasasuast";
inline constexpr char drop[] = "tssssssqsas";

} // namespace signature

} // namespace fqdnd::bus
