// imap-load: a small IMAP/POP3/LMTP load generator for the Switchyard side-by-side
// benchmark.
//
// Sockets and epoll, one thread; OpenSSL for --tls. Four modes:
//
//   logins  C clients each loop: connect, greeting, "a LOGIN user pass", tagged OK,
//           "b LOGOUT", read until the server closes. For D seconds or N logins.
//           --proto pop3: greeting, "USER user", +OK, "PASS pass", +OK, "QUIT", close.
//   bulk    C clients each log in once, SELECT INBOX, then repeat "f FETCH 1 BODY.PEEK[]"
//           for D seconds. The literal is discarded in the kernel (recv MSG_TRUNC).
//   idle    open N logged-in sessions (at most R being set up at once), print one
//           "ESTABLISHED ..." line, hold them until stdin has a line / EOF, SIGUSR1, or
//           --hold seconds, then close them all.
//   lmtp    C clients each connect (LHLO) and deliver messages of --msg-size bytes, each to
//           --rcpts recipients (printf(rcpt_fmt, k) for consecutive k), MAIL/RCPT pipelined
//           as RFC 2033 allows, then DATA; N messages (-n) or D seconds. With --split each
//           client holds one connection per target and sends each recipient, in a
//           transaction of its own target's, to target[k % targets] (what an MTA does when
//           the recipients live on different stores); a message counts when every
//           transaction of it is answered.
//
// --tls speaks TLS from the first byte (imaps, pop3s); certificates are not verified.
//
// Every mode is bounded: -d / --max-time cap the run, each step has --timeout.
// The last line printed is "RESULT key=value ..." for bench/run.py to parse.
//
// User k (k = 0 .. users-1) is printf(user_fmt, k + user_offset) with the same password,
// and connects to target[k % number_of_targets]: with two stores given as two targets,
// user k must live on store k % 2 (bench/run.py lays the stores out that way).

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

[[noreturn]] void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "imap-load: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::exit(2);
}

enum class Mode { Logins, Bulk, Idle, Lmtp };
enum class Proto { Imap, Pop3 };

struct Options {
  Mode mode = Mode::Logins;
  std::vector<sockaddr_in> targets;
  std::string user_fmt = "user%d";
  int users = 100;
  int user_offset = 0;
  std::string password = "pass";
  int concurrency = 8;
  double duration = 10.0;   // logins, bulk
  long max_logins = 0;      // logins: 0 = no count limit
  long sessions = 1000;     // idle
  int ramp = 64;            // idle: sessions being set up at once
  double hold = 60.0;       // idle: longest hold
  double timeout = 10.0;    // per step
  double max_time = 600.0;  // whole run, any mode
  std::string fetch = "1 BODY.PEEK[]";
  bool verbose = false;
  Proto proto = Proto::Imap;
  bool tls = false;
  // lmtp
  std::string rcpt_fmt = "user%d@bench.test";
  int rcpts = 2;
  size_t msg_size = 2000;
  bool split = false;
};

void usage() {
  std::fprintf(stderr,
      "usage: imap-load logins|bulk|idle|lmtp --target HOST:PORT [--target HOST:PORT ...]\n"
      "  [--proto imap|pop3] [--tls] [--user-fmt user%%d] [--users 100] [--user-offset 0]\n"
      "  [--password pass] [-c CONCURRENCY] [-d SECONDS]\n"
      "  [-n LOGINS (logins) | SESSIONS (idle) | MESSAGES (lmtp)]\n"
      "  [--ramp 64] [--hold 60] [--timeout 10] [--max-time 600] [--fetch '1 BODY.PEEK[]'] [-v]\n"
      "  lmtp: [--rcpt-fmt user%%d@bench.test] [--rcpts 2] [--msg-size 2000] [--split]\n");
  std::exit(2);
}

