// What every front-end session (IMAP, POP3) shares: the client and store streams, the
// login deadline, the PROXY header and per-address admission, implicit TLS, the lookup
// and back-end resolution, the failed-login penalty, the one log line per login, and the
// relay once logged in. A protocol supplies its dialogue through the virtual hooks.
//
// A session owns both streams and keeps itself alive (shared_ptr) until its coroutine
// ends; the worker's WorkerContext outlives every session.
#ifndef SWITCHYARD_PROXY_SESSION_H
#define SWITCHYARD_PROXY_SESSION_H

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "proxy/admission.h"
#include "worker/context.h"
#include "proxy/sasl.h"
#include "net/address.h"
#include "net/stream.h"
#include "backend/target.h"
#include "relay/relay.h"
#include "tls/tls.h"

namespace sy {

enum class Phase { PreLogin, Lookup, UpstreamConnect, UpstreamLogin, Relay, Done };
const char* phase_name(Phase p);

// Why the pre-login dialogue was cut short.
enum class Interrupt { None, LoginTimeout, Shutdown };

enum class LoginOutcome {
  Ok,           // the store accepted: relay
  Failed,       // the store refused the credentials
  UnknownUser,  // no map knows the user (and no fallback)
  TempFail,     // a map failed: try later
  Hold,         // the user is being moved: try later
  Unavailable,  // no store reachable, or it misbehaved: try later
};
const char* outcome_name(LoginOutcome o);  // "ok", "failed", "unknown-user", ...

// What the pre-login loop decides after each command.
enum class Next { Continue, Close, Relay };

// Case-insensitive ASCII prefix test: `prefix` must be upper case.
bool iequals_prefix(std::string_view s, std::string_view prefix);

class ProxySession : public std::enable_shared_from_this<ProxySession>, public SessionHandle {
 public:
  ProxySession(WorkerContext& rt, Socket client, const ListenConfig& listen,
               std::shared_ptr<TlsContext> tls);
  virtual ~ProxySession();
  void start();
  void shut_down() override;
  void kick() override;
  void cut() override;
  std::string describe() const override;

 protected:
  // --- the protocol's part -------------------------------------------------------
  // The greeting, CRLF included.
  virtual std::string greeting() const = 0;
  // A goodbye line in the protocol's words: "* BYE text" / "-ERR text", CRLF included.
  virtual std::string goodbye(const std::string& text) const = 0;

  // The protocol's parser, in words both protocols share. parse() feeds inbuf_ to it
  // (erasing what it consumed) and says what came out.
  enum class Parsed { NeedMore, Command, Line, Continue, Error, Fatal };
  virtual Parsed parse() = 0;  // usually feed(*parser_)
  virtual const char* parse_error() const = 0;  // after Error/Fatal: what was wrong
  // The answer to a bad line: "tag BAD what" / "-ERR what", CRLF included.
  virtual std::string bad_line_reply(const char* what) const = 0;
  [[nodiscard]] virtual asio::awaitable<Next> serve_command() = 0;  // after Command
  virtual void expect_line() = 0;                     // the next line is raw (a SASL answer)
  virtual std::string take_line() = 0;                // after Line
  virtual void drop_parser() = 0;                     // logged in: no more parsing
  // Connected to the store (upstream_, TLS done if implicit): log in as `user`. For Ok and
  // Failed, *reply is what the store said, to pass on to the client (under the client's
  // own tag: the store sees tags of Switchyard's only). A store that gives up on the login
  // (closes, or answers with an untagged BAD/BYE) makes it Unavailable at once.
  [[nodiscard]] virtual asio::awaitable<LoginOutcome> store_login(const Target& t, const std::string& host,
                                                    const std::string& server,
                                                    const std::string& user,
                                                    const std::string& password,
                                                    std::string* reply, std::string* why) = 0;

  // --- shared steps ------------------------------------------------------------
  // parse() for a parser of the usual shape (feed(), fatal(), an Event enum with
  // NeedMore, Command, Line, Error and perhaps Continue).
  template <class Parser>
  Parsed feed(Parser& parser) {
    std::size_t consumed = 0;
    const auto ev = parser.feed(inbuf_, &consumed);
    inbuf_.erase(0, consumed);
    using Event = decltype(ev);
    if (ev == Event::NeedMore) return Parsed::NeedMore;
    if (ev == Event::Command) return Parsed::Command;
    if (ev == Event::Line) return Parsed::Line;
    if (ev == Event::Error) return parser.fatal() ? Parsed::Fatal : Parsed::Error;
    return Parsed::Continue;
  }
  // Greets, then serves the pre-login commands until logged in (Next::Relay) or closed
  // (Next::Close, after close_with()).
  [[nodiscard]] asio::awaitable<Next> converse();
  // The pre-login dialogue after the greeting: read, parse, answer bad lines, count bad
  // commands, honour interrupts (shutdown, login timeout), until logged in or closed.
  [[nodiscard]] asio::awaitable<Next> dialogue();
  // Runs a SASL exchange from `status` to its end: each challenge sent as "+ ...", each
  // answer read as a raw line. False: the session is over. *bad names a bad answer line
  // (skipped; the session goes on), in which case *status is unchanged.
  [[nodiscard]] asio::awaitable<bool> sasl_exchange(SaslServer& sasl, SaslServer::Status* status,
                                      const char** bad);
  // Looks `user` up, connects and logs in to the store, logs the attempt, applies the
  // failed-login penalty. The password is wiped. For Ok/Failed *reply is the store's.
  [[nodiscard]] asio::awaitable<LoginOutcome> login(std::string user, std::string password, std::string* reply);
  // After a login that was not Ok: forget the store; close (with `bye`) once the client
  // used up its attempts. Returns Next::Continue or Next::Close.
  [[nodiscard]] asio::awaitable<Next> after_failed_login();

