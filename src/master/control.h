// The worker's control socket, for switchyardctl: each worker listens on
// <control_dir>/worker-<pid>.sock (made as root before the privilege drop, mode 0600,
// so only root may talk to it). One command per connection, a line in, lines out, then
// a line with a single ".":
//   status         worker <pid> sessions <n> prelogin <n> cache <entries>
//   who            one line per session: id protocol phase client user server
//   kick USER      close that user's sessions now ("kicked <n>")
//   flush          empty the lookup cache ("flushed")
#ifndef SWITCHYARD_MASTER_CONTROL_H
#define SWITCHYARD_MASTER_CONTROL_H

#include <string>

#include "master/runtime.h"

namespace sy {

// Opens the socket; false (and *error) when it cannot. The caller serves it with
// serve_control() once the event loop runs.
bool open_control(asio::io_context& io, const std::string& dir, std::string* error);
void serve_control(Runtime& rt);
// The socket path of worker `pid` (the master removes it when the worker dies).
std::string control_path(const std::string& dir, int pid);

}  // namespace sy

#endif
