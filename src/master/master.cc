// Master process (see master.h).
#include <config.h>

#include "master/master.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "config/config.h"
#include "log/log.h"
#include "map/chain.h"
#include "metrics/metrics.h"
#include "master/notify.h"
#include "master/preflight.h"
#include "worker/control.h"
#include "worker/worker.h"
#include "net/address.h"
#include "proxy/admission.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;

struct Slot {
  pid_t pid = 0;
  Clock::time_point started;
  Clock::time_point respawn_at;
  std::chrono::milliseconds backoff{100};
};

// Listening sockets by address: one, or one per worker for a TCP listener with reuseport.
using BoundSockets = std::map<std::string, std::vector<int>>;

bool in_port_group(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  return ::getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0 && on != 0;
}

// A socket nobody will accept on again: shut down first, so that it stops listening at
// once even where a draining worker still holds a copy of the descriptor.
void retire_socket(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

// Binds every [[listen]], reusing the sockets already bound for an unchanged address; a
// port group grows or shrinks to the number of workers (what it sheds is given to
// *surplus: the caller answers what waits there, then closes them). Sockets of listeners
// no longer configured are retired. On failure nothing changes.
bool bind_all(const Config& c, BoundSockets& bound, std::vector<BoundListener>* out,
              std::vector<std::pair<ListenConfig, int>>* surplus, std::string* error) {
  BoundSockets keep;
  std::vector<int> fresh;  // bound here: closed again if anything fails
  std::vector<std::pair<ListenConfig, int>> shed;
  auto fail = [&](const ListenConfig& l, const std::string& why) {
    *error = c.path + ":" + std::to_string(l.line) + ": cannot listen on " + l.address + ": " + why;
    for (int fd : fresh) ::close(fd);
    for (auto& [a, fds] : keep)
      for (int fd : fds)
        if (std::find(fresh.begin(), fresh.end(), fd) == fresh.end()) bound[a].push_back(fd);
    for (auto& [l, fd] : shed) bound[l.address].push_back(fd);
    return false;
  };
  out->clear();
  for (const auto& l : c.listen) {
    std::string why;
    auto addr = parse_socket_address(l.address, &why);
    if (!addr) return fail(l, why);
    const bool group = l.reuseport && addr->kind != SocketAddress::Kind::Unix && addr->port != 0;
    const std::size_t want = group ? static_cast<std::size_t>(std::max(1, c.workers)) : 1;
    std::vector<int>& mine = keep[l.address];
    if (auto it = bound.find(l.address); it != bound.end()) {
      mine = std::move(it->second);
      bound.erase(it);
      if (group != in_port_group(mine.front()))
        return fail(l, "reuseport changed: that takes a restart, not a reload");
      while (mine.size() > want) {
        shed.emplace_back(l, mine.back());
        mine.pop_back();
      }
    }
    while (mine.size() < want) {
      const PortSharing sharing = !group         ? PortSharing::None
                                  : mine.empty() ? PortSharing::FirstOfGroup
                                                 : PortSharing::JoinGroup;
      int fd = bind_listener(*addr, &why, sharing);
      if (fd < 0) return fail(l, why);
      fresh.push_back(fd);
      mine.push_back(fd);
    }
    BoundListener b{l, mine.front(), nullptr, {}};
    if (group) b.group = mine;
    out->push_back(std::move(b));
  }
  for (auto& [a, fds] : bound)  // listeners removed from the config
    for (int fd : fds) retire_socket(fd);
  bound = std::move(keep);
  if (surplus) *surplus = std::move(shed);
  else
    for (auto& [l, fd] : shed) retire_socket(fd);
  return true;
}

// TLS contexts for every listener (one per certificate) and for the stores, built here
// while the keys are readable. A listener gets one when it or [tls] names a certificate.
bool load_tls(const Config& c, std::vector<BoundListener>* listeners,
              std::shared_ptr<TlsContext>* store_tls, std::string* error) {
  std::map<std::pair<std::string, std::string>, std::shared_ptr<TlsContext>> by_cert;
  for (auto& l : *listeners) {
    std::string cert = l.config.tls_cert.empty() ? c.tls.cert : l.config.tls_cert;
    std::string key = l.config.tls_key.empty() ? c.tls.key : l.config.tls_key;
    if (cert.empty()) continue;
    auto& ctx = by_cert[{cert, key}];
    if (!ctx) {
      std::string why;
      ctx = make_server_tls(c.tls, cert, key, &why);
      if (!ctx) {
        *error = c.path + ":" + std::to_string(l.config.line) + ": " + why;
        return false;
      }
    }
    l.tls = ctx;
  }
  std::string why;
  *store_tls = make_client_tls(c.tls, &why);
  if (!*store_tls) {
    *error = c.path + ":" + std::to_string(c.tls.line) + ": " + why;
    return false;
  }
  return true;
}

// Loads every map (dbserver_init, then dbserver_fini, as Perdition does at start) in a
// child process and reports how that went. The master itself never loads a module: what
// a module leaves behind at each load (libldap keeps state that dlclose loses: ~7 KB a
// reload) or breaks (a crash in dbserver_init) stays out of the long-lived master, and a
// module whose init hangs is given up on after kMapCheckLimit.
constexpr int kMapCheckLimitMs = 60'000;

bool check_maps(const Config& c, std::string* error) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    *error = std::string("cannot check the maps: pipe: ") + std::strerror(errno);
    return false;
  }
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    *error = std::string("cannot check the maps: fork: ") + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return false;
  }
  if (pid == 0) {
    ::close(fds[0]);
    std::string why;
    bool ok = load_chain(c, &why) != nullptr;  // destroyed here: dbserver_fini runs
    for (std::size_t done = 0; !ok && done < why.size();) {
      ssize_t n = ::write(fds[1], why.data() + done, why.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    std::fflush(nullptr);
    ::_exit(ok ? 0 : 1);
  }
  ::close(fds[1]);
  std::string why;
  bool timed_out = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kMapCheckLimitMs);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the child is done
    if (why.size() < 65536) why.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    *error = "the maps did not load within " + std::to_string(kMapCheckLimitMs / 1000) +
             "s (a dbserver_init that hangs?)";
    return false;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  if (WIFSIGNALED(status)) {
    *error = "loading the maps killed the checking process (signal " +
             std::to_string(WTERMSIG(status)) + ": a map module crashed in dbserver_init)";
    return false;
  }
  *error = why.empty() ? "the maps did not load" : why;
  return false;
}

