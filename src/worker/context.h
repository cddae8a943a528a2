// Everything one worker's sessions share, with one owner. The worker (worker/worker.cc)
// builds it after dropping privileges, and it outlives every session; sessions and the
// control socket hold a reference for their lifetime. Nothing here is namespace-scope
// and nothing outlives the worker's event loop: the context goes before the loop does.
#ifndef SWITCHYARD_WORKER_CONTEXT_H
#define SWITCHYARD_WORKER_CONTEXT_H

#include <memory>

#include "backend/health.h"
#include "config/config.h"
#include "map/lookup_service.h"
#include "net/socket.h"
#include "proxy/admission.h"
#include "relay/buffer_pool.h"
#include "relay/pipe_pool.h"
#include "tls/tls.h"
#include "worker/holds.h"
#include "worker/session_registry.h"

namespace sy {

class ControlSocket;
class MapChain;
namespace lmtp {
class StorePool;
}

struct WorkerContext {
  WorkerContext(asio::io_context& io, const Config& config, std::shared_ptr<const MapChain> chain,
                std::shared_ptr<TlsContext> store_tls, ClientTable* clients, HoldSet holds,
                std::unique_ptr<ControlSocket> control);
  ~WorkerContext();
  WorkerContext(const WorkerContext&) = delete;
  WorkerContext& operator=(const WorkerContext&) = delete;

  asio::io_context& io;
  const Config& config;

  // Lookups: the map chain off the loop, the cache, and the users held by switchyardctl.
  HoldSet holds;
  LookupService lookups;

  // Back ends: addresses seen failing, and the TLS context for stores that use TLS.
  std::shared_ptr<TlsContext> store_tls;
  HealthTable health;

  // Admission: per-address limits shared by all workers (may be null), the penalty rules.
  ClientTable* clients;
  PenaltyPolicy penalty;
  struct {
    std::int64_t last_said = 0;      // when a full table was last logged (steady ms)
    unsigned long long unsaid = 0;   // addresses left uncounted since then
  } uncounted;

  // Sessions: every live one, by kind and stage; draining: no longer accepting.
  SessionRegistry sessions;
  bool draining = false;

  // Pools: splice pipes and buffers for relays, kept LMTP connections to the stores.
  PipePool pipes;
  BufferPool buffers;
  std::unique_ptr<lmtp::StorePool> lmtp_pool;

  // The control socket switchyardctl talks to (may be null).
  std::unique_ptr<ControlSocket> control;
};

}  // namespace sy

#endif
