// Per-client-address counters shared by all workers, for max_connections_per_ip and the
// penalty after failed logins. A fixed table in anonymous shared memory, made by the
// master before it forks.
//
// Each slot records the (scope, address) it counts for, so two addresses never share a
// slot: an address is looked for along a short probe sequence that starts at a keyed hash
// (SipHash-2-4 under a secret drawn at each start, so nobody can aim an address of theirs
// at someone else's slots), and a slot whose address has nothing left to remember is
// taken over by the next address that needs one. When every slot of an address's sequence
// is taken, the address goes uncounted (not limited, not penalised) rather than charged
// to another.
//
// A holder pins its slot (ClientPin) for as long as it counts in it; a pinned slot is
// never taken over. Each worker also writes what it holds into its own ledger
// (ClientLedger, shared with the master only), so that when a worker dies the master
// gives its pins and connections back: a killed worker leaves no address blocked. Finding and pinning a slot and the counters are lock-free; claiming a
// slot for a new address takes a process-shared lock, so that an address never gets two.
#ifndef SWITCHYARD_PROXY_ADMISSION_H
#define SWITCHYARD_PROXY_ADMISSION_H

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace sy {

using HashKey = std::array<std::uint8_t, 16>;

// SipHash-2-4 (Aumasson and Bernstein) of `len` bytes under `key`.
std::uint64_t siphash24(const HashKey& key, const void* data, std::size_t len);

struct ClientSlot {
  std::atomic<std::uint32_t> connections{0};
  std::atomic<std::uint32_t> failures{0};
  std::atomic<std::int64_t> last_failure_ms{0};  // steady clock
  std::atomic<std::int64_t> keep_until_ms{0};    // failures are worth keeping until then

  // The table's bookkeeping (see admission.cc): pins, a change counter and flags; the
  // (scope, address) the slot belongs to.
  std::atomic<std::uint64_t> state{0};
  std::atomic<std::uint64_t> key[3] = {};
};

class ClientTable;

// What one worker holds in the table: per slot, its pins and its connections. The master
// makes one in shared memory before forking each worker, attaches it in the child
// (ClientTable::attach) and, once the worker is dead, gives back what it still held
// (ClientTable::release). Untouched pages cost nothing: a ledger is sparse.
class ClientLedger {
 public:
  static std::unique_ptr<ClientLedger> create(std::size_t slots);  // nullptr: no memory
  ~ClientLedger();
  ClientLedger(const ClientLedger&) = delete;
  ClientLedger& operator=(const ClientLedger&) = delete;

  struct Entry {
    std::atomic<std::uint32_t> pins{0};
    std::atomic<std::uint32_t> connections{0};
  };

 private:
  friend class ClientTable;
  ClientLedger(Entry* e, std::size_t n, std::size_t bytes) : entries_(e), n_(n), bytes_(bytes) {}
  Entry* entries_;
  std::size_t n_;
  std::size_t bytes_;
};

// A slot held for one (scope, address); released when the pin goes. Empty when the
// address is not counted.
class ClientPin {
 public:
  ClientPin() = default;
  ClientPin(ClientPin&& o) noexcept : slot_(o.slot_), entry_(o.entry_), counted_(o.counted_) {
    o.slot_ = nullptr;
    o.entry_ = nullptr;
    o.counted_ = false;
  }
  ClientPin& operator=(ClientPin&& o) noexcept;
  ~ClientPin() { reset(); }
  ClientPin(const ClientPin&) = delete;
  ClientPin& operator=(const ClientPin&) = delete;

  explicit operator bool() const { return slot_ != nullptr; }
  ClientSlot* get() const { return slot_; }
  ClientSlot* operator->() const { return slot_; }
  ClientSlot& operator*() const { return *slot_; }
  void reset();

  // One more / one fewer connection counted in the slot (and in the worker's ledger).
  // add_connection returns the slot's count after it.
  std::uint32_t add_connection();
  void remove_connection();

 private:
  friend class ClientTable;
  ClientPin(ClientSlot* s, ClientLedger::Entry* e) : slot_(s), entry_(e) {}
  ClientSlot* slot_ = nullptr;
  ClientLedger::Entry* entry_ = nullptr;  // this worker's ledger line for the slot, or null
  bool counted_ = false;                  // add_connection() without remove_connection()
};

class ClientTable {
 public:
  // How many slots after an address's first one may hold it.
  static constexpr std::size_t kProbe = 32;

  // `secret` keys the hash (draw it at random, before forking: every worker must use the
  // same). nullptr when shared memory cannot be had.
  static std::unique_ptr<ClientTable> create(const HashKey& secret, std::size_t slots = 65536);
  ~ClientTable();
  ClientTable(const ClientTable&) = delete;
  ClientTable& operator=(const ClientTable&) = delete;

  // The slot of (scope, address), pinned: the one it already has, or a free one claimed
  // for it. Empty when `address` is not a numeric IPv4/IPv6 address, or when all of its
  // kProbe slots belong to other addresses that still have something to remember (at
  // `now_ms`, steady clock). `scope` keeps listeners apart (connection limits are per
  // listener); use 0 for the login penalty, which follows an address across listeners.
  ClientPin acquire(std::uint32_t scope, std::string_view address, std::int64_t now_ms);

  // In a worker: record what this process holds in `ledger` from now on.
  void attach(ClientLedger* ledger) { ledger_ = ledger; }
  // In the master, once the worker that wrote `ledger` is dead: gives back its pins and
  // connections. Returns the connections given back.
  std::size_t release(ClientLedger& ledger);
  std::size_t size() const { return n_; }

  // Where (scope, address) starts looking (for tests), and the hash behind it.
  std::size_t home(std::uint32_t scope, std::string_view address) const;
  static std::uint64_t hash(const HashKey& secret, std::uint32_t scope,
                            std::string_view address);

 private:
  struct Shared;
  ClientTable(Shared* shared, ClientSlot* slots, std::size_t n, std::size_t bytes,
              const HashKey& secret)
      : shared_(shared), slots_(slots), n_(n), bytes_(bytes), secret_(secret) {}
  Shared* shared_;
  ClientSlot* slots_;
  std::size_t n_;
  std::size_t bytes_;
  HashKey secret_;
  ClientLedger* ledger_ = nullptr;  // this process's, in a worker

  ClientPin pinned(ClientSlot* s);  // the pin for a slot just pinned, entered in the ledger
};

// The failed-login penalty, from [limits]. Pure arithmetic over a slot.
struct PenaltyPolicy {
  std::chrono::milliseconds base{0};     // delay after the first failure (0: no delay)
  std::chrono::milliseconds max{15000};  // the delay doubles per failure up to this
  std::uint32_t block_after = 0;         // failures that block the address (0: never)
  std::chrono::milliseconds window{600000};  // failures older than this are forgotten

  // Records a failure now; returns how long to wait before answering it.
  std::chrono::milliseconds record_failure(ClientSlot& s, std::int64_t now_ms) const;
  bool blocked(const ClientSlot& s, std::int64_t now_ms) const;
  static void record_success(ClientSlot& s) { s.failures.store(0, std::memory_order_relaxed); }
};

std::int64_t steady_now_ms();

}  // namespace sy

#endif
