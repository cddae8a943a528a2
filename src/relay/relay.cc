// The relays (see relay.h).
#include "relay/relay.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "log/log.h"
#include "relay/buffer_pool.h"
#include "relay/pipe_pool.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;

enum class PumpEnd { SourceClosed, SourceError, SinkError, NoPipe, Cancelled };

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

long long millis(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// Said once when a relay times out: whether bytes were stuck in a direction (a stall, as
// opposed to a quiet session), with the counts.
bool log_if_stalled(std::size_t up_pending, std::uint64_t up_moved, std::size_t down_pending,
                    std::uint64_t down_moved, Clock::duration quiet) {
  if (up_pending == 0 && down_pending == 0) return false;
  LOG_WARN("relay stalled: client->store pending=%zu moved=%llu, store->client pending=%zu "
           "moved=%llu, no progress for %lldms",
           up_pending, static_cast<unsigned long long>(up_moved), down_pending,
           static_cast<unsigned long long>(down_moved), millis(quiet));
  return true;
}

// One direction of the user-space relay.
struct Direction {
  Direction(Stream& f, Stream& t, bool c) : from(f), to(t), from_client(c) {}
  Stream& from;
  Stream& to;
  bool from_client;
  std::size_t pending = 0;  // read from `from`, not yet written to `to`
  std::uint64_t moved = 0;  // written to `to`
};

struct RelayState {
  RelayState(asio::io_context& io, Stream& client, Stream& store)
      : wake(io), dirs{Direction{client, store, true}, Direction{store, client, false}} {}
  asio::steady_timer wake;  // idle deadline, and woken when a direction ends
  Direction dirs[2];
  Clock::time_point last_activity = Clock::now();
  int running = 2;
  const char* ended_by = nullptr;
};

bool is_cancel(const std::error_code& ec) {
  return ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor;
}

// Why a read returned nothing, other than would_block.
PumpEnd source_end(const std::error_code& ec) {
  if (is_cancel(ec)) return PumpEnd::Cancelled;
  return ec == asio::error::eof || !ec ? PumpEnd::SourceClosed : PumpEnd::SourceError;
}

// Moves bytes through user space, for TLS on either side. Waits for readiness first
// (unless OpenSSL already holds bytes) and borrows a buffer only once there is something
// to read, so that no buffer is held while idle. The write side keeps what it has not
// written yet and retries with exactly those bytes.
asio::awaitable<PumpEnd> copy_pump(BufferPool& pool, Direction& d, RelayState& st) {
  Socket::wait_type want = Socket::wait_read;
  bool ready = d.from.tls_pending();
  for (;;) {
    std::error_code ec;
    if (!ready) {
      co_await d.from.wait(want, ec);
      if (ec) co_return PumpEnd::Cancelled;
    }
    auto buf = pool.take();
    std::size_t n = d.from.try_read(asio::buffer(buf.get(), BufferPool::kSize), ec, &want);
    if (ec == asio::error::would_block) {
      // Part of a record, or OpenSSL needs to write first: wait for what it asked for.
      pool.give(std::move(buf));
      ready = false;
      continue;
    }
    if (ec || n == 0) {
      pool.give(std::move(buf));
      co_return source_end(ec);
    }
    // OpenSSL hands out one record per read: take what else has arrived, so that bulk
    // transfers write large chunks. An end met here comes after these bytes are written
    // (a close_notify on an open TCP connection would never wake a readiness wait).
    std::error_code end;
    while (d.from.is_tls() && n < BufferPool::kSize) {
      Socket::wait_type ignored;
      std::size_t m = d.from.try_read(asio::buffer(buf.get() + n, BufferPool::kSize - n),
                                      ec, &ignored);
      if (m == 0) {
        if (ec != asio::error::would_block) end = ec ? ec : asio::error::eof;
        break;
      }
      n += m;
    }
    st.last_activity = Clock::now();
    d.pending = n;
    std::size_t off = 0;
    while (off < n) {
      Socket::wait_type out_want;
      std::size_t m = d.to.try_write(asio::buffer(buf.get() + off, n - off), ec, &out_want);
      if (m > 0) {
        off += m;
        d.pending -= m;
        d.moved += m;
        st.last_activity = Clock::now();
        continue;
      }
      if (ec == asio::error::would_block) co_await d.to.wait(out_want, ec);
      if (ec) {
        pool.give(std::move(buf));
        co_return is_cancel(ec) ? PumpEnd::Cancelled : PumpEnd::SinkError;
      }
    }
    pool.give(std::move(buf));
    if (end) co_return source_end(end);
    want = Socket::wait_read;
    ready = d.from.tls_pending();
  }
}

}  // namespace