  [[nodiscard]] asio::awaitable<bool> send(const std::string& s);
  // Sends a pre-login answer: Next::Continue, or Next::Close when the client is gone.
  [[nodiscard]] asio::awaitable<Next> reply(const std::string& text);
  [[nodiscard]] asio::awaitable<bool> read_client();                  // appends to inbuf_
  [[nodiscard]] asio::awaitable<bool> read_upstream_line(std::string* line);
  [[nodiscard]] asio::awaitable<bool> send_upstream(const std::string& s, std::string* why);
  asio::awaitable<void> close_with(const std::string& bye, const char* reason);
  asio::awaitable<void> close_interrupted();
  // STARTTLS/STLS was answered: drop whatever the client pipelined in plaintext (the
  // command-injection class of bug) and handshake. False: the session is closed.
  [[nodiscard]] asio::awaitable<bool> accept_starttls();
  // TLS to the store after a STARTTLS/STLS the store accepted; refuses when the store
  // sent bytes after its OK (they would be plaintext injected into the TLS session).
  [[nodiscard]] asio::awaitable<bool> store_tls_handshake(const Target& t, const std::string& host,
                                            const std::string& server, std::string* why);

  bool plaintext_ok() const { return plaintext_listener_ok_ || client_.is_tls(); }
  bool starttls_offered() const { return tls_ && !client_.is_tls(); }
  std::string session_tag() const;  // "sy<pid>-<id>", for x-session-id and the like

  WorkerContext& rt_;
  const LimitsConfig& limits_;
  const ListenConfig& listen_;
  std::shared_ptr<TlsContext> tls_;
  Stream client_;
  Stream upstream_;
  std::string inbuf_;  // client bytes not yet parsed
  std::string upbuf_;  // store bytes not yet consumed
  std::uint64_t id_;
  const char* protocol_;  // "imap", "pop3": the family, for the logs and the maps
  std::string peer_;      // client_addr_ as text
  Endpoint client_addr_;  // from the socket, or from a PROXY header
  Endpoint local_addr_;
  // What the client said about itself (IMAP ID): field, value ("" for NIL), kept once
  // for the log and for forwarding to the store.
  std::vector<std::pair<std::string, std::string>> client_id_;
  std::string user_;       // login name as given
  Phase phase_ = Phase::PreLogin;
  Interrupt interrupted_ = Interrupt::None;
  int bad_commands_ = 0;
  int login_attempts_ = 0;

 private:
  asio::awaitable<void> run();
  asio::awaitable<void> relay_phase();
  void end_session();  // the session is over: off the worker's books
  void log_relay_end(const RelayResult& r, bool write_error);
  void arm_login_deadline();
  void interrupt(Interrupt why);
  void goodbye_in_relay(const std::string& text);  // logged in: goodbye now, then close
  void set_client(Endpoint remote, Endpoint local);
  void set_unknown_client(const char* kind);  // "unix", "unknown": see session.cc
  const char* admit();  // nullptr, or why this client is turned away
  void note_uncounted(const char* what);  // the client table had no slot for the address
  asio::awaitable<void> account_login(LoginOutcome outcome);
  // Connect (fail-over, implicit TLS) and hand over to store_login().
  [[nodiscard]] asio::awaitable<LoginOutcome> reach_store(const Target& target, const std::string& store_user,
                                            const std::string& password, std::string* reply,
                                            std::string* server, std::string* why);
  const char* failure_reason(const std::string& why) const;  // for a failed handshake

  asio::steady_timer deadline_;
  std::shared_ptr<bool> deadline_done_ = std::make_shared<bool>(false);
  bool plaintext_listener_ok_ = false;
  bool client_unknown_ = false;  // a PROXY header gave no IP address for the client
  bool kicked_ = false;  // closed by switchyardctl kick
  bool peer_lost_ = false;  // reset before the session began: no address to go by
  bool cut_ = false;     // logged in, closed by a stop (after a goodbye)
  bool splicing_ = false;  // the callback relay runs (and owns a reference to us)
  std::string server_;   // the store logged in to, for switchyardctl who
  ClientPin penalty_slot_;  // failed logins from this address (empty: not counted)
  ClientPin conn_slot_;     // counted against max_connections_per_ip (empty: not counted)
  SessionRegistry::Registration registration_;
};

// ProxySession's parser hooks over one concrete parser (imap::CommandParser,
// pop3::CommandParser): what both front ends would otherwise write twice.
template <class Parser, class Command>
class ParsingSession : public ProxySession {
 protected:
  using ProxySession::ProxySession;
  [[nodiscard]] virtual asio::awaitable<Next> handle(Command cmd) = 0;

  Parsed parse() override { return feed(*parser_); }
  const char* parse_error() const override { return error_name(parser_->error()); }
  [[nodiscard]] asio::awaitable<Next> serve_command() override { return handle(parser_->take_command()); }
  void expect_line() override { parser_->expect_line(); }
  std::string take_line() override { return parser_->line(); }
  void drop_parser() override { parser_.reset(); }

  std::unique_ptr<Parser> parser_;
};

}  // namespace sy

#endif
