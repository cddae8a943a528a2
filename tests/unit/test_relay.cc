// The relay and the Stream under it, driven over socket pairs and loopback TCP with
// scripted traffic on every mix of plain and TLS legs: both directions busy at once,
// one-byte writes (a record each, piling up in the kernel), full 16 KB records, a reader
// that stops for a while, a stalled relay, and TLS itself (verification, the readiness
// invariant the relay depends on). Everything runs on one io_context, as in a worker.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "net/stream.h"
#include "relay/buffer_pool.h"
#include "relay/pipe_pool.h"
#include "relay/relay.h"
#include "tls/tls.h"

namespace {

using sy::Millis;
using sy::Socket;
using sy::Stream;
using namespace std::chrono_literals;

// --- a throw-away self-signed certificate for "localhost" --------------------------

struct Pki {
  std::string dir, cert, key;
  Pki() {
    char tmpl[] = "/tmp/switchyard-relay-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    EVP_PKEY* pkey = EVP_EC_gen("P-256");
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name,
                                              "DNS:localhost,IP:127.0.0.1");
    X509_add_ext(x, san, -1);
    X509_EXTENSION_free(san);
    X509_sign(x, pkey, EVP_sha256());
    FILE* f = std::fopen(cert.c_str(), "w");
    PEM_write_X509(f, x);
    std::fclose(f);
    f = std::fopen(key.c_str(), "w");
    PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    X509_free(x);
    EVP_PKEY_free(pkey);
  }
  ~Pki() {
    ::unlink(cert.c_str());
    ::unlink(key.c_str());
    ::rmdir(dir.c_str());
  }
};

const Pki& pki() {
  static Pki p;
  return p;
}

std::shared_ptr<sy::TlsContext> server_tls() {
  sy::TlsConfig c;
  std::string error;
  auto ctx = sy::make_server_tls(c, pki().cert, pki().key, &error);
  EXPECT_TRUE(ctx) << error;
  return ctx;
}

std::shared_ptr<sy::TlsContext> client_tls(bool tls12_only = false) {
  sy::TlsConfig c;
  c.ca = pki().cert;  // self-signed: its own anchor
  std::string error;
  auto ctx = sy::make_client_tls(c, &error);
  EXPECT_TRUE(ctx) << error;
  if (ctx && tls12_only) SSL_CTX_set_max_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  return ctx;
}

// --- wiring -----------------------------------------------------------------------

enum class Leg { Plain, Tls, Tls12 };
enum class Wire { SocketPair, Tcp };

const char* leg_name(Leg l) { return l == Leg::Plain ? "Plain" : l == Leg::Tls ? "Tls" : "Tls12"; }

// Small kernel buffers (doubled by the kernel), so that backpressure comes early. Not below
// two loopback segments (64 KB) for TCP: a receive window under one segment makes the
// sender fall back on zero-window probes, seconds apart.
void small_buffers(int fd, Wire wire) {
  int size = wire == Wire::Tcp ? 128 * 1024 : 16 * 1024;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

// Two connected descriptors: (the app's end, the relay's end).
std::pair<int, int> connected_pair(Wire wire) {
  int fds[2] = {-1, -1};
  if (wire == Wire::SocketPair) {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  } else {
    int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    small_buffers(listener, wire);  // accepted sockets inherit it
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener, 1), 0);
    EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len), 0);
    fds[0] = ::socket(AF_INET, SOCK_STREAM, 0);
    small_buffers(fds[0], wire);  // before connect: the window scale is fixed then
    EXPECT_EQ(::connect(fds[0], reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    fds[1] = ::accept(listener, nullptr, nullptr);
    ::close(listener);
  }
  small_buffers(fds[0], wire);
  small_buffers(fds[1], wire);
  return {fds[0], fds[1]};
}

