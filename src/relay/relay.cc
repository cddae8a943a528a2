// splice(2) relay (see relay.h).
#include "relay/relay.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "relay/buffer_pool.h"
#include "relay/pipe_pool.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;

struct RelayState {
  explicit RelayState(asio::io_context& io) : wake(io) {}
  asio::steady_timer wake;  // idle deadline, and woken when a direction ends
  Clock::time_point last_activity = Clock::now();
  int running = 2;
  const char* ended_by = nullptr;
  RelayResult result;
};

enum class PumpEnd { SourceClosed, SourceError, SinkError, NoPipe, Cancelled };

// Moves bytes through user space, for TLS on either side. Waits for readiness first (or for
// bytes OpenSSL already decrypted) so that no buffer is held while idle.
asio::awaitable<PumpEnd> copy_pump(BufferPool& pool, Stream& from, Stream& to, RelayState& st,
                                   std::uint64_t& counter) {
  for (;;) {
    std::error_code ec;
    if (from.tls_pending() == 0) {
      co_await from.socket().async_wait(Socket::wait_read,
                                        asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return PumpEnd::Cancelled;
    }
    auto buf = pool.take();
    std::size_t n = co_await from.read_some(asio::buffer(buf.get(), BufferPool::kSize), ec);
    if (ec || n == 0) {
      pool.give(std::move(buf));
      if (ec == asio::error::operation_aborted) co_return PumpEnd::Cancelled;
      co_return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated || !ec
                    ? PumpEnd::SourceClosed
                    : PumpEnd::SourceError;
    }
    st.last_activity = Clock::now();
    co_await to.write_all(asio::buffer(buf.get(), n), ec);
    pool.give(std::move(buf));
    if (ec) co_return ec == asio::error::operation_aborted ? PumpEnd::Cancelled : PumpEnd::SinkError;
    counter += n;
  }
}

const char* describe(PumpEnd e, bool from_client) {
  switch (e) {
    case PumpEnd::SourceClosed: return from_client ? "client closed" : "store closed";
    case PumpEnd::SourceError: return from_client ? "client read error" : "store read error";
    case PumpEnd::SinkError: return from_client ? "store write error" : "client write error";
    case PumpEnd::NoPipe: return "out of pipes";
    case PumpEnd::Cancelled: return "closed";
  }
  return "?";
}

}  // namespace

asio::awaitable<RelayResult> relay(Runtime& rt, Stream& client_stream, Stream& store_stream,
                                   Millis idle_timeout) {
  RelayState st(rt.io);
  Socket& client = client_stream.socket();
  Socket& store = store_stream.socket();

  auto finished = [&st, &client, &store](bool from_client, PumpEnd how) {
    if (!st.ended_by) {
      st.ended_by = describe(how, from_client);
      std::error_code e;
      client.close(e);  // wakes the other direction
      store.close(e);
    }
    --st.running;
    st.wake.cancel();
  };
  asio::co_spawn(rt.io,
                 copy_pump(rt.buffers, client_stream, store_stream, st, st.result.client_to_store),
                 [&finished](std::exception_ptr, PumpEnd how) { finished(true, how); });
  asio::co_spawn(rt.io,
                 copy_pump(rt.buffers, store_stream, client_stream, st, st.result.store_to_client),
                 [&finished](std::exception_ptr, PumpEnd how) { finished(false, how); });

  while (st.running > 0) {
    st.wake.expires_at(st.last_activity + idle_timeout);
    std::error_code ec;
    co_await st.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && st.running > 0 && Clock::now() - st.last_activity >= idle_timeout &&
        !st.ended_by) {
      st.ended_by = "idle timeout";
      std::error_code e;
      client.close(e);
      store.close(e);
    }
  }
  st.result.ended_by = st.ended_by ? st.ended_by : "closed";
  co_return st.result;
}

namespace {

// The splice relay, as callbacks: per direction, wait for the source to be readable,
// splice a chunk through a pooled pipe, wait for the sink when it is full, repeat. Both
// descriptors are already non-blocking: Asio made them so for the I/O before login.
class SpliceRelay : public std::enable_shared_from_this<SpliceRelay> {
 public:
  SpliceRelay(Runtime& rt, Socket& client, Socket& store, Millis idle,
              std::function<void(const RelayResult&)> done)
      : rt_(rt),
        idle_(idle),
        timer_(rt.io),
        done_(std::move(done)),
        dirs_{Direction{client, store, true}, Direction{store, client, false}} {}

