// Shared front-end session machinery (see session.h).
#include "proxy/session.h"

// g++ 12 reports Asio's coroutine frame allocator (aligned_alloc, then its own operator
// delete, which frees with free()) as mismatched when it inlines both into login(): a
// false positive within one file. (The real mismatch, between files that configured Asio
// differently, is prevented by net/socket.h.)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "proxy/sasl.h"
#include "log/log.h"
#include "map/lookup_service.h"
#include "map/username.h"
#include "metrics/metrics.h"
#include "net/proxy_reader.h"
#include "backend/upstream.h"
#include "relay/relay.h"

namespace sy {
namespace {

// How long a kicked session waits for its store to finish what it had already received.
constexpr auto kStoreDrainLimit = std::chrono::seconds(30);

// A kicked session's store connection once the client is gone. The store is told there is
// no more input (shutdown SHUT_WR) and finishes what it already has: an APPEND whose
// literal is in is saved or refused, a half-sent one is dropped. What it still says is read
// and thrown away until it closes (at most kStoreDrainLimit). The session stays in the
// registry meanwhile, so `switchyardctl hold` returns only once the store is done with it:
// nothing of that session is written to the old store after the copy has started.
class StoreDrain final : public SessionHandle, public std::enable_shared_from_this<StoreDrain> {
 public:
  StoreDrain(asio::io_context& io, SessionRegistry::Registration registration, std::string what)
      : sock_(io), timer_(io), registration_(std::move(registration)), what_(std::move(what)) {}

  // Takes a duplicate of `fd` (the session closes its own) and starts draining.
  bool start(int fd, const Socket::protocol_type& protocol) {
    int copy = ::dup(fd);
    if (copy < 0) return false;
    std::error_code ec;
    sock_.assign(protocol, copy, ec);
    if (ec) {
      ::close(copy);
      return false;
    }
    registration_.set_handle(*this);
    ::shutdown(copy, SHUT_WR);
    timer_.expires_after(kStoreDrainLimit);
    timer_.async_wait([self = shared_from_this()](const std::error_code& e) {
      if (e) return;
      LOG_WARN("kicked session: the store did not close within %llds: %s",
               static_cast<long long>(kStoreDrainLimit.count()), self->what_.c_str());
      self->close();
    });
    read();
    return true;
  }

  void shut_down() override { close(); }
  void kick() override { close(); }
  std::string describe() const override { return "draining " + what_; }

 private:
  void read() {
    sock_.async_read_some(asio::buffer(buf_),
                          [self = shared_from_this()](const std::error_code& ec, std::size_t) {
                            if (ec) return self->close();
                            self->read();
                          });
  }

  void close() {
    timer_.cancel();
    std::error_code ignored;
    sock_.close(ignored);
    registration_.reset();
  }

  Socket sock_;
  asio::steady_timer timer_;
  SessionRegistry::Registration registration_;
  std::string what_;
  char buf_[2048];
};

using Clock = std::chrono::steady_clock;
constexpr std::size_t kReadChunk = 4096;
constexpr std::size_t kMaxUpstreamLine = 65536;

// The client's ID as "name=value version=value" for the log. log_quote() keeps the first
// 256 bytes and marks the cut, so no more than that is built from a long ID.
std::string id_for_log(const std::vector<std::pair<std::string, std::string>>& id) {
  constexpr std::size_t kLogged = 257;
  std::string out;
  for (const auto& [field, value] : id) {
    if (!out.empty()) out += ' ';
    out.append(field, 0, kLogged).append("=").append(value, 0, kLogged);
    if (out.size() >= kLogged) {
      out.resize(kLogged);
      break;
    }
  }
  return out;
}

}  // namespace

constexpr const char* kPhaseNames[] = {"pre-login",      "lookup", "upstream-connect",
                                       "upstream-login", "relay",  "done"};
static_assert(std::size(kPhaseNames) == static_cast<std::size_t>(Phase::Done) + 1);

constexpr const char* kOutcomeNames[] = {"ok",       "failed", "unknown-user",
                                         "tempfail", "hold",   "unavailable"};
static_assert(std::size(kOutcomeNames) == static_cast<std::size_t>(LoginOutcome::Unavailable) + 1);
static_assert(static_cast<int>(metrics::LoginResult::Unavailable) == static_cast<int>(LoginOutcome::Unavailable));

const char* phase_name(Phase p) { return kPhaseNames[static_cast<std::size_t>(p)]; }

const char* outcome_name(LoginOutcome o) { return kOutcomeNames[static_cast<std::size_t>(o)]; }

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i];
    if (a >= 'a' && a <= 'z') a = static_cast<char>(a - 'a' + 'A');
    if (a != prefix[i]) return false;
  }
  return true;
}

