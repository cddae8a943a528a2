// Per-client-address counters shared by all workers, for max_connections_per_ip and the
// penalty after failed logins. A fixed table in anonymous shared memory, made by the
// master before it forks; a slot is chosen by a hash of (listener, address), so two
// addresses may now and then share a slot (which errs on the strict side). Lock-free.
#ifndef SWITCHYARD_PROXY_ADMISSION_H
#define SWITCHYARD_PROXY_ADMISSION_H

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace sy {

struct ClientSlot {
  std::atomic<std::uint32_t> connections{0};
  std::atomic<std::uint32_t> failures{0};
  std::atomic<std::int64_t> last_failure_ms{0};  // steady clock
};

class ClientTable {
 public:
  // nullptr when mmap fails.
  static std::unique_ptr<ClientTable> create(std::size_t slots = 65536);
  ~ClientTable();
  ClientTable(const ClientTable&) = delete;
  ClientTable& operator=(const ClientTable&) = delete;

  // `scope` keeps listeners apart (connection limits are per listener); use 0 for the
  // login penalty, which follows an address across listeners.
  ClientSlot& slot(std::uint32_t scope, std::string_view address);

 private:
  ClientTable(ClientSlot* slots, std::size_t n) : slots_(slots), n_(n) {}
  ClientSlot* slots_;
  std::size_t n_;
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
