// Checks of what the config names on this machine (see preflight.h).
#include "master/preflight.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/socket.h>

#include "map/answer.h"
#include "map/lookup.h"

namespace sy {
namespace {

bool is_numeric_address(const std::string& host) {
  unsigned char bytes[16];
  return ::inet_pton(AF_INET, host.c_str(), bytes) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), bytes) == 1;
}

bool resolves(const std::string& host, std::string* why) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    *why = ::gai_strerror(rc);
    return false;
  }
  ::freeaddrinfo(res);
  return true;
}

}  // namespace

std::string worker_account(const Config& config) {
  return config.user.empty() ? "nobody" : config.user;
}

bool preflight(const Config& config, std::string* error) {
  const std::string account = worker_account(config);
  if (!::getpwnam(account.c_str())) {
    *error = config.path + ": user = \"" + account +
             "\": no such account; the workers could not start (create it, e.g. with "
             "adduser --system --group " + account + ")";
    return false;
  }
  if (!config.control_group.empty() && !::getgrnam(config.control_group.c_str())) {
    *error = config.path + ": control_group = \"" + config.control_group +
             "\": no such group";
    return false;
  }
  const std::string& fallback = config.lookup.fallback;
  if (!fallback.empty()) {
    auto answer = parse_map_answer(fallback, config.username.domain_delimiter);
    if (!answer) {
      *error = config.path + ": [lookup] fallback = \"" + fallback +
               "\" is not a back end or host[:port]";
      return false;
    }
    std::string why;
    if (!is_hold_answer(*answer) && !config.backends.count(answer->host) &&
        !is_numeric_address(answer->host) && !resolves(answer->host, &why)) {
      std::string known;
      for (const auto& [name, b] : config.backends) known += (known.empty() ? "" : ", ") + name;
      *error = config.path + ": [lookup] fallback = \"" + fallback + "\": '" + answer->host +
               "' is no [backend." + answer->host + "] (defined: " +
               (known.empty() ? "none" : known) + ") and no host that resolves (" + why + ")";
      return false;
    }
  }
  return true;
}

}  // namespace sy
