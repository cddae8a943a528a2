// Lookup cache (see cache.h).
#include "map/cache.h"

namespace sy {

std::optional<ChainReply> LookupCache::fresh(const std::string& key, Clock::time_point now) {
  auto it = index_.find(key);
  if (it == index_.end() || it->second->expires <= now) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->reply;
}

std::optional<ChainReply> LookupCache::stale(const std::string& key, Clock::time_point now) {
  auto it = index_.find(key);
  if (it == index_.end() || it->second->expires + s_.stale_ttl <= now) return std::nullopt;
  return it->second->reply;
}

void LookupCache::store(const std::string& key, const ChainReply& r, Clock::time_point now) {
  if (s_.capacity == 0 || r.reply.status == LookupStatus::TempFail) return;
  auto ttl = r.reply.status == LookupStatus::NotFound ? s_.negative_ttl : s_.ttl;
  if (ttl.count() <= 0 && s_.stale_ttl.count() <= 0) return;
  auto it = index_.find(key);
  if (it != index_.end()) {
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front(Entry{key, r, now + ttl});
  index_[key] = lru_.begin();
  while (index_.size() > s_.capacity) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

std::size_t LookupCache::forget(const std::string& prefix) {
  std::size_t n = 0;
  for (auto it = lru_.begin(); it != lru_.end();) {
    if (it->key.compare(0, prefix.size(), prefix) == 0) {
      index_.erase(it->key);
      it = lru_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

}  // namespace sy
