// IMAP front end (see session.h).
//
// The session reads like the protocol: run() greets, then feeds client bytes to the pure
// CommandParser and answers each command; a successful LOGIN or AUTHENTICATE hands both
// sockets to the relay. Every wait before login is bounded by limits.login_timeout.
#include <config.h>

#include "imap/session.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "core/client_table.h"
#include "core/sasl.h"
#include "imap/parser.h"
#include "log/log.h"
#include "map/lookup_service.h"
#include "map/username.h"
#include "net/address.h"
#include "net/proxy_reader.h"
#include "net/stream.h"
#include "net/upstream.h"
#include "relay/relay.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;

enum class Phase { PreLogin, Lookup, UpstreamConnect, UpstreamLogin, Relay, Done };

const char* phase_name(Phase p) {
  static const char* names[] = {"pre-login", "lookup", "upstream-connect", "upstream-login",
                                "relay", "done"};
  return names[static_cast<int>(p)];
}

enum class Next { Continue, Close, Relay };

// What happened when logging in to the store.
enum class UpstreamResult { LoggedIn, Rejected, Unavailable };

constexpr std::size_t kReadChunk = 4096;
constexpr std::size_t kMaxUpstreamLine = 65536;

bool quotable(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

bool is_string_arg(const imap::Arg& a) {
  return a.kind == imap::Arg::Kind::Atom || a.kind == imap::Arg::Kind::Quoted ||
         a.kind == imap::Arg::Kind::Literal;
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i], b = prefix[i];
    if (a >= 'a' && a <= 'z') a = static_cast<char>(a - 'a' + 'A');
    if (a != b) return false;
  }
  return true;
}

// The capability list inside "[CAPABILITY ...]" of a greeting or response, upper-cased.
std::string capability_code(std::string_view line) {
  std::string up(line);
  for (char& c : up)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  auto at = up.find("[CAPABILITY ");
  if (at == std::string::npos) return {};
  auto end = up.find(']', at);
  if (end == std::string::npos) return {};
  return " " + up.substr(at + 12, end - at - 12) + " ";
}

// Why the pre-login dialogue was cut short: the login deadline or a stopping worker.
enum class Interrupt { None, LoginTimeout, Shutdown };

class ImapSession : public std::enable_shared_from_this<ImapSession>, public PreLoginSession {
 public:
  ImapSession(Runtime& rt, Socket client, const ListenConfig& listen,
              std::shared_ptr<TlsContext> tls)
      : rt_(rt),
        limits_(rt.config.limits),
        listen_(listen),
        tls_(std::move(tls)),
        client_(std::move(client)),
        upstream_(rt.io),
        deadline_(rt.io),
        parser_(std::make_unique<imap::CommandParser>(
            imap::Limits{limits_.max_line_length, limits_.max_literal_size, 64})),
        id_(rt.next_session_id++) {
    set_client(peer_endpoint(client_.socket().native_handle()),
               local_endpoint(client_.socket().native_handle()));
  }

  void start() {
    rt_.session_started();
    rt_.prelogin[id_] = this;
    auto self = shared_from_this();
    asio::co_spawn(rt_.io, run(), [self](std::exception_ptr) {
      self->rt_.prelogin.erase(self->id_);
      self->rt_.session_ended();
    });
  }

  void shut_down() override { interrupt(Interrupt::Shutdown); }

