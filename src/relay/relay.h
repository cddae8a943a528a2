// The relay: after login, bytes move both ways between client and store until either
// side closes or the session is idle too long; then both sockets are closed.
//
// Plain-to-plain relays use splice(2) through a pipe borrowed from the worker's PipePool
// only while bytes are in flight, so data never enters user space; when either side is
// TLS, a direction borrows a 64 KiB buffer from the BufferPool instead. Either way an idle
// session holds no buffer and no pipe: each direction waits for readiness with nothing
// attached.
#ifndef SWITCHYARD_RELAY_RELAY_H
#define SWITCHYARD_RELAY_RELAY_H

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "config/duration.h"
#include "net/socket.h"
#include "net/stream.h"

namespace sy {

class BufferPool;
class PipePool;

struct RelayResult {
  std::uint64_t client_to_store = 0;  // bytes
  std::uint64_t store_to_client = 0;
  const char* ended_by = "";  // "client closed", "store closed", "idle timeout", "stalled", ...
};

// The relay when either side is TLS (plain-to-plain sessions use start_splice_relay).
// Both streams must be connected. Each direction moves bytes on its own, so a read waiting
// on one side never holds up a write on the other; TLS reads that must write (and writes
// that must read) wait for what OpenSSL asks for. Returns when the relay is over; both are
// closed then. A relay with bytes held in a direction and no progress for idle_timeout
// logs so, with the counts, and ends as "stalled".
asio::awaitable<RelayResult> relay(asio::io_context& io, BufferPool& buffers, Stream& client,
                                   Stream& store, Millis idle_timeout);

// The same for two plain sockets, without coroutines: a few hundred bytes of state and
// one readiness wait per direction are all an idle session holds. `done` runs once, on
// the loop, when the relay is over (both sockets closed); whatever it captures stays
// alive until then. The sockets must outlive the relay.
void start_splice_relay(asio::io_context& io, PipePool& pipes, Socket& client, Socket& store,
                        Millis idle_timeout, std::function<void(const RelayResult&)> done);

}  // namespace sy

#endif
