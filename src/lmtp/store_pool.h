// Idle LMTP connections to the stores, kept between messages so that a busy router does
// not connect and LHLO for every message. One pool per worker, owned by the worker's
// context and used from its event loop only (no locking).
//
// Only reusable connections (StoreConnection::reusable()) are kept; each is watched while
// idle, so a store that closes it or speaks out of turn (a 421 before closing) takes it
// out of the pool at once. Connections idle longer than `max_idle` are closed by a reaper
// that runs only while the pool holds something. clear() closes them all: on `flush`,
// when the worker drains after a reload, and when it stops.
#ifndef SWITCHYARD_LMTP_STORE_POOL_H
#define SWITCHYARD_LMTP_STORE_POOL_H

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lmtp/store_client.h"

namespace sy::lmtp {

class StorePool {
 public:
  // `env` is what every connection of this pool works with (it lives in the pool).
  StorePool(StoreEnv env, std::size_t per_store, Millis max_idle);
  ~StorePool();
  StorePool(const StorePool&) = delete;
  StorePool& operator=(const StorePool&) = delete;

  // The most recently used idle connection for `key`, or nullptr.
  std::unique_ptr<StoreConnection> take(const std::string& key);
  // Keeps `c` if it is reusable and there is room; otherwise closes it.
  void give(std::unique_ptr<StoreConnection> c);
  void clear();
  const StoreEnv& env() const { return env_; }

 private:
  void watch(StoreConnection* c);
  void drop(StoreConnection* c);  // the store closed or spoke: out of the pool
  void arm_reaper();
  void reap();

  StoreEnv env_;
  std::size_t per_store_;
  Millis max_idle_;
  asio::steady_timer reaper_;
  bool reaper_armed_ = false;
  std::map<std::string, std::vector<std::unique_ptr<StoreConnection>>> idle_;
};

}  // namespace sy::lmtp

#endif