  ~ImapSession() {
    if (conn_slot_) conn_slot_->connections.fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  asio::awaitable<void> run();
  asio::awaitable<Next> handle(imap::Command cmd);
  asio::awaitable<Next> authenticate(imap::Command& cmd);
  asio::awaitable<Next> login(const std::string& tag, std::string user, std::string password);
  asio::awaitable<UpstreamResult> upstream_login(const Target& t, const std::string& tag,
                                                 const std::string& user,
                                                 const std::string& password, std::string* reply,
                                                 std::string* server, std::string* why);
  asio::awaitable<bool> read_client();
  asio::awaitable<bool> read_upstream_line(std::string* line);
  asio::awaitable<bool> send(const std::string& s);
  asio::awaitable<void> close_with(const std::string& bye, const char* reason);
  void arm_login_deadline();
  bool plaintext_ok() const { return plaintext_listener_ok_ || client_.is_tls(); }
  // Who the client is (from the socket, or from a PROXY header in front of it).
  void set_client(Endpoint remote, Endpoint local) {
    client_addr_ = std::move(remote);
    local_addr_ = std::move(local);
    peer_ = client_addr_.str();
    plaintext_listener_ok_ = listen_.allow_plaintext_auth.value_or(client_addr_.loopback);
  }
  std::string forwarding_id(const std::string& tag) const;
  const char* admit();  // nullptr, or why this client is turned away
  asio::awaitable<void> account_login(const std::string& result);
  asio::awaitable<Next> starttls(const std::string& tag);
  asio::awaitable<bool> store_starttls(const std::string& server, std::string* why);
  void interrupt(Interrupt why);
  asio::awaitable<void> close_interrupted();
  std::string capabilities() const;

  Runtime& rt_;
  const LimitsConfig& limits_;
  const ListenConfig& listen_;
  std::shared_ptr<TlsContext> tls_;
  Stream client_;
  Stream upstream_;
  asio::steady_timer deadline_;
  std::shared_ptr<bool> deadline_done_ = std::make_shared<bool>(false);
  Interrupt interrupted_ = Interrupt::None;
  std::unique_ptr<imap::CommandParser> parser_;
  std::string inbuf_;     // client bytes not yet parsed
  std::string upbuf_;     // store bytes not yet consumed
  std::uint64_t id_;
  std::string peer_;        // client_addr_ as text, for the logs
  Endpoint client_addr_;
  Endpoint local_addr_;
  std::string client_id_;  // the client's ID fields, for the log
  std::vector<std::pair<std::string, std::string>> client_id_fields_;  // "" value = NIL
  ClientSlot* penalty_slot_ = nullptr;  // failed logins from this address (null: exempt)
  ClientSlot* conn_slot_ = nullptr;     // counted against max_connections_per_ip
  std::string user_;       // login name as given (for the session's log lines)
  bool plaintext_listener_ok_ = false;  // plaintext login allowed without TLS
  Phase phase_ = Phase::PreLogin;
  int bad_commands_ = 0;
  int login_attempts_ = 0;
};

std::string ImapSession::capabilities() const {
  std::string caps = "IMAP4rev1 SASL-IR ID LITERAL+";
  if (tls_ && !client_.is_tls()) caps += " STARTTLS";
  caps += plaintext_ok() ? " AUTH=PLAIN" : " LOGINDISABLED";
  return caps;
}

void ImapSession::arm_login_deadline() {
  deadline_.expires_after(limits_.login_timeout);
  std::weak_ptr<ImapSession> weak = shared_from_this();
  deadline_.async_wait([weak, done = deadline_done_](const std::error_code& ec) {
    if (ec || *done) return;
    auto self = weak.lock();
    if (!self) return;
    self->interrupt(Interrupt::LoginTimeout);
  });
}

void ImapSession::interrupt(Interrupt why) {
  if (interrupted_ != Interrupt::None || phase_ == Phase::Relay || phase_ == Phase::Done) return;
  interrupted_ = why;
  client_.cancel();
  upstream_.close();
}

asio::awaitable<void> ImapSession::close_interrupted() {
  if (interrupted_ == Interrupt::Shutdown)
    co_await close_with("* BYE Server shutting down\r\n", "shutdown");
  else
    co_await close_with("* BYE Autologout; too long before login\r\n", "login timeout");
}

asio::awaitable<bool> ImapSession::send(const std::string& s) {
  std::error_code ec;
  co_await client_.write_all(asio::buffer(s), ec);
  co_return !ec;
}

asio::awaitable<bool> ImapSession::read_client() {
  std::size_t old = inbuf_.size();
  inbuf_.resize(old + kReadChunk);
  std::error_code ec;
  std::size_t n = co_await client_.read_some(asio::buffer(inbuf_.data() + old, kReadChunk), ec);
  inbuf_.resize(old + n);
  co_return !ec && n > 0;
}

asio::awaitable<bool> ImapSession::read_upstream_line(std::string* line) {
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
  }
}

asio::awaitable<void> ImapSession::close_with(const std::string& bye, const char* reason) {
  if (!bye.empty()) co_await send(bye);
  LOG_INFO("imap session %llu closed: client=%s user=\"%s\" phase=%s reason=%s",
           static_cast<unsigned long long>(id_), peer_.c_str(), log_quote(user_).c_str(),
           phase_name(phase_), reason);
  std::error_code ignored;
  client_.socket().shutdown(Socket::shutdown_both, ignored);
  client_.close();
  upstream_.close();
  phase_ = Phase::Done;
}

