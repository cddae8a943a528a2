// The username policy: how a client's login name becomes a map key, and which name the
// store is logged in with. Pure functions; configured by [username] (UsernamePolicy,
// config/config.h).
#ifndef SWITCHYARD_MAP_USERNAME_H
#define SWITCHYARD_MAP_USERNAME_H

#include <string>
#include <string_view>

#include "config/config.h"
#include "map/answer.h"

namespace sy {


// The key the map chain is asked for.
std::string map_key(const UsernamePolicy& p, std::string_view login);

// The name sent to the store: the map's user when use_map_user and the answer has one,
// else the key.
std::string store_login(const UsernamePolicy& p, std::string_view key, const MapAnswer& a);

// The recipient an LMTP store is given for `address`: the same rename as store_login()
// (in the address's domain when the map's user has none), else the address as given.
std::string store_recipient(const UsernamePolicy& p, std::string_view address,
                            const MapAnswer& a);

}  // namespace sy

#endif
