// Shared client table (see admission.h).
#include "proxy/admission.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace sy {
namespace {

// --- SipHash-2-4 ----------------------------------------------------------------

std::uint64_t rotl(std::uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

std::uint64_t load_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct SipState {
  std::uint64_t v0, v1, v2, v3;
  void round() {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  }
  void absorb(std::uint64_t m) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
};

// --- the slots' state word ---------------------------------------------------------
//
// bits  0-23  pins: holders counting in the slot (it is not taken over while any)
// bits 24-47  a counter that every change advances, so a compare-and-swap from a value
//             read earlier fails if anyone pinned or unpinned in between
// bit  48     used: key[] names the slot's (scope, address)
// bit  49     claiming: key[] is being written (only under the table's lock; seen under
//             the lock, it is the mark of a claimer that died)
constexpr std::uint64_t kPinMask = (std::uint64_t{1} << 24) - 1;
constexpr int kCountShift = 24;
constexpr std::uint64_t kCountMask = kPinMask << kCountShift;
constexpr std::uint64_t kUsed = std::uint64_t{1} << 48;
constexpr std::uint64_t kClaiming = std::uint64_t{1} << 49;

std::uint64_t pins(std::uint64_t w) { return w & kPinMask; }

// The state after a change from `w`: `flags`, `pin_count` pins, the counter advanced.
std::uint64_t changed(std::uint64_t w, std::uint64_t flags, std::uint64_t pin_count) {
  return flags | ((w + (std::uint64_t{1} << kCountShift)) & kCountMask) | pin_count;
}

using Key = std::uint64_t[3];  // scope; the address as 16 bytes (IPv4 mapped into IPv6)

bool make_key(std::uint32_t scope, std::string_view address, Key key) {
  char text[64];
  if (address.empty() || address.size() >= sizeof text) return false;
  std::memcpy(text, address.data(), address.size());
  text[address.size()] = '\0';
  std::uint8_t bytes[16] = {};
  if (::inet_pton(AF_INET, text, bytes + 12) == 1) {
    bytes[10] = bytes[11] = 0xff;
  } else if (::inet_pton(AF_INET6, text, bytes) != 1) {
    return false;
  }
  key[0] = scope;
  std::memcpy(&key[1], bytes, 8);
  std::memcpy(&key[2], bytes + 8, 8);
  return true;
}

std::uint64_t hash_key(const HashKey& secret, const Key key) {
  std::uint8_t bytes[20];
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<std::uint8_t>(key[0] >> (8 * i));
  std::memcpy(bytes + 4, &key[1], 8);
  std::memcpy(bytes + 12, &key[2], 8);
  return siphash24(secret, bytes, sizeof bytes);
}

bool same_key(const ClientSlot& s, const Key key) {
  for (int i = 0; i < 3; ++i)
    if (s.key[i].load(std::memory_order_relaxed) != key[i]) return false;
  return true;
}

// Pins `s` if it belongs to `key`. Lock-free: the key is read after the state that
// published it, and the pin is a compare-and-swap from that state, so a slot taken over
// meanwhile fails the swap.
ClientSlot* try_pin(ClientSlot& s, const Key key) {
  std::uint64_t w = s.state.load(std::memory_order_acquire);
  for (;;) {
    if ((w & (kUsed | kClaiming)) != kUsed || pins(w) == kPinMask || !same_key(s, key))
      return nullptr;
    if (s.state.compare_exchange_weak(w, changed(w, kUsed, pins(w) + 1),
                                      std::memory_order_acq_rel, std::memory_order_acquire))
      return &s;
  }
}

void unpin(ClientSlot& s) {
  std::uint64_t w = s.state.load(std::memory_order_relaxed);
  while (pins(w) > 0 &&
         !s.state.compare_exchange_weak(w, changed(w, w & (kUsed | kClaiming), pins(w) - 1),
                                        std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
}

// Under the lock: may the slot (in state `w`) go to another address? Its counters change
// only while it is pinned, and the claim swaps from `w`, so what is read here holds.
bool free_for_another(const ClientSlot& s, std::uint64_t w, std::int64_t now_ms) {
  if (w & kClaiming) return true;  // a claim its process did not live to finish
  if (!(w & kUsed)) return true;
  if (pins(w) > 0) return false;
  return s.failures.load(std::memory_order_relaxed) == 0 ||
         now_ms >= s.keep_until_ms.load(std::memory_order_relaxed);
}

// A robust process-shared mutex: a worker that dies holding it hands it to the next.
class SharedLock {
 public:
  explicit SharedLock(pthread_mutex_t* m) : m_(m) {
    int rc = ::pthread_mutex_lock(m_);
    if (rc == EOWNERDEAD) rc = ::pthread_mutex_consistent(m_);
    locked_ = rc == 0;
  }
  ~SharedLock() {
    if (locked_) ::pthread_mutex_unlock(m_);
  }
  explicit operator bool() const { return locked_; }
  SharedLock(const SharedLock&) = delete;
  SharedLock& operator=(const SharedLock&) = delete;

 private:
  pthread_mutex_t* m_;
  bool locked_ = false;
};

}  // namespace

std::uint64_t siphash24(const HashKey& key, const void* data, std::size_t len) {
  const std::uint64_t k0 = load_le64(key.data());
  const std::uint64_t k1 = load_le64(key.data() + 8);
  SipState s{k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
             k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull};
  const auto* p = static_cast<const std::uint8_t*>(data);
  const std::size_t whole = len - len % 8;
  for (std::size_t i = 0; i < whole; i += 8) s.absorb(load_le64(p + i));
  std::uint64_t last = static_cast<std::uint64_t>(len) << 56;
  for (std::size_t i = whole; i < len; ++i)
    last |= static_cast<std::uint64_t>(p[i]) << (8 * (i - whole));
  s.absorb(last);
  s.v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

struct ClientTable::Shared {
  pthread_mutex_t claim_lock;  // held while a slot is claimed for a new address
};

std::unique_ptr<ClientTable> ClientTable::create(const HashKey& secret, std::size_t slots) {
  if (slots == 0) return nullptr;
  const std::size_t head = (sizeof(Shared) + 63) / 64 * 64;
  const std::size_t bytes = head + slots * sizeof(ClientSlot);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* shared = new (p) Shared;
  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  const int rc = ::pthread_mutex_init(&shared->claim_lock, &attr);
  ::pthread_mutexattr_destroy(&attr);
  if (rc != 0) {
    ::munmap(p, bytes);
    return nullptr;
  }
  auto* s = reinterpret_cast<ClientSlot*>(static_cast<char*>(p) + head);
  for (std::size_t i = 0; i < slots; ++i) new (&s[i]) ClientSlot();
  return std::unique_ptr<ClientTable>(new ClientTable(shared, s, slots, bytes, secret));
}

ClientTable::~ClientTable() { ::munmap(shared_, bytes_); }

std::uint64_t ClientTable::hash(const HashKey& secret, std::uint32_t scope,
                                std::string_view address) {
  Key key;
  if (!make_key(scope, address, key)) return 0;
  return hash_key(secret, key);
}

std::size_t ClientTable::home(std::uint32_t scope, std::string_view address) const {
  return hash(secret_, scope, address) % n_;
}

ClientPin ClientTable::acquire(std::uint32_t scope, std::string_view address,
                               std::int64_t now_ms) {
  Key key;
  if (!make_key(scope, address, key)) return {};
  const std::size_t first = hash_key(secret_, key) % n_;
  const std::size_t probe = std::min(kProbe, n_);
  auto at = [&](std::size_t i) -> ClientSlot& { return slots_[(first + i) % n_]; };
  for (std::size_t i = 0; i < probe; ++i)
    if (ClientSlot* s = try_pin(at(i), key)) return pinned(s);
  // A new address (or one whose slot was taken over): claim a slot under the lock, after
  // looking again, so that two workers meeting a new address at once give it one slot.
  SharedLock lock(&shared_->claim_lock);
  if (!lock) return {};
  for (std::size_t i = 0; i < probe; ++i)
    if (ClientSlot* s = try_pin(at(i), key)) return pinned(s);
  for (std::size_t i = 0; i < probe; ++i) {
    ClientSlot& s = at(i);
    std::uint64_t w = s.state.load(std::memory_order_acquire);
    if (!free_for_another(s, w, now_ms)) continue;
    const std::uint64_t claiming = changed(w, kClaiming, 1);
    if (!s.state.compare_exchange_strong(w, claiming, std::memory_order_acq_rel,
                                         std::memory_order_acquire))
      continue;  // its address came back for it meanwhile
    s.connections.store(0, std::memory_order_relaxed);
    s.failures.store(0, std::memory_order_relaxed);
    s.last_failure_ms.store(0, std::memory_order_relaxed);
    s.keep_until_ms.store(0, std::memory_order_relaxed);
    for (int k = 0; k < 3; ++k) s.key[k].store(key[k], std::memory_order_relaxed);
    s.state.store(changed(claiming, kUsed, 1), std::memory_order_release);
    return pinned(&s);
  }
  return {};
}

// The slot first, then the ledger (and the reverse on the way out): a worker killed in
// between leaves one count behind rather than having the master give back one it never
// took.
ClientPin ClientTable::pinned(ClientSlot* s) {
  ClientLedger::Entry* e = nullptr;
  if (ledger_ && static_cast<std::size_t>(s - slots_) < ledger_->n_) {
    e = &ledger_->entries_[s - slots_];
    e->pins.fetch_add(1, std::memory_order_relaxed);
  }
  return ClientPin(s, e);
}

std::size_t ClientTable::release(ClientLedger& ledger) {
  std::size_t given_back = 0;
  const std::size_t n = std::min(n_, ledger.n_);
  for (std::size_t i = 0; i < n; ++i) {
    ClientLedger::Entry& e = ledger.entries_[i];
    std::uint32_t c = e.connections.exchange(0, std::memory_order_relaxed);
    std::uint32_t p = e.pins.exchange(0, std::memory_order_relaxed);
    if (c == 0 && p == 0) continue;
    std::uint32_t have = slots_[i].connections.load(std::memory_order_relaxed);
    while (c > 0 && have > 0 &&
           !slots_[i].connections.compare_exchange_weak(have, have - std::min(have, c),
                                                        std::memory_order_relaxed)) {
    }
    given_back += c;
    for (std::uint32_t k = 0; k < p; ++k) unpin(slots_[i]);
  }
  return given_back;
}

std::unique_ptr<ClientLedger> ClientLedger::create(std::size_t slots) {
  if (slots == 0) return nullptr;
  const std::size_t bytes = slots * sizeof(Entry);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* e = static_cast<Entry*>(p);  // zero pages: every count 0
  return std::unique_ptr<ClientLedger>(new ClientLedger(e, slots, bytes));
}

ClientLedger::~ClientLedger() { ::munmap(entries_, bytes_); }

ClientPin& ClientPin::operator=(ClientPin&& o) noexcept {
  if (this != &o) {
    reset();
    slot_ = o.slot_;
    entry_ = o.entry_;
    counted_ = o.counted_;
    o.slot_ = nullptr;
    o.entry_ = nullptr;
    o.counted_ = false;
  }
  return *this;
}

void ClientPin::reset() {
  if (counted_) remove_connection();
  if (entry_) entry_->pins.fetch_sub(1, std::memory_order_relaxed);
  if (slot_) unpin(*slot_);
  slot_ = nullptr;
  entry_ = nullptr;
}

std::uint32_t ClientPin::add_connection() {
  counted_ = true;
  std::uint32_t n = slot_->connections.fetch_add(1, std::memory_order_relaxed) + 1;
  if (entry_) entry_->connections.fetch_add(1, std::memory_order_relaxed);
  return n;
}

void ClientPin::remove_connection() {
  if (!counted_) return;
  counted_ = false;
  if (entry_) entry_->connections.fetch_sub(1, std::memory_order_relaxed);
  slot_->connections.fetch_sub(1, std::memory_order_relaxed);
}

std::chrono::milliseconds PenaltyPolicy::record_failure(ClientSlot& s, std::int64_t now) const {
  if (now - s.last_failure_ms.load(std::memory_order_relaxed) > window.count())
    s.failures.store(0, std::memory_order_relaxed);
  s.last_failure_ms.store(now, std::memory_order_relaxed);
  s.keep_until_ms.store(now + window.count(), std::memory_order_relaxed);
  std::uint32_t n = s.failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (base.count() <= 0) return std::chrono::milliseconds(0);
  auto d = base;
  for (std::uint32_t i = 1; i < n && d < max; ++i) d *= 2;
  return d < max ? d : max;
}

bool PenaltyPolicy::blocked(const ClientSlot& s, std::int64_t now) const {
  if (block_after == 0) return false;
  if (now - s.last_failure_ms.load(std::memory_order_relaxed) > window.count()) return false;
  return s.failures.load(std::memory_order_relaxed) >= block_after;
}

std::int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace sy
