// Addresses as the config writes them: listen addresses ("127.0.0.1:1143", "[::1]:1143",
// "unix:/path") and address blocks ("192.0.2.0/24") for trusted_proxies, allow_from and
// the like. Pure parsing; the sockets themselves are net/address.h.
#ifndef SWITCHYARD_CONFIG_ADDRESS_H
#define SWITCHYARD_CONFIG_ADDRESS_H

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

}  // namespace sy

#endif
