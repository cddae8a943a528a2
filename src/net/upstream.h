// Reaching a store: a connect that tries each host of a Target in order, each with a
// timeout.
#ifndef SWITCHYARD_NET_UPSTREAM_H
#define SWITCHYARD_NET_UPSTREAM_H

#include <string>

#include "master/runtime.h"
#include "net/target.h"

namespace sy {

// Connects `sock` to the first host of `t` that accepts, each within connect_timeout.
// On success *server is "address:port" and *host the name it was reached by (for TLS
// verification); on failure *why says what happened to each host.
asio::awaitable<bool> connect_target(Socket& sock, const Target& t, std::string* server,
                                     std::string* host, std::string* why);

}  // namespace sy

#endif
