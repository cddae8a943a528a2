// imap-load: a small IMAP load generator for the Switchyard side-by-side benchmark.
//
// Plain sockets and epoll, one thread, no external libraries. Three modes:
//
//   logins  C clients each loop: connect, greeting, "a LOGIN user pass", tagged OK,
//           "b LOGOUT", read until the server closes. For D seconds or N logins.
//   bulk    C clients each log in once, SELECT INBOX, then repeat "f FETCH 1 BODY.PEEK[]"
//           for D seconds. The literal is discarded in the kernel (recv MSG_TRUNC).
//   idle    open N logged-in sessions (at most R being set up at once), print one
//           "ESTABLISHED ..." line, hold them until stdin has a line / EOF, SIGUSR1, or
//           --hold seconds, then close them all.
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

enum class Mode { Logins, Bulk, Idle };

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
};

void usage() {
  std::fprintf(stderr,
      "usage: imap-load logins|bulk|idle --target HOST:PORT [--target HOST:PORT ...]\n"
      "  [--user-fmt user%%d] [--users 100] [--user-offset 0] [--password pass]\n"
      "  [-c CONCURRENCY] [-d SECONDS] [-n LOGINS (logins) | SESSIONS (idle)]\n"
      "  [--ramp 64] [--hold 60] [--timeout 10] [--max-time 600] [--fetch '1 BODY.PEEK[]'] [-v]\n");
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
    else usage();
  }
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
};

struct Stats {
  long ok = 0;
  long errors = 0;
  long err_connect = 0, err_timeout = 0, err_rejected = 0, err_closed = 0;
  std::vector<double> login_lat;  // connect -> tagged LOGIN OK
  std::vector<double> cycle_lat;  // connect -> server closed after LOGOUT
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
    conns_.resize(n);
    rbuf_.resize(256 * 1024);
  }

  int run();

 private:
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
  }

  void close_conn(Conn& c) {
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

  bool start_conn(Conn& c, int user) {
    c.user = user;
    const sockaddr_in& t = o_.targets[static_cast<size_t>(user) % o_.targets.size()];
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
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
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
};

void Load::on_line(Conn& c, const char* p, size_t n) {
  // p[0..n) is one response line without CRLF.
  auto tagged = [&](char tag) { return n >= 2 && p[0] == tag && p[1] == ' '; };
  auto ok = [&]() { return n >= 4 && (p[2] == 'O' || p[2] == 'o') && (p[3] == 'K' || p[3] == 'k'); };
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
    }
  }
  if ((events & EPOLLOUT) && !c.out.empty()) {
    if (!flush(c)) return;
  }
  if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t n;
    if (c.literal > 0 && c.line.empty()) {
      // Skip literal bytes in the kernel: MSG_TRUNC on TCP discards without copying.
      size_t want = static_cast<size_t>(std::min<uint64_t>(c.literal, 1 << 20));
      n = ::recv(c.fd, nullptr, want, MSG_TRUNC | MSG_DONTWAIT);
      if (n > 0) {
        c.literal -= static_cast<uint64_t>(n);
        stats_.literal_bytes += static_cast<uint64_t>(n);
        continue;
      }
    } else {
      n = ::recv(c.fd, rbuf_.data(), rbuf_.size(), MSG_DONTWAIT);
    }
    if (n == 0) {
      // The server closed.
      if (c.st == St::Logout) {
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
    if (c.st == St::Free || c.st == St::Idle || c.st == St::Parked) continue;
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
    if (o_.mode == Mode::Logins) {
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
  } else {
    std::printf("RESULT mode=idle sessions=%ld requested=%ld errors=%ld establish_secs=%.2f "
                "held_at_release=%ld login_p50_ms=%.3f login_p99_ms=%.3f",
                stats_.ok, o_.sessions, stats_.errors, establish_time, idle_at_release,
                pct(stats_.login_lat, 0.5) * 1e3, pct(stats_.login_lat, 0.99) * 1e3);
  }
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
