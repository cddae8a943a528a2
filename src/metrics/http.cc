// The metrics listener's connections (see http.h).
#include <config.h>

#include "metrics/http.h"

#include <chrono>
#include <memory>
#include <string>

#include "log/log.h"
#include "metrics/block.h"
#include "metrics/render.h"
#include "metrics/request.h"
#include "net/address.h"

namespace sy {
namespace {

// A scraper sends its request at once: this long for the whole of it.
constexpr auto kRequestTimeout = std::chrono::seconds(5);

class MetricsSession : public std::enable_shared_from_this<MetricsSession> {
 public:
  MetricsSession(WorkerContext& rt, Socket s) : rt_(rt), sock_(std::move(s)), timer_(rt.io) {
    peer_ = peer_name(sock_.native_handle());
  }

  void start() {
    auto self = shared_from_this();
    timer_.expires_after(kRequestTimeout);
    timer_.async_wait([self](const std::error_code& ec) {
      if (ec) return;  // the whole exchange, the answer's write included
      self->timed_out_ = true;
      std::error_code ignored;
      self->sock_.close(ignored);
    });
    asio::co_spawn(rt_.io, run(), [self](std::exception_ptr) { self->timer_.cancel(); });
  }

 private:
  asio::awaitable<void> run() {
    std::string request;
    char buf[2048];
    metrics::HttpAnswer answer;
    while (answer.status == 0) {
      std::error_code ec;
      const std::size_t room = std::min(sizeof buf, metrics::kMaxRequest - request.size());
      std::size_t n = co_await sock_.async_read_some(asio::buffer(buf, room),
                                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (timed_out_) LOG_INFO("metrics: %s: request not complete in time", peer_.c_str());
        co_return;
      }
      request.append(buf, n);
      answer = metrics::judge_request(request);
    }
    std::string body;
    if (answer.body) body = scrape();
    else if (answer.status != 200) body = std::to_string(answer.status) + " " + answer.reason + "\n";
    if (answer.status != 200) LOG_INFO("metrics: %s: answered %d", peer_.c_str(), answer.status);
    else LOG_DEBUG("metrics: served %s", peer_.c_str());
    std::string out = metrics::response_head(
        answer, answer.body ? metrics::kContentType : "text/plain; charset=utf-8", body.size());
    if (!answer.head) out += body;
    std::error_code ec;
    co_await asio::async_write(sock_, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    sock_.shutdown(Socket::shutdown_send, ec);
    sock_.close(ec);
  }

  std::string scrape() const {
    metrics::Block* block = metrics::current_block();
    metrics::Snapshot snap;
    if (block) snap = block->snapshot(steady_now_ms());
    metrics::Local local;
    local.holds = rt_.holds.keys().size();
    local.version = PACKAGE_VERSION;
    return metrics::render(snap, local);
  }


  WorkerContext& rt_;
  Socket sock_;
  asio::steady_timer timer_;
  std::string peer_;
  bool timed_out_ = false;
};

}  // namespace

void start_metrics_session(WorkerContext& rt, Socket client, const ListenConfig& listen) {
  std::make_shared<MetricsSession>(rt, std::move(client))->start();
}

}  // namespace sy
