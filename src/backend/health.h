// Back-end health as one worker sees it. A store address that refused a connection or
// timed out is skipped for `down_time` (passive), and [backend.NAME] check_interval
// probes addresses in the background (active, worker.cc). Skipping never reorders: the
// fail-over order is kept, and when every address is down they are all tried anyway.
// Used on the worker's event loop only; times are passed in.
#ifndef SWITCHYARD_BACKEND_HEALTH_H
#define SWITCHYARD_BACKEND_HEALTH_H

#include <chrono>
#include <string>
#include <unordered_map>

#include "metrics/metrics.h"

namespace sy {

class HealthTable {
 public:
  using Clock = std::chrono::steady_clock;

  // `endpoint` is "host:port" as configured (before name resolution).
  bool is_down(const std::string& endpoint, Clock::time_point now) const {
    auto it = down_until_.find(endpoint);
    return it != down_until_.end() && it->second > now;
  }
  // Returns true when this changes the endpoint's state (for the log).
  bool failed(const std::string& endpoint, Clock::time_point now,
              std::chrono::milliseconds down_time) {
    bool was_down = is_down(endpoint, now);
    down_until_[endpoint] = now + down_time;
    metrics::store_down(endpoint, now + down_time);
    return !was_down;
  }
  bool ok(const std::string& endpoint) {
    if (down_until_.erase(endpoint) == 0) return false;
    metrics::store_up(endpoint);
    return true;
  }

 private:
  std::unordered_map<std::string, Clock::time_point> down_until_;
};

}  // namespace sy

#endif
