// What the daemon counts, and the one-line calls that count it. Light on purpose (no Asio,
// no toml++, no prometheus-cpp): the sessions, the lookup code and the health table
// include it.
//
// Every process of one daemon writes into one block of anonymous shared memory that the
// master maps before it forks (metrics/block.h): each worker owns one slot of it and
// counts there with relaxed atomics, so counting costs an atomic add and no lock. The
// metrics listener (metrics/http.h) sums the slots of every worker, dead or alive, and
// renders Prometheus text (metrics/render.h).
//
// A process that has no slot (switchyard-map, switchyardctl, the unit tests that do not
// ask for one) counts nothing: every call below is then a cheap no-op.
#ifndef SWITCHYARD_METRICS_METRICS_H
#define SWITCHYARD_METRICS_METRICS_H

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/protocol.h"

namespace sy::metrics {

// A login's outcome: proxy/session.h's LoginOutcome in its order, then Refused (a policy
// said no before anyone was asked: clear-text login where it is not allowed).
enum class LoginResult : std::uint8_t { Ok, Failed, UnknownUser, TempFail, Hold, Unavailable, Refused };
constexpr std::size_t kLoginResults = 7;

// One map's answer to one question (a Hold answer counts as Found: the map answered).
enum class MapResult : std::uint8_t { Found, NotFound, TempFail };
constexpr std::size_t kMapResults = 3;

enum class CacheResult : std::uint8_t { Hit, Miss, Stale };
constexpr std::size_t kCacheResults = 3;

enum class RcptResult : std::uint8_t { Delivered, Refused, Deferred };
constexpr std::size_t kRcptResults = 3;

enum class TlsSide : std::uint8_t { Client, Store };  // we accepted / we connected

// Session stages, as worker/session_registry.h numbers them.
constexpr std::size_t kStages = 5;
constexpr std::size_t kFamilies = static_cast<std::size_t>(Family::Metrics) + 1;

// --- Counting (any thread; no-ops without a slot) ---
void connection(Protocol p, bool accepted);        // accepted, or refused (allow_from, limits)
void login(Protocol p, LoginResult r);
void relayed(Protocol p, std::uint64_t to_store, std::uint64_t to_client);
void map_lookup(std::size_t chain_index, MapResult r, std::chrono::microseconds took);
void cache(CacheResult r);
void lookup_timeout();
void backend_connect_failed(const std::string& backend);  // "" for a host named by a map
void lmtp_recipient(RcptResult r);
void tls_handshake(TlsSide side, bool ok);
// Live sessions: the registry moves one session of `kind` into or out of `stage`.
void session(Family kind, std::size_t stage, int delta);
// The health table: a store address ("host:port") is skipped until `until`, or is up.
void store_down(const std::string& endpoint, std::chrono::steady_clock::time_point until);
void store_up(const std::string& endpoint);

}  // namespace sy::metrics

namespace sy {
struct Config;
}

namespace sy::metrics {

// --- The master (before forking, and in the supervisor loop) ---
// Maps the shared block (once, before the first fork). False when there is no shared
// memory to be had: metrics are then empty, the daemon runs on.
bool create();
// Names the config's maps, back ends and store addresses in the block, so that every
// worker, old or new, labels them alike. Names are only ever added (up to fixed limits;
// past them a name shares the "other" label): call at start and after each reload.
void register_names(const sy::Config& config);
// A free worker slot for the next worker (-1 when all are taken: it counts nothing).
int claim_slot();
// In the parent after fork: the slot now belongs to `pid` (or is free again when pid <= 0).
void slot_owner(int slot, int pid);
// In the child after fork (or the single process with workers = 0): count in `slot`.
void become_worker(int slot, const sy::Config& config);
// A worker is gone: its gauges drop to zero and its slot may be reused; its counters stay.
void worker_gone(int pid);
void reload(bool ok);
void worker_restart();

}  // namespace sy::metrics

#endif
