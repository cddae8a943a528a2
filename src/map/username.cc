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

namespace {

// The store's name for the user when the map renames them, else nullptr.
const std::string* renamed(const UsernamePolicy& p, const MapAnswer& a) {
  return p.use_map_user && !a.user.empty() ? &a.user : nullptr;
}

}  // namespace

std::string store_login(const UsernamePolicy& p, std::string_view key, const MapAnswer& a) {
  const std::string* user = renamed(p, a);
  return user ? *user : std::string(key);
}

std::string store_recipient(const UsernamePolicy& p, std::string_view address,
                            const MapAnswer& a) {
  const std::string* user = renamed(p, a);
  if (!user) return std::string(address);
  // A domain never holds "@", so the last one splits even a quoted local part.
  const auto at = address.rfind('@');
  if (user->find('@') != std::string::npos || at == std::string_view::npos) return *user;
  return *user + std::string(address.substr(at));
}

}  // namespace sy
