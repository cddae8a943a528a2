// Addresses as the config writes them (see address.h).
#include "config/address.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>

namespace sy {

std::optional<SocketAddress> parse_socket_address(std::string_view text, std::string* error) {
  SocketAddress a;
  if (text.rfind("unix:", 0) == 0) {
    a.kind = SocketAddress::Kind::Unix;
    a.path = std::string(text.substr(5));
    if (a.path.empty() || a.path[0] != '/' || a.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      *error = "unix socket path must be absolute and shorter than 108 bytes";
      return std::nullopt;
    }
    return a;
  }
  std::string_view port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      *error = "expected [address]:port";
      return std::nullopt;
    }
    a.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      *error = "expected host:port";
      return std::nullopt;
    }
    a.host = std::string(text.substr(0, colon));
    if (a.host.find(':') != std::string::npos) {
      *error = "write an IPv6 address in brackets: [::1]:143";
      return std::nullopt;
    }
    port = text.substr(colon + 1);
  }
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535) {
    *error = "bad port '" + std::string(port) + "'";
    return std::nullopt;
  }
  a.port = static_cast<std::uint16_t>(p);
  if (a.host == "*") a.host.clear();
  return a;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  Cidr c;
  std::string addr(text.substr(0, text.find('/')));
  int max_prefix;
  if (::inet_pton(AF_INET, addr.c_str(), c.bytes_) == 1) {
    c.family_ = AF_INET;
    max_prefix = 32;
  } else if (::inet_pton(AF_INET6, addr.c_str(), c.bytes_) == 1) {
    c.family_ = AF_INET6;
    max_prefix = 128;
  } else {
    return std::nullopt;
  }
  c.prefix_ = max_prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    int n = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), n);
    if (ec != std::errc() || end != p.data() + p.size() || p.empty() || n < 0 || n > max_prefix)
      return std::nullopt;
    c.prefix_ = n;
  }
  return c;
}

bool Cidr::contains(const std::string& ip) const {
  unsigned char b[16];
  const unsigned char* bytes = b;
  if (::inet_pton(AF_INET, ip.c_str(), b) == 1) {
    if (family_ != AF_INET) return false;
  } else if (::inet_pton(AF_INET6, ip.c_str(), b) == 1) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family_ == AF_INET && std::memcmp(b, mapped, 12) == 0) bytes = b + 12;
    else if (family_ != AF_INET6) return false;
  } else {
    return false;
  }
  int full = prefix_ / 8, rest = prefix_ % 8;
  if (std::memcmp(bytes, bytes_, full) != 0) return false;
  if (rest == 0) return true;
  unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (bytes[full] & mask) == (bytes_[full] & mask);
}

bool any_contains(const std::vector<Cidr>& blocks, const std::string& ip) {
  for (const auto& b : blocks)
    if (b.contains(ip)) return true;
  return false;
}

}  // namespace sy
