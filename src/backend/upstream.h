// Reaching a store: a connect that tries each host of a Target in order, each with a
// timeout.
#ifndef SWITCHYARD_BACKEND_UPSTREAM_H
#define SWITCHYARD_BACKEND_UPSTREAM_H

#include <string>

#include "net/socket.h"
#include "backend/health.h"
#include "backend/target.h"

namespace sy {

// Connects `sock` to the first host of `t` that accepts, each within connect_timeout,
// skipping hosts `health` knows to be down (unless all are) and recording failures there.
// On success *server is "address:port" and *host the name it was reached by (for TLS
// verification); on failure *why says what happened to each host.
[[nodiscard]] asio::awaitable<bool> connect_target(Socket& sock, const Target& t, HealthTable& health,
                                     std::string* server, std::string* host, std::string* why);

// A probe for the health checker: connect and read a greeting ("* OK" or "+OK").
[[nodiscard]] asio::awaitable<bool> probe_store(asio::io_context& io, const std::string& host,
                                  const std::string& port, Millis timeout, std::string* why);

}  // namespace sy

#endif
