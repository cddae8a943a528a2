// What one worker's sessions share: its event loop, config, lookup thread and pipe pool.
// Owned by the worker (worker.cc); sessions hold a reference for their lifetime.
#ifndef SWITCHYARD_MASTER_RUNTIME_H
#define SWITCHYARD_MASTER_RUNTIME_H

#include <asio.hpp>
#include <asio/ssl/context.hpp>
#include <memory>
#include <cstddef>
#include <functional>
#include <string>
#include <unordered_map>

#include "config/config.h"
#include "core/client_table.h"
#include "net/health.h"

namespace sy {

class BufferPool;
class LookupService;
class PipePool;

using Socket = asio::generic::stream_protocol::socket;

// What the worker (signals, control socket) may do with a live session.
class SessionHandle {
 public:
  // Before login: say goodbye and close now (a stopping worker); logged-in sessions get
  // a grace period instead.
  virtual void shut_down() = 0;
  // Close both sides now, whatever the phase (switchyardctl kick).
  virtual void kick() = 0;
  virtual const std::string& user() const = 0;   // login name, "" before LOGIN
  virtual std::string describe() const = 0;      // one line for switchyardctl who

 protected:
  ~SessionHandle() = default;
};

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
  std::size_t sessions = 0;           // live sessions in this worker
  std::uint64_t next_session_id = 1;
  bool draining = false;              // stop accepting; exit when sessions reach 0
  std::unordered_map<std::uint64_t, SessionHandle*> prelogin;  // not logged in yet, by id
  std::unordered_map<std::uint64_t, SessionHandle*> live;      // every session, by id
  std::function<void()> on_idle;      // called when draining and the last session ends

  void session_started() { ++sessions; }
  void session_ended() {
    if (--sessions == 0 && draining && on_idle) on_idle();
  }
};

}  // namespace sy

#endif
