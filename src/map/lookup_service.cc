// Lookup threads (see lookup_service.h).
#include "map/lookup_service.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "metrics/metrics.h"
#include "worker/holds.h"

namespace sy {

// A question on its way to the maps. `waiting` and `waiters` are the loop's; `abandoned`
// is how the loop tells the lookup threads that nobody wants the answer any more.
struct LookupService::Flight {
  std::string key;     // cache key
  std::string client;  // whose per-client count it holds ("" for none)
  std::vector<std::function<void(ChainReply)>> waiters;
  std::size_t waiting = 0;
  std::atomic<bool> abandoned{false};
};

namespace {

// One caller's wait: the answer or its deadline, whichever comes first. Loop only.
template <typename Handler>
struct Waiter {
  Waiter(asio::io_context& io, Handler h) : handler(std::move(h)), timer(io) {}
  Handler handler;
  asio::steady_timer timer;
  bool done = false;
  void complete(ChainReply r) {
    if (done) return;
    done = true;
    timer.cancel();
    Handler h = std::move(handler);
    h(std::move(r));
  }
};

ChainReply temp_fail(const char* why) {
  ChainReply r;
  r.reply.status = LookupStatus::TempFail;
  r.reply.detail = why;
  return r;
}

}  // namespace

namespace {

LookupCache::Settings cache_settings(const LookupConfig& c) {
  LookupCache::Settings s;
  s.ttl = c.cache_ttl;
  s.negative_ttl = c.negative_ttl;
  s.stale_ttl = c.stale_ttl;
  s.capacity = c.cache_size;
  return s;
}

}  // namespace

LookupService::LookupService(asio::io_context& io, std::shared_ptr<const MapChain> chain,
                             const LookupConfig& config)
    : io_(io),
      chain_(std::move(chain)),
      timeout_(config.timeout),
      cache_(cache_settings(config)),
      queue_limit_(config.queue_limit),
      per_client_limit_(config.per_client_limit),
      max_threads_(std::max<std::size_t>(1, config.concurrency)) {}

LookupService::~LookupService() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

// On the loop. A thread more is started when none is idle, up to the limit; past it the
// job waits in jobs_ for the first thread that comes free.
void LookupService::submit(std::function<void()> job) {
  bool start = false;
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
    if (idle_threads_ < jobs_.size() && threads_.size() < max_threads_) start = true;
  }
  if (start)
    threads_.emplace_back([this] { run(); });
  else
    cv_.notify_one();
}

void LookupService::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_threads_;
    cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    --idle_threads_;
    if (stop_) return;
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    job = nullptr;  // what it holds goes with it, outside the lock
    lock.lock();
  }
}

bool LookupService::held(const std::string& key, ChainReply* reply) const {
  if (!holds_ || !holds_->contains(key)) return false;
  *reply = ChainReply{};
  reply->reply.status = LookupStatus::Hold;
  reply->reply.detail = "held by switchyardctl hold";
  reply->map_name = "hold";
  return true;
}

asio::awaitable<ChainReply> LookupService::lookup(LookupRequest request) {
  ChainReply answer;
  if (held(request.key, &answer)) co_return answer;
  const std::string user = request.key;
  // Cached per key and protocol (an extended map may answer by protocol).
  const std::string key = request.key + '\n' + request.protocol;
  if (auto hit = cache_.fresh(key, LookupCache::Clock::now())) {
    metrics::cache(metrics::CacheResult::Hit);
    hit->cached = true;
    hit->took = std::chrono::microseconds(0);
    co_return *hit;
  }
  metrics::cache(metrics::CacheResult::Miss);
  answer = co_await ask_maps(std::move(request), key);
  // A hold taken while the maps were asked wins: their answer may name the store the user
  // is being moved away from.
  if (held(user, &answer)) co_return answer;
  if (answer.reply.status != LookupStatus::TempFail) {
    cache_.store(key, answer, LookupCache::Clock::now());
    co_return answer;
  }
  auto old = cache_.stale(key, LookupCache::Clock::now());
  if (!old) co_return answer;
  metrics::cache(metrics::CacheResult::Stale);
  old->cached = true;
  old->stale = true;
  old->reply.detail = answer.reply.detail;
  co_return *old;
}

asio::awaitable<ChainReply> LookupService::ask_maps(LookupRequest request,
                                                    std::string cache_key) {
  auto initiate = [this](auto handler, LookupRequest k, std::string key) {
    using H = decltype(handler);
    auto w = std::make_shared<Waiter<H>>(io_, std::move(handler));
    std::shared_ptr<Flight> flight;
    if (auto it = flights_.find(key); it != flights_.end()) {
      flight = it->second;  // already asked: share the answer
    } else if (flights_in_queue_ >= queue_limit_) {
      return w->complete(temp_fail("lookup queue full"));
    } else if (!k.client_address.empty() && per_client_[k.client_address] >= per_client_limit_) {
      return w->complete(temp_fail("too many lookups from this address"));
    } else {
      flight = std::make_shared<Flight>();
      flight->key = key;
      flight->client = k.client_address;
      flights_.emplace(key, flight);
      ++flights_in_queue_;
      if (!flight->client.empty()) ++per_client_[flight->client];
      // The job hands its reference back to the loop, so the flight ends on the loop.
      k.abandoned = &flight->abandoned;  // the job holds the flight: it outlives k
      submit([this, flight, k = std::move(k)]() {
        ChainReply r = chain_->lookup(k);
        asio::post(io_, [this, flight, r = std::move(r)]() mutable { finish(flight, std::move(r)); });
      });
    }
    ++flight->waiting;
    flight->waiters.push_back([w](ChainReply r) { w->complete(std::move(r)); });
    w->timer.expires_after(timeout_);
    w->timer.async_wait([this, w, flight](const std::error_code& ec) {
      if (ec || w->done) return;
      w->complete(temp_fail("lookup timed out"));
      metrics::lookup_timeout();
      if (--flight->waiting == 0) {
        // Everybody gave up: the maps need not be asked, and a new caller starts afresh.
        flight->abandoned = true;
        auto it = flights_.find(flight->key);
        if (it != flights_.end() && it->second == flight) flights_.erase(it);
      }
    });
  };
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(ChainReply)>(
      initiate, asio::use_awaitable, std::move(request), std::move(cache_key));
}

void LookupService::finish(const std::shared_ptr<Flight>& flight, ChainReply answer) {
  auto it = flights_.find(flight->key);
  if (it != flights_.end() && it->second == flight) flights_.erase(it);
  --flights_in_queue_;
  if (!flight->client.empty()) {
    auto c = per_client_.find(flight->client);
    if (c != per_client_.end() && --c->second == 0) per_client_.erase(c);
  }
  auto waiters = std::move(flight->waiters);
  for (auto& w : waiters) w(answer);  // each completes at most once (Waiter::done)
}

}  // namespace sy
