// What one worker's sessions share: its event loop, config, lookup thread and pipe pool.
// Owned by the worker (worker.cc); sessions hold a reference for their lifetime.
#ifndef SWITCHYARD_MASTER_RUNTIME_H
#define SWITCHYARD_MASTER_RUNTIME_H

#include <asio.hpp>
#include <cstddef>
#include <functional>

#include "config/config.h"

namespace sy {

class LookupService;
class PipePool;

using Socket = asio::generic::stream_protocol::socket;

struct Runtime {
  asio::io_context& io;
  const Config& config;
  LookupService& lookups;
  PipePool& pipes;
  std::size_t sessions = 0;           // live sessions in this worker
  std::uint64_t next_session_id = 1;
  bool draining = false;              // stop accepting; exit when sessions reach 0
  std::function<void()> on_idle;      // called when draining and the last session ends

  void session_started() { ++sessions; }
  void session_ended() {
    if (--sessions == 0 && draining && on_idle) on_idle();
  }
};

}  // namespace sy

#endif