ProxySession::ProxySession(WorkerContext& rt, Socket client, const ListenConfig& listen,
                           std::shared_ptr<TlsContext> tls)
    : rt_(rt),
      limits_(rt.config.limits),
      listen_(listen),
      tls_(std::move(tls)),
      client_(std::move(client)),
      upstream_(rt.io),
      id_(rt.sessions.next_id()),
      protocol_(listen.info().family_name),
      deadline_(rt.io) {
  errno = 0;
  Endpoint remote = peer_endpoint(client_.socket().native_handle());
  peer_lost_ = remote.ip.empty() && errno == ENOTCONN;  // (a Unix socket's peer has no IP)
  set_client(std::move(remote), local_endpoint(client_.socket().native_handle()));
}

ProxySession::~ProxySession() = default;  // conn_slot_ gives its connection back

void ProxySession::start() {
  registration_ = rt_.sessions.enter(*this, id_, listen_.info().family, SessionStage::PreLogin);
  auto self = shared_from_this();
  asio::co_spawn(rt_.io, run(), [self](std::exception_ptr) {
    if (!self->splicing_) self->end_session();
  });
}

void ProxySession::end_session() { registration_.reset(); }

void ProxySession::log_relay_end(const RelayResult& r, bool write_error) {
  metrics::relayed(listen_.protocol, r.client_to_store, r.store_to_client);
  LOG_INFO("%s session %llu closed: client=%s user=\"%s\" phase=relay reason=%s in=%llu "
           "out=%llu",
           protocol_, static_cast<unsigned long long>(id_), peer_.c_str(),
           log_quote(user_).c_str(),
           kicked_ ? "kicked" : cut_ ? "shutdown" : write_error ? "write error" : r.ended_by,
           static_cast<unsigned long long>(r.client_to_store),
           static_cast<unsigned long long>(r.store_to_client));
  client_.close();
  upstream_.close();
  phase_ = Phase::Done;
}

void ProxySession::shut_down() {
  if (phase_ == Phase::Relay) goodbye_in_relay("Server shutting down");
  else interrupt(Interrupt::Shutdown);
}

void ProxySession::cut() { shut_down(); }

