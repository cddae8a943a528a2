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

int bind_listener(const SocketAddress& a, std::string* error, PortSharing sharing) {
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
  // An explicit v6 address listens on v6 only; the wildcard ("*" or "::") takes both.
  auto set_v6only = [&](int fd) {
    if (res->ai_family != AF_INET6) return;
    const int only = host && a.host != "::" ? 1 : 0;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only);
  };
  if (a.port == 0) sharing = PortSharing::None;  // each socket would get a port of its own
  if (sharing == PortSharing::FirstOfGroup) {
    // Nobody else may hold the port: a plain bind proves it (undone at once; it never
    // listens, so no client can land on it).
    int probe = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
    int yes = 1;
    if (probe >= 0) {
      ::setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      set_v6only(probe);
    }
    if (probe < 0 || ::bind(probe, res->ai_addr, res->ai_addrlen) != 0) {
      *error = (a.host.empty() ? "*" : a.host) + ":" + port + ": " + std::strerror(errno);
      if (probe >= 0) ::close(probe);
      ::freeaddrinfo(res);
      return -1;
    }
    ::close(probe);
  }
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    ::freeaddrinfo(res);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (sharing != PortSharing::None &&
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    *error = std::string("SO_REUSEPORT: ") + std::strerror(errno);
    ::close(fd);
    ::freeaddrinfo(res);
    return -1;
  }
  // Accepted sockets inherit it: no Nagle delay on any client, at no cost per connection.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_v6only(fd);
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