sockaddr_in parse_target(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) die("bad target %s (want HOST:PORT)", s.c_str());
  std::string host = s.substr(0, colon);
  int port = std::atoi(s.c_str() + colon + 1);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res)
      die("cannot resolve %s", host.c_str());
    a.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
  }
  return a;
}

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) usage();
  std::string m = argv[1];
  if (m == "logins") o.mode = Mode::Logins;
  else if (m == "bulk") o.mode = Mode::Bulk;
  else if (m == "idle") o.mode = Mode::Idle;
  else if (m == "lmtp") o.mode = Mode::Lmtp;
  else usage();
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--target" || a == "-t") o.targets.push_back(parse_target(val()));
    else if (a == "--user-fmt") o.user_fmt = val();
    else if (a == "--users") o.users = std::atoi(val().c_str());
    else if (a == "--user-offset") o.user_offset = std::atoi(val().c_str());
    else if (a == "--password") o.password = val();
    else if (a == "-c" || a == "--concurrency") o.concurrency = std::atoi(val().c_str());
    else if (a == "-d" || a == "--duration") o.duration = std::atof(val().c_str());
    else if (a == "-n") {
      long n = std::atol(val().c_str());
      o.max_logins = n;
      o.sessions = n;
    } else if (a == "--ramp") o.ramp = std::atoi(val().c_str());
    else if (a == "--hold") o.hold = std::atof(val().c_str());
    else if (a == "--timeout") o.timeout = std::atof(val().c_str());
    else if (a == "--max-time") o.max_time = std::atof(val().c_str());
    else if (a == "--fetch") o.fetch = val();
    else if (a == "-v") o.verbose = true;
    else if (a == "--proto") {
      std::string p = val();
      if (p == "imap") o.proto = Proto::Imap;
      else if (p == "pop3") o.proto = Proto::Pop3;
      else usage();
    } else if (a == "--tls") o.tls = true;
    else if (a == "--rcpt-fmt") o.rcpt_fmt = val();
    else if (a == "--rcpts") o.rcpts = std::atoi(val().c_str());
    else if (a == "--msg-size") o.msg_size = static_cast<size_t>(std::atol(val().c_str()));
    else if (a == "--split") o.split = true;
    else usage();
  }
  if (o.proto == Proto::Pop3 && o.mode != Mode::Logins)
    die("--proto pop3 is for the logins mode only");
  if (o.mode == Mode::Lmtp && o.rcpts < 1) usage();
  if (o.targets.empty()) usage();
  if (o.users < 1 || o.concurrency < 1 || o.ramp < 1) usage();
  if (o.duration <= 0 || o.timeout <= 0 || o.max_time <= 0) usage();
  return o;
}

// ---------------------------------------------------------------------------

enum class St {
  Free,
  Connecting,
  Greeting,
  Login,
  Select,
  Fetch,
  Logout,   // LOGOUT sent: read until the server closes
  Idle,     // logged in, holding
  Parked,   // bulk: logged in and selected, waiting for the others
  Handshake,  // TLS handshake
  PopUser,    // USER sent
  PopPass,    // PASS sent
  Lhlo,       // LHLO sent
  LReady,     // LMTP: between transactions
  LEnvelope,  // MAIL and RCPTs sent
  LData,      // DATA sent
  LBody,      // message sent, waiting for one reply per accepted recipient
};

struct Conn {
  int fd = -1;
  St st = St::Free;
  int user = 0;
  double started = 0;   // connect() time
  double deadline = 0;  // current step must finish by then
  std::string line;     // partial response line
  uint64_t literal = 0; // bytes of literal still to skip
  bool out_pending = false;
  std::string out;      // unsent bytes
  size_t out_off = 0;
  SSL* ssl = nullptr;
  int target = 0;       // index into targets
  // lmtp
  int client = -1;      // lmtp: the client this connection belongs to
  int replies = 0;      // replies still expected
  int nrcpt = 0;        // RCPTs in this transaction
  int accepted = 0;     // of those, accepted
};

struct LClient {
  int ready = 0;        // connections that finished LHLO
  int pending = 0;      // transactions of the current message not answered yet
  bool failed = false;  // the current message had a rejection
  bool dead = false;
  double started = 0;
};

struct Stats {
  long ok = 0;
  long errors = 0;
  long err_connect = 0, err_timeout = 0, err_rejected = 0, err_closed = 0;
  std::vector<double> login_lat;  // connect -> tagged LOGIN OK
  std::vector<double> cycle_lat;  // connect -> server closed after LOGOUT
  std::vector<double> msg_lat;    // lmtp: MAIL sent -> last reply of the message
  long rcpt_ok = 0, rcpt_rejected = 0, msg_failed = 0;
  uint64_t literal_bytes = 0;
  uint64_t fetches = 0;
  std::string first_error;
};

volatile sig_atomic_t g_release = 0;
volatile sig_atomic_t g_abort = 0;
void on_usr1(int) { g_release = 1; }
void on_term(int) { g_abort = 1; }