// The key of the client table's hash, new at each start: without it, an attacker could
// work out offline which of their addresses lands where another address counts.
HashKey random_hash_key() {
  HashKey key{};
  std::size_t got = 0;
  while (got < key.size()) {
    ssize_t n = ::getrandom(key.data() + got, key.size() - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      LOG_WARN("getrandom: %s; keying the client table from std::random_device",
               std::strerror(errno));
      std::random_device rd;
      for (auto& b : key) b = static_cast<std::uint8_t>(rd());
      break;
    }
  }
  return key;
}

void write_pid_file(const std::string& path) {
  if (path.empty()) return;
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    LOG_WARN("cannot write pid file %s: %s", path.c_str(), std::strerror(errno));
    return;
  }
  std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
  std::fclose(f);
}

// Map modules report on stderr. Once detached, stderr is /dev/null: send it to the log
// instead, a line at a time, from a thread of the master (workers inherit the pipe).
void stderr_to_log() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;
  ::dup2(fds[1], 2);  // dup2 clears close-on-exec on fd 2
  ::close(fds[1]);
  // The thread must not take the signals the master waits for with sigtimedwait.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  std::thread([fd = fds[0]] {
    std::string pending;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
      pending.append(buf, static_cast<std::size_t>(n));
      std::size_t eol;
      while ((eol = pending.find('\n')) != std::string::npos) {
        if (eol > 0) LOG_WARN("%s", pending.substr(0, eol).c_str());
        pending.erase(0, eol + 1);
      }
    }
  }).detach();
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void daemonize() {
  if (::fork() > 0) ::_exit(0);
  ::setsid();
  if (::fork() > 0) ::_exit(0);
  if (::chdir("/") != 0) { /* keep going: nothing depends on the cwd */ }
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (null > 2) ::close(null);
  }
}

// The master's own control socket, <control_dir>/master.sock (root only, like the
// workers'), for switchyardctl: one command per connection, a line in, a reply, then a
// line with ".". "reload" answers only once the reload is done: "ok ..." or
// "refused <why>"; "status" answers with one JSON document; "stop" says "stopping".
std::string master_socket_path(const std::string& control_dir) {
  return control_dir + "/master.sock";
}

