// The worker's control socket, for switchyardctl: each worker listens on
// <control_dir>/worker-<pid>.sock (made as root before the privilege drop, mode 0600,
// so only root may talk to it). One command per connection, a line in, lines out, then
// a line with a single ".". status, who, kick and flush answer with one JSON document:
//   status         {"pid", "started", "uptime_seconds", "draining", "sessions": {"total",
//                  "by_protocol": {PROTOCOL: {STAGE: n}}}, "cache", "backends", "holds"}
//   who [USER]     [{"id": "<pid>:<n>", "pid", "protocol", "stage", "phase", "client",
//                  ... (by kind: user, server; from, to; requests), "keys"}], all sessions
//                  or those whose map key is USER's
//   kick USER      close the sessions whose map key is USER's, any spelling ({"kicked": n})
//   flush [USER]   forget USER's cached answers, or empty the cache and the kept LMTP
//                  connections ({"flushed": KEY or "all"})
// and hold, inflight and release (switchyardctl hold/release) answer in text lines.
#ifndef SWITCHYARD_WORKER_CONTROL_H
#define SWITCHYARD_WORKER_CONTROL_H

#include <cstdint>
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
  std::int64_t started_;  // when the worker started (Unix time), for status
};

// Opens the socket; nullptr (and *error) when it cannot.
std::unique_ptr<ControlSocket> open_control(asio::io_context& io, const std::string& dir,
                                            const std::string& group, std::string* error);
// The socket path of worker `pid` (the master removes it when the worker dies).
std::string control_path(const std::string& dir, int pid);

// Who may use a control socket or the control directory (made by root): root alone
// (sockets 0600), or also the members of `group` (sockets 0660, the directory 0750, both
// that group's). False when it could not be done (the socket is then left 0600).
bool grant_control_access(const std::string& path, const std::string& group, bool directory);

}  // namespace sy

#endif
