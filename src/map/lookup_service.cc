// Lookup thread (see lookup_service.h).
#include "map/lookup_service.h"

#include "worker/holds.h"

namespace sy {
namespace {

// Completion state shared by the timer and the lookup thread; whichever comes first
// completes the waiting coroutine. Touched only on the event loop's thread.
template <typename Handler>
struct Pending {
  Pending(asio::io_context& io, Handler h) : handler(std::move(h)), timer(io) {}
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
      thread_([this] { run(); }) {}

LookupService::~LookupService() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void LookupService::submit(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void LookupService::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

asio::awaitable<ChainReply> LookupService::lookup(LookupRequest request) {
  if (holds_ && holds_->contains(request.key)) {
    ChainReply held;
    held.reply.status = LookupStatus::Hold;
    held.reply.detail = "held by switchyardctl hold";
    held.map_name = "hold";
    co_return held;
  }
  // Cached per key and protocol (an extended map may answer by protocol).
  const std::string key = request.key + '\n' + request.protocol;
  if (auto hit = cache_.fresh(key, LookupCache::Clock::now())) {
    hit->cached = true;
    hit->took = std::chrono::microseconds(0);
    co_return *hit;
  }
  ChainReply answer = co_await ask_maps(std::move(request));
  if (answer.reply.status != LookupStatus::TempFail) {
    cache_.store(key, answer, LookupCache::Clock::now());
    co_return answer;
  }
  auto old = cache_.stale(key, LookupCache::Clock::now());
  if (!old) co_return answer;
  old->cached = true;
  old->stale = true;
  old->reply.detail = answer.reply.detail;
  co_return *old;
}

asio::awaitable<ChainReply> LookupService::ask_maps(LookupRequest request) {
  auto initiate = [this](auto handler, LookupRequest k) {
    using H = decltype(handler);
    auto p = std::make_shared<Pending<H>>(io_, std::move(handler));
    p->timer.expires_after(timeout_);
    p->timer.async_wait([p](const std::error_code& ec) {
      if (ec) return;
      ChainReply r;
      r.reply.status = LookupStatus::TempFail;
      r.reply.detail = "lookup timed out";
      p->complete(std::move(r));
    });
    // The job hands its reference to the loop, so Pending is destroyed on the loop.
    submit([this, p, k = std::move(k)]() mutable {
      ChainReply r = chain_->lookup(k);
      asio::post(io_, [p = std::move(p), r = std::move(r)]() mutable {
        p->complete(std::move(r));
      });
    });
  };
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(ChainReply)>(
      initiate, asio::use_awaitable, std::move(request));
}

}  // namespace sy