// The relay owns both sockets and may be mid-way through a store's answer: the goodbye is
// written at once without waiting (a short line goes into any socket buffer that is not
// already full; if it is, the client learns from the close), then both sides are closed,
// which ends the relay. A client told BYE in the middle of an answer drops that answer,
// as it would if the store itself were shutting down.
void ProxySession::goodbye_in_relay(const std::string& text) {
  if (cut_ || kicked_ || !client_.is_open()) return;
  cut_ = true;
  const std::string bye = goodbye(text);
  if (client_.is_tls()) {
    std::error_code ec;
    Socket::wait_type want;
    (void)client_.try_write(asio::buffer(bye), ec, &want);
  } else {
    (void)::send(client_.socket().native_handle(), bye.data(), bye.size(),
                 MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  client_.close();  // wakes both directions of the relay
  upstream_.close();
}

void ProxySession::kick() {
  if (phase_ != Phase::Relay) {
    interrupt(Interrupt::Shutdown);
    return;
  }
  kicked_ = true;
  // The store finishes what it already received before the session leaves the registry.
  Socket& store = upstream_.socket();
  std::error_code ec;
  auto local = store.is_open() ? store.local_endpoint(ec) : Socket::endpoint_type();
  if (store.is_open() && !ec) {
    auto drain = std::make_shared<StoreDrain>(rt_.io, std::move(registration_), describe());
    if (!drain->start(store.native_handle(), local.protocol())) {
      LOG_WARN("kicked session %llu: cannot wait for its store: %s",
               static_cast<unsigned long long>(id_), std::strerror(errno));
    }
  }
  client_.close();  // wakes both directions of the relay
  upstream_.close();
}

std::string ProxySession::describe() const {
  return std::string(phase_name(phase_)) + " client=" + peer_ + " user=\"" +
         log_quote(user_) + "\" server=" + (server_.empty() ? "-" : server_);
}

void ProxySession::set_client(Endpoint remote, Endpoint local) {
  client_addr_ = std::move(remote);
  local_addr_ = std::move(local);
  peer_ = client_addr_.str();
  plaintext_listener_ok_ = listen_.allow_plaintext_auth.value_or(client_addr_.loopback);
}

// A PROXY header relayed a client without an IP address (a Unix path, v1 UNKNOWN, v2
// AF_UNSPEC): where it comes from is unknown, so it is treated as remote. The connection's
// own (the proxy's) address stays for the logs and the per-address counters, but it is not
// loopback for the plaintext rule and not exempt from the failed-login penalty.
void ProxySession::set_unknown_client(const char* kind) {
  client_unknown_ = true;
  client_addr_.loopback = false;
  peer_ = std::string(kind) + " via " + client_addr_.str();
  plaintext_listener_ok_ = listen_.allow_plaintext_auth.value_or(false);
}

std::string ProxySession::session_tag() const {
  return "sy" + std::to_string(::getpid()) + "-" + std::to_string(id_);
}

void ProxySession::arm_login_deadline() {
  deadline_.expires_after(limits_.login_timeout);
  std::weak_ptr<ProxySession> weak = shared_from_this();
  deadline_.async_wait([weak, done = deadline_done_](const std::error_code& ec) {
    if (ec || *done) return;
    if (auto self = weak.lock()) self->interrupt(Interrupt::LoginTimeout);
  });
}

void ProxySession::interrupt(Interrupt why) {
  if (interrupted_ != Interrupt::None || phase_ == Phase::Relay || phase_ == Phase::Done) return;
  interrupted_ = why;
  // Cancelling wakes only the wait pending at this instant. Shutting the read side down
  // also ends every later read at once (it sees end of file), whatever the session waits
  // on next: a PROXY header, a TLS handshake, a command. Writing still works, for the
  // goodbye.
  std::error_code ignored;
  client_.socket().shutdown(Socket::shutdown_receive, ignored);
  client_.cancel();
  upstream_.close();
}

asio::awaitable<void> ProxySession::close_interrupted() {
  if (interrupted_ == Interrupt::Shutdown)
    co_await close_with(goodbye("Server shutting down"), "shutdown");
  else
    co_await close_with(goodbye("Autologout; too long before login"), "login timeout");
}

const char* ProxySession::admit() {
  const LimitsConfig& lim = rt_.config.limits;
  // Sessions before login hold memory for nobody yet: bounded per worker and per address.
  registration_.set_client(client_unknown_ ? std::string() : client_addr_.ip);
  if (rt_.sessions.count(SessionStage::PreLogin) > static_cast<std::size_t>(lim.max_prelogin_sessions))
    return "Too many connections, try again later";
  if (!client_addr_.ip.empty() && !client_unknown_ &&
      rt_.sessions.prelogin_from(client_addr_.ip) > static_cast<std::size_t>(lim.max_prelogin_per_ip))
    return "Too many connections from your address, try again later";
  if (!rt_.clients || client_addr_.ip.empty()) return nullptr;
  const std::int64_t now = steady_now_ms();
  if (client_unknown_ || !any_contains(lim.auth_failure_exempt, client_addr_.ip)) {
    penalty_slot_ = rt_.clients->acquire(0, client_addr_.ip, now);
    if (!penalty_slot_)
      note_uncounted("failed logins");
    else if (rt_.penalty.blocked(*penalty_slot_, now))
      return "Too many failed logins from your address, try again later";
  }
  if (listen_.max_connections_per_ip > 0) {
    const auto scope = static_cast<std::uint32_t>(listen_.line);
    conn_slot_ = rt_.clients->acquire(scope, client_addr_.ip, now);
    if (!conn_slot_) {
      note_uncounted("connections");
      return nullptr;
    }
    auto n = conn_slot_.add_connection();
    if (n > static_cast<std::uint32_t>(listen_.max_connections_per_ip))
      return "Too many connections from your address";
  }
  return nullptr;
}

// Rather not count an address than count it against another's: a full neighbourhood in
// the client table lets the address pass unlimited and unpenalised. Said at most once a
// minute per worker (it happens under a flood from many addresses).
void ProxySession::note_uncounted(const char* what) {
  auto& [last_said, unsaid] = rt_.uncounted;
  const std::int64_t now = steady_now_ms();
  if (last_said != 0 && now - last_said < 60000) {
    ++unsaid;
    return;
  }
  LOG_WARN("%s session %llu: client=%s: no free slot in the per-address table: its %s are "
           "not counted (not limited, not penalised; %llu more such since the last warning)",
           protocol_, static_cast<unsigned long long>(id_), peer_.c_str(), what, unsaid);
  last_said = now;
  unsaid = 0;
}

// Failed logins from an address slow its next answers down and may block it; a success
// clears the count.
asio::awaitable<void> ProxySession::account_login(LoginOutcome outcome) {
  if (!penalty_slot_) co_return;
  if (outcome == LoginOutcome::Ok) {
    PenaltyPolicy::record_success(*penalty_slot_);
    co_return;
  }
  if (outcome != LoginOutcome::Failed && outcome != LoginOutcome::UnknownUser) co_return;
  auto delay = rt_.penalty.record_failure(*penalty_slot_, steady_now_ms());
  if (delay.count() <= 0) co_return;
  asio::steady_timer t(rt_.io, delay);
  std::error_code ignored;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

asio::awaitable<bool> ProxySession::send(const std::string& s) {
  std::error_code ec;
  co_await client_.write_all(asio::buffer(s), ec);
  co_return !ec;
}

asio::awaitable<Next> ProxySession::reply(const std::string& text) {
  // (No "co_await ... ? :" here: g++ 12 miscompiles a conditional over a co_await.)
  bool sent = co_await send(text);
  co_return sent ? Next::Continue : Next::Close;
}

asio::awaitable<bool> ProxySession::read_client() {
  std::size_t old = inbuf_.size();
  inbuf_.resize(old + kReadChunk);
  std::error_code ec;
  std::size_t n = co_await client_.read_some(asio::buffer(inbuf_.data() + old, kReadChunk), ec);
  inbuf_.resize(old + n);
  co_return !ec && n > 0;
}

asio::awaitable<bool> ProxySession::read_upstream_line(std::string* line) {
  for (;;) {
    auto eol = upbuf_.find("\r\n");
    if (eol != std::string::npos) {
      line->assign(upbuf_, 0, eol);
      upbuf_.erase(0, eol + 2);
      co_return true;
    }
    if (upbuf_.size() > kMaxUpstreamLine) co_return false;
    std::size_t old = upbuf_.size();
    upbuf_.resize(old + kReadChunk);
    std::error_code ec;
    std::size_t n = co_await upstream_.read_some(asio::buffer(upbuf_.data() + old, kReadChunk), ec);
    upbuf_.resize(old + n);
    if (ec || n == 0) co_return false;
    // Acknowledge at once: a store answering in several small writes (POP3 "+OK" to USER,
    // then the answer to PASS) would otherwise wait for our delayed ACK under Nagle, ~40 ms
    // per login. Linux leaves quick-ACK mode by itself, so this is set after every read.
    // (It fails harmlessly on a Unix socket.)
    int one = 1;
    ::setsockopt(upstream_.socket().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
  }
}

asio::awaitable<bool> ProxySession::send_upstream(const std::string& s, std::string* why) {
  std::error_code ec;
  co_await upstream_.write_all(asio::buffer(s), ec);
  if (ec) *why = ec.message();
  co_return !ec;
}

asio::awaitable<void> ProxySession::close_with(const std::string& bye, const char* reason) {
  if (!bye.empty()) co_await send(bye);
  LOG_INFO("%s session %llu closed: client=%s user=\"%s\" phase=%s reason=%s", protocol_,
           static_cast<unsigned long long>(id_), peer_.c_str(), log_quote(user_).c_str(),
           phase_name(phase_), reason);
  std::error_code ignored;
  client_.socket().shutdown(Socket::shutdown_both, ignored);
  client_.close();
  upstream_.close();
  phase_ = Phase::Done;
}

const char* ProxySession::failure_reason(const std::string& why) const {
  return interrupted_ != Interrupt::None ? "login timeout" : why.c_str();
}

asio::awaitable<bool> ProxySession::accept_starttls() {
  inbuf_.clear();
  std::string why;
  bool secured = co_await client_.accept_tls(*tls_, &why);
  if (secured) co_return true;
  co_await close_with("", failure_reason(why));
  co_return false;
}

asio::awaitable<bool> ProxySession::store_tls_handshake(const Target& t, const std::string& host,
                                                        const std::string& server,
                                                        std::string* why) {
  if (!upbuf_.empty()) {
    *why = server + ": store sent data after its STARTTLS answer";
    co_return false;
  }
  bool secured = co_await upstream_.connect_tls(*rt_.store_tls, host, t.tls_verify, why);
  if (!secured) *why = server + ": " + *why;
  co_return secured;
}

asio::awaitable<void> ProxySession::run() {
  arm_login_deadline();
  if (peer_lost_) {  // e.g. a load balancer's health check that resets at once
    co_await close_with("", "client gone before it was served");
    co_return;
  }
  if (listen_.proxy_protocol) {
    // Only from a trusted load balancer; its header names the real client.
    if (!any_contains(listen_.trusted_proxies, client_addr_.ip)) {
      co_await close_with("", "PROXY header expected from an untrusted address");
      co_return;
    }
    std::string why;
    auto header = co_await read_proxy_header(client_.socket(), &why);
    if (!header) {
      co_await close_with("", failure_reason(why));
      co_return;
    }
    if (header->command == ProxyHeader::Command::Proxy) {
      Endpoint client = endpoint_of(header->source);
      if (!client.ip.empty())
        set_client(std::move(client), endpoint_of(header->destination));
      else
        set_unknown_client(header->family == ProxyHeader::Family::Unix ? "unix" : "unknown");
    }
  }
  if (const char* refused = admit()) {
    metrics::connection(listen_.protocol, false);
    // (Built outside the co_await: g++ 12 destroys temporaries of a ?: inside one twice.)
    std::string bye;
    if (!listen_.implicit_tls()) bye = goodbye(refused);
    co_await close_with(bye, refused);
    co_return;
  }
  if (listen_.implicit_tls()) {
    std::string why;
    bool secured = co_await client_.accept_tls(*tls_, &why);
    if (!secured) {
      co_await close_with("", failure_reason(why));
      co_return;
    }
  }
  Next next = co_await converse();
  if (next != Next::Relay) {
    if (phase_ != Phase::Done) co_await close_with("", "client closed");
    co_return;
  }
  co_await relay_phase();
}

// Logged in: pass on what either side already sent, then relay until one side closes.
asio::awaitable<void> ProxySession::relay_phase() {
  registration_.set_stage(SessionStage::LoggedIn);
  penalty_slot_.reset();  // no more logins: let the slot go
  *deadline_done_ = true;
  deadline_.cancel();
  phase_ = Phase::Relay;
  std::error_code ec;
  if (!inbuf_.empty()) co_await upstream_.write_all(asio::buffer(inbuf_), ec);
  if (!ec && !upbuf_.empty()) co_await client_.write_all(asio::buffer(upbuf_), ec);
  std::string().swap(inbuf_);
  std::string().swap(upbuf_);
  decltype(client_id_)().swap(client_id_);
  RelayResult r;
  if (ec) {
    log_relay_end(r, true);
    co_return;
  }
  if (!client_.is_tls() && !upstream_.is_tls()) {
    // Plain on both sides: hand over to the callback relay and let this coroutine (and
    // its frame) end, so an idle session keeps only the relay's small state.
    splicing_ = true;
    start_splice_relay(rt_.io, rt_.pipes, client_.socket(), upstream_.socket(), limits_.idle_timeout,
                       [self = shared_from_this()](const RelayResult& result) {
                         self->log_relay_end(result, false);
                         self->splicing_ = false;
                         self->end_session();
                       });
    co_return;
  }
  r = co_await relay(rt_.io, rt_.buffers, client_, upstream_, limits_.idle_timeout);
  log_relay_end(r, false);
}

asio::awaitable<LoginOutcome> ProxySession::login(std::string user, std::string password,
                                                  std::string* reply) {
  auto started = Clock::now();
  ++login_attempts_;
  user_ = user;
  const Config& cfg = rt_.config;
  std::string key = map_key(cfg.username, user);
  registration_.set_key(key);
  phase_ = Phase::Lookup;
  // A name with NUL, CR or LF (possible in an IMAP literal) matches nobody: C maps would
  // see it cut at the NUL, and stores may too.
  const bool bad_name = user.find_first_of(std::string("\0\r\n", 3)) != std::string::npos;
  LookupRequest request;
  request.key = key;
  request.protocol = protocol_;
  request.client_address = client_addr_.ip;
  request.local_address = local_addr_.ip;
  ChainReply found;
  if (!bad_name) found = co_await rt_.lookups.lookup(std::move(request));
  std::string why;
  std::string store_user;
  std::string server;
  Target target;
  LoginOutcome outcome = LoginOutcome::Unavailable;
  if (interrupted_ != Interrupt::None) {
    wipe(password);
    co_return outcome;  // the caller sees interrupted_ and says goodbye
  }
  // (if/else rather than a switch: g++ 12 mislays coroutine locals around a switch
  // whose cases co_await.)
  const LookupStatus status = found.reply.status;
  if (bad_name) {
    outcome = LoginOutcome::UnknownUser;
    why = "control character in the login name";
  } else if (status == LookupStatus::NotFound) {
    outcome = LoginOutcome::UnknownUser;
  } else if (status == LookupStatus::TempFail) {
    outcome = LoginOutcome::TempFail;
    why = found.reply.detail;
  } else if (status == LookupStatus::Hold) {
    outcome = LoginOutcome::Hold;
  } else {
    store_user = ::sy::store_login(cfg.username, key, found.reply.answer);
    target = resolve_target(cfg, found.reply.answer,
                            listen_.info().family == Family::Pop3 ? Service::Pop3 : Service::Imap,
                            found.reply.more);
    outcome = co_await reach_store(target, store_user, password, reply, &server, &why);
  }
  wipe(password);
  auto ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  const char* result = outcome_name(outcome);
  metrics::login(listen_.protocol, static_cast<metrics::LoginResult>(outcome));
  LOG_INFO("%s login %s: session=%llu client=%s user=\"%s\" key=\"%s\" store_user=\"%s\" "
           "backend=%s server=%s map=%s%s result=%s time=%.1fms%s%s%s%s",
           protocol_, outcome == LoginOutcome::Ok ? "ok" : "failed",
           static_cast<unsigned long long>(id_), peer_.c_str(), log_quote(user).c_str(),
           log_quote(key).c_str(), log_quote(store_user).c_str(),
           target.backend.empty() ? "-" : target.backend.c_str(),
           server.empty() ? "-" : server.c_str(),
           found.map_name.empty() ? "-" : found.map_name.c_str(),
           found.stale ? "(stale)" : found.cached ? "(cache)" : "", result, ms,
           why.empty() ? "" : " reason=\"", log_quote(why).c_str(), why.empty() ? "" : "\"",
           client_id_.empty() ? "" : (" id=\"" + log_quote(id_for_log(client_id_)) + "\"").c_str());
  co_await account_login(outcome);
  if (outcome == LoginOutcome::Ok) server_ = server;
  co_return outcome;
}

asio::awaitable<LoginOutcome> ProxySession::reach_store(const Target& target,
                                                        const std::string& store_user,
                                                        const std::string& password,
                                                        std::string* reply, std::string* server,
                                                        std::string* why) {
  // A store that accepts and then says nothing must not hold the client until its own
  // login_timeout: past the back end's login_timeout the store connection is closed,
  // which ends whichever step waits on it.
  struct Watch {
    bool done = false;
    bool expired = false;
  };
  auto watch = std::make_shared<Watch>();
  asio::steady_timer watchdog(rt_.io, target.login_timeout);
  watchdog.async_wait([this, watch](const std::error_code& ec) {
    if (ec || watch->done) return;
    watch->expired = true;
    upstream_.close();
  });
  phase_ = Phase::UpstreamConnect;
  std::string host;
  LoginOutcome outcome = LoginOutcome::Unavailable;
  bool connected =
      co_await connect_target(upstream_.socket(), target, rt_.health, server, &host, why);
  if (connected) {
    phase_ = Phase::UpstreamLogin;
    bool secured = true;
    if (target.tls == "implicit") {
      secured = co_await upstream_.connect_tls(*rt_.store_tls, host, target.tls_verify, why);
      if (!secured) *why = *server + ": " + *why;
    }
    if (secured)
      outcome = co_await store_login(target, host, *server, store_user, password, reply, why);
  }
  watch->done = true;
  watchdog.cancel();
  if (watch->expired) {
    *why = *server + ": no answer within login_timeout (" +
           format_duration(target.login_timeout) + ") in " + phase_name(phase_);
    outcome = LoginOutcome::Unavailable;
  }
  co_return outcome;
}

asio::awaitable<Next> ProxySession::converse() {
  bool greeted = co_await send(greeting());
  if (!greeted) co_return Next::Close;
  co_return co_await dialogue();
}

asio::awaitable<Next> ProxySession::dialogue() {
  // (if/else, not a switch: g++ 12 mislays coroutine state in a switch whose cases
  // co_await; and every awaited value is named before it is tested, for the same reason.)
  for (;;) {
    const Parsed step = parse();
    Next next = Next::Continue;
    if (step == Parsed::NeedMore) {
      bool more = co_await read_client();
      if (!more) {
        if (interrupted_ != Interrupt::None) co_await close_interrupted();
        co_return Next::Close;
      }
      continue;
    } else if (step == Parsed::Continue) {
      next = co_await reply("+ Ready for literal data\r\n");
    } else if (step == Parsed::Fatal) {
      const char* what = parse_error();
      co_await close_with(goodbye(what), what);
      co_return Next::Close;
    } else if (step == Parsed::Error) {
      ++bad_commands_;
      next = co_await reply(bad_line_reply(parse_error()));
    } else if (step == Parsed::Command) {
      next = co_await serve_command();
    }  // Parsed::Line only comes inside sasl_exchange()
    if (interrupted_ != Interrupt::None) {
      co_await close_interrupted();
      co_return Next::Close;
    }
    if (next != Next::Continue) {
      if (next == Next::Relay) drop_parser();
      co_return next;
    }
    if (bad_commands_ >= limits_.max_bad_commands) {
      co_await close_with(goodbye("Too many invalid commands."), "too many bad commands");
      co_return Next::Close;
    }
  }
}

asio::awaitable<bool> ProxySession::sasl_exchange(SaslServer& sasl, SaslServer::Status* status,
                                                  const char** bad) {
  while (*status == SaslServer::Status::Challenge) {
    bool asked = co_await send("+ " + std::string(sasl.challenge()) + "\r\n");
    if (!asked) co_return false;
    expect_line();
    std::string answer;
    for (;;) {
      const Parsed step = parse();
      if (step == Parsed::Line) {
        answer = take_line();
        break;
      }
      if (step == Parsed::Fatal) {
        const char* what = parse_error();
        co_await close_with(goodbye(what), what);
        co_return false;
      }
      if (step == Parsed::Error) {
        *bad = parse_error();  // the bad line is behind us: the session can go on
        co_return true;
      }
      bool more = co_await read_client();
      if (!more) co_return false;
    }
    *status = sasl.respond(answer);
    wipe(answer);
  }
  co_return true;
}

asio::awaitable<Next> ProxySession::after_failed_login() {
  upstream_.reset();
  upbuf_.clear();
  phase_ = Phase::PreLogin;
  if (login_attempts_ < limits_.max_login_attempts) co_return Next::Continue;
  co_await close_with(goodbye("Too many login failures"), "too many login attempts");
  co_return Next::Close;
}

}  // namespace sy
