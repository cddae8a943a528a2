// Delivering one routed message: the recipients are grouped by store, each store gets one
// transaction with all of its recipients, all stores at once, and every recipient gets
// one reply: its own store's verdict, or 451 4.4.1 when its store could not be asked.
// Nobody gets 250 unless their store answered 250 after the message.
//
// A kept connection from the pool is tried first; if it turns out dead before the message
// could have been stored, the transaction runs once more on a fresh connection.
#ifndef SWITCHYARD_LMTP_DELIVERY_H
#define SWITCHYARD_LMTP_DELIVERY_H

#include <cstdint>
#include <string>
#include <vector>

#include "lmtp/store_client.h"

namespace sy {
class Spool;
namespace lmtp {

class StorePool;

// One recipient, routed by the maps.
struct Route {
  std::string address;        // as the client gave it: used in our own replies
  std::string store_address;  // as the store gets it (the map may rename the user)
  Target target;
  std::string store_key;      // recipients with the same key share a transaction
};

// The key that groups recipients: every address with its port, and the TLS mode.
std::string store_key(const Target& t);

// Returns one reply line (CRLF included) per route, in order. `session` is for the logs.
[[nodiscard]] asio::awaitable<std::vector<std::string>> deliver(
    StorePool& pool, std::uint64_t session, const Envelope& envelope, const Spool& spool,
    const std::vector<Route>& routes);

}  // namespace lmtp
}  // namespace sy

#endif