int open_master_socket(const std::string& path, const std::string& group, std::string* error) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *error = std::strerror(errno);
    return -1;
  }
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    *error = path + ": path too long";
    ::close(fd);
    return -1;
  }
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0 || ::listen(fd, 8) != 0) {
    *error = path + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  if (!grant_control_access(path, group, false))
    LOG_WARN("%s: cannot give it to group %s; root only", path.c_str(), group.c_str());
  return fd;
}

// What a previous run may have left: worker sockets of processes that are gone.
void remove_stale_sockets(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    int pid = 0;
    if (std::sscanf(e->d_name, "worker-%d.sock", &pid) == 1 && pid > 0 &&
        ::kill(pid, 0) != 0 && errno == ESRCH)
      ::unlinkat(::dirfd(d), e->d_name, 0);
  }
  ::closedir(d);
}

// What a client still waiting in a listener's queue hears when the daemon stops: the
// protocol's goodbye in place of a greeting (RFC 3501 allows a BYE greeting), or just the
// close where a TLS handshake would come first or the protocol has no greeting.
std::string queued_goodbye(const ListenConfig& l) {
  if (l.implicit_tls()) return "";
  switch (l.info().family) {
    case Family::Imap: return "* BYE Server shutting down\r\n";
    case Family::Pop3: return "-ERR Server shutting down\r\n";
    case Family::Lmtp: return "421 4.3.2 Service shutting down\r\n";
    case Family::Socketmap: return "";
    case Family::Metrics: return "";
  }
  return "";
}

// Takes whatever the kernel already accepted on `l` and answers it, then shuts the socket
// down: from then on it no longer listens, for the workers either (they share it), and a
// connect is refused. Between the last accept and the shutdown is a window of a few
// instructions; a client that lands in it sees a reset, never a silent wait.
void stop_listening(const ListenConfig& config, int fd) {
  const std::string bye = queued_goodbye(config);
  for (int n = 0; n < 100000; ++n) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) break;
    if (!bye.empty()) (void)::send(c, bye.data(), bye.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(c);
  }
  ::shutdown(fd, SHUT_RDWR);
}

void stop_listening(const BoundListener& l) {
  if (l.group.empty()) return stop_listening(l.config, l.fd);
  for (int fd : l.group) stop_listening(l.config, fd);
}

class Supervisor {
 public:
  Supervisor(Config config, BoundSockets bound, std::vector<BoundListener> listeners,
             std::shared_ptr<TlsContext> store_tls, ClientTable* clients, sigset_t signals)
      : config_(std::move(config)), bound_(std::move(bound)), listeners_(std::move(listeners)),
        store_tls_(std::move(store_tls)), clients_(clients), signals_(signals),
        slots_(config_.workers), started_(::time(nullptr)) {}

  ~Supervisor() {
    if (signal_fd_ >= 0) ::close(signal_fd_);
    if (control_fd_ >= 0) ::close(control_fd_);
  }

