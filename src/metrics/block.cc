// The shared metrics block (see block.h).
#include "metrics/block.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace sy::metrics {
namespace {

void set_name(char (&dst)[kNameBytes], const std::string& name) {
  const std::size_t n = std::min(name.size(), kNameBytes - 1);
  std::memcpy(dst, name.data(), n);
  dst[n] = '\0';
}

std::string cut(const std::string& name) { return name.substr(0, kNameBytes - 1); }

template <typename T>
void zero(T& level) {
  level.store(0, std::memory_order_relaxed);
}

}  // namespace

std::unique_ptr<Block> Block::create() {
  const std::size_t head = (sizeof(Header) + 63) / 64 * 64;
  const std::size_t bytes = head + kMaxSlots * sizeof(Slot);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  // Fresh anonymous memory is zero: every counter, gauge, count and owner starts at 0.
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
  auto block = std::unique_ptr<Block>(new Block(p, bytes));
  block->add_backend("-");  // label 0: a store named by a map, not by [backend.NAME]
  return block;
}

Block::Block(void* base, std::size_t bytes)
    : base_(base),
      bytes_(bytes),
      header_(new (base) Header),
      slots_(reinterpret_cast<Slot*>(static_cast<char*>(base) +
                                     (sizeof(Header) + 63) / 64 * 64)) {}

Block::~Block() { ::munmap(base_, bytes_); }

namespace {

// A label table of the header (map or backend names): its index of `name`, or -1.
template <std::size_t N>
int find_name(const Name (&table)[N], const std::atomic<std::uint32_t>& count,
              const std::string& name) {
  const std::string want = cut(name);
  const std::uint32_t n = count.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n && i < N; ++i)
    if (want == table[i].text) return static_cast<int>(i);
  return -1;
}

// Its index, added at the end if new (only the master adds); -1 when the table is full.
template <std::size_t N>
int add_name(Name (&table)[N], std::atomic<std::uint32_t>& count, const std::string& name) {
  if (int i = find_name(table, count, name); i >= 0) return i;
  const std::uint32_t n = count.load(std::memory_order_relaxed);
  if (n >= N) return -1;
  set_name(table[n].text, name);
  count.store(n + 1, std::memory_order_release);
  return static_cast<int>(n);
}

}  // namespace

int Block::find_map(const std::string& name) const {
  return find_name(header_->maps, header_->map_count, name);
}

int Block::find_backend(const std::string& name) const {
  return find_name(header_->backends, header_->backend_count, name);
}

std::vector<int> Block::find_stores(const std::string& address) const {
  std::vector<int> out;
  const std::string want = cut(address);
  const std::uint32_t n = header_->store_count.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i)
    if (want == header_->stores[i].text) out.push_back(static_cast<int>(i));
  return out;
}

int Block::add_map(const std::string& name) {
  return add_name(header_->maps, header_->map_count, name);
}

int Block::add_backend(const std::string& name) {
  return add_name(header_->backends, header_->backend_count, name);
}

int Block::add_store(int backend, const std::string& address) {
  for (int i : find_stores(address))
    if (header_->stores[i].backend == static_cast<std::uint32_t>(backend)) return i;
  const std::uint32_t n = header_->store_count.load(std::memory_order_relaxed);
  if (n >= kMaxStores || backend < 0) return -1;
  header_->stores[n].backend = static_cast<std::uint32_t>(backend);
  set_name(header_->stores[n].text, address);
  header_->store_count.store(n + 1, std::memory_order_release);
  return static_cast<int>(n);
}

int Block::claim_slot() {
  for (std::size_t i = 0; i < kMaxSlots; ++i) {
    std::int32_t free = 0;
    if (slots_[i].pid.compare_exchange_strong(free, -1, std::memory_order_acq_rel)) {
      std::uint32_t used = header_->slots_used.load(std::memory_order_relaxed);
      while (used < i + 1 &&
             !header_->slots_used.compare_exchange_weak(used, static_cast<std::uint32_t>(i + 1),
                                                        std::memory_order_release)) {
      }
      return static_cast<int>(i);
    }
  }
  return -1;
}