class Load {
 public:
  explicit Load(const Options& o) : o_(o) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) die("epoll_create1: %s", std::strerror(errno));
    size_t n = o.mode == Mode::Idle ? static_cast<size_t>(o.sessions) : static_cast<size_t>(o.concurrency);
    if (o.mode == Mode::Lmtp) {
      per_client_ = o.split ? static_cast<int>(o.targets.size()) : 1;
      n = static_cast<size_t>(o.concurrency) * static_cast<size_t>(per_client_);
      lclients_.resize(static_cast<size_t>(o.concurrency));
      build_message();
    }
    conns_.resize(n);
    rbuf_.resize(256 * 1024);
    if (o.tls) {
      ctx_ = SSL_CTX_new(TLS_client_method());
      if (!ctx_) die("SSL_CTX_new failed");
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
      SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
      SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    }
  }

  int run();

 private:
  std::string rcpt_name(int k) const {
    char buf[256];
    std::snprintf(buf, sizeof buf, o_.rcpt_fmt.c_str(), k + o_.user_offset);
    return buf;
  }
  void build_message() {
    std::string m = "From: bench@bench.test\r\nTo: rcpt@bench.test\r\nSubject: bench\r\n"
                    "Message-ID: <bench@bench.test>\r\n\r\n";
    std::string line = std::string(70, 'x') + "\r\n";
    while (m.size() + line.size() <= o_.msg_size) m += line;
    message_ = m + ".\r\n";
  }
  std::string user_name(int k) const {
    char buf[256];
    std::snprintf(buf, sizeof buf, o_.user_fmt.c_str(), k + o_.user_offset);
    return buf;
  }
  static std::string quote(const std::string& s) {
    std::string q = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    return q + "\"";
  }

  void error(Conn& c, long Stats::*kind, const char* what) {
    stats_.errors++;
    stats_.*kind += 1;
    if (stats_.first_error.empty()) {
      char buf[512];
      std::snprintf(buf, sizeof buf, "%s (state %d, user %s)", what, static_cast<int>(c.st),
                    user_name(c.user).c_str());
      stats_.first_error = buf;
    }
    if (o_.verbose) std::fprintf(stderr, "error: %s\n", what);
    close_conn(c);
    if (o_.mode == Mode::Lmtp && c.client >= 0) {
      // A client whose connection failed stops: its other connections close with it.
      lclients_[static_cast<size_t>(c.client)].dead = true;
      for (int t = 0; t < per_client_; ++t) close_conn(lconn(c.client, t));
    }
  }

  // A failure that leaves the connection usable (an LMTP rejection).
  void soft_error(Conn& c, long Stats::*kind, const std::string& what) {
    stats_.errors++;
    stats_.*kind += 1;
    if (stats_.first_error.empty()) stats_.first_error = what + " (user " + user_name(c.user) + ")";
    if (o_.verbose) std::fprintf(stderr, "error: %s\n", what.c_str());
  }

  Conn& lconn(int client, int t) {
    return conns_[static_cast<size_t>(client) * static_cast<size_t>(per_client_) +
                  static_cast<size_t>(t)];
  }

  void close_conn(Conn& c) {
    if (c.ssl) {
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    if (c.fd >= 0) {
      ::close(c.fd);  // also leaves the epoll set
      c.fd = -1;
    }
    if (c.st == St::Idle) --idle_now_;
    c.st = St::Free;
    c.line.clear();
    c.literal = 0;
    c.out.clear();
    c.out_off = 0;
    c.out_pending = false;
  }

  bool start_conn(Conn& c, int user, int target = -1) {
    c.user = user;
    c.target = target >= 0 ? target : static_cast<int>(static_cast<size_t>(user) % o_.targets.size());
    const sockaddr_in& t = o_.targets[static_cast<size_t>(c.target)];
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      c.st = St::Connecting;
      error(c, &Stats::err_connect, "socket() failed");
      return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.fd = fd;
    c.started = now_s();
    c.deadline = c.started + o_.timeout;
    c.st = St::Connecting;
    int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&t), sizeof t);
    if (r != 0 && errno != EINPROGRESS) {
      error(c, &Stats::err_connect, std::strerror(errno));
      return false;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.ptr = &c;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      error(c, &Stats::err_connect, "epoll_ctl failed");
      return false;
    }
    c.out_pending = true;  // EPOLLOUT is armed until connected
    return true;
  }

  void set_out(Conn& c, bool want) {
    if (c.out_pending == want) return;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (want ? static_cast<uint32_t>(EPOLLOUT) : 0u);
    ev.data.ptr = &c;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    c.out_pending = want;
  }

  bool send(Conn& c, const std::string& s) {
    c.out.append(s);
    return flush(c);
  }

  bool flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = io_write(c, c.out.data() + c.out_off, c.out.size() - c.out_off);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        set_out(c, true);
        return true;
      }
      error(c, &Stats::err_closed, "send failed");
      return false;
    }
    c.out.clear();
    c.out_off = 0;
    set_out(c, false);
    return true;
  }

  void step_deadline(Conn& c) { c.deadline = now_s() + o_.timeout; }

  // recv()/send() or their TLS counterparts: > 0 bytes, 0 closed, -1 with errno (EAGAIN:
  // try again on the next event).
  ssize_t io_read(Conn& c, char* buf, size_t len) {
    if (!c.ssl) return ::recv(c.fd, buf, len, MSG_DONTWAIT);
    int r = SSL_read(c.ssl, buf, static_cast<int>(std::min<size_t>(len, 1 << 30)));
    if (r > 0) return r;
    return tls_failure(c, r);
  }
  ssize_t io_write(Conn& c, const char* buf, size_t len) {
    if (!c.ssl) return ::send(c.fd, buf, len, MSG_NOSIGNAL);
    int r = SSL_write(c.ssl, buf, static_cast<int>(std::min<size_t>(len, 1 << 30)));
    if (r > 0) return r;
    return tls_failure(c, r);
  }
  ssize_t tls_failure(Conn& c, int r) {
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (e == SSL_ERROR_WANT_WRITE) set_out(c, true);
      errno = EAGAIN;
      return -1;
    }
    unsigned long err = ERR_get_error();
    ERR_clear_error();
    if (e == SSL_ERROR_SYSCALL && errno == 0 && err == 0) return 0;  // EOF
    if (e != SSL_ERROR_SYSCALL || errno == 0) errno = EPROTO;
    return -1;
  }
  bool handshake(Conn& c) {
    int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
      c.st = St::Greeting;
      step_deadline(c);
      set_out(c, false);
      return true;
    }
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
      set_out(c, false);
      return true;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      set_out(c, true);
      return true;
    }
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    ERR_clear_error();
    std::string msg = std::string("TLS handshake failed: ") + buf;
    error(c, &Stats::err_connect, msg.c_str());
    return false;
  }

  // lmtp: the next message of client k, or QUIT when there is none.
  void lmtp_next_message(int k) {
    LClient& cl = lclients_[static_cast<size_t>(k)];
    if (cl.dead) return;
    if (stopping_ || (o_.max_logins > 0 && started_logins_ >= o_.max_logins)) {
      cl.dead = true;
      for (int t = 0; t < per_client_; ++t) {
        Conn& c = lconn(k, t);
        if (c.st != St::LReady) continue;
        c.st = St::Logout;
        step_deadline(c);
        send(c, "QUIT\r\n");
      }
      return;
    }
    long j = started_logins_++;
    std::vector<std::string> env(static_cast<size_t>(per_client_));
    std::vector<int> n(static_cast<size_t>(per_client_), 0);
    int first_user = -1;
    for (int r = 0; r < o_.rcpts; ++r) {
      int u = static_cast<int>((j * o_.rcpts + r) % o_.users);
      if (first_user < 0) first_user = u;
      size_t t = o_.split ? static_cast<size_t>(u) % o_.targets.size() : 0;
      env[t] += "RCPT TO:<" + rcpt_name(u) + ">\r\n";
      n[t]++;
    }
    cl.started = now_s();
    cl.pending = 0;
    cl.failed = false;
    for (int t = 0; t < per_client_; ++t) {
      if (n[static_cast<size_t>(t)] == 0) continue;
      Conn& c = lconn(k, t);
      c.user = first_user;
      c.nrcpt = n[static_cast<size_t>(t)];
      c.accepted = 0;
      c.replies = 1 + c.nrcpt;
      c.st = St::LEnvelope;
      step_deadline(c);
      cl.pending++;
      send(c, "MAIL FROM:<bench@bench.test>\r\n" + env[static_cast<size_t>(t)]);
      if (cl.dead) return;
    }
  }

  void lmtp_transaction_done(Conn& c) {
    c.st = St::LReady;
    LClient& cl = lclients_[static_cast<size_t>(c.client)];
    if (--cl.pending > 0) return;
    if (cl.failed) {
      stats_.msg_failed++;
    } else {
      stats_.ok++;
      stats_.msg_lat.push_back(now_s() - cl.started);
    }
    lmtp_next_message(c.client);
  }

  // The next thing a client does after its session ended (logins) or failed.
  void next(Conn& c) {
    if (o_.mode == Mode::Logins) {
      if (stopping_) return;
      if (o_.max_logins > 0 && started_logins_ >= o_.max_logins) return;
      ++started_logins_;
      start_conn(c, static_cast<int>(next_user_++ % o_.users));
    } else if (o_.mode == Mode::Idle) {
      launch_idle();
    }
  }

  void launch_idle() {
    while (!stopping_ && launched_ < o_.sessions && setting_up_ < o_.ramp) {
      Conn& c = conns_[static_cast<size_t>(launched_)];
      ++launched_;
      ++setting_up_;
      start_conn(c, static_cast<int>(next_user_++ % o_.users));
    }
  }

  void on_event(Conn& c, uint32_t events);
  void on_line(Conn& c, const char* p, size_t n);
  void on_pop3_line(Conn& c, const char* p, size_t n);
  void on_lmtp_line(Conn& c, const char* p, size_t n);
  void check_timeouts(double t);

  const Options& o_;
  int ep_ = -1;
  std::vector<Conn> conns_;
  std::vector<char> rbuf_;
  Stats stats_;
  long started_logins_ = 0;
  long next_user_ = 0;
  bool stopping_ = false;
  // idle
  long launched_ = 0;
  long setting_up_ = 0;
  long idle_now_ = 0;
  long idle_done_ = 0;  // sessions that reached Idle (or failed) during setup
  // bulk
  long parked_ = 0;
  bool bulk_running_ = false;
  double bulk_t0_ = 0;
  // tls
  SSL_CTX* ctx_ = nullptr;
  std::string cipher_;
  // lmtp
  int per_client_ = 1;
  std::vector<LClient> lclients_;
  std::string message_;
};