std::unique_ptr<Stream> adopt(asio::io_context& io, int fd, Wire wire) {
  asio::generic::stream_protocol proto(wire == Wire::SocketPair ? AF_UNIX : AF_INET,
                                       SOCK_STREAM);
  return std::make_unique<Stream>(Socket(io, proto, fd));
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Something to wait for: fire() wakes every waiter, now and later.
class Gate {
 public:
  explicit Gate(asio::io_context& io) : timer_(io, asio::steady_timer::time_point::max()) {}
  void fire() {
    open_ = true;
    timer_.cancel();
  }
  bool open() const { return open_; }
  asio::awaitable<void> wait() {
    while (!open_) {
      std::error_code ignored;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
  }

 private:
  asio::steady_timer timer_;
  bool open_ = false;
};

asio::awaitable<void> sleep_for(Millis d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  std::error_code ignored;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

// Writes `data` in writes of the sizes in `chunks` (cycled), then fires `done`.
asio::awaitable<void> send(Stream& s, const std::string& data, std::vector<std::size_t> chunks,
                           Gate* done = nullptr) {
  std::size_t off = 0;
  for (std::size_t i = 0; off < data.size(); ++i) {
    std::size_t n = std::min(chunks[i % chunks.size()], data.size() - off);
    std::error_code ec;
    co_await s.write_all(asio::buffer(data.data() + off, n), ec);
    if (ec) break;
    off += n;
  }
  if (done) done->fire();
}

struct Pause {
  std::size_t at = SIZE_MAX;  // after this many bytes...
  Gate* until = nullptr;      // ...wait for this gate,
  Millis delay{0};            // or for this long
};

// Reads until `want` bytes arrived (or the stream ends), then fires `done`.
asio::awaitable<void> receive(Stream& s, std::size_t want, std::string* out, Pause pause = {},
                              Gate* done = nullptr) {
  std::vector<char> buf(20000);
  bool paused = false;
  while (out->size() < want) {
    if (!paused && out->size() >= pause.at) {
      paused = true;
      if (pause.until) co_await pause.until->wait();
      if (pause.delay.count() > 0) co_await sleep_for(pause.delay);
    }
    std::size_t room = std::min(buf.size(), want - out->size());
    if (!paused && pause.at != SIZE_MAX) room = std::min(room, pause.at - out->size());
    std::error_code ec;
    std::size_t n = co_await s.read_some(asio::buffer(buf.data(), room), ec);
    if (ec || n == 0) break;
    out->append(buf.data(), n);
  }
  if (done) done->fire();
}

struct Case {
  Leg client, store;
  bool splice;  // plain legs only: the splice relay instead of the user-space one
  Wire wire;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << leg_name(c.client) << " client leg, " << leg_name(c.store) << " store leg"
      << (c.splice ? ", splice relay" : "") << (c.wire == Wire::Tcp ? ", over TCP" : "");
}

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return std::string(leg_name(c.client)) + "To" + leg_name(c.store) +
         (c.splice ? "Splice" : "") + (c.wire == Wire::Tcp ? "OverTcp" : "");
}

// client app <-> [client leg] <-> relay <-> [store leg] <-> store app
class Rig {
 public:
  explicit Rig(const Case& c) : case_(c) {
    std::signal(SIGPIPE, SIG_IGN);  // as the daemon does
    auto [ca, cr] = connected_pair(c.wire);
    auto [sa, sr] = connected_pair(c.wire);
    client_app = adopt(io, ca, c.wire);
    client_side = adopt(io, cr, c.wire);
    store_app = adopt(io, sa, c.wire);
    store_side = adopt(io, sr, c.wire);
    handshakes();
  }

  // Runs the relay and the apps until the relay ends; false if that took too long.
  bool run(std::vector<asio::awaitable<void>> apps, Millis idle = Millis(60'000)) {
    bool finished = false;
    asio::steady_timer watchdog(io, 20s);
    watchdog.async_wait([this](const std::error_code& ec) {
      if (!ec) io.stop();
    });
    auto done = [&](const sy::RelayResult& r) {
      result = r;
      finished = true;
      watchdog.cancel();
    };
    if (case_.splice)
      sy::start_splice_relay(io, pipes, client_side->socket(), store_side->socket(), idle, done);
    else
      asio::co_spawn(io, sy::relay(io, buffers, *client_side, *store_side, idle),
                     [&](std::exception_ptr e, sy::RelayResult r) {
                       if (e) ADD_FAILURE() << "the relay threw";
                       done(r);
                     });
    for (auto& a : apps)
      asio::co_spawn(io, std::move(a), [](std::exception_ptr e) {
        if (e) ADD_FAILURE() << "an app threw";
      });
    io.run();
    io.restart();
    return finished;
  }

  asio::io_context io;
  sy::BufferPool buffers;
  sy::PipePool pipes;
  std::unique_ptr<Stream> client_app, client_side, store_side, store_app;
  sy::RelayResult result;

 private:
  // Client leg: the app is the TLS client, the relay side accepts (as for imaps). Store
  // leg: the relay side connects (as to an imaps store), the app accepts.
  void handshakes() {
    auto server = server_tls();
    int ok = 0, wanted = 0;
    auto count = [&ok](bool b) { ok += b; };
    auto spawn = [&](asio::awaitable<bool> hs) {
      ++wanted;
      asio::co_spawn(io, std::move(hs), [&count](std::exception_ptr, bool b) { count(b); });
    };
    std::string why[4];
    const std::string host = "localhost";  // outlives the (lazily started) coroutines
    if (case_.client != Leg::Plain) {
      client_ctx_ = client_tls(case_.client == Leg::Tls12);
      spawn(client_app->connect_tls(*client_ctx_, host, true, &why[0]));
      spawn(client_side->accept_tls(*server, &why[1]));
    }
    if (case_.store != Leg::Plain) {
      store_ctx_ = client_tls(case_.store == Leg::Tls12);
      spawn(store_side->connect_tls(*store_ctx_, host, true, &why[2]));
      spawn(store_app->accept_tls(*server, &why[3]));
    }
    io.run();
    io.restart();
    ASSERT_EQ(ok, wanted) << why[0] << why[1] << why[2] << why[3];
  }

  Case case_;
  std::shared_ptr<sy::TlsContext> client_ctx_, store_ctx_;
};

class RelayTest : public testing::TestWithParam<Case> {};

// Both directions at once, many megabytes, in write sizes that match no record or buffer
// size; the client closes when everything has arrived.
TEST_P(RelayTest, BothDirectionsBusyAtOnce) {
  Rig rig(GetParam());
  const std::string up = random_bytes(3'000'000, 1), down = random_bytes(3'000'000, 2);
  std::string got_up, got_down;
  Gate up_sent(rig.io), down_sent(rig.io), up_got(rig.io), down_got(rig.io);
  auto closer = [&]() -> asio::awaitable<void> {
    co_await up_got.wait();
    co_await down_got.wait();
    rig.client_app->close();
  };
  std::vector<asio::awaitable<void>> apps;
  apps.push_back(send(*rig.client_app, up, {7001, 1, 30000, 513}, &up_sent));
  apps.push_back(send(*rig.store_app, down, {16384, 3, 65536, 9999}, &down_sent));
  apps.push_back(receive(*rig.store_app, up.size(), &got_up, {}, &up_got));
  apps.push_back(receive(*rig.client_app, down.size(), &got_down, {}, &down_got));
  apps.push_back(closer());
  ASSERT_TRUE(rig.run(std::move(apps)));
  EXPECT_TRUE(got_up == up) << got_up.size() << " of " << up.size();
  EXPECT_TRUE(got_down == down) << got_down.size() << " of " << down.size();
  EXPECT_STREQ(rig.result.ended_by, "client closed");
  EXPECT_EQ(rig.result.client_to_store, up.size());
  EXPECT_EQ(rig.result.store_to_client, down.size());
}

// A write per byte: over TLS a record per byte, dozens queued in the kernel at once, the
// case that stalled the old relay (records waiting in a buffer no readiness wait saw).
TEST_P(RelayTest, OneByteWritesBothWays) {
  Rig rig(GetParam());
  const std::string up = random_bytes(4000, 3), down = random_bytes(4000, 4);
  std::string got_up, got_down;
  Gate up_got(rig.io), down_got(rig.io);
  auto closer = [&]() -> asio::awaitable<void> {
    co_await up_got.wait();
    co_await down_got.wait();
    rig.store_app->close();
  };
  std::vector<asio::awaitable<void>> apps;
  apps.push_back(send(*rig.client_app, up, {1}));
  apps.push_back(send(*rig.store_app, down, {1}));
  apps.push_back(receive(*rig.store_app, up.size(), &got_up, {}, &up_got));
  apps.push_back(receive(*rig.client_app, down.size(), &got_down, {}, &down_got));
  apps.push_back(closer());
  ASSERT_TRUE(rig.run(std::move(apps)));
  EXPECT_TRUE(got_up == up) << got_up.size() << " of " << up.size();
  EXPECT_TRUE(got_down == down) << got_down.size() << " of " << down.size();
  EXPECT_STREQ(rig.result.ended_by, "store closed");
}

// Pipelining as mbsync does it: many small commands, each its own write, while big
// answers (full 16 KB records and more) stream back.
TEST_P(RelayTest, SmallCommandsAgainstFullRecords) {
  Rig rig(GetParam());
  const std::string up = random_bytes(30 * 100, 5), down = random_bytes(2 * 1024 * 1024, 6);
  std::string got_up, got_down;
  Gate up_got(rig.io), down_got(rig.io);
  auto closer = [&]() -> asio::awaitable<void> {
    co_await up_got.wait();
    co_await down_got.wait();
    rig.client_app->close();
  };
  std::vector<asio::awaitable<void>> apps;
  apps.push_back(send(*rig.client_app, up, {30}));
  apps.push_back(send(*rig.store_app, down, {16384, 16384, 65536}));
  apps.push_back(receive(*rig.store_app, up.size(), &got_up, {}, &up_got));
  apps.push_back(receive(*rig.client_app, down.size(), &got_down, {}, &down_got));
  apps.push_back(closer());
  ASSERT_TRUE(rig.run(std::move(apps)));
  EXPECT_TRUE(got_up == up) << got_up.size() << " of " << up.size();
  EXPECT_TRUE(got_down == down) << got_down.size() << " of " << down.size();
}

// The client stops reading while the store keeps sending, so the relay's write towards
// the client blocks; the client's own traffic must still reach the store meanwhile. The
// client reads on only once the store has everything it sent.
TEST_P(RelayTest, StoppedReaderDoesNotBlockTheOtherDirection) {
  Rig rig(GetParam());
  const std::string up = random_bytes(300'000, 7), down = random_bytes(4'000'000, 8);
  std::string got_up, got_down;
  Gate down_sent(rig.io), up_got(rig.io), down_got(rig.io);
  bool down_finished_early = false;
  auto watch = [&]() -> asio::awaitable<void> {
    co_await up_got.wait();
    down_finished_early = down_sent.open();  // it cannot have: the client is not reading
    co_await down_got.wait();
    rig.client_app->close();
  };
  std::vector<asio::awaitable<void>> apps;
  apps.push_back(send(*rig.store_app, down, {65536}, &down_sent));
  apps.push_back(send(*rig.client_app, up, {1000, 1, 5000}));
  apps.push_back(receive(*rig.store_app, up.size(), &got_up, {}, &up_got));
  apps.push_back(receive(*rig.client_app, down.size(), &got_down, Pause{100'000, &up_got}, &down_got));
  apps.push_back(watch());
  ASSERT_TRUE(rig.run(std::move(apps)));
  EXPECT_FALSE(down_finished_early);
  EXPECT_TRUE(got_up == up) << got_up.size() << " of " << up.size();
  EXPECT_TRUE(got_down == down) << got_down.size() << " of " << down.size();
}

// A reader that stops for a while, then reads on: partial writes keep their bytes.
TEST_P(RelayTest, ReaderPausesThenReads) {
  Rig rig(GetParam());
  const std::string up = random_bytes(2'000'000, 9), down = random_bytes(2'000'000, 10);
  std::string got_up, got_down;
  Gate up_got(rig.io), down_got(rig.io);
  auto closer = [&]() -> asio::awaitable<void> {
    co_await up_got.wait();
    co_await down_got.wait();
    rig.client_app->close();
  };
  std::vector<asio::awaitable<void>> apps;
  apps.push_back(send(*rig.client_app, up, {40000}));
  apps.push_back(send(*rig.store_app, down, {12345}));
  apps.push_back(receive(*rig.store_app, up.size(), &got_up, Pause{70'000, nullptr, 250ms}, &up_got));
  apps.push_back(receive(*rig.client_app, down.size(), &got_down, Pause{50'000, nullptr, 250ms}, &down_got));
  apps.push_back(closer());
  ASSERT_TRUE(rig.run(std::move(apps)));
  EXPECT_TRUE(got_up == up) << got_up.size() << " of " << up.size();
  EXPECT_TRUE(got_down == down) << got_down.size() << " of " << down.size();
}

// Bytes stuck in a direction for idle_timeout: the relay ends as "stalled" (and logs the
// counts); a quiet one ends as "idle timeout".
TEST_P(RelayTest, StalledAndIdleRelaysEnd) {
  {
    Rig rig(GetParam());
    const std::string down = random_bytes(3'000'000, 11);
    std::vector<asio::awaitable<void>> apps;
    apps.push_back(send(*rig.store_app, down, {65536}));  // nobody reads it
    ASSERT_TRUE(rig.run(std::move(apps), Millis(300)));
    EXPECT_STREQ(rig.result.ended_by, "stalled");
    EXPECT_LT(rig.result.store_to_client, down.size());
  }
  {
    Rig rig(GetParam());
    ASSERT_TRUE(rig.run({}, Millis(200)));
    EXPECT_STREQ(rig.result.ended_by, "idle timeout");
    EXPECT_EQ(rig.result.client_to_store, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Legs, RelayTest,
    testing::Values(Case{Leg::Plain, Leg::Plain, true, Wire::SocketPair},
                    Case{Leg::Plain, Leg::Plain, true, Wire::Tcp},
                    Case{Leg::Plain, Leg::Plain, false, Wire::SocketPair},
                    Case{Leg::Plain, Leg::Plain, false, Wire::Tcp},
                    Case{Leg::Tls, Leg::Plain, false, Wire::SocketPair},
                    Case{Leg::Plain, Leg::Tls, false, Wire::SocketPair},
                    Case{Leg::Tls, Leg::Tls, false, Wire::SocketPair},
                    Case{Leg::Tls, Leg::Tls, false, Wire::Tcp},
                    Case{Leg::Tls12, Leg::Tls12, false, Wire::Tcp}),
    case_name);

// --- the TLS stream itself ----------------------------------------------------------

// After a burst of records, every byte is either reported by tls_pending() or still in
// the kernel where a readiness wait sees it: what the relay relies on to never sleep on
// data it holds.
TEST(TlsStream, NoBytesHiddenFromReadinessWaits) {
  Rig rig(Case{Leg::Tls, Leg::Plain, false, Wire::Tcp});
  const std::string data = random_bytes(20 * 700, 12);  // fits the kernel's buffers
  std::string got;
  bool sent = false;
  auto burst = [&]() -> asio::awaitable<void> {
    for (std::size_t off = 0; off < data.size(); off += 700) {
      std::error_code ec;
      co_await rig.client_app->write_all(asio::buffer(data.data() + off, 700), ec);
      if (ec) co_return;
    }
    sent = true;
  };
  asio::co_spawn(rig.io, burst(), asio::detached);
  rig.io.run();
  rig.io.restart();
  ASSERT_TRUE(sent);
  Stream& s = *rig.client_side;
  int checks = 0;
  while (got.size() < data.size()) {
    if (!s.tls_pending()) {
      // (A bounded wait, not 0: loopback TCP may still be moving the rest.)
      pollfd p{s.socket().native_handle(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "bytes held where no readiness wait sees them, "
                                          << "after " << got.size();
      ++checks;
    }
    char small[300];  // less than a record: OpenSSL keeps the rest
    std::error_code ec;
    Socket::wait_type want;
    std::size_t n = s.try_read(asio::buffer(small), ec, &want);
    if (ec == asio::error::would_block) continue;  // part of a record so far: poll again
    ASSERT_FALSE(ec) << ec.message();
    got.append(small, n);
  }
  EXPECT_TRUE(got == data);
  EXPECT_GT(checks, 0);
}

TEST(TlsStream, VerifiesTheStoreName) {
  Rig rig(Case{Leg::Plain, Leg::Plain, false, Wire::Tcp});
  auto server = server_tls();
  auto client = client_tls();
  std::string why_client, why_server;
  const std::string host = "wrong.invalid";
  bool ok_client = true;
  asio::co_spawn(rig.io, rig.store_side->connect_tls(*client, host, true, &why_client),
                 [&](std::exception_ptr, bool b) {
                   ok_client = b;
                   rig.store_side->close();
                 });
  asio::co_spawn(rig.io, rig.store_app->accept_tls(*server, &why_server), asio::detached);
  rig.io.run();
  EXPECT_FALSE(ok_client);
  EXPECT_EQ(why_client.rfind("certificate verification failed: ", 0), 0u) << why_client;
}

TEST(TlsStream, PeerCloseIsEndOfStream) {
  Rig rig(Case{Leg::Tls, Leg::Plain, false, Wire::SocketPair});
  std::error_code ec;
  std::size_t n = 1;
  auto reader = [&]() -> asio::awaitable<void> {
    char b[10];
    n = co_await rig.client_side->read_some(asio::buffer(b), ec);
  };
  asio::co_spawn(rig.io, reader(), asio::detached);
  // The end of the TCP stream without close_notify (shutdown rather than close: a close
  // with unread bytes, the session tickets here, would be a reset).
  std::error_code ignored;
  rig.client_app->socket().shutdown(Socket::shutdown_send, ignored);
  rig.io.run();
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
}

}  // namespace
