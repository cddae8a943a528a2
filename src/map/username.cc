// Username policy (see username.h).
#include "map/username.h"

namespace sy {

std::string map_key(const UsernamePolicy& p, std::string_view login) {
  std::string key(login);
  if (p.lowercase) {
    for (char& c : key)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (p.domain_delimiter.empty()) return key;
  auto at = key.rfind(p.domain_delimiter);
  if (p.strip_domain) {
    if (at != std::string::npos) key.resize(at);
  } else if (at == std::string::npos && !p.default_domain.empty()) {
    key += p.domain_delimiter;
    key += p.default_domain;
  }
  return key;
}

std::string store_login(const UsernamePolicy& p, std::string_view key, const MapAnswer& a) {
  if (p.use_map_user && !a.user.empty()) return a.user;
  return std::string(key);
}

}  // namespace sy
