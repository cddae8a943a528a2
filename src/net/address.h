// Sockets as the daemon meets them: the blocking listener set-up the master does before
// forking, and the two ends of a connection as the logs and the stores see them. (The
// address syntax itself, and address blocks, are config/address.h.)
#ifndef SWITCHYARD_NET_ADDRESS_H
#define SWITCHYARD_NET_ADDRESS_H

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/address.h"

namespace sy {

// How a TCP listener shares its port. A group (SO_REUSEPORT) is one listening socket per
// worker: the kernel spreads new connections over them, so a connection wakes only the
// worker that will serve it. The first socket of a group is bound only after a plain bind
// of the port has succeeded, so that a port some other process holds (a second daemon
// started by mistake) still fails with "Address already in use" instead of being shared.
enum class PortSharing { None, FirstOfGroup, JoinGroup };

// Creates, binds and listens (non-blocking, close-on-exec, SO_REUSEADDR; a stale Unix
// socket file is replaced; `sharing` applies to TCP only). Returns the fd, or -1 with
// *error.
int bind_listener(const SocketAddress& a, std::string* error,
                  PortSharing sharing = PortSharing::None);

// One end of a connection as the logs and the stores see it.
struct Endpoint {
  std::string ip;          // "192.0.2.1", "2001:db8::1"; "" for a Unix socket
  std::uint16_t port = 0;
  bool loopback = false;   // 127/8, ::1, v4-mapped loopback, or our own Unix socket
  std::string str() const;  // "192.0.2.1:143", "[2001:db8::1]:143", "unix"
};
Endpoint endpoint_of(const sockaddr* sa);
Endpoint peer_endpoint(int fd);
Endpoint local_endpoint(int fd);

// "1.2.3.4:5678", "[::1]:143", "unix" for a peer/sockname.
std::string format_sockaddr(const sockaddr* sa, socklen_t len);
std::string peer_name(int fd);
bool is_loopback(const sockaddr* sa);

}  // namespace sy

#endif