void Load::on_line(Conn& c, const char* p, size_t n) {
  // p[0..n) is one response line without CRLF.
  auto tagged = [&](char tag) { return n >= 2 && p[0] == tag && p[1] == ' '; };
  auto ok = [&]() { return n >= 4 && (p[2] == 'O' || p[2] == 'o') && (p[3] == 'K' || p[3] == 'k'); };
  if (o_.mode == Mode::Lmtp) {
    on_lmtp_line(c, p, n);
    return;
  }
  if (o_.proto == Proto::Pop3) {
    on_pop3_line(c, p, n);
    return;
  }
  switch (c.st) {
    case St::Greeting:
      if (n >= 4 && std::memcmp(p, "* OK", 4) == 0) {
        c.st = St::Login;
        step_deadline(c);
        send(c, "a LOGIN " + quote(user_name(c.user)) + " " + quote(o_.password) + "\r\n");
      } else {
        error(c, &Stats::err_rejected, "bad greeting");
      }
      return;
    case St::Login:
      if (!tagged('a')) return;
      if (!ok()) {
        std::string msg = "LOGIN rejected: " + std::string(p, std::min<size_t>(n, 200));
        if (o_.mode == Mode::Idle) --setting_up_, ++idle_done_;
        error(c, &Stats::err_rejected, msg.c_str());
        if (o_.mode != Mode::Bulk) next(c);
        return;
      }
      if (o_.mode == Mode::Logins) {
        stats_.login_lat.push_back(now_s() - c.started);
        c.st = St::Logout;
        step_deadline(c);
        send(c, "b LOGOUT\r\n");
      } else if (o_.mode == Mode::Bulk) {
        c.st = St::Select;
        step_deadline(c);
        send(c, "s SELECT INBOX\r\n");
      } else {
        c.st = St::Idle;
        stats_.login_lat.push_back(now_s() - c.started);
        ++idle_now_;
        ++idle_done_;
        --setting_up_;
        stats_.ok++;
        launch_idle();
      }
      return;
    case St::Select:
      if (!tagged('s')) return;
      if (!ok()) {
        error(c, &Stats::err_rejected, "SELECT rejected");
        return;
      }
      c.st = St::Parked;
      return;
    case St::Fetch:
      if (!tagged('f')) return;
      if (!ok()) {
        error(c, &Stats::err_rejected, "FETCH rejected");
        return;
      }
      stats_.fetches++;
      if (c.ssl && cipher_.empty()) cipher_ = std::string(SSL_get_version(c.ssl)) + "/" + SSL_get_cipher_name(c.ssl);
      if (stopping_) {
        c.st = St::Logout;
        step_deadline(c);
        send(c, "b LOGOUT\r\n");
        return;
      }
      step_deadline(c);
      send(c, "f FETCH " + o_.fetch + "\r\n");
      return;
    case St::Logout:
    case St::Idle:
    default:
      return;  // untagged data, BYE, "b OK": wait for the close
  }
}

