// Shared client table (see client_table.h).
#include "proxy/admission.h"

#include <sys/mman.h>

#include <new>

namespace sy {

std::unique_ptr<ClientTable> ClientTable::create(std::size_t slots) {
  void* p = ::mmap(nullptr, slots * sizeof(ClientSlot), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* s = static_cast<ClientSlot*>(p);
  for (std::size_t i = 0; i < slots; ++i) new (&s[i]) ClientSlot();
  return std::unique_ptr<ClientTable>(new ClientTable(s, slots));
}

ClientTable::~ClientTable() { ::munmap(slots_, n_ * sizeof(ClientSlot)); }

ClientSlot& ClientTable::slot(std::uint32_t scope, std::string_view address) {
  std::uint64_t h = 1469598103934665603ull ^ scope;  // FNV-1a
  for (unsigned char c : address) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return slots_[h % n_];
}

std::chrono::milliseconds PenaltyPolicy::record_failure(ClientSlot& s, std::int64_t now) const {
  if (now - s.last_failure_ms.load(std::memory_order_relaxed) > window.count())
    s.failures.store(0, std::memory_order_relaxed);
  s.last_failure_ms.store(now, std::memory_order_relaxed);
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