const char* ImapSession::admit() {
  const LimitsConfig& lim = rt_.config.limits;
  if (!rt_.clients || client_addr_.ip.empty()) return nullptr;
  if (!any_contains(lim.auth_failure_exempt, client_addr_.ip)) {
    penalty_slot_ = &rt_.clients->slot(0, client_addr_.ip);
    if (rt_.penalty.blocked(*penalty_slot_, steady_now_ms()))
      return "Too many failed logins from your address, try again later";
  }
  if (listen_.max_connections_per_ip > 0) {
    conn_slot_ = &rt_.clients->slot(static_cast<std::uint32_t>(listen_.line), client_addr_.ip);
    auto n = conn_slot_->connections.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n > static_cast<std::uint32_t>(listen_.max_connections_per_ip))
      return "Too many connections from your address";
  }
  return nullptr;
}

// Failed logins from an address slow its next answers down and may block it; a success
// clears the count.
asio::awaitable<void> ImapSession::account_login(const std::string& result) {
  if (!penalty_slot_) co_return;
  if (result == "ok") {
    PenaltyPolicy::record_success(*penalty_slot_);
    co_return;
  }
  if (result != "failed" && result != "unknown-user") co_return;
  auto delay = rt_.penalty.record_failure(*penalty_slot_, steady_now_ms());
  if (delay.count() <= 0) co_return;
  asio::steady_timer t(rt_.io, delay);
  std::error_code ignored;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

asio::awaitable<void> ImapSession::run() {
  arm_login_deadline();
  if (listen_.proxy_protocol) {
    // Only from a trusted load balancer; its header names the real client.
    if (!any_contains(listen_.trusted_proxies, client_addr_.ip)) {
      co_await close_with("", "PROXY header expected from an untrusted address");
      co_return;
    }
    std::string why;
    auto header = co_await read_proxy_header(client_.socket(), &why);
    if (!header) {
      co_await close_with("", interrupted_ != Interrupt::None ? "login timeout" : why.c_str());
      co_return;
    }
    if (header->has_addresses())
      set_client(endpoint_of(header->source), endpoint_of(header->destination));
  }
  if (const char* refused = admit()) {
    // (Built outside the co_await: g++ 12 destroys temporaries of a ?: inside one twice.)
    std::string bye;
    if (!listen_.implicit_tls()) bye = std::string("* BYE ") + refused + "\r\n";
    co_await close_with(bye, refused);
    co_return;
  }
  if (listen_.implicit_tls()) {
    std::string why;
    if (!co_await client_.accept_tls(*tls_, &why)) {
      co_await close_with("", interrupted_ != Interrupt::None ? "login timeout" : why.c_str());
      co_return;
    }
  }
  if (!co_await send("* OK [CAPABILITY " + capabilities() + "] Switchyard ready.\r\n")) {
    co_await close_with("", "client closed");
    co_return;
  }
  for (;;) {
    std::size_t consumed = 0;
    imap::Event ev = parser_->feed(inbuf_, &consumed);
    inbuf_.erase(0, consumed);
    Next next = Next::Continue;
    switch (ev) {
      case imap::Event::NeedMore:
        if (!co_await read_client()) {
          if (interrupted_ != Interrupt::None)
            co_await close_interrupted();
          else
            co_await close_with("", "client closed");
          co_return;
        }
        continue;
      case imap::Event::Continue:
        if (!co_await send("+ Ready for literal data\r\n")) next = Next::Close;
        break;
      case imap::Event::Line:  // only expected inside authenticate()
        next = Next::Continue;
        break;
      case imap::Event::Error:
        if (parser_->fatal()) {
          co_await close_with(std::string("* BYE ") + imap::error_name(parser_->error()) + "\r\n",
                              imap::error_name(parser_->error()));
          co_return;
        }
        ++bad_commands_;
        if (!co_await send(parser_->error_tag() + " BAD " + imap::error_name(parser_->error()) +
                           "\r\n"))
          next = Next::Close;
        break;
      case imap::Event::Command:
        next = co_await handle(parser_->take_command());
        break;
    }
    if (interrupted_ != Interrupt::None) {
      co_await close_interrupted();
      co_return;
    }
    if (next == Next::Close) {
      if (phase_ != Phase::Done) co_await close_with("", "client closed");
      co_return;
    }
    if (bad_commands_ >= limits_.max_bad_commands) {
      co_await close_with("* BYE Too many invalid commands\r\n", "too many bad commands");
      co_return;
    }
    if (next == Next::Relay) break;
  }

  // Logged in: pass on what either side already sent, then splice.
  rt_.prelogin.erase(id_);
  *deadline_done_ = true;
  deadline_.cancel();
  parser_.reset();
  phase_ = Phase::Relay;
  std::error_code ec;
  if (!inbuf_.empty()) co_await upstream_.write_all(asio::buffer(inbuf_), ec);
  if (!ec && !upbuf_.empty()) co_await client_.write_all(asio::buffer(upbuf_), ec);
  std::string().swap(inbuf_);
  std::string().swap(upbuf_);
  RelayResult r;
  if (!ec) r = co_await relay(rt_, client_, upstream_, limits_.idle_timeout);
  LOG_INFO("imap session %llu closed: client=%s user=\"%s\" phase=relay reason=%s in=%llu out=%llu",
           static_cast<unsigned long long>(id_), peer_.c_str(), log_quote(user_).c_str(),
           ec ? "write error" : r.ended_by, static_cast<unsigned long long>(r.client_to_store),
           static_cast<unsigned long long>(r.store_to_client));
  client_.close();
  upstream_.close();
}

asio::awaitable<Next> ImapSession::handle(imap::Command cmd) {
  const std::string& tag = cmd.tag;
  const std::string& name = cmd.name;
  if (name == "CAPABILITY") {
    co_return co_await send("* CAPABILITY " + capabilities() + "\r\n" + tag +
                            " OK Capability completed.\r\n")
        ? Next::Continue : Next::Close;
  }
  if (name == "NOOP") {
    co_return co_await send(tag + " OK NOOP completed.\r\n") ? Next::Continue : Next::Close;
  }
  if (name == "LOGOUT") {
    co_await send("* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n");
    co_await close_with("", "logout");
    co_return Next::Close;
  }
  if (name == "ID") {
    client_id_.clear();
    client_id_fields_.clear();
    bool key = true;
    for (const auto& a : cmd.args) {
      if (!is_string_arg(a)) continue;
      client_id_ += key ? (client_id_.empty() ? "" : " ") + a.value + "=" : a.value;
      if (key) client_id_fields_.emplace_back(a.value, "");
      else if (!(a.kind == imap::Arg::Kind::Atom && a.value == "NIL"))
        client_id_fields_.back().second = a.value;
      key = !key;
    }
    co_return co_await send("* ID (\"name\" \"Switchyard\" \"version\" \"" PACKAGE_VERSION
                            "\")\r\n" + tag + " OK ID completed.\r\n")
        ? Next::Continue : Next::Close;
  }
  if (name == "LOGIN") {
    if (cmd.args.size() != 2 || !is_string_arg(cmd.args[0]) || !is_string_arg(cmd.args[1])) {
      ++bad_commands_;
      co_return co_await send(tag + " BAD LOGIN expects a user name and a password.\r\n")
          ? Next::Continue : Next::Close;
    }
    if (!plaintext_ok()) {
      wipe(cmd.args[1].value);
      co_return co_await send(tag + " NO [PRIVACYREQUIRED] Plaintext authentication is "
                                    "disallowed on non-secure connections.\r\n")
          ? Next::Continue : Next::Close;
    }
    co_return co_await login(tag, std::move(cmd.args[0].value), std::move(cmd.args[1].value));
  }
  if (name == "AUTHENTICATE") co_return co_await authenticate(cmd);
  if (name == "STARTTLS") co_return co_await starttls(tag);
  ++bad_commands_;
  co_return co_await send(tag + " BAD Command unknown or not allowed before login.\r\n")
      ? Next::Continue : Next::Close;
}

asio::awaitable<Next> ImapSession::authenticate(imap::Command& cmd) {
  const std::string& tag = cmd.tag;
  if (cmd.args.empty() || cmd.args.size() > 2 || !is_string_arg(cmd.args[0]) ||
      (cmd.args.size() == 2 && !is_string_arg(cmd.args[1]))) {
    ++bad_commands_;
    co_return co_await send(tag + " BAD AUTHENTICATE expects a mechanism.\r\n")
        ? Next::Continue : Next::Close;
  }
  std::string mech = cmd.args[0].value;
  for (char& c : mech)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  if (mech != "PLAIN") {
    co_return co_await send(tag + " NO Unsupported authentication mechanism.\r\n")
        ? Next::Continue : Next::Close;
  }
  if (!plaintext_ok()) {
    co_return co_await send(tag + " NO [PRIVACYREQUIRED] Plaintext authentication is "
                                  "disallowed on non-secure connections.\r\n")
        ? Next::Continue : Next::Close;
  }
  std::string response;
  if (cmd.args.size() == 2) {
    response = std::move(cmd.args[1].value);  // SASL-IR
  } else {
    if (!co_await send("+ \r\n")) co_return Next::Close;
    parser_->expect_line();
    for (;;) {
      std::size_t consumed = 0;
      imap::Event ev = parser_->feed(inbuf_, &consumed);
      inbuf_.erase(0, consumed);
      if (ev == imap::Event::Line) {
        response = parser_->line();
        break;
      }
      if (ev == imap::Event::Error) {
        co_await close_with(std::string("* BYE ") + imap::error_name(parser_->error()) + "\r\n",
                            imap::error_name(parser_->error()));
        co_return Next::Close;
      }
      if (!co_await read_client()) co_return Next::Close;
    }
  }
  if (response == "*") {
    co_return co_await send(tag + " BAD Authentication cancelled.\r\n") ? Next::Continue
                                                                          : Next::Close;
  }
  auto creds = decode_sasl_plain(response);
  wipe(response);
  if (!creds) {
    ++bad_commands_;
    co_return co_await send(tag + " BAD Invalid SASL PLAIN response.\r\n") ? Next::Continue
                                                                             : Next::Close;
  }
  if (!creds->authzid.empty() && creds->authzid != creds->authcid) {
    wipe(creds->password);
    co_return co_await send(tag + " NO [AUTHORIZATIONFAILED] Authorization identity not "
                                  "supported.\r\n")
        ? Next::Continue : Next::Close;
  }
  co_return co_await login(tag, std::move(creds->authcid), std::move(creds->password));
}

asio::awaitable<Next> ImapSession::login(const std::string& tag, std::string user,
                                         std::string password) {
  auto started = Clock::now();
  ++login_attempts_;
  user_ = user;
  const Config& cfg = rt_.config;
  std::string key = map_key(cfg.username, user);
  phase_ = Phase::Lookup;
  ChainReply found = co_await rt_.lookups.lookup(key);
  if (interrupted_ != Interrupt::None) {
    wipe(password);
    co_return Next::Continue;  // run() says goodbye
  }
  std::string reply, why, result, store_user, server;
  Target target;
  switch (found.reply.status) {
    case LookupStatus::NotFound:
      reply = tag + " NO [AUTHENTICATIONFAILED] Authentication failed.\r\n";
      result = "unknown-user";
      break;
    case LookupStatus::TempFail:
      reply = tag + " NO [UNAVAILABLE] Temporary failure, please try again later.\r\n";
      result = "tempfail";
      why = found.reply.detail;
      break;
    case LookupStatus::Hold:
      reply = tag + " NO [UNAVAILABLE] Mailbox is being moved, please try again later.\r\n";
      result = "hold";
      break;
    case LookupStatus::Found: {
      store_user = store_login(cfg.username, key, found.reply.answer);
      target = resolve_target(cfg, found.reply.answer, Service::Imap);
      UpstreamResult up =
          co_await upstream_login(target, tag, store_user, password, &reply, &server, &why);
      if (up == UpstreamResult::LoggedIn) result = "ok";
      else if (up == UpstreamResult::Rejected) result = "failed";
      else {
        result = "unavailable";
        reply = tag + " NO [UNAVAILABLE] Mail store not available, please try again later.\r\n";
      }
      break;
    }
  }
  wipe(password);
  auto ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  LOG_INFO("imap login %s: session=%llu client=%s user=\"%s\" key=\"%s\" store_user=\"%s\" "
           "backend=%s server=%s map=%s result=%s time=%.1fms%s%s%s%s",
           result == "ok" ? "ok" : "failed", static_cast<unsigned long long>(id_), peer_.c_str(),
           log_quote(user).c_str(), log_quote(key).c_str(), log_quote(store_user).c_str(),
           target.backend.empty() ? "-" : target.backend.c_str(),
           server.empty() ? "-" : server.c_str(),
           found.map_name.empty() ? "-" : found.map_name.c_str(), result.c_str(), ms,
           why.empty() ? "" : " reason=\"", why.c_str(), why.empty() ? "" : "\"",
           client_id_.empty() ? "" : (" id=\"" + log_quote(client_id_) + "\"").c_str());
  co_await account_login(result);
  if (!co_await send(reply)) co_return Next::Close;
  if (result == "ok") co_return Next::Relay;
  upstream_.reset();
  upbuf_.clear();
  phase_ = Phase::PreLogin;
  if (login_attempts_ >= limits_.max_login_attempts) {
    co_await close_with("* BYE Too many login failures\r\n", "too many login attempts");
    co_return Next::Close;
  }
  co_return Next::Continue;
}

asio::awaitable<UpstreamResult> ImapSession::upstream_login(const Target& t,
                                                            const std::string& tag,
                                                            const std::string& user,
                                                            const std::string& password,
                                                            std::string* reply,
                                                            std::string* server_out,
                                                            std::string* why) {
  phase_ = Phase::UpstreamConnect;
  std::string& server = *server_out;
  std::string host;
  if (!co_await connect_target(upstream_.socket(), t, &server, &host, why))
    co_return UpstreamResult::Unavailable;
  phase_ = Phase::UpstreamLogin;
  if (t.tls == "implicit" &&
      !co_await upstream_.connect_tls(*rt_.store_tls, host, t.tls_verify, why)) {
    *why = server + ": " + *why;
    co_return UpstreamResult::Unavailable;
  }
  std::string line;
  if (!co_await read_upstream_line(&line)) {
    *why = server + ": no greeting";
    co_return UpstreamResult::Unavailable;
  }
  if (!iequals_prefix(line, "* OK")) {
    *why = server + ": unexpected greeting \"" + log_quote(line) + "\"";
    co_return UpstreamResult::Unavailable;
  }
  std::string caps = capability_code(line);
  if (t.tls == "starttls") {
    // What the store said before TLS is kept for LITERAL+ only: at worst a tampered list
    // costs a round trip; LOGINDISABLED no longer applies once TLS is up.
    if (!co_await store_starttls(server, why)) co_return UpstreamResult::Unavailable;
    if (!co_await upstream_.connect_tls(*rt_.store_tls, host, t.tls_verify, why)) {
      *why = server + ": " + *why;
      co_return UpstreamResult::Unavailable;
    }
    std::string::size_type at;
    while ((at = caps.find(" LOGINDISABLED ")) != std::string::npos) caps.erase(at, 14);
  }
  if (caps.find(" LOGINDISABLED ") != std::string::npos) {
    *why = server + ": store refuses LOGIN (LOGINDISABLED)";
    co_return UpstreamResult::Unavailable;
  }
  const bool literal_plus = caps.find(" LITERAL+ ") != std::string::npos;

  // LOGIN in as few writes as the store allows: quoted strings, or LITERAL+; a store
  // without LITERAL+ gets synchronising literals, one continuation each.
  // With forward_client_ip, an ID with the client's address goes in the same write as
  // LOGIN; its answer is read and dropped below.
  const std::string id_tag = tag == "SYID" ? "SYID0" : "SYID";
  std::vector<std::string> parts(1, t.forward_client_ip ? forwarding_id(id_tag) : "");
  parts.back() += tag + " LOGIN ";
  auto add = [&](const std::string& s) {
    if (quotable(s)) {
      parts.back() += quote(s);
    } else if (literal_plus) {
      parts.back() += "{" + std::to_string(s.size()) + "+}\r\n" + s;
    } else {
      parts.back() += "{" + std::to_string(s.size()) + "}\r\n";
      parts.push_back(s);
    }
  };
  add(user);
  parts.back() += ' ';
  add(password);
  parts.back() += "\r\n";
  std::string untagged;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) {
      if (!co_await read_upstream_line(&line)) break;
      if (line.empty() || line[0] != '+') break;  // the store refused the literal
    }
    std::error_code ec;
    co_await upstream_.write_all(asio::buffer(parts[i]), ec);
    wipe(parts[i]);
    if (ec) {
      *why = server + ": " + ec.message();
      co_return UpstreamResult::Unavailable;
    }
  }
  const std::string tagged = tag + " ";
  for (;;) {
    if (line.rfind(tagged, 0) != 0) {
      if (!co_await read_upstream_line(&line)) {
        *why = server + (interrupted_ != Interrupt::None ? ": login interrupted" : ": closed during login");
        co_return UpstreamResult::Unavailable;
      }
    }
    if (line.rfind(tagged, 0) == 0) break;
    const bool id_answer = t.forward_client_ip && (line.rfind(id_tag + " ", 0) == 0 ||
                                                   iequals_prefix(line, "* ID "));
    if (!id_answer && line.rfind("* ", 0) == 0) untagged += line + "\r\n";
    line.clear();
  }
  *reply = untagged + line + "\r\n";
  std::string_view status = std::string_view(line).substr(tagged.size());
  if (iequals_prefix(status, "OK")) co_return UpstreamResult::LoggedIn;
  *why = server + ": " + log_quote(std::string(status));
  co_return UpstreamResult::Rejected;
}