void Load::on_pop3_line(Conn& c, const char* p, size_t n) {
  bool ok = n >= 3 && std::memcmp(p, "+OK", 3) == 0;
  switch (c.st) {
    case St::Greeting:
      if (!ok) {
        error(c, &Stats::err_rejected, "bad greeting");
        next(c);
        return;
      }
      c.st = St::PopUser;
      step_deadline(c);
      send(c, "USER " + user_name(c.user) + "\r\n");
      return;
    case St::PopUser:
    case St::PopPass:
      if (!ok) {
        std::string msg = std::string(c.st == St::PopUser ? "USER" : "PASS") + " rejected: " +
                          std::string(p, std::min<size_t>(n, 200));
        error(c, &Stats::err_rejected, msg.c_str());
        next(c);
        return;
      }
      if (c.st == St::PopUser) {
        c.st = St::PopPass;
        step_deadline(c);
        send(c, "PASS " + o_.password + "\r\n");
        return;
      }
      stats_.login_lat.push_back(now_s() - c.started);
      c.st = St::Logout;
      step_deadline(c);
      send(c, "QUIT\r\n");
      return;
    default:
      return;  // the QUIT answer: wait for the close
  }
}

void Load::on_lmtp_line(Conn& c, const char* p, size_t n) {
  // One reply is any "DDD-" lines, then a "DDD " (or bare "DDD") line.
  if (n < 3) {
    error(c, &Stats::err_rejected, "short LMTP reply");
    return;
  }
  if (n > 3 && p[3] == '-') return;
  int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
  std::string text(p, std::min<size_t>(n, 200));
  switch (c.st) {
    case St::Greeting:
      if (code != 220) {
        error(c, &Stats::err_rejected, ("bad greeting: " + text).c_str());
        return;
      }
      c.st = St::Lhlo;
      step_deadline(c);
      send(c, "LHLO bench.test\r\n");
      return;
    case St::Lhlo: {
      if (code != 250) {
        error(c, &Stats::err_rejected, ("LHLO rejected: " + text).c_str());
        return;
      }
      c.st = St::LReady;
      LClient& cl = lclients_[static_cast<size_t>(c.client)];
      if (++cl.ready == per_client_) lmtp_next_message(c.client);
      return;
    }
    case St::LEnvelope: {
      bool mail = c.replies == 1 + c.nrcpt;
      if (code / 100 != 2) {
        soft_error(c, &Stats::err_rejected, (mail ? "MAIL rejected: " : "RCPT rejected: ") + text);
        if (!mail) stats_.rcpt_rejected++;
        lclients_[static_cast<size_t>(c.client)].failed = true;
      } else if (!mail) {
        c.accepted++;
      }
      if (--c.replies > 0) return;
      if (c.accepted == 0) {
        c.st = St::LReady;
        c.replies = 1;
        c.st = St::LData;  // RSET, its answer ends the transaction
        c.nrcpt = -1;
        step_deadline(c);
        send(c, "RSET\r\n");
        return;
      }
      c.st = St::LData;
      step_deadline(c);
      send(c, "DATA\r\n");
      return;
    }
    case St::LData:
      if (c.nrcpt < 0) {  // the RSET after a transaction without recipients
        lmtp_transaction_done(c);
        return;
      }
      if (code != 354) {
        soft_error(c, &Stats::err_rejected, "DATA rejected: " + text);
        lclients_[static_cast<size_t>(c.client)].failed = true;
        lmtp_transaction_done(c);
        return;
      }
      c.st = St::LBody;
      c.replies = c.accepted;
      step_deadline(c);
      send(c, message_);
      return;
    case St::LBody:
      if (code / 100 == 2) {
        stats_.rcpt_ok++;
      } else {
        soft_error(c, &Stats::err_rejected, "delivery rejected: " + text);
        stats_.rcpt_rejected++;
        lclients_[static_cast<size_t>(c.client)].failed = true;
      }
      if (--c.replies > 0) return;
      lmtp_transaction_done(c);
      return;
    default:
      return;  // QUIT's answer: wait for the close
  }
}

