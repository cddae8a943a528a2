// What switchyard -t, the start and every reload check beyond the config file's own rules
// (config/config.h): what the file may say but this machine cannot run. The account the
// workers become must exist, and the fallback must name a [backend.NAME], an address or
// a host name that resolves. (Duplicate listen addresses are the loader's own check.)
// Blocking (getpwnam, getaddrinfo): for the master, never for a worker's loop.
#ifndef SWITCHYARD_MASTER_PREFLIGHT_H
#define SWITCHYARD_MASTER_PREFLIGHT_H

#include <string>

#include "config/config.h"

namespace sy {

// False and *error ("file: what is wrong, and how to fix it") when `config` cannot run.
[[nodiscard]] bool preflight(const Config& config, std::string* error);

// The account workers run as: `user`, or "nobody" when unset.
std::string worker_account(const Config& config);

}  // namespace sy

#endif
