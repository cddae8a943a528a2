// What one worker's sessions share: its event loop, config, lookup thread and pipe pool.
// Owned by the worker (worker.cc); sessions hold a reference for their lifetime.
#ifndef SWITCHYARD_MASTER_RUNTIME_H
#define SWITCHYARD_MASTER_RUNTIME_H

#include <memory>
#include <cstddef>
#include <functional>
#include <string>
#include <unordered_map>

#include "config/config.h"
#include "net/socket.h"
#include "tls/tls.h"
#include "proxy/admission.h"
#include "backend/health.h"
#include "worker/holds.h"
#include "worker/session_registry.h"

namespace sy {

class BufferPool;
class LookupService;
class PipePool;
namespace lmtp {
class StorePool;
}


struct Runtime {
  Runtime(asio::io_context& i, const Config& c, LookupService& l, PipePool& p, BufferPool& b,
          std::shared_ptr<asio::ssl::context> store, ClientTable* table)
      : io(i), config(c), lookups(l), pipes(p), buffers(b), store_tls(std::move(store)),
        clients(table) {
    const LimitsConfig& lim = c.limits;
    penalty.base = lim.auth_failure_delay;
    penalty.max = lim.auth_failure_delay_max;
    penalty.block_after = static_cast<std::uint32_t>(lim.auth_failure_block_after);
    penalty.window = lim.auth_failure_window;
  }

  asio::io_context& io;
  const Config& config;
  LookupService& lookups;
  PipePool& pipes;
  BufferPool& buffers;
  std::shared_ptr<asio::ssl::context> store_tls;  // for back ends with tls != "none"
  ClientTable* clients;                           // shared by all workers; may be null
  HealthTable health;                             // store addresses seen failing
  PenaltyPolicy penalty;
  SessionRegistry sessions;           // every live session of this worker
  HoldSet holds;                      // users held by switchyardctl hold
  bool draining = false;              // stop accepting; exit when sessions reach 0
  lmtp::StorePool* lmtp_pool = nullptr;  // kept LMTP store connections (owned by the worker)
};

}  // namespace sy

#endif
