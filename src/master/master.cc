// Master process (see master.h).
#include <config.h>

#include "master/master.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "config/config.h"
#include "log/log.h"
#include "map/chain.h"
#include "metrics/metrics.h"
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

// Binds every [[listen]], reusing an already bound socket for an unchanged address.
bool bind_all(const Config& c, std::map<std::string, int>& bound, std::vector<BoundListener>* out,
              std::string* error) {
  std::map<std::string, int> keep;
  out->clear();
  for (const auto& l : c.listen) {
    int fd;
    auto it = bound.find(l.address);
    if (it != bound.end()) {
      fd = it->second;
      bound.erase(it);
    } else {
      std::string why;
      auto addr = parse_socket_address(l.address, &why);
      fd = addr ? bind_listener(*addr, &why) : -1;
      if (fd < 0) {
        *error = c.path + ":" + std::to_string(l.line) + ": cannot listen on " + l.address + ": " + why;
        for (auto& [a, f] : keep) bound[a] = f;  // give back what we took
        return false;
      }
    }
    keep[l.address] = fd;
    out->push_back(BoundListener{l, fd, nullptr});
  }
  for (auto& [a, f] : bound) ::close(f);  // listeners removed from the config
  bound = std::move(keep);
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

class Supervisor {
 public:
  Supervisor(Config config, std::map<std::string, int> bound, std::vector<BoundListener> listeners,
             std::shared_ptr<TlsContext> store_tls, ClientTable* clients, sigset_t signals)
      : config_(std::move(config)), bound_(std::move(bound)), listeners_(std::move(listeners)),
        store_tls_(std::move(store_tls)), clients_(clients), signals_(signals),
        slots_(config_.workers) {}

  int run() {
    for (;;) {
      spawn_due();
      siginfo_t info;
      timespec wait = next_wait();
      int sig = ::sigtimedwait(&signals_, &info, &wait);
      if (sig == SIGCHLD) reap();
      else if (sig == SIGTERM || sig == SIGINT) return stop();
      else if (sig == SIGHUP) reload();
    }
  }

 private:
  void spawn(Slot& s) {
    const int counters = metrics::claim_slot();
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
      log_reopen();
      metrics::become_worker(counters, config_);
      int rc = run_worker(config_, listeners_, store_tls_, clients_);
      std::fflush(nullptr);
      ::_exit(rc);
    }
    s.pid = pid;
    s.started = Clock::now();
  }

  void spawn_due() {
    auto now = Clock::now();
    for (auto& s : slots_)
      if (s.pid == 0 && s.respawn_at <= now) spawn(s);
  }

  timespec next_wait() const {
    auto now = Clock::now();
    auto next = now + std::chrono::seconds(5);
    for (const auto& s : slots_)
      if (s.pid == 0 && s.respawn_at < next) next = s.respawn_at;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
    if (ms < 1) ms = 1;
    return timespec{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
  }

  void reap() {
    int status;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (!config_.control_dir.empty())
        ::unlink(control_path(config_.control_dir, static_cast<int>(pid)).c_str());
      metrics::worker_gone(static_cast<int>(pid));
      if (draining_.erase(pid)) continue;
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

  void reload() {
    Config fresh;
    std::string error;
    if (!load_config(config_.path, &fresh, &error) || !check_maps(fresh, &error)) {
      LOG_ERROR("reload refused, keeping the running config: %s", error.c_str());
      metrics::reload(false);
      return;
    }
    if (fresh.workers == 0) fresh.workers = 1;
    // Certificates first (on unbound copies), so a bad one changes nothing at all.
    std::vector<BoundListener> listeners;
    std::shared_ptr<TlsContext> store_tls;
    for (const auto& l : fresh.listen) listeners.push_back(BoundListener{l, -1, nullptr});
    if (!load_tls(fresh, &listeners, &store_tls, &error) ||
        !bind_all(fresh, bound_, &listeners, &error) ||
        !load_tls(fresh, &listeners, &store_tls, &error)) {
      LOG_ERROR("reload refused, keeping the running config: %s", error.c_str());
      metrics::reload(false);
      return;
    }
    for (auto& s : slots_) {
      if (s.pid > 0) {
        ::kill(s.pid, SIGUSR2);
        draining_.insert(s.pid);
      }
    }
    config_ = std::move(fresh);
    listeners_ = std::move(listeners);
    store_tls_ = std::move(store_tls);
    slots_.assign(config_.workers, Slot{});
    metrics::register_names(config_);
    metrics::reload(true);
    LOG_NOTICE("configuration reloaded: %d workers", config_.workers);
  }

  int stop() {
    LOG_NOTICE("stopping");
    std::vector<pid_t> all(draining_.begin(), draining_.end());
    for (auto& s : slots_)
      if (s.pid > 0) all.push_back(s.pid);
    for (pid_t p : all) ::kill(p, SIGTERM);
    auto deadline = Clock::now() + std::chrono::seconds(10);
    std::size_t left = all.size();
    while (left > 0 && Clock::now() < deadline) {
      int status;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid > 0) {
        --left;
        continue;
      }
      siginfo_t info;
      timespec t{0, 100 * 1000000L};
      ::sigtimedwait(&signals_, &info, &t);
    }
    if (left > 0)
      for (pid_t p : all) ::kill(p, SIGKILL);
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (!config_.pid_file.empty()) ::unlink(config_.pid_file.c_str());
    return 0;
  }

  Config config_;
  std::map<std::string, int> bound_;
  std::vector<BoundListener> listeners_;
  std::shared_ptr<TlsContext> store_tls_;
  ClientTable* clients_;
  sigset_t signals_;
  std::vector<Slot> slots_;
  std::set<pid_t> draining_;
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
    for (const auto& l : config.listen) unbound.push_back(BoundListener{l, -1, nullptr});
    std::shared_ptr<TlsContext> store_tls;
    if (!check_maps(config, &error) || !load_tls(config, &unbound, &store_tls, &error)) {
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
  if (!check_maps(config, &error)) {
    LOG_ERROR("%s", error.c_str());
    return 1;
  }
  std::map<std::string, int> bound;
  std::vector<BoundListener> listeners;
  std::shared_ptr<TlsContext> store_tls;
  if (!bind_all(config, bound, &listeners, &error) ||
      !load_tls(config, &listeners, &store_tls, &error)) {
    LOG_ERROR("%s", error.c_str());
    return 1;
  }
  if (config.listen.empty()) LOG_WARN("%s: no [[listen]] configured", config.path.c_str());
  if (!config.control_dir.empty() && ::mkdir(config.control_dir.c_str(), 0755) != 0 &&
      errno != EEXIST)
    LOG_WARN("cannot create %s: %s", config.control_dir.c_str(), std::strerror(errno));
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
    int rc = run_worker(config, listeners, store_tls, clients.get());
    if (!config.pid_file.empty()) ::unlink(config.pid_file.c_str());
    return rc;
  }
  Supervisor sup(std::move(config), std::move(bound), std::move(listeners), std::move(store_tls),
                 clients.get(), set);
  return sup.run();
}

}  // namespace sy
