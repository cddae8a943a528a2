// The shared block behind metrics.h: one mapping of anonymous shared memory (MAP_SHARED,
// made by the master before it forks, like the per-address table of proxy/admission.h)
// holding the label names and one slot per worker.
//
// Who writes what:
//   - the master: the label names (register_names: only appended, each table's count is
//     published after its entry is written), the master's own counters (reloads, worker
//     restarts), and each slot's owner (claim, give back, zero the gauges of a dead one);
//   - a worker: only its own slot's counters and gauges, with relaxed atomic adds.
// A slot outlives its worker: the counters stay and the next worker given the slot counts
// on from there, so the sums never go down. Gauges describe a live worker: the master
// zeroes them when the worker is reaped.
//
// Readers (the metrics listener, tests) take a Snapshot: the counters summed over every
// slot ever used, session gauges summed, store health the worst any worker reports.
#ifndef SWITCHYARD_METRICS_BLOCK_H
#define SWITCHYARD_METRICS_BLOCK_H

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/protocol.h"
#include "metrics/metrics.h"

namespace sy::metrics {

constexpr std::size_t kMaxSlots = 256;     // workers alive at once, draining ones included
constexpr std::size_t kMaxMaps = 32;       // [[map]] labels
constexpr std::size_t kMaxBackends = 64;   // [backend.NAME] labels; label 0 is "-"
constexpr std::size_t kMaxStores = 256;    // (back end, store address) labels
constexpr std::size_t kNameBytes = 96;     // longer names are cut

// Upper bounds of the lookup latency histogram, in seconds; one more bucket is +Inf.
constexpr std::array<double, 13> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                   0.25,  0.5,    1,     2.5,  5,    10};
constexpr std::size_t kBuckets = kLatencyBounds.size() + 1;

using Count = std::atomic<std::uint64_t>;
using Level = std::atomic<std::int64_t>;

struct SlotCounters {
  Count connections[kProtocolCount][2];  // [accepted, refused]
  Count logins[kProtocolCount][kLoginResults];
  Count relayed[kProtocolCount][2];      // [to store, to client]
  Count map_lookups[kMaxMaps][kMapResults];
  Count map_latency[kMaxMaps][kBuckets];  // per bucket, not cumulative
  Count map_latency_us[kMaxMaps];         // sum of the durations
  Count cache[kCacheResults];
  Count lookup_timeouts;
  Count backend_connect_failures[kMaxBackends];
  Count lmtp_recipients[kRcptResults];
  Count tls[2][2];  // [side][ok, failed]
};

struct SlotGauges {
  Level sessions[kFamilies][kStages];
  Level store_down_until_ms[kMaxStores];  // steady clock; 0: up
};

struct Slot {
  std::atomic<std::int32_t> pid;  // its worker, 0 when free, -1 while being handed out
  SlotCounters c;
  SlotGauges g;
};

struct Name {
  char text[kNameBytes];
};
struct StoreName {
  std::uint32_t backend;  // index into the back-end names
  char text[kNameBytes];
};

struct Header {
  std::atomic<std::uint32_t> map_count, backend_count, store_count;
  Name maps[kMaxMaps];
  Name backends[kMaxBackends];
  StoreName stores[kMaxStores];
  std::atomic<std::uint32_t> slots_used;  // high-water mark of slot indexes
  Count reloads[2];  // [ok, refused]
  Count worker_restarts;
};

// Everything a reader sees, summed over the slots.
struct Snapshot {
  std::vector<std::string> maps, backends;
  struct Store {
    std::string backend, address;
    bool up = true;
  };
  std::vector<Store> stores;
  std::uint64_t connections[kProtocolCount][2] = {};
  std::uint64_t logins[kProtocolCount][kLoginResults] = {};
  std::uint64_t relayed[kProtocolCount][2] = {};
  std::vector<std::array<std::uint64_t, kMapResults>> map_lookups;
  std::vector<std::array<std::uint64_t, kBuckets>> map_latency;
  std::vector<std::uint64_t> map_latency_us;
  std::uint64_t cache[kCacheResults] = {};
  std::uint64_t lookup_timeouts = 0;
  std::vector<std::uint64_t> backend_connect_failures;
  std::uint64_t lmtp_recipients[kRcptResults] = {};
  std::uint64_t tls[2][2] = {};
  std::uint64_t reloads[2] = {};
  std::uint64_t worker_restarts = 0;
  std::int64_t sessions[kFamilies][kStages] = {};
  std::size_t workers = 0;  // slots with a live worker
};

class Block {
 public:
  // nullptr when the mapping fails.
  static std::unique_ptr<Block> create();
  ~Block();
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  // Label index of a name, added when new; -1 when the table is full. Master only.
  int add_map(const std::string& name);
  int add_backend(const std::string& name);
  int add_store(int backend, const std::string& address);
  // Lookups by name (any process; linear, for set-up time).
  int find_map(const std::string& name) const;
  int find_backend(const std::string& name) const;
  std::vector<int> find_stores(const std::string& address) const;

  int claim_slot();                      // -1 when none is free
  void set_owner(int slot, int pid);     // pid <= 0 frees it (gauges zeroed)
  void release_pid(int pid);             // the worker `pid` is gone
  Slot& slot(int i) { return slots_[i]; }
  Header& header() { return *header_; }

  // `now_ms`: steady clock, to tell which stores are still down.
  Snapshot snapshot(std::int64_t now_ms) const;

 private:
  Block(void* base, std::size_t bytes);
  void* base_;
  std::size_t bytes_;
  Header* header_;
  Slot* slots_;
};

// The process-wide block and this process's slot (set up through metrics.h). For tests:
// point the counting calls at `block`'s slot `slot` (nullptr: count nothing).
void use(Block* block, int slot);
Block* current_block();

}  // namespace sy::metrics

#endif