std::string ImapSession::forwarding_id(const std::string& tag) const {
  std::string id = tag + " ID (";
  auto field = [&id](const std::string& k, const std::string& v) {
    if (id.back() != '(') id += ' ';
    id += quote(k) + " " + (v.empty() ? std::string("NIL") : quote(v));
  };
  if (!client_addr_.ip.empty()) {
    field("x-originating-ip", client_addr_.ip);
    field("x-originating-port", std::to_string(client_addr_.port));
  }
  if (!local_addr_.ip.empty()) {
    field("x-connected-ip", local_addr_.ip);
    field("x-connected-port", std::to_string(local_addr_.port));
  }
  field("x-session-id", "sy" + std::to_string(::getpid()) + "-" + std::to_string(id_));
  // The client's own fields, except any that would claim to be the proxy's.
  int n = 0;
  for (const auto& [k, v] : client_id_fields_) {
    if (iequals_prefix(k, "X-") || !quotable(k) || !quotable(v) || k.size() > 64 ||
        v.size() > 1024 || ++n > 20)
      continue;
    field(k, v);
  }
  return id + ")\r\n";
}

asio::awaitable<Next> ImapSession::starttls(const std::string& tag) {
  if (!tls_ || client_.is_tls()) {
    ++bad_commands_;
    co_return co_await send(tag + " BAD STARTTLS is not available here.\r\n") ? Next::Continue
                                                                                : Next::Close;
  }
  if (!co_await send(tag + " OK Begin TLS negotiation now.\r\n")) co_return Next::Close;
  // Whatever the client pipelined after STARTTLS arrived in plaintext: drop it, and start
  // the parser afresh (the STARTTLS command-injection class of bug).
  inbuf_.clear();
  parser_ = std::make_unique<imap::CommandParser>(
      imap::Limits{limits_.max_line_length, limits_.max_literal_size, 64});
  std::string why;
  if (!co_await client_.accept_tls(*tls_, &why)) {
    co_await close_with("", interrupted_ != Interrupt::None ? "login timeout" : why.c_str());
    co_return Next::Close;
  }
  co_return Next::Continue;
}

asio::awaitable<bool> ImapSession::store_starttls(const std::string& server, std::string* why) {
  std::error_code ec;
  co_await upstream_.write_all(asio::buffer("S STARTTLS\r\n", 12), ec);
  std::string line;
  while (!ec) {
    if (!co_await read_upstream_line(&line)) break;
    if (line.rfind("S ", 0) != 0) continue;  // untagged
    if (iequals_prefix(std::string_view(line).substr(2), "OK") && upbuf_.empty()) co_return true;
    *why = server + ": STARTTLS refused: " + log_quote(line);
    co_return false;
  }
  *why = server + ": STARTTLS failed";
  co_return false;
}

}  // namespace

void start_imap_session(Runtime& rt, Socket client, const ListenConfig& listen,
                        std::shared_ptr<TlsContext> tls) {
  std::make_shared<ImapSession>(rt, std::move(client), listen, std::move(tls))->start();
}

}  // namespace sy