  void start() {
    wait_read(dirs_[0]);
    wait_read(dirs_[1]);
    arm_timer();
  }

 private:
  struct Direction {
    Direction(Socket& f, Socket& t, bool c) : from(f), to(t), from_client(c) {}
    Socket& from;
    Socket& to;
    bool from_client;
    Pipe pipe;
    std::size_t pending = 0;  // bytes in the pipe not yet written
    std::uint64_t moved = 0;
  };

  void wait_read(Direction& d) {
    d.from.async_wait(Socket::wait_read,
                      [self = shared_from_this(), &d](const std::error_code& ec) {
                        if (ec) return self->finish(d, PumpEnd::Cancelled);
                        self->pull(d);
                      });
  }

  void pull(Direction& d) {
    d.pipe = rt_.pipes.take();
    if (!d.pipe.valid()) return finish(d, PumpEnd::NoPipe);
    ssize_t n = ::splice(d.from.native_handle(), nullptr, d.pipe.write_fd, nullptr,
                         rt_.pipes.capacity(), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n <= 0) {
      int err = errno;
      rt_.pipes.give(d.pipe);
      d.pipe = Pipe{};
      if (n == 0) return finish(d, PumpEnd::SourceClosed);
      if (err == EAGAIN || err == EINTR) return wait_read(d);
      return finish(d, PumpEnd::SourceError);
    }
    last_activity_ = Clock::now();
    d.pending = static_cast<std::size_t>(n);
    push(d);
  }

  void push(Direction& d) {
    while (d.pending > 0) {
      ssize_t m = ::splice(d.pipe.read_fd, nullptr, d.to.native_handle(), nullptr, d.pending,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m > 0) {
        d.pending -= static_cast<std::size_t>(m);
        d.moved += static_cast<std::uint64_t>(m);
        continue;
      }
      if (m < 0 && (errno == EAGAIN || errno == EINTR)) {
        d.to.async_wait(Socket::wait_write,
                        [self = shared_from_this(), &d](const std::error_code& ec) {
                          if (ec) return self->finish(d, PumpEnd::Cancelled);
                          self->push(d);
                        });
        return;
      }
      return finish(d, PumpEnd::SinkError);
    }
    rt_.pipes.give(d.pipe);
    d.pipe = Pipe{};
    wait_read(d);
  }

  void finish(Direction& d, PumpEnd how) {
    if (d.pipe.valid()) {
      PipePool::destroy(d.pipe);  // may still hold bytes nobody will read
      d.pipe = Pipe{};
    }
    if (!ended_by_) {
      ended_by_ = describe(how, d.from_client);
      std::error_code ignored;
      dirs_[0].from.close(ignored);  // wakes the other direction
      dirs_[1].from.close(ignored);
    }
    if (--running_ > 0) return;
    timer_.cancel();
    RelayResult r;
    r.client_to_store = dirs_[0].moved;
    r.store_to_client = dirs_[1].moved;
    r.ended_by = ended_by_;
    auto done = std::move(done_);
    done(r);
  }

  void arm_timer() {
    timer_.expires_at(last_activity_ + idle_);
    timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (ec || self->running_ == 0) return;
      if (Clock::now() - self->last_activity_ < self->idle_) return self->arm_timer();
      if (!self->ended_by_) self->ended_by_ = "idle timeout";
      std::error_code ignored;
      self->dirs_[0].from.close(ignored);
      self->dirs_[1].from.close(ignored);
    });
  }

  Runtime& rt_;
  Millis idle_;
  asio::steady_timer timer_;
  std::function<void(const RelayResult&)> done_;
  Direction dirs_[2];
  Clock::time_point last_activity_ = Clock::now();
  int running_ = 2;
  const char* ended_by_ = nullptr;
};

}  // namespace

void start_splice_relay(Runtime& rt, Socket& client, Socket& store, Millis idle_timeout,
                        std::function<void(const RelayResult&)> done) {
  std::make_shared<SpliceRelay>(rt, client, store, idle_timeout, std::move(done))->start();
}

}  // namespace sy
