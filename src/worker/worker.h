// A worker process: loads the maps (before dropping privileges), drops to the configured
// account, then serves every listener from one event loop until told to stop.
#ifndef SWITCHYARD_WORKER_WORKER_H
#define SWITCHYARD_WORKER_WORKER_H

#include <sys/types.h>

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
  // The master's view of a port group (reuseport): every worker slot's socket, fd being
  // the first. Empty for a shared socket, and in what a worker is given.
  std::vector<int> group;
};

// Runs until SIGTERM/SIGINT (stop: stop accepting, say goodbye to every session, let LMTP
// transactions finish within shutdown_grace, then exit) or SIGUSR2 (drain: stop
// accepting, exit when the last session ends; the master sends SIGTERM once the drain has
// lasted its drain_timeout). Returns an exit code.
// `store_tls` is the client context for back ends that use TLS.
// `clients` is the table shared by all workers (per-address limits).
// `supervisor`: the master's pid when forked from one; the worker then ends (SIGTERM) when
// the master dies, whatever killed it. 0 in single-process mode.
int run_worker(const Config& config, const std::vector<BoundListener>& listeners,
               std::shared_ptr<TlsContext> store_tls, ClientTable* clients,
               pid_t supervisor = 0);

// setgroups/setresgid/setresuid to `user`; a no-op (true) when not running as root.
[[nodiscard]] bool drop_privileges(const std::string& user, std::string* error);

}  // namespace sy

#endif
