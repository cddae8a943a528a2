// Socket addresses as the config writes them: "127.0.0.1:1143", "[::1]:1143",
// "unix:/path", and the blocking socket set-up the master does before forking.
#ifndef SWITCHYARD_NET_ADDRESS_H
#define SWITCHYARD_NET_ADDRESS_H

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

struct SocketAddress {
  enum class Kind { Tcp, Unix };
  Kind kind = Kind::Tcp;
  std::string host;  // numeric or a name, without brackets; "" or "*" = any
  std::uint16_t port = 0;
  std::string path;  // Unix socket path
  bool operator==(const SocketAddress&) const = default;
};

// Parses "host:port", "[v6]:port", "*:port", ":port" or "unix:/path".
[[nodiscard]] std::optional<SocketAddress> parse_socket_address(std::string_view text,
                                                                std::string* error);

// Creates, binds and listens (non-blocking, close-on-exec, SO_REUSEADDR; a stale Unix
// socket file is replaced). Returns the fd, or -1 with *error.
int bind_listener(const SocketAddress& a, std::string* error);

// One end of a connection as the logs and the stores see it.
struct Endpoint {
  std::string ip;          // "192.0.2.1", "2001:db8::1"; "" for a Unix socket
  std::uint16_t port = 0;
  bool loopback = false;   // 127/8, ::1, v4-mapped loopback, or a Unix socket
  std::string str() const;  // "192.0.2.1:143", "[2001:db8::1]:143", "unix"
};
Endpoint endpoint_of(const sockaddr* sa);
Endpoint peer_endpoint(int fd);
Endpoint local_endpoint(int fd);

// An address block such as "192.0.2.0/24", "2001:db8::/32" or a single address.
// IPv4-mapped IPv6 clients match IPv4 blocks.
class Cidr {
 public:
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const std::string& ip) const;  // false for "" (Unix sockets)

 private:
  int family_ = 0;
  unsigned char bytes_[16] = {};
  int prefix_ = 0;
};
bool any_contains(const std::vector<Cidr>& blocks, const std::string& ip);

// "1.2.3.4:5678", "[::1]:143", "unix" for a peer/sockname.
std::string format_sockaddr(const sockaddr* sa, socklen_t len);
std::string peer_name(int fd);
bool is_loopback(const sockaddr* sa);

}  // namespace sy

#endif
