// The counting calls and the master's side of the block (see metrics.h, block.h).
//
// Process-wide state, on purpose: the sites count with one line and no context to hand
// around. The block pointer is set before the first fork (master) and the label tables
// when a worker starts, before its lookup thread does; afterwards they are only read.
#include "metrics/metrics.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <vector>

#include "backend/target.h"
#include "config/config.h"
#include "metrics/block.h"

namespace sy::metrics {
namespace {

std::unique_ptr<Block> g_owned;  // the master's mapping (inherited by every worker)
Block* g_block = nullptr;
Slot* g_slot = nullptr;          // where this process counts; null: nowhere

// This worker's labels, from its config: map i of the chain, back ends and store
// addresses by name.
std::vector<int> g_map_labels;
std::unordered_map<std::string, int> g_backend_labels;
std::unordered_map<std::string, std::vector<int>> g_store_labels;

constexpr auto kRelaxed = std::memory_order_relaxed;

void bump(Count& c, std::uint64_t n = 1) { c.fetch_add(n, kRelaxed); }

std::size_t index(Protocol p) { return static_cast<std::size_t>(p); }

// The label of each [[map]]: its module's name ("sqlite", or a path's file name without
// ".so"); the second map of the same module is "sqlite#2", and so on.
std::vector<std::string> map_names(const Config& config) {
  std::vector<std::string> names;
  std::map<std::string, int> seen;
  for (const auto& m : config.maps) {
    std::string name = m.module.substr(m.module.rfind('/') + 1);
    if (name.size() > 3 && name.compare(name.size() - 3, 3, ".so") == 0) name.resize(name.size() - 3);
    const int n = ++seen[name];
    names.push_back(n == 1 ? name : name + "#" + std::to_string(n));
  }
  return names;
}

// Every TCP address a back end's stores are reached at, as the health table names them.
template <typename Fn>
void for_each_store(const BackendConfig& b, Fn fn) {
  for (const std::string& host : b.hosts)
    for (const std::string* port : {&b.imap, &b.pop3, &b.lmtp})
      if (port->rfind("unix:", 0) != 0) fn(host_port(host, *port));
}

}  // namespace

void use(Block* block, int slot) {
  g_block = block;
  g_slot = block && slot >= 0 && static_cast<std::size_t>(slot) < kMaxSlots ? &block->slot(slot)
                                                                             : nullptr;
}

Block* current_block() { return g_block; }

bool create() {
  if (!g_owned) g_owned = Block::create();
  g_block = g_owned.get();
  return g_block != nullptr;
}

void register_names(const Config& config) {
  if (!g_block) return;
  for (const std::string& name : map_names(config)) g_block->add_map(name);
  for (const auto& [name, b] : config.backends) {
    const int label = g_block->add_backend(name);
    if (label >= 0) for_each_store(b, [&](const std::string& a) { g_block->add_store(label, a); });
  }
}

int claim_slot() { return g_block ? g_block->claim_slot() : -1; }

void slot_owner(int slot, int pid) {
  if (g_block) g_block->set_owner(slot, pid);
}

void become_worker(int slot, const Config& config) {
  use(g_block, slot);
  if (!g_block) return;
  g_map_labels.clear();
  for (const std::string& name : map_names(config)) g_map_labels.push_back(g_block->find_map(name));
  g_backend_labels.clear();
  g_store_labels.clear();
  for (const auto& [name, b] : config.backends) {
    const int label = g_block->find_backend(name);
    if (label >= 0) g_backend_labels[name] = label;
    for_each_store(b, [&](const std::string& a) { g_store_labels[a] = g_block->find_stores(a); });
  }
}

void worker_gone(int pid) {
  if (g_block) g_block->release_pid(pid);
}

void reload(bool ok) {
  if (g_block) bump(g_block->header().reloads[ok ? 0 : 1]);
}

void worker_restart() {
  if (g_block) bump(g_block->header().worker_restarts);
}

void connection(Protocol p, bool accepted) {
  if (g_slot) bump(g_slot->c.connections[index(p)][accepted ? 0 : 1]);
}

void login(Protocol p, LoginResult r) {
  if (g_slot) bump(g_slot->c.logins[index(p)][static_cast<std::size_t>(r)]);
}

void relayed(Protocol p, std::uint64_t to_store, std::uint64_t to_client) {
  if (!g_slot) return;
  bump(g_slot->c.relayed[index(p)][0], to_store);
  bump(g_slot->c.relayed[index(p)][1], to_client);
}

void map_lookup(std::size_t chain_index, MapResult r, std::chrono::microseconds took) {
  if (!g_slot || chain_index >= g_map_labels.size() || g_map_labels[chain_index] < 0) return;
  const int m = g_map_labels[chain_index];
  bump(g_slot->c.map_lookups[m][static_cast<std::size_t>(r)]);
  const double seconds = static_cast<double>(took.count()) / 1e6;
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(kLatencyBounds.begin(), kLatencyBounds.end(), seconds) - kLatencyBounds.begin());
  bump(g_slot->c.map_latency[m][bucket]);
  bump(g_slot->c.map_latency_us[m], static_cast<std::uint64_t>(std::max<std::int64_t>(took.count(), 0)));
}

void cache(CacheResult r) {
  if (g_slot) bump(g_slot->c.cache[static_cast<std::size_t>(r)]);
}

void lookup_timeout() {
  if (g_slot) bump(g_slot->c.lookup_timeouts);
}

void backend_connect_failed(const std::string& backend) {
  if (!g_slot) return;
  int label = 0;  // "-": a host the map named
  if (!backend.empty()) {
    auto it = g_backend_labels.find(backend);
    if (it == g_backend_labels.end()) return;
    label = it->second;
  }
  bump(g_slot->c.backend_connect_failures[label]);
}

void lmtp_recipient(RcptResult r) {
  if (g_slot) bump(g_slot->c.lmtp_recipients[static_cast<std::size_t>(r)]);
}

void tls_handshake(TlsSide side, bool ok) {
  if (g_slot) bump(g_slot->c.tls[static_cast<std::size_t>(side)][ok ? 0 : 1]);
}

void session(Family kind, std::size_t stage, int delta) {
  if (!g_slot || stage >= kStages) return;
  g_slot->g.sessions[static_cast<std::size_t>(kind)][stage].fetch_add(delta, kRelaxed);
}

void store_down(const std::string& endpoint, std::chrono::steady_clock::time_point until) {
  if (!g_slot) return;
  auto it = g_store_labels.find(endpoint);
  if (it == g_store_labels.end()) return;
  const std::int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(until.time_since_epoch()).count();
  for (int i : it->second)
    if (i >= 0) g_slot->g.store_down_until_ms[i].store(ms, kRelaxed);
}

void store_up(const std::string& endpoint) {
  if (!g_slot) return;
  auto it = g_store_labels.find(endpoint);
  if (it == g_store_labels.end()) return;
  for (int i : it->second)
    if (i >= 0) g_slot->g.store_down_until_ms[i].store(0, kRelaxed);
}

}  // namespace sy::metrics
