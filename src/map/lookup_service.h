// Runs map lookups off the event loop: up to [lookup] concurrency lookup threads per
// worker call the map chain, started as the questions need them (a module that does not
// declare itself thread-safe is still called from one thread at a time: MapModule locks),
// and each answer comes back to the loop as a completion. A lookup not answered within the deadline completes as TempFail;
// its late answer is dropped. Answers are cached on the loop (see cache.h): a fresh hit
// never leaves the loop, and a stale one stands in when the maps fail.
//
// The queue is bounded ([lookup] queue_limit, and per_client_limit for one client
// address): past either, a lookup is TempFail at once instead of waiting behind work an
// attacker queued. The same key already on its way to the maps is asked once and the
// answer shared; a question everybody stopped waiting for (their deadlines passed) is
// dropped before it reaches the maps.
#ifndef SWITCHYARD_MAP_LOOKUP_SERVICE_H
#define SWITCHYARD_MAP_LOOKUP_SERVICE_H

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/socket.h"  // Asio, included the one way
#include <thread>

#include "config/duration.h"
#include "config/config.h"
#include "map/cache.h"
#include "map/chain.h"

namespace sy {

class HoldSet;

class LookupService {
 public:
  LookupService(asio::io_context& io, std::shared_ptr<const MapChain> chain,
                const LookupConfig& config);
  ~LookupService();  // stops the threads (after the lookups they are in return)

  asio::awaitable<ChainReply> lookup(LookupRequest request);
  void flush_cache() { cache_.clear(); }
  // Forgets what the cache holds for one user (every protocol).
  void forget(const std::string& key) { cache_.forget(key + '\n'); }
  // Keys held by the proxy itself (switchyardctl hold): answered Hold without asking the
  // maps. The set belongs to the worker and must outlive this service.
  void set_holds(const HoldSet* holds) { holds_ = holds; }
  std::size_t cache_size() const { return cache_.size(); }

 private:
  struct Flight;  // one question on its way to the maps, and who waits for its answer
  asio::awaitable<ChainReply> ask_maps(LookupRequest request, std::string cache_key);
  void finish(const std::shared_ptr<Flight>& flight, ChainReply answer);
  // True (and *reply set to Hold) when `key` is held by switchyardctl hold.
  bool held(const std::string& key, ChainReply* reply) const;
  void submit(std::function<void()> job);
  void run();

  asio::io_context& io_;
  std::shared_ptr<const MapChain> chain_;
  Millis timeout_;
  LookupCache cache_;
  const HoldSet* holds_ = nullptr;
  std::size_t queue_limit_;
  std::size_t per_client_limit_;
  // Loop only: questions in flight by cache key, their count, and their count by client.
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;
  std::size_t flights_in_queue_ = 0;
  std::unordered_map<std::string, std::size_t> per_client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::size_t max_threads_;
  std::size_t idle_threads_ = 0;  // waiting for a job (under mu_)
  std::vector<std::thread> threads_;  // started by submit() on the loop, joined at the end
};

}  // namespace sy

#endif
