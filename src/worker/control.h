// The worker's control socket, for switchyardctl: each worker listens on
// <control_dir>/worker-<pid>.sock (made as root before the privilege drop, mode 0600,
// so only root may talk to it). One command per connection, a line in, lines out, then
// a line with a single ".":
//   status         worker <pid> sessions <n> prelogin <n> cache <entries>
//   who            one line per session: id kind stage client=... (by kind) key="..."
//   kick USER      close the sessions whose map key is USER's, any spelling ("kicked <n>")
//   flush          empty the lookup cache and the kept LMTP connections ("flushed")
#ifndef SWITCHYARD_WORKER_CONTROL_H
#define SWITCHYARD_WORKER_CONTROL_H

#include <memory>
#include <string>

#include "worker/context.h"

namespace sy {

// The listening control socket of one worker, owned by the worker (it must go before the
// worker's event loop does).
class ControlSocket {
 public:
  ControlSocket(std::unique_ptr<asio::local::stream_protocol::acceptor> acceptor, std::string path);
  ~ControlSocket();
  void serve(WorkerContext& rt);  // once the worker's context exists
  const std::string& path() const { return path_; }

 private:
  std::unique_ptr<asio::local::stream_protocol::acceptor> acceptor_;
  std::string path_;
};

// Opens the socket; nullptr (and *error) when it cannot.
std::unique_ptr<ControlSocket> open_control(asio::io_context& io, const std::string& dir,
                                            std::string* error);
// The socket path of worker `pid` (the master removes it when the worker dies).
std::string control_path(const std::string& dir, int pid);

}  // namespace sy

#endif