asio::awaitable<RelayResult> relay(asio::io_context& io, BufferPool& buffers,
                                   Stream& client_stream, Stream& store_stream,
                                   Millis idle_timeout) {
  RelayState st(io, client_stream, store_stream);

  auto close_both = [&client_stream, &store_stream] {
    client_stream.close();  // wakes both directions
    store_stream.close();
  };
  auto finished = [&st, &close_both](bool from_client, PumpEnd how) {
    if (!st.ended_by) {
      st.ended_by = describe(how, from_client);
      close_both();
    }
    --st.running;
    st.wake.cancel();
  };
  asio::co_spawn(io, copy_pump(buffers, st.dirs[0], st),
                 [&finished](std::exception_ptr, PumpEnd how) { finished(true, how); });
  asio::co_spawn(io, copy_pump(buffers, st.dirs[1], st),
                 [&finished](std::exception_ptr, PumpEnd how) { finished(false, how); });

  while (st.running > 0) {
    st.wake.expires_at(st.last_activity + idle_timeout);
    std::error_code ec;
    co_await st.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    const auto quiet = Clock::now() - st.last_activity;
    if (!ec && st.running > 0 && quiet >= idle_timeout && !st.ended_by) {
      bool stalled = log_if_stalled(st.dirs[0].pending, st.dirs[0].moved, st.dirs[1].pending,
                                    st.dirs[1].moved, quiet);
      st.ended_by = stalled ? "stalled" : "idle timeout";
      close_both();
    }
  }
  RelayResult result;
  result.client_to_store = st.dirs[0].moved;
  result.store_to_client = st.dirs[1].moved;
  result.ended_by = st.ended_by ? st.ended_by : "closed";
  co_return result;
}

namespace {

// The splice relay, as callbacks: per direction, wait for the source to be readable,
// splice a chunk through a pooled pipe, wait for the sink when it is full, repeat. Both
// descriptors are already non-blocking: Asio made them so for the I/O before login.
class SpliceRelay : public std::enable_shared_from_this<SpliceRelay> {
 public:
  SpliceRelay(asio::io_context& io, PipePool& pipes, Socket& client, Socket& store, Millis idle,
              std::function<void(const RelayResult&)> done)
      : pipes_(pipes),
        idle_(idle),
        timer_(io),
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
    d.pipe = pipes_.take();
    if (!d.pipe.valid()) return finish(d, PumpEnd::NoPipe);
    ssize_t n = ::splice(d.from.native_handle(), nullptr, d.pipe.write_fd, nullptr,
                         pipes_.capacity(), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n <= 0) {
      int err = errno;
      pipes_.give(d.pipe);
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
        last_activity_ = Clock::now();
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
    pipes_.give(d.pipe);
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
      const auto quiet = Clock::now() - self->last_activity_;
      if (quiet < self->idle_) return self->arm_timer();
      if (!self->ended_by_) {
        const Direction* d = self->dirs_;
        bool stalled = log_if_stalled(d[0].pending, d[0].moved, d[1].pending, d[1].moved, quiet);
        self->ended_by_ = stalled ? "stalled" : "idle timeout";
      }
      std::error_code ignored;
      self->dirs_[0].from.close(ignored);
      self->dirs_[1].from.close(ignored);
    });
  }

  PipePool& pipes_;
  Millis idle_;
  asio::steady_timer timer_;
  std::function<void(const RelayResult&)> done_;
  Direction dirs_[2];
  Clock::time_point last_activity_ = Clock::now();
  int running_ = 2;
  const char* ended_by_ = nullptr;
};

}  // namespace

void start_splice_relay(asio::io_context& io, PipePool& pipes, Socket& client, Socket& store,
                        Millis idle_timeout, std::function<void(const RelayResult&)> done) {
  std::make_shared<SpliceRelay>(io, pipes, client, store, idle_timeout, std::move(done))->start();
}

}  // namespace sy
