// Worker process (see worker.h).
#include "worker/worker.h"

#include <grp.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "backend/upstream.h"
#include "proxy/front_ends.h"
#include "lmtp/session.h"
#include "lmtp/store_pool.h"
#include "log/log.h"
#include "map/chain.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "net/address.h"
#include "socketmap/session.h"
#include "worker/context.h"
#include "worker/control.h"
#include "worker/memory.h"

namespace sy {
namespace {

using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;

// The protocol table's last column (config/protocol.h): what serves each family.
using StartFn = void (*)(WorkerContext&, Socket, const BoundListener&);
constexpr StartFn kStart[] = {
    [](WorkerContext& rt, Socket s, const BoundListener& l) { start_imap_session(rt, std::move(s), l.config, l.tls); },
    [](WorkerContext& rt, Socket s, const BoundListener& l) { start_pop3_session(rt, std::move(s), l.config, l.tls); },
    [](WorkerContext& rt, Socket s, const BoundListener& l) { start_lmtp_session(rt, std::move(s), l.config); },
    [](WorkerContext& rt, Socket s, const BoundListener& l) { start_socketmap_session(rt, std::move(s), l.config); },
    [](WorkerContext& rt, Socket s, const BoundListener& l) { start_metrics_session(rt, std::move(s), l.config); },
};
static_assert(std::size(kStart) == static_cast<std::size_t>(Family::Metrics) + 1);

asio::awaitable<void> accept_loop(WorkerContext& rt, Acceptor& acceptor, const BoundListener& l) {
  const ListenConfig& listen = l.config;
  asio::steady_timer backoff(rt.io);
  // Accept failures (out of descriptors or memory) come ten a second while they last:
  // said at once, then at most every kAcceptWarnEvery with the count, and when it is over.
  using SteadyClock = std::chrono::steady_clock;
  constexpr auto kAcceptWarnEvery = std::chrono::seconds(10);
  SteadyClock::time_point last_said{};
  unsigned long long failures = 0;
  for (;;) {
    std::error_code ec;
    Socket s = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      // The master shut the listening socket down (it is stopping): nothing more comes.
      if (ec == asio::error::invalid_argument) co_return;
      // Say so and breathe instead of spinning.
      ++failures;
      const auto now = SteadyClock::now();
      if (failures == 1 || now - last_said >= kAcceptWarnEvery) {
        LOG_WARN("accept on %s: %s: new connections wait (%llu failures so far)",
                 listen.address.c_str(), ec.message().c_str(), failures);
        last_said = now;
      }
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (failures != 0) {
      LOG_NOTICE("accept on %s: working again after %llu failures", listen.address.c_str(),
                 failures);
      failures = 0;
    }
    // (TCP_NODELAY comes from the listening socket: Linux passes it on to accepted ones.)
    metrics::connection(listen.protocol, true);
    if (listen.allow_from) {
      Endpoint peer = peer_endpoint(s.native_handle());
      if (!peer.ip.empty() && !any_contains(*listen.allow_from, peer.ip)) {
        LOG_NOTICE("%s: refused %s (not in allow_from)", listen.address.c_str(),
                   peer.str().c_str());
        metrics::connection(listen.protocol, false);
        std::error_code ignored;
        s.close(ignored);
        continue;
      }
    }
    kStart[static_cast<std::size_t>(listen.info().family)](rt, std::move(s), l);
  }
}

// [backend.NAME] check_interval: probe each address (its IMAP port) and keep the health
// table current, so logins skip a dead store before a client has to wait for it.
asio::awaitable<void> check_backend(WorkerContext& rt, const BackendConfig& b) {
  asio::steady_timer pause(rt.io);
  for (;;) {
    for (const std::string& host : b.hosts) {
      const std::string key = host_port(host, b.imap);
      std::string why;
      bool up = co_await probe_store(rt.io, host, b.imap, b.connect_timeout, &why);
      if (up && rt.health.ok(key))
        LOG_NOTICE("store %s of backend %s is up again", key.c_str(), b.name.c_str());
      if (!up && rt.health.failed(key, HealthTable::Clock::now(),
                                  std::max(b.down_time, b.check_interval + b.check_interval)))
        LOG_WARN("store %s of backend %s is down: %s", key.c_str(), b.name.c_str(), why.c_str());
    }
    pause.expires_after(b.check_interval);
    std::error_code ec;
    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || rt.draining) co_return;
  }
}

}  // namespace

bool drop_privileges(const std::string& user, std::string* error) {
  if (::geteuid() != 0) return true;
  std::string name = user.empty() ? "nobody" : user;
  struct passwd* pw = ::getpwnam(name.c_str());
  if (!pw) {
    *error = "user '" + name + "' does not exist";
    return false;
  }
  gid_t gid = pw->pw_gid;
  if (::setgroups(1, &gid) != 0 || ::setresgid(gid, gid, gid) != 0 ||
      ::setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0) {
    *error = std::string("cannot become '") + name + "': " + std::strerror(errno);
    return false;
  }
  return true;
}

