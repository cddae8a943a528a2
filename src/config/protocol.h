// What a listener speaks. One row per protocol: its name in the config, whether TLS starts
// with the first byte, its standard port, whether it takes loopback clients only unless
// allow_from says otherwise, and the family of sessions that serve it. The worker adds the start function for each (worker/worker.cc); nothing else
// compares protocol names.
#ifndef SWITCHYARD_CONFIG_PROTOCOL_H
#define SWITCHYARD_CONFIG_PROTOCOL_H

#include <cstdint>
#include <optional>
#include <string_view>

namespace sy {

enum class Protocol : std::uint8_t { Imap, Imaps, Pop3, Pop3s, Lmtp, Socketmap, Metrics };
constexpr std::size_t kProtocolCount = 7;

// The session family: what serves the connection and which map question it asks.
enum class Family : std::uint8_t { Imap, Pop3, Lmtp, Socketmap, Metrics };

struct ProtocolInfo {
  Protocol protocol;
  const char* name;            // in [[listen]] protocol = "..."
  Family family;
  const char* family_name;     // "imap", "pop3", ...: logs, lookups, switchyardctl who
  bool implicit_tls;           // TLS from the first byte (imaps, pop3s)
  std::uint16_t default_port;  // the standard port (a store named by a bare host: 143, 110, 24)
  bool loopback_only;          // allow_from defaults to loopback (Postfix-facing services)
};

const ProtocolInfo& protocol_info(Protocol p);
std::optional<Protocol> protocol_named(std::string_view name);
const char* protocol_name(Protocol p);
const char* family_name(Family f);

}  // namespace sy

#endif
