// Parsing of a map's answer string, Perdition's "[user<delim>]host[:port]".
//
// Pure functions: no I/O, no logging. The value is not necessarily NUL-terminated
// (modules hand back a pointer and a length), so everything takes a string_view.
#ifndef SWITCHYARD_MAP_ANSWER_H
#define SWITCHYARD_MAP_ANSWER_H

#include <optional>
#include <string>
#include <string_view>

namespace sy {

// One parsed answer. Empty strings mean "absent".
struct MapAnswer {
  std::string user;  // rewritten login for the store, split at the LAST delimiter
  std::string host;  // host name, address (IPv6 without brackets) or a [backend.NAME]
  std::string port;  // digits or a service name, after the LAST ':' (see brackets rule)
  bool operator==(const MapAnswer&) const = default;
};

// Parses `value`:
//  - the port follows the last ':', except that a "[v6-literal]" host keeps its colons
//    and has a port only when ']' is directly followed by ':';
//  - user and host split at the last occurrence of `delimiter` (may be several chars);
//    "a@b@host:143" is user "a@b", host "host", port "143";
//  - brackets are removed from an IPv6 host.
// Returns nullopt when there is no host, or the value is malformed ("[::1", "[::1]x",
// "host:", embedded NUL/CR/LF, surrounding whitespace is trimmed first).
[[nodiscard]] std::optional<MapAnswer> parse_map_answer(std::string_view value,
                                                        std::string_view delimiter = "@");

// The inverse, for display: "user@host:port" with brackets around an IPv6 host.
std::string format_map_answer(const MapAnswer& a, std::string_view delimiter = "@");

}  // namespace sy

#endif
