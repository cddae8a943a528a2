// Kept LMTP store connections (see store_pool.h).
#include "lmtp/store_pool.h"

#include <algorithm>

#include "log/log.h"

namespace sy::lmtp {

StorePool::StorePool(StoreEnv env, std::size_t per_store, Millis max_idle)
    : env_(std::move(env)), per_store_(per_store), max_idle_(max_idle), reaper_(env_.io) {}

StorePool::~StorePool() { clear(); }

std::unique_ptr<StoreConnection> StorePool::take(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  const auto now = StoreConnection::Clock::now();
  while (!list.empty()) {
    std::unique_ptr<StoreConnection> c = std::move(list.back());
    list.pop_back();
    c->stream().cancel();  // ends the idle watch
    if (now - c->idle_since < max_idle_ && c->reusable()) {
      if (list.empty()) idle_.erase(it);
      return c;
    }
    c->close();
  }
  idle_.erase(it);
  return nullptr;
}

void StorePool::give(std::unique_ptr<StoreConnection> c) {
  if (!c) return;
  auto& list = idle_[c->key()];
  if (!c->reusable() || list.size() >= per_store_) {
    c->close();
    if (list.empty()) idle_.erase(c->key());
    return;
  }
  c->idle_since = StoreConnection::Clock::now();
  StoreConnection* raw = c.get();
  list.push_back(std::move(c));
  watch(raw);
  arm_reaper();
}

void StorePool::watch(StoreConnection* c) {
  // Readable while idle means the store closed the connection or said something out of
  // turn: either way it is no longer in step. (On take(), cancel() ends the wait with
  // operation_aborted, and the handler does nothing.)
  c->stream().socket().async_wait(Socket::wait_read, [this, c](const std::error_code& ec) {
    if (!ec) drop(c);
  });
}

void StorePool::drop(StoreConnection* c) {
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    auto& list = it->second;
    auto found = std::find_if(list.begin(), list.end(),
                              [c](const std::unique_ptr<StoreConnection>& p) { return p.get() == c; });
    if (found == list.end()) continue;
    LOG_DEBUG("lmtp pool: store %s closed a kept connection", (*found)->server().c_str());
    (*found)->close();
    list.erase(found);
    if (list.empty()) idle_.erase(it);
    return;
  }
}

void StorePool::arm_reaper() {
  if (reaper_armed_) return;
  reaper_armed_ = true;
  reaper_.expires_after(max_idle_);
  reaper_.async_wait([this](const std::error_code& ec) {
    if (ec) return;  // cancelled by clear() or re-armed: whoever did it owns the flag
    reaper_armed_ = false;
    reap();
    if (!idle_.empty()) arm_reaper();
  });
}

void StorePool::reap() {
  const auto now = StoreConnection::Clock::now();
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    for (auto c = list.begin(); c != list.end();) {
      if (now - (*c)->idle_since >= max_idle_) {
        (*c)->close();
        c = list.erase(c);
      } else {
        ++c;
      }
    }
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

void StorePool::clear() {
  for (auto& [key, list] : idle_)
    for (auto& c : list) c->close();
  idle_.clear();
  reaper_.cancel();
  reaper_armed_ = false;
}

}  // namespace sy::lmtp