void Block::set_owner(int slot, int pid) {
  if (slot < 0 || static_cast<std::size_t>(slot) >= kMaxSlots) return;
  Slot& s = slots_[slot];
  if (pid <= 0) {
    // The gauges describe a live worker; the counters stay for the next one.
    for (auto& row : s.g.sessions)
      for (auto& level : row) zero(level);
    for (auto& level : s.g.store_down_until_ms) zero(level);
    s.pid.store(0, std::memory_order_release);
    return;
  }
  s.pid.store(pid, std::memory_order_release);
}

void Block::release_pid(int pid) {
  if (pid <= 0) return;
  const std::uint32_t used = header_->slots_used.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < used; ++i)
    if (slots_[i].pid.load(std::memory_order_acquire) == pid) set_owner(static_cast<int>(i), 0);
}

Snapshot Block::snapshot(std::int64_t now_ms) const {
  Snapshot out;
  const auto r = std::memory_order_relaxed;
  const Header& h = *header_;
  const std::uint32_t maps = std::min<std::uint32_t>(h.map_count.load(std::memory_order_acquire), kMaxMaps);
  const std::uint32_t backends =
      std::min<std::uint32_t>(h.backend_count.load(std::memory_order_acquire), kMaxBackends);
  const std::uint32_t stores =
      std::min<std::uint32_t>(h.store_count.load(std::memory_order_acquire), kMaxStores);
  for (std::uint32_t i = 0; i < maps; ++i) out.maps.emplace_back(h.maps[i].text);
  for (std::uint32_t i = 0; i < backends; ++i) out.backends.emplace_back(h.backends[i].text);
  for (std::uint32_t i = 0; i < stores; ++i) {
    const std::uint32_t b = h.stores[i].backend;
    out.stores.push_back({b < backends ? out.backends[b] : std::string("-"), h.stores[i].text, true});
  }
  out.map_lookups.resize(maps);
  out.map_latency.resize(maps);
  out.map_latency_us.resize(maps);
  out.backend_connect_failures.resize(backends);
  out.reloads[0] = h.reloads[0].load(r);
  out.reloads[1] = h.reloads[1].load(r);
  out.worker_restarts = h.worker_restarts.load(r);

  const std::uint32_t used = std::min<std::uint32_t>(h.slots_used.load(std::memory_order_acquire), kMaxSlots);
  for (std::uint32_t k = 0; k < used; ++k) {
    const Slot& s = slots_[k];
    if (s.pid.load(std::memory_order_acquire) > 0) ++out.workers;
    const SlotCounters& c = s.c;
    for (std::size_t p = 0; p < kProtocolCount; ++p) {
      for (int i = 0; i < 2; ++i) {
        out.connections[p][i] += c.connections[p][i].load(r);
        out.relayed[p][i] += c.relayed[p][i].load(r);
      }
      for (std::size_t i = 0; i < kLoginResults; ++i) out.logins[p][i] += c.logins[p][i].load(r);
    }
    for (std::uint32_t m = 0; m < maps; ++m) {
      for (std::size_t i = 0; i < kMapResults; ++i) out.map_lookups[m][i] += c.map_lookups[m][i].load(r);
      for (std::size_t i = 0; i < kBuckets; ++i) out.map_latency[m][i] += c.map_latency[m][i].load(r);
      out.map_latency_us[m] += c.map_latency_us[m].load(r);
    }
    for (std::size_t i = 0; i < kCacheResults; ++i) out.cache[i] += c.cache[i].load(r);
    out.lookup_timeouts += c.lookup_timeouts.load(r);
    for (std::uint32_t b = 0; b < backends; ++b)
      out.backend_connect_failures[b] += c.backend_connect_failures[b].load(r);
    for (std::size_t i = 0; i < kRcptResults; ++i) out.lmtp_recipients[i] += c.lmtp_recipients[i].load(r);
    for (int side = 0; side < 2; ++side)
      for (int i = 0; i < 2; ++i) out.tls[side][i] += c.tls[side][i].load(r);
    for (std::size_t f = 0; f < kFamilies; ++f)
      for (std::size_t st = 0; st < kStages; ++st) out.sessions[f][st] += s.g.sessions[f][st].load(r);
    for (std::uint32_t i = 0; i < stores; ++i)
      if (s.g.store_down_until_ms[i].load(r) > now_ms) out.stores[i].up = false;
  }
  return out;
}

}  // namespace sy::metrics