int run_worker(const Config& config, const std::vector<BoundListener>& listeners,
               std::shared_ptr<TlsContext> store_tls, ClientTable* clients, pid_t supervisor) {
  std::string error;
  std::shared_ptr<const MapChain> chain = load_chain(config, &error);
  if (!chain) {
    LOG_ERROR("%s", error.c_str());
    return 2;
  }
  // One thread runs the loop and alone touches the sockets: no locking in the reactor.
  // (Completions posted from the lookup threads still go through the locked queue.)
  asio::io_context io(ASIO_CONCURRENCY_HINT_UNSAFE_IO);
  // The control socket is made as root, so that only root may use it.
  std::unique_ptr<ControlSocket> control;
  if (!config.control_dir.empty()) {
    control = open_control(io, config.control_dir, config.control_group, &error);
    if (!control) LOG_WARN("no control socket: %s", error.c_str());
  }
  // Users held while their mailbox moves: the file is root's, like the control sockets.
  HoldSet holds;
  if (!config.control_dir.empty() && !holds.load(HoldSet::file_in(config.control_dir), &error))
    LOG_WARN("holds not loaded: %s", error.c_str());
  if (!drop_privileges(config.user, &error)) {
    LOG_ERROR("%s", error.c_str());
    return 2;
  }
  // After the drop (a change of credentials clears it): a master that dies, even by
  // SIGKILL, takes its workers with it, and they stop holding the ports. If it died
  // before this line, the parent is someone else already.
  if (supervisor > 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != supervisor) {
      LOG_ERROR("the master (pid %d) is gone; not starting", static_cast<int>(supervisor));
      return 2;
    }
  }
  WorkerContext rt(io, config, std::move(chain), std::move(store_tls), clients, std::move(holds),
                   std::move(control));

  std::vector<std::unique_ptr<Acceptor>> acceptors;
  for (const auto& l : listeners) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(l.fd, reinterpret_cast<sockaddr*>(&ss), &len);
    int family = ss.ss_family;
    asio::generic::stream_protocol proto(family, family == AF_UNIX ? 0 : IPPROTO_TCP);
    int fd = ::dup(l.fd);  // the acceptor owns its copy; the master keeps the original
    auto acc = std::make_unique<Acceptor>(io, proto, fd);
    asio::co_spawn(io, accept_loop(rt, *acc, l), asio::detached);
    acceptors.push_back(std::move(acc));
  }

  // Reloading is the master's job; a worker (or the single process) ignores SIGHUP.
  ::signal(SIGHUP, SIG_IGN);
  if (rt.control) rt.control->serve(rt);
  watch_memory(rt);
  for (const auto& [name, b] : config.backends)
    if (b.check_interval.count() > 0 && b.imap.rfind("unix:", 0) != 0)
      asio::co_spawn(io, check_backend(rt, b), asio::detached);

  asio::signal_set signals(io, SIGTERM, SIGINT, SIGUSR2);
  asio::steady_timer grace(io);
  // On a stop with no master left to do it (single process, or the master died), the
  // listening sockets are shut down, not just closed here: they stop listening at once,
  // so connects are refused instead of waiting in a queue nobody serves.
  auto stop_accepting = [&](bool stop) {
    rt.draining = true;
    const bool orphan = supervisor == 0 || ::getppid() != supervisor;
    for (auto& a : acceptors) {
      if (stop && orphan && a->is_open()) ::shutdown(a->native_handle(), SHUT_RDWR);
      std::error_code ignored;
      a->close(ignored);
    }
    rt.lmtp_pool->clear();  // kept store connections would outlive the last session
  };
  rt.sessions.on_empty = [&] { io.stop(); };
  bool drained = false;  // SIGUSR2 came: the sessions left are a drain's
  bool stopping = false;
  std::function<void(const std::error_code&, int)> on_signal =
      [&](const std::error_code& ec, int sig) {
        if (ec) return;
        signals.async_wait(on_signal);
        stop_accepting(sig != SIGUSR2);
        if (sig == SIGUSR2) {
          if (stopping) return;
          // After a reload, old sessions (an IDLE, a login in progress) may finish on their
          // own terms; the master ends the drain with SIGTERM after drain_timeout (the
          // configuration's now in force, not this worker's).
          drained = true;
          rt.sessions.stop(true);
          if (rt.sessions.size() == 0) {
            io.stop();
            return;
          }
          LOG_INFO("draining: %zu sessions left", rt.sessions.size());
          return;
        }
        if (stopping) return;
        stopping = true;
        if (drained) {
          // Said per session, so that a cut after a reload is never silent.
          for (const auto& [id, e] : rt.sessions.entries())
            LOG_NOTICE("drain_timeout reached: closing %s session %d:%llu %s", kind_name(e.kind),
                       static_cast<int>(::getpid()), static_cast<unsigned long long>(id),
                       e.handle->describe().c_str());
        }
        // What each kind of session does now is the registry's (ends_on_stop): every
        // one gets its goodbye but an LMTP transaction, which may finish.
        std::size_t told = rt.sessions.stop(false);
        if (rt.sessions.size() == 0) {
          io.stop();
          return;
        }
        const Millis g = config.limits.shutdown_grace;
        LOG_INFO("stopping: %zu sessions told to end, %zu left get %s to finish", told,
                 rt.sessions.size(), format_duration(g).c_str());
        grace.expires_after(g);
        grace.async_wait([&](const std::error_code& e) {
          if (e) return;
          for (const auto& [id, en] : rt.sessions.entries())
            LOG_NOTICE("shutdown_grace reached: closing %s session %d:%llu %s",
                       kind_name(en.kind), static_cast<int>(::getpid()),
                       static_cast<unsigned long long>(id), en.handle->describe().c_str());
          rt.sessions.cut_all();
          io.stop();
        });
      };
  signals.async_wait(on_signal);
  LOG_DEBUG("worker ready: %zu listeners", acceptors.size());
  io.run();
  return 0;
}

}  // namespace sy
