// Memory given back after a crowd (see memory.h).
#include "worker/memory.h"

#include <malloc.h>

#include <chrono>
#include <memory>

#include "log/log.h"
#include "worker/context.h"

namespace sy {
namespace {

constexpr auto kInterval = std::chrono::seconds(5);
constexpr std::size_t kThreshold = 8u << 20;  // 8 MiB free in the heap

void schedule(const std::shared_ptr<asio::steady_timer>& timer) {
  timer->expires_after(kInterval);
  timer->async_wait([timer](const std::error_code& ec) {
    if (ec) return;
    trim_memory_if_idle(kThreshold);
    schedule(timer);
  });
}

}  // namespace

bool trim_memory_if_idle(std::size_t threshold) {
  struct mallinfo2 before = ::mallinfo2();
  if (before.fordblks < threshold || before.fordblks < before.uordblks) return false;
  ::malloc_trim(0);
  LOG_DEBUG("memory: %zu kB free in the heap (%zu kB in use), given back",
            before.fordblks >> 10, before.uordblks >> 10);
  return true;
}

void watch_memory(WorkerContext& rt) {
  schedule(std::make_shared<asio::steady_timer>(rt.io));
}

}  // namespace sy