  int run() {
    signal_fd_ = ::signalfd(-1, &signals_, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) {
      LOG_ERROR("signalfd: %s", std::strerror(errno));
      return 1;
    }
    if (!config_.control_dir.empty()) {
      std::string why;
      control_path_ = master_socket_path(config_.control_dir);
      control_fd_ = open_master_socket(control_path_, config_.control_group, &why);
      if (control_fd_ < 0) {
        LOG_WARN("no master control socket: %s", why.c_str());
        control_path_.clear();
      }
    }
    spawn_due();
    service_notify("READY=1\nMAINPID=" + std::to_string(::getpid()) + "\nSTATUS=" + summary());
    for (;;) {
      spawn_due();
      cut_overdue_drains();
      pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {control_fd_, POLLIN, 0}};
      int n = ::poll(fds, control_fd_ >= 0 ? 2 : 1, next_wait_ms());
      if (n < 0 && errno != EINTR) {
        LOG_ERROR("poll: %s", std::strerror(errno));
        return stop();
      }
      if (n <= 0) continue;
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info;
        while (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
          const int sig = static_cast<int>(info.ssi_signo);
          if (sig == SIGCHLD) {
            reap();
          } else if (sig == SIGTERM || sig == SIGINT) {
            return stop();
          } else if (sig == SIGHUP) {
            std::string why;
            (void)reload(&why);
          }
        }
      }
      if (control_fd_ >= 0 && (fds[1].revents & POLLIN) && serve_control()) return stop();
    }
  }

 private:
  struct Draining {
    Clock::time_point since;
    std::unique_ptr<ClientLedger> ledger;
    bool cut = false;  // SIGTERM sent: past drain_timeout
  };

  std::string summary() const {
    std::size_t live = 0;
    for (const auto& s : slots_)
      if (s.pid > 0) ++live;
    return std::to_string(listeners_.size()) + " listeners, " + std::to_string(live) + "/" +
           std::to_string(slots_.size()) + " workers" +
           (draining_.empty() ? "" : ", " + std::to_string(draining_.size()) + " draining");
  }

  // What worker slot `index` listens on: its own socket of each port group, and the
  // shared sockets.
  std::vector<BoundListener> listeners_for(std::size_t index) const {
    std::vector<BoundListener> mine = listeners_;
    for (auto& l : mine) {
      if (!l.group.empty()) l.fd = l.group[index % l.group.size()];
      l.group.clear();
    }
    return mine;
  }

  void spawn(Slot& s) {
    const int counters = metrics::claim_slot();
    // Each worker's ledger of what it holds in the client table, shared with us only.
    auto ledger = clients_ ? ClientLedger::create(clients_->size()) : nullptr;
    const pid_t master = ::getpid();
    pid_t pid = ::fork();
    if (pid != 0) metrics::slot_owner(counters, pid);  // pid < 0: free again
    if (pid < 0) {
      LOG_ERROR("fork: %s", std::strerror(errno));
      s.respawn_at = Clock::now() + std::chrono::seconds(1);
      return;
    }
    if (pid == 0) {
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      if (signal_fd_ >= 0) ::close(signal_fd_);
      if (control_fd_ >= 0) ::close(control_fd_);
      ::unsetenv("NOTIFY_SOCKET");  // the master alone speaks to the service manager
      log_reopen();
      metrics::become_worker(counters, config_);
      if (clients_) clients_->attach(ledger.get());
      // The other slots' sockets are not ours to hold: a worker that outlives a reload
      // must not keep a socket of its port group open (and listening) for nobody.
      const auto index = static_cast<std::size_t>(&s - slots_.data());
      auto mine = listeners_for(index);
      for (std::size_t i = 0; i < listeners_.size(); ++i)
        for (int fd : listeners_[i].group)
          if (fd != mine[i].fd) ::close(fd);
      int rc = run_worker(config_, mine, store_tls_, clients_, master);
      std::fflush(nullptr);
      ::_exit(rc);
    }
    s.pid = pid;
    s.started = Clock::now();
    ledgers_[pid] = std::move(ledger);
  }

  void spawn_due() {
    auto now = Clock::now();
    for (auto& s : slots_)
      if (s.pid == 0 && s.respawn_at <= now) spawn(s);
  }

  // A drain lasts at most the drain_timeout of the configuration now in force: past it,
  // the old worker is told to stop (goodbye to every session, a log line for each).
  void cut_overdue_drains() {
    const auto now = Clock::now();
    for (auto& [pid, d] : draining_) {
      if (d.cut || now < d.since + config_.limits.drain_timeout) continue;
      d.cut = true;
      LOG_NOTICE("worker %d still has sessions after drain_timeout (%s): stopping it",
                 static_cast<int>(pid), format_duration(config_.limits.drain_timeout).c_str());
      ::kill(pid, SIGTERM);
    }
  }

  int next_wait_ms() const {
    auto now = Clock::now();
    auto next = now + std::chrono::seconds(5);
    for (const auto& s : slots_)
      if (s.pid == 0 && s.respawn_at < next) next = s.respawn_at;
    for (const auto& [pid, d] : draining_)
      if (!d.cut && d.since + config_.limits.drain_timeout < next)
        next = d.since + config_.limits.drain_timeout;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
    return static_cast<int>(std::clamp<long long>(ms, 1, 5000));
  }

  // A worker is gone: its control socket goes, and whatever it held in the client table
  // is given back (it cannot do so itself if it was killed).
  void forget_worker(pid_t pid) {
    metrics::worker_gone(static_cast<int>(pid));
    if (!config_.control_dir.empty())
      ::unlink(control_path(config_.control_dir, static_cast<int>(pid)).c_str());
    std::unique_ptr<ClientLedger> ledger;
    if (auto it = ledgers_.find(pid); it != ledgers_.end()) {
      ledger = std::move(it->second);
      ledgers_.erase(it);
    }
    if (auto it = draining_.find(pid); it != draining_.end()) {
      if (!ledger) ledger = std::move(it->second.ledger);
      draining_.erase(it);
    }
    if (ledger && clients_) {
      std::size_t n = clients_->release(*ledger);
      if (n > 0)
        LOG_NOTICE("worker %d: gave back %zu per-address connection counts it still held",
                   static_cast<int>(pid), n);
    }
  }

  void reap() {
    int status;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      const bool was_draining = draining_.count(pid) > 0;
      forget_worker(pid);
      if (was_draining) continue;
      for (auto& s : slots_) {
        if (s.pid != pid) continue;
        s.pid = 0;
        metrics::worker_restart();
        auto lived = Clock::now() - s.started;
        if (WIFSIGNALED(status))
          LOG_ERROR("worker %d killed by signal %d", static_cast<int>(pid), WTERMSIG(status));
        else
          LOG_ERROR("worker %d exited with status %d", static_cast<int>(pid), WEXITSTATUS(status));
        // Back off when workers die young, so a broken setup does not spin.
        s.backoff = lived < std::chrono::seconds(2)
                        ? std::min(s.backoff * 2, std::chrono::milliseconds(30000))
                        : std::chrono::milliseconds(100);
        s.respawn_at = Clock::now() + s.backoff;
      }
    }
  }

  // Re-reads everything; on any error the running configuration stays, untouched, and
  // *why says what was wrong. The service manager hears RELOADING=1, then READY=1.
  bool reload(std::string* why) {
    service_notify("RELOADING=1\n" + monotonic_usec_field() + "\nSTATUS=reloading");
    bool ok = try_reload(why);
    ++reloads_;
    last_reload_ok_ = ok;
    last_reload_error_ = ok ? std::string() : *why;
    last_reload_at_ = ::time(nullptr);
    metrics::reload(ok);
    if (ok) {
      LOG_NOTICE("configuration reloaded: %d workers", config_.workers);
    } else {
      LOG_ERROR("reload refused, keeping the running config: %s", why->c_str());
    }
    service_notify(std::string("READY=1\nSTATUS=") +
                   (ok ? "reloaded; " : "reload refused (running config kept); ") + summary());
    return ok;
  }

  bool try_reload(std::string* error) {
    Config fresh;
    if (!load_config(config_.path, &fresh, error) || !preflight(fresh, error) ||
        !check_maps(fresh, error))
      return false;
    if (fresh.workers == 0) fresh.workers = 1;
    // Certificates first (on unbound copies), so a bad one changes nothing at all.
    std::vector<BoundListener> listeners;
    std::shared_ptr<TlsContext> store_tls;
    for (const auto& l : fresh.listen) listeners.push_back(BoundListener{l, -1, nullptr, {}});
    std::vector<std::pair<ListenConfig, int>> surplus;
    if (!load_tls(fresh, &listeners, &store_tls, error) ||
        !bind_all(fresh, bound_, &listeners, &surplus, error) ||
        !load_tls(fresh, &listeners, &store_tls, error))
      return false;
    // Fewer workers: the sockets of the slots that go answer what already waits on them.
    for (auto& [l, fd] : surplus) {
      stop_listening(l, fd);
      ::close(fd);
    }
    const auto now = Clock::now();
    for (auto& s : slots_) {
      if (s.pid > 0) {
        ::kill(s.pid, SIGUSR2);
        Draining d{now, nullptr, false};
        if (auto it = ledgers_.find(s.pid); it != ledgers_.end()) {
          d.ledger = std::move(it->second);
          ledgers_.erase(it);
        }
        draining_[s.pid] = std::move(d);
      }
    }
    config_ = std::move(fresh);
    listeners_ = std::move(listeners);
    store_tls_ = std::move(store_tls);
    slots_.assign(config_.workers, Slot{});
    metrics::register_names(config_);
    return true;
  }

  nlohmann::ordered_json status_json() const {
    nlohmann::ordered_json j;
    j["version"] = PACKAGE_VERSION;
    j["pid"] = static_cast<int>(::getpid());
    j["started"] = static_cast<std::int64_t>(started_);
    j["uptime_seconds"] = static_cast<std::int64_t>(::time(nullptr) - started_);
    j["config"] = config_.path;
    j["listeners"] = nlohmann::ordered_json::array();
    for (const auto& l : listeners_)
      j["listeners"].push_back({{"protocol", l.config.info().name}, {"address", l.config.address}});
    j["workers"] = nlohmann::ordered_json::array();
    for (const auto& s : slots_)
      if (s.pid > 0) j["workers"].push_back({{"pid", s.pid}, {"draining", false}});
    for (const auto& [pid, d] : draining_)
      j["workers"].push_back({{"pid", pid}, {"draining", true}});
    j["workers_configured"] = config_.workers;
    j["reloads"] = reloads_;
    if (reloads_ > 0)
      j["last_reload"] = {{"ok", last_reload_ok_},
                          {"at", static_cast<std::int64_t>(last_reload_at_)},
                          {"error", last_reload_error_}};
    return j;
  }

  // One client of master.sock, served to the end (root's switchyardctl: a read that stalls
  // gives up after 2 s). Returns true when it asked to stop.
  bool serve_control() {
    int fd = ::accept4(control_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return false;
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string line;
    char buf[256];
    while (line.find('\n') == std::string::npos && line.size() < 1024) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    line = line.substr(0, line.find_first_of("\r\n"));
    std::string reply;
    bool stop_now = false;
    if (line == "reload") {
      std::string why;
      reply = reload(&why) ? "ok reloaded: " + summary() : "refused " + why;
    } else if (line == "status") {
      reply = status_json().dump();
    } else if (line == "stop") {
      reply = "stopping";
      stop_now = true;
    } else {
      reply = "error unknown command";
    }
    reply += "\n.\n";
    const char* p = reply.data();
    std::size_t left = reply.size();
    while (left > 0) {
      ssize_t n = ::write(fd, p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::close(fd);
    return stop_now;
  }

  // Listeners first: shut down, the sockets stop listening at once for every process that
  // shares them (the workers too), so no connection is accepted and then left waiting;
  // connects are refused from here on. Then every worker says goodbye to its sessions
  // and gets shutdown_grace for LMTP transactions to finish.
  int stop() {
    LOG_NOTICE("stopping");
    service_notify("STOPPING=1\nSTATUS=stopping");
    for (const auto& l : listeners_) stop_listening(l);
    for (const auto& l : listeners_) {
      std::string why;
      auto addr = parse_socket_address(l.config.address, &why);
      if (addr && addr->kind == SocketAddress::Kind::Unix) ::unlink(addr->path.c_str());
    }
    if (control_fd_ >= 0) {
      ::close(control_fd_);
      control_fd_ = -1;
      ::unlink(control_path_.c_str());
    }
    std::set<pid_t> all;
    for (const auto& [pid, d] : draining_) all.insert(pid);
    for (auto& s : slots_)
      if (s.pid > 0) all.insert(s.pid);
    for (pid_t p : all) ::kill(p, SIGTERM);
    // The workers' own grace, and a little for them to wind down.
    auto deadline = Clock::now() + config_.limits.shutdown_grace + std::chrono::seconds(5);
    while (!all.empty() && Clock::now() < deadline) {
      int status;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid > 0) {
        all.erase(pid);
        forget_worker(pid);
        continue;
      }
      pollfd pfd{signal_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 100) > 0) {
        signalfd_siginfo info;
        while (::read(signal_fd_, &info, sizeof info) > 0) {
        }
      }
    }
    for (pid_t p : all) {
      LOG_WARN("worker %d did not stop in time: killing it", static_cast<int>(p));
      ::kill(p, SIGKILL);
    }
    pid_t pid;
    while ((pid = ::waitpid(-1, nullptr, 0)) > 0) forget_worker(pid);
    for (pid_t p : all) forget_worker(p);
    for (auto& [address, fds] : bound_)
      for (int fd : fds) ::close(fd);
    bound_.clear();
    if (!config_.pid_file.empty()) ::unlink(config_.pid_file.c_str());
    LOG_NOTICE("stopped");
    return 0;
  }

  Config config_;
  BoundSockets bound_;
  std::vector<BoundListener> listeners_;
  std::shared_ptr<TlsContext> store_tls_;
  ClientTable* clients_;
  sigset_t signals_;
  std::vector<Slot> slots_;
  std::map<pid_t, Draining> draining_;
  std::map<pid_t, std::unique_ptr<ClientLedger>> ledgers_;  // the live workers'
  int signal_fd_ = -1;
  int control_fd_ = -1;
  std::string control_path_;
  time_t started_;
  long reloads_ = 0;
  bool last_reload_ok_ = true;
  std::string last_reload_error_;
  time_t last_reload_at_ = 0;
};

}  // namespace

