// A worker process: loads the maps (before dropping privileges), drops to the configured
// account, then serves every listener from one event loop until told to stop.
#ifndef SWITCHYARD_WORKER_WORKER_H
#define SWITCHYARD_WORKER_WORKER_H

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/admission.h"
#include "tls/tls.h"

namespace sy {

struct BoundListener {
  ListenConfig config;
  int fd = -1;                       // listening socket, owned by the master
  std::shared_ptr<TlsContext> tls;   // server context, or nullptr without a certificate
};

// Runs until SIGTERM/SIGINT (stop: close listeners, end sessions after a grace period) or
// SIGUSR2 (drain: close listeners, exit when the last session ends). Returns an exit code.
// `store_tls` is the client context for back ends that use TLS.
// `clients` is the table shared by all workers (per-address limits).
int run_worker(const Config& config, const std::vector<BoundListener>& listeners,
               std::shared_ptr<TlsContext> store_tls, ClientTable* clients);

// setgroups/setresgid/setresuid to `user`; a no-op (true) when not running as root.
[[nodiscard]] bool drop_privileges(const std::string& user, std::string* error);

}  // namespace sy

#endif
