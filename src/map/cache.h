// The per-worker lookup cache: answers kept for cache_ttl (found, hold) or negative_ttl
// (not found), at most `capacity` entries (least recently used dropped first), and kept
// stale_ttl longer to stand in when the maps fail. TempFail is never stored. Used only on
// the worker's event loop: no locking. Times are passed in, so it is pure and testable.
#ifndef SWITCHYARD_MAP_CACHE_H
#define SWITCHYARD_MAP_CACHE_H

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>

#include "map/chain.h"

namespace sy {

class LookupCache {
 public:
  using Clock = std::chrono::steady_clock;
  struct Settings {
    std::chrono::milliseconds ttl{60000};
    std::chrono::milliseconds negative_ttl{10000};
    std::chrono::milliseconds stale_ttl{0};
    std::size_t capacity = 10000;  // 0: no cache
  };
  explicit LookupCache(Settings s) : s_(s) {}

  // A fresh answer, or nullopt.
  std::optional<ChainReply> fresh(const std::string& key, Clock::time_point now);
  // An expired answer still within stale_ttl, for when the maps fail.
  std::optional<ChainReply> stale(const std::string& key, Clock::time_point now);
  // Stores an answer (TempFail is ignored).
  void store(const std::string& key, const ChainReply& r, Clock::time_point now);
  void clear() { lru_.clear(), index_.clear(); }
  // Drops every entry whose key starts with `prefix`; returns how many.
  std::size_t forget(const std::string& prefix);
  std::size_t size() const { return index_.size(); }

 private:
  struct Entry {
    std::string key;
    ChainReply reply;
    Clock::time_point expires;
  };
  Settings s_;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace sy

#endif