void Load::on_event(Conn& c, uint32_t events) {
  if (c.st == St::Free) return;
  if (c.st == St::Connecting) {
    if (events & (EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (o_.mode == Mode::Idle) --setting_up_, ++idle_done_;
      error(c, &Stats::err_connect, err ? std::strerror(err) : "connect failed");
      next(c);
      return;
    }
    if (events & EPOLLOUT) {
      c.st = St::Greeting;
      step_deadline(c);
      set_out(c, false);
      if (o_.tls) {
        c.ssl = SSL_new(ctx_);
        if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1) {
          error(c, &Stats::err_connect, "SSL_new failed");
          next(c);
          return;
        }
        SSL_set_connect_state(c.ssl);
        c.st = St::Handshake;
      }
    }
  }
  if (c.st == St::Handshake) {
    if (!handshake(c)) {
      next(c);
      return;
    }
    if (c.st == St::Handshake) return;
  }
  if (!c.out.empty() && ((events & EPOLLOUT) || c.ssl)) {
    if (!flush(c)) return;
  }
  if (!c.ssl && !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
  // At most 16 reads (64 records under TLS) per event, for fairness: epoll reports the
  // socket again while it has data. Bytes OpenSSL already holds are not seen by epoll, so
  // under TLS the loop goes on while it has some.
  for (int rounds = 0;; ++rounds) {
    if (rounds >= (c.ssl ? 64 : 16) && !(c.ssl && SSL_has_pending(c.ssl))) break;
    ssize_t n;
    if (!c.ssl && c.literal > 0 && c.line.empty()) {
      // Skip literal bytes in the kernel: MSG_TRUNC on TCP discards without copying.
      size_t want = static_cast<size_t>(std::min<uint64_t>(c.literal, 1 << 20));
      n = ::recv(c.fd, nullptr, want, MSG_TRUNC | MSG_DONTWAIT);
      if (n > 0) {
        c.literal -= static_cast<uint64_t>(n);
        stats_.literal_bytes += static_cast<uint64_t>(n);
        continue;
      }
    } else {
      n = io_read(c, rbuf_.data(), rbuf_.size());
    }
    if (n == 0) {
      // The server closed.
      if (c.st == St::Logout) {
        if (c.ssl && cipher_.empty()) cipher_ = std::string(SSL_get_version(c.ssl)) + "/" + SSL_get_cipher_name(c.ssl);
        if (o_.mode == Mode::Logins) {
          stats_.cycle_lat.push_back(now_s() - c.started);
          stats_.ok++;
        }
        close_conn(c);
        next(c);
      } else {
        bool was_setup = o_.mode == Mode::Idle && c.st != St::Idle;
        if (was_setup) --setting_up_, ++idle_done_;
        error(c, &Stats::err_closed, "server closed the connection");
        if (o_.mode == Mode::Logins) next(c);
        else if (was_setup) launch_idle();
      }
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      bool was_setup = o_.mode == Mode::Idle && c.st != St::Idle;
      if (was_setup) --setting_up_, ++idle_done_;
      error(c, &Stats::err_closed, std::strerror(errno));
      if (o_.mode == Mode::Logins) next(c);
      else if (was_setup) launch_idle();
      return;
    }
    // Parse lines; a line ending in {N} announces N literal bytes.
    const char* p = rbuf_.data();
    size_t len = static_cast<size_t>(n);
    while (len > 0 && c.fd >= 0) {
      if (c.literal > 0) {
        size_t k = static_cast<size_t>(std::min<uint64_t>(c.literal, len));
        c.literal -= k;
        stats_.literal_bytes += k;
        p += k;
        len -= k;
        continue;
      }
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', len));
      if (!nl) {
        c.line.append(p, len);
        if (c.line.size() > 1 << 20) {
          error(c, &Stats::err_rejected, "response line too long");
          return;
        }
        break;
      }
      size_t k = static_cast<size_t>(nl - p) + 1;
      c.line.append(p, k);
      p += k;
      len -= k;
      std::string line;
      line.swap(c.line);
      size_t ln = line.size() - 1;
      if (ln > 0 && line[ln - 1] == '\r') --ln;
      // Literal announcement?
      if (ln >= 3 && line[ln - 1] == '}') {
        size_t open = line.rfind('{', ln - 1);
        if (open != std::string::npos && open + 1 < ln - 1) {
          c.literal = std::strtoull(line.c_str() + open + 1, nullptr, 10);
          continue;  // the rest of the response follows the literal
        }
      }
      on_line(c, line.data(), ln);
    }
    if (c.fd < 0) return;
  }
}

void Load::check_timeouts(double t) {
  for (Conn& c : conns_) {
    if (c.st == St::Free || c.st == St::Idle || c.st == St::Parked || c.st == St::LReady) continue;
    if (t < c.deadline) continue;
    bool was_setup = o_.mode == Mode::Idle;
    if (was_setup) --setting_up_, ++idle_done_;
    error(c, &Stats::err_timeout, "timeout");
    if (o_.mode == Mode::Logins) next(c);
    else if (was_setup) launch_idle();
  }
}

double pct(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

int Load::run() {
  const double t_start = now_s();
  const double hard_end = t_start + o_.max_time;
  std::vector<epoll_event> evs(1024);
  double last_check = t_start;
  double t_measure0 = t_start, t_measure1 = 0;
  bool established_reported = false;
  double establish_time = 0;
  double release_at = 0;

  if (o_.mode == Mode::Logins) {
    for (Conn& c : conns_) next(c);
  } else if (o_.mode == Mode::Bulk) {
    for (size_t i = 0; i < conns_.size(); ++i) start_conn(conns_[i], static_cast<int>(i % static_cast<size_t>(o_.users)));
  } else if (o_.mode == Mode::Lmtp) {
    for (int k = 0; k < o_.concurrency; ++k)
      for (int t = 0; t < per_client_; ++t) {
        Conn& c = lconn(k, t);
        c.client = k;
        start_conn(c, k, t);
      }
  } else {
    launch_idle();
  }
  // stdin closes or gets a line: release the idle sessions.
  bool watch_stdin = o_.mode == Mode::Idle;
  if (watch_stdin) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, 0, &ev) != 0) watch_stdin = false;  // e.g. /dev/null
  }

  for (;;) {
    double t = now_s();
    if (g_abort || t >= hard_end) {
      if (!stats_.first_error.empty() || true) {
        if (g_abort) std::fprintf(stderr, "imap-load: interrupted\n");
        else std::fprintf(stderr, "imap-load: --max-time reached\n");
      }
      stopping_ = true;
      if (t_measure1 == 0) t_measure1 = t;
      break;
    }
    if (o_.mode == Mode::Logins || o_.mode == Mode::Lmtp) {
      if (!stopping_ && t - t_start >= o_.duration) stopping_ = true;
      bool any = false;
      for (Conn& c : conns_) any |= c.st != St::Free;
      if (!any) {
        if (t_measure1 == 0) t_measure1 = t;
        break;
      }
    } else if (o_.mode == Mode::Bulk) {
      long active = 0;
      parked_ = 0;
      for (Conn& c : conns_) {
        active += c.st != St::Free;
        parked_ += c.st == St::Parked;
      }
      if (!bulk_running_ && !stopping_ && parked_ > 0 && parked_ == active) {
        bulk_running_ = true;
        bulk_t0_ = now_s();
        t_measure0 = bulk_t0_;
        stats_.literal_bytes = 0;
        for (Conn& c : conns_)
          if (c.st == St::Parked) {
            c.st = St::Fetch;
            step_deadline(c);
            send(c, "f FETCH " + o_.fetch + "\r\n");
          }
      }
      if (bulk_running_ && !stopping_ && t - bulk_t0_ >= o_.duration) stopping_ = true;
      if (!bulk_running_ && active == 0) {
        t_measure1 = t;
        break;  // everyone failed before starting
      }
      if (bulk_running_ && active == 0) {
        t_measure1 = t;
        break;
      }
      if (!bulk_running_ && t - t_start >= o_.duration + o_.timeout) {
        stopping_ = true;
        t_measure1 = t;
        break;
      }
    } else {  // idle
      if (!established_reported && idle_done_ >= o_.sessions) {
        established_reported = true;
        establish_time = t - t_start;
        std::printf("ESTABLISHED sessions=%ld errors=%ld secs=%.2f\n", idle_now_, stats_.errors,
                    establish_time);
        std::fflush(stdout);
        release_at = t + o_.hold;
      }
      if (established_reported && (g_release || t >= release_at)) break;
      if (!established_reported && t - t_start >= o_.max_time) break;
    }

    int timeout_ms = 100;
    int n = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      if (evs[static_cast<size_t>(i)].data.ptr == nullptr) {
        char buf[256];
        ssize_t r = ::read(0, buf, sizeof buf);
        if (r <= 0 || std::memchr(buf, '\n', static_cast<size_t>(r))) g_release = 1;
        if (r <= 0) epoll_ctl(ep_, EPOLL_CTL_DEL, 0, nullptr);
        continue;
      }
      on_event(*static_cast<Conn*>(evs[static_cast<size_t>(i)].data.ptr), evs[static_cast<size_t>(i)].events);
    }
    t = now_s();
    if (t - last_check >= 0.1) {
      check_timeouts(t);
      last_check = t;
    }
  }

  long idle_at_release = idle_now_;
  for (Conn& c : conns_) close_conn(c);

  double elapsed = (t_measure1 > 0 ? t_measure1 : now_s()) - t_measure0;
  if (o_.mode == Mode::Logins) {
    std::printf("RESULT mode=logins concurrency=%d logins=%ld errors=%ld err_connect=%ld "
                "err_timeout=%ld err_rejected=%ld err_closed=%ld secs=%.3f rate=%.1f "
                "login_p50_ms=%.3f login_p99_ms=%.3f cycle_p50_ms=%.3f cycle_p99_ms=%.3f",
                o_.concurrency, stats_.ok, stats_.errors, stats_.err_connect, stats_.err_timeout,
                stats_.err_rejected, stats_.err_closed, elapsed,
                elapsed > 0 ? static_cast<double>(stats_.ok) / elapsed : 0.0,
                pct(stats_.login_lat, 0.5) * 1e3, pct(stats_.login_lat, 0.99) * 1e3,
                pct(stats_.cycle_lat, 0.5) * 1e3, pct(stats_.cycle_lat, 0.99) * 1e3);
  } else if (o_.mode == Mode::Bulk) {
    double secs = bulk_running_ ? now_s() - bulk_t0_ : 0;
    if (t_measure1 > 0 && bulk_running_) secs = t_measure1 - bulk_t0_;
    std::printf("RESULT mode=bulk concurrency=%d bytes=%" PRIu64 " fetches=%" PRIu64
                " errors=%ld secs=%.3f mb_per_s=%.1f",
                o_.concurrency, stats_.literal_bytes, stats_.fetches, stats_.errors, secs,
                secs > 0 ? static_cast<double>(stats_.literal_bytes) / secs / 1e6 : 0.0);
  } else if (o_.mode == Mode::Lmtp) {
    std::printf("RESULT mode=lmtp concurrency=%d messages=%ld errors=%ld msg_failed=%ld "
                "rcpt_ok=%ld rcpt_rejected=%ld err_connect=%ld err_timeout=%ld "
                "err_rejected=%ld err_closed=%ld secs=%.3f rate=%.1f msg_p50_ms=%.3f "
                "msg_p99_ms=%.3f",
                o_.concurrency, stats_.ok, stats_.errors, stats_.msg_failed, stats_.rcpt_ok,
                stats_.rcpt_rejected, stats_.err_connect, stats_.err_timeout,
                stats_.err_rejected, stats_.err_closed, elapsed,
                elapsed > 0 ? static_cast<double>(stats_.ok) / elapsed : 0.0,
                pct(stats_.msg_lat, 0.5) * 1e3, pct(stats_.msg_lat, 0.99) * 1e3);
  } else {
    std::printf("RESULT mode=idle sessions=%ld requested=%ld errors=%ld establish_secs=%.2f "
                "held_at_release=%ld login_p50_ms=%.3f login_p99_ms=%.3f",
                stats_.ok, o_.sessions, stats_.errors, establish_time, idle_at_release,
                pct(stats_.login_lat, 0.5) * 1e3, pct(stats_.login_lat, 0.99) * 1e3);
  }
  if (!cipher_.empty()) std::printf(" tls=%s", cipher_.c_str());
  if (!stats_.first_error.empty()) {
    std::string e = stats_.first_error;
    for (char& ch : e)
      if (ch == '"' || ch == '\r' || ch == '\n') ch = '\'';
    std::printf(" first_error=\"%s\"", e.c_str());
  }
  std::printf("\n");
  std::fflush(stdout);
  return stats_.ok > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  // One descriptor per session plus slack; root may raise the hard limit too.
  rlim_t want = static_cast<rlim_t>(std::max<long>(o.sessions, o.concurrency)) + 1024;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    rlimit nr = rl;
    nr.rlim_cur = want;
    if (nr.rlim_max < want) nr.rlim_max = want;
    if (setrlimit(RLIMIT_NOFILE, &nr) != 0) {
      nr.rlim_cur = rl.rlim_max;
      nr.rlim_max = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &nr);
      if (o.mode == Mode::Idle && static_cast<rlim_t>(o.sessions) + 64 > nr.rlim_cur)
        die("RLIMIT_NOFILE %llu is too low for %ld sessions",
            static_cast<unsigned long long>(nr.rlim_cur), o.sessions);
    }
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, nullptr);
  sa.sa_handler = on_term;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  Load load(o);
  return load.run();
}