int run_master(const MasterOptions& options) {
  Config config;
  std::string error;
  if (!load_config(options.config_path, &config, &error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  if (options.check_only) {
    std::vector<BoundListener> unbound;
    for (const auto& l : config.listen) unbound.push_back(BoundListener{l, -1, nullptr, {}});
    std::shared_ptr<TlsContext> store_tls;
    if (!preflight(config, &error) || !check_maps(config, &error) ||
        !load_tls(config, &unbound, &store_tls, &error)) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 1;
    }
    std::printf("%s: configuration OK\n", options.config_path.c_str());
    return 0;
  }
  ::signal(SIGPIPE, SIG_IGN);  // splice() to a closed socket raises SIGPIPE
  // Held from here: a SIGHUP (or SIGTERM) that comes once the ports answer but before the
  // supervisor's loop runs waits for it instead of killing the daemon.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  log_setup(config.log, options.foreground, "switchyard");
  if (!preflight(config, &error) || !check_maps(config, &error)) {
    LOG_ERROR("%s", error.c_str());
    return 1;
  }
  BoundSockets bound;
  std::vector<BoundListener> listeners;
  std::shared_ptr<TlsContext> store_tls;
  if (!bind_all(config, bound, &listeners, nullptr, &error) ||
      !load_tls(config, &listeners, &store_tls, &error)) {
    LOG_ERROR("%s", error.c_str());
    return 1;
  }
  if (config.listen.empty()) LOG_WARN("%s: no [[listen]] configured", config.path.c_str());
  if (!config.control_dir.empty() && ::mkdir(config.control_dir.c_str(), 0755) != 0 &&
      errno != EEXIST)
    LOG_WARN("cannot create %s: %s", config.control_dir.c_str(), std::strerror(errno));
  if (!config.control_dir.empty()) {
    remove_stale_sockets(config.control_dir);
    if (!grant_control_access(config.control_dir, config.control_group, true))
      LOG_WARN("%s: cannot give it to group %s", config.control_dir.c_str(),
               config.control_group.c_str());
  }
  if (!options.foreground) {
    daemonize();
    stderr_to_log();
  }
  write_pid_file(config.pid_file);
  LOG_NOTICE("switchyard %s starting: %zu listeners, %d workers", PACKAGE_VERSION,
             listeners.size(), config.workers);

  // Per-address counters every worker shares (made before any fork).
  std::unique_ptr<ClientTable> clients = ClientTable::create(random_hash_key());
  if (!clients) LOG_WARN("no shared memory for per-address limits; they are off");
  if (!metrics::create()) LOG_WARN("no shared memory for metrics; they stay empty");
  metrics::register_names(config);
  if (config.workers == 0) {
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);  // the worker's loop takes them itself
    const int counters = metrics::claim_slot();
    metrics::slot_owner(counters, static_cast<int>(::getpid()));
    metrics::become_worker(counters, config);
    service_notify("READY=1\nMAINPID=" + std::to_string(::getpid()) +
                   "\nSTATUS=serving from one process (workers = 0)");
    int rc = run_worker(config, listeners, store_tls, clients.get());
    if (!config.pid_file.empty()) ::unlink(config.pid_file.c_str());
    return rc;
  }
  Supervisor sup(std::move(config), std::move(bound), std::move(listeners), std::move(store_tls),
                 clients.get(), set);
  return sup.run();
}

}  // namespace sy
