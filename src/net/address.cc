// Address parsing and listener set-up (see address.h).
#include "net/address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
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

int bind_listener(const SocketAddress& a, std::string* error) {
  if (a.kind == SocketAddress::Kind::Unix) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, a.path.c_str(), a.path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *error = std::string("socket: ") + std::strerror(errno);
      return -1;
    }
    struct stat st;
    if (::lstat(a.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(a.path.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0 || ::listen(fd, 1024) != 0) {
      *error = "unix:" + a.path + ": " + std::strerror(errno);
      ::close(fd);
      return -1;
    }
    ::chmod(a.path.c_str(), 0666);
    return fd;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(a.port);
  const char* host = a.host.empty() ? nullptr : a.host.c_str();
  if (!host) hints.ai_family = AF_INET6;  // "[::]" style wildcard, dual-stack below
  int rc = ::getaddrinfo(host, port.c_str(), &hints, &res);
  if (rc != 0) {
    *error = a.host + ": " + ::gai_strerror(rc);
    return -1;
  }
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    ::freeaddrinfo(res);
    return -1;
  }
  int one = 1, zero = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Accepted sockets inherit it: no Nagle delay on any client, at no cost per connection.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (res->ai_family == AF_INET6) {
    // An explicit v6 address listens on v6 only; the wildcard ("*" or "::") takes both.
    bool wildcard = !host || a.host == "::";
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, wildcard ? &zero : &one, sizeof one);
  }
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
    *error = (a.host.empty() ? "*" : a.host) + ":" + port + ": " + std::strerror(errno);
    ::close(fd);
    ::freeaddrinfo(res);
    return -1;
  }
  ::freeaddrinfo(res);
  return fd;
}

std::string format_sockaddr(const sockaddr* sa, socklen_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      ::inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
      return std::string(host) + ":" + std::to_string(ntohs(in6->sin6_port));
    }
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  (void)len;
  return "unix";
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

std::string Endpoint::str() const {
  if (ip.empty()) return "unix";
  return (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

Endpoint endpoint_of(const sockaddr* sa) {
  Endpoint e;
  e.loopback = is_loopback(sa);
  char host[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    e.port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
      ::inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
    else
      ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    e.port = ntohs(in6->sin6_port);
  }
  e.ip = host;
  return e;
}

Endpoint peer_endpoint(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return endpoint_of(reinterpret_cast<sockaddr*>(&ss));
}

Endpoint local_endpoint(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return endpoint_of(reinterpret_cast<sockaddr*>(&ss));
}

std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return format_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

bool is_loopback(const sockaddr* sa) {
  if (sa->sa_family == AF_UNIX) return true;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace sy
