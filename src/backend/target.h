// Where a user's store is: the map's answer resolved against the [backend.NAME] sections.
// Pure; shared by the proxies, the LMTP router and switchyard-map.
#ifndef SWITCHYARD_BACKEND_TARGET_H
#define SWITCHYARD_BACKEND_TARGET_H

#include <string>
#include <vector>

#include "config/config.h"
#include "map/answer.h"

namespace sy {

enum class Service { Imap, Pop3, Lmtp };

struct Target {
  std::string backend;             // [backend.NAME], or "" for a host from the map
  std::vector<std::string> hosts;  // in fail-over order
  std::string port;                // digits, a service name, or "unix:/path"
  std::vector<std::string> host_ports;  // per host, overriding `port` where not empty
  Millis connect_timeout{5000};
  Millis login_timeout{15000};  // the whole store login (connect, TLS, greeting, login)
  Millis down_time{10000};
  std::string tls = "none";  // none | starttls | implicit
  bool tls_verify = true;
  bool forward_client_ip = false;
};

// The map's host may name a back end; a port in the answer overrides the back end's for
// IMAP and POP3 (it is a login port: LMTP keeps the back end's lmtp port or 24).
// `more` (from an extended map) adds fail-over hosts after a plain host.
Target resolve_target(const Config& config, const MapAnswer& answer, Service service,
                      const std::vector<MapAnswer>& more = {});

// The port to use for hosts[i].
inline const std::string& port_of(const Target& t, std::size_t i) {
  return i < t.host_ports.size() && !t.host_ports[i].empty() ? t.host_ports[i] : t.port;
}

// "host:port" ("[v6]:port"), or the "unix:/path" itself.
std::string host_port(const std::string& host, const std::string& port);

}  // namespace sy

#endif
