// Service manager notifications (see notify.h).
#include "master/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace sy {

bool service_notify(const std::string& state) {
  const char* where = std::getenv("NOTIFY_SOCKET");
  if (!where || !*where) return false;
  const std::size_t len = std::strlen(where);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if ((where[0] != '/' && where[0] != '@') || len >= sizeof sun.sun_path) return false;
  std::memcpy(sun.sun_path, where, len);
  if (where[0] == '@') sun.sun_path[0] = '\0';  // abstract namespace
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const socklen_t addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  ssize_t n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                       reinterpret_cast<sockaddr*>(&sun), addr_len);
  ::close(fd);
  return n == static_cast<ssize_t>(state.size());
}

std::string monotonic_usec_field() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
                            static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
  return "MONOTONIC_USEC=" + std::to_string(usec);
}

}  // namespace sy
