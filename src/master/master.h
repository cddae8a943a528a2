// The master process: checks the config, binds the listeners, forks the workers and
// supervises them. Signals are taken synchronously with sigtimedwait: SIGTERM/SIGINT stop,
// SIGHUP re-reads the config (new workers start, old ones drain), SIGCHLD respawns.
#ifndef SWITCHYARD_MASTER_MASTER_H
#define SWITCHYARD_MASTER_MASTER_H

#include <string>

namespace sy {

struct MasterOptions {
  std::string config_path;
  bool foreground = false;
  bool check_only = false;
};

int run_master(const MasterOptions& options);

}  // namespace sy

#endif
