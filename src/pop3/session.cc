// POP3 front end (see proxy/front_ends.h). Protocol-neutral steps are ProxySession's.
#include <config.h>

#include "proxy/front_ends.h"

#include <optional>
#include <string_view>

#include "proxy/sasl.h"
#include "pop3/parser.h"
#include "metrics/metrics.h"
#include "proxy/session.h"

namespace sy {
namespace {

bool has_line_break(const std::string& s) {
  return s.find_first_of(std::string("\r\n\0", 3)) != std::string::npos;
}

// Whether a CAPA line is the capability `keyword` (upper case), parameters or not.
bool is_capability(std::string_view line, std::string_view keyword) {
  return iequals_prefix(line, keyword) &&
         (line.size() == keyword.size() || line[keyword.size()] == ' ');
}

// The mechanisms offered, each preceded by `before` and followed by `after`.
std::string mechanism_list(const char* before, const char* after = "") {
  std::string out;
  for (SaslMechanism m : kSaslMechanisms)
    out.append(before).append(sasl_mechanism_name(m)).append(after);
  return out;
}

class Pop3Session final : public ParsingSession<pop3::CommandParser, pop3::Command> {
 public:
  Pop3Session(WorkerContext& rt, Socket client, const ListenConfig& listen,
              std::shared_ptr<TlsContext> tls)
      : ParsingSession(rt, std::move(client), listen, std::move(tls)) {
    new_parser();
  }

 private:
  std::string greeting() const override { return "+OK Switchyard ready.\r\n"; }
  std::string goodbye(const std::string& text) const override { return "-ERR " + text + "\r\n"; }
  std::string bad_line_reply(const char* what) const override {
    return std::string("-ERR ") + what + "\r\n";
  }
  asio::awaitable<LoginOutcome> store_login(const Target& t, const std::string& host,
                                            const std::string& server, const std::string& user,
                                            const std::string& password, std::string* reply,
                                            std::string* why) override;

  asio::awaitable<Next> handle(pop3::Command cmd) override;
  asio::awaitable<Next> auth(pop3::Command& cmd);
  asio::awaitable<Next> login_command(std::string user, std::string password);
  // Reads the client's answer to an AUTH challenge into *answer. False: the session is
  // over (closed, or answered and closed), or *bad_line holds the parser's error, the
  // line having been skipped.
  asio::awaitable<Next> bad(const std::string& text) {
    ++bad_commands_;
    co_return co_await reply(text);
  }
  std::string capabilities() const;
  void new_parser() {
    parser_ = std::make_unique<pop3::CommandParser>(pop3::Limits{limits_.max_line_length, 4});
  }

  std::string pending_user_;  // from USER, waiting for PASS
};

// The listener's pop3_capabilities, each line as configured except those Switchyard
// answers for itself: USER and SASL (with its own mechanisms) only where clear-text
// login is allowed, STLS only where it is available.
std::string Pop3Session::capabilities() const {
  std::string caps = "+OK Capability list follows\r\n";
  bool implementation = false;
  for (const std::string& line : listen_.pop3_capabilities) {
    if (is_capability(line, "USER")) {
      if (plaintext_ok()) caps += "USER\r\n";
    } else if (is_capability(line, "SASL")) {
      if (plaintext_ok()) caps += "SASL" + mechanism_list(" ") + "\r\n";
    } else if (is_capability(line, "STLS")) {
      if (starttls_offered()) caps += "STLS\r\n";
    } else {
      implementation = implementation || is_capability(line, "IMPLEMENTATION");
      caps += line + "\r\n";
    }
  }
  if (!implementation) caps += "IMPLEMENTATION Switchyard\r\n";
  caps += ".\r\n";
  return caps;
}

asio::awaitable<Next> Pop3Session::handle(pop3::Command cmd) {
  const std::string& name = cmd.name;
  if (name == "CAPA") co_return co_await reply(capabilities());
  if (name == "NOOP") co_return co_await reply("+OK\r\n");
  if (name == "QUIT") {
    co_await send("+OK Logging out.\r\n");
    co_await close_with("", "quit");
    co_return Next::Close;
  }
  if (name == "STLS") {
    if (!starttls_offered()) co_return co_await bad("-ERR STLS is not available here.\r\n");
    bool answered = co_await send("+OK Begin TLS negotiation now.\r\n");
    if (!answered) co_return Next::Close;
    new_parser();  // nothing said before TLS carries over
    pending_user_.clear();
    bool secured = co_await accept_starttls();
    co_return secured ? Next::Continue : Next::Close;
  }
  const bool wants_plaintext = name == "USER" || name == "PASS" || name == "AUTH";
  if (wants_plaintext && !plaintext_ok() && !(name == "AUTH" && cmd.args.empty())) {
    if (name != "USER") metrics::login(listen_.protocol, metrics::LoginResult::Refused);
    co_return co_await reply("-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                             "(SSL/TLS) connections.\r\n");
  }
  if (name == "USER") {
    if (cmd.args.size() != 1 || cmd.args[0].empty())
      co_return co_await bad("-ERR USER expects a user name.\r\n");
    pending_user_ = cmd.args[0];
    co_return co_await reply("+OK\r\n");
  }
  if (name == "PASS") {
    if (pending_user_.empty()) co_return co_await bad("-ERR No user name given.\r\n");
    std::string password = cmd.args.empty() ? std::string() : std::move(cmd.args[0]);
    co_return co_await login_command(std::move(pending_user_), std::move(password));
  }
  if (name == "AUTH") co_return co_await auth(cmd);
  if (name == "APOP") co_return co_await bad("-ERR APOP is not supported.\r\n");
  co_return co_await bad("-ERR Unknown command or not allowed before login.\r\n");
}

asio::awaitable<Next> Pop3Session::auth(pop3::Command& cmd) {
  if (cmd.args.empty()) {  // RFC 1734 listing: what CAPA's SASL line would say
    std::string list = "+OK\r\n";
    if (plaintext_ok()) list += mechanism_list("", "\r\n");
    co_return co_await reply(list + ".\r\n");
  }
  const std::optional<SaslMechanism> mechanism = parse_sasl_mechanism(cmd.args[0]);
  if (!mechanism) co_return co_await reply("-ERR Unsupported authentication mechanism.\r\n");
  if (cmd.args.size() > 2) co_return co_await bad("-ERR AUTH expects a mechanism.\r\n");
  SaslServer sasl(*mechanism);
  SaslServer::Status status;
  if (cmd.args.size() == 2) {
    status = sasl.start(cmd.args[1]);  // initial response (RFC 5034)
    wipe(cmd.args[1]);
  } else {
    status = sasl.start(std::nullopt);
  }
  const char* bad_line = nullptr;
  bool open = co_await sasl_exchange(sasl, &status, &bad_line);
  if (!open) co_return Next::Close;
  if (bad_line) co_return co_await bad(std::string("-ERR ") + bad_line + "\r\n");
  // A cancel counts as a bad command: AUTH and "*" must not go round for ever.
  if (status == SaslServer::Status::Cancelled)
    co_return co_await bad("-ERR Authentication cancelled.\r\n");
  if (status == SaslServer::Status::Malformed)
    co_return co_await bad(std::string("-ERR Invalid SASL ") + sasl_mechanism_name(*mechanism) +
                           " response.\r\n");
  PlainCredentials creds = sasl.take_credentials();
  if (!creds.authzid.empty() && creds.authzid != creds.authcid) {
    wipe(creds.password);
    co_return co_await reply("-ERR [AUTH] Authorization identity not supported.\r\n");
  }
  co_return co_await login_command(std::move(creds.authcid), std::move(creds.password));
}

asio::awaitable<Next> Pop3Session::login_command(std::string user, std::string password) {
  std::string store_reply;
  LoginOutcome outcome = co_await login(std::move(user), std::move(password), &store_reply);
  if (interrupted_ != Interrupt::None) co_return Next::Continue;  // dialogue() says goodbye
  std::string text;
  if (outcome == LoginOutcome::Ok || outcome == LoginOutcome::Failed)
    text = store_reply;
  else if (outcome == LoginOutcome::UnknownUser)
    text = "-ERR [AUTH] Authentication failed.\r\n";
  else if (outcome == LoginOutcome::Hold)
    text = "-ERR [SYS/TEMP] Mailbox is being moved, please try again later.\r\n";
  else
    text = "-ERR [SYS/TEMP] Temporary failure, please try again later.\r\n";
  bool sent = co_await send(text);
  if (!sent) co_return Next::Close;
  if (outcome == LoginOutcome::Ok) co_return Next::Relay;
  co_return co_await after_failed_login();
}

asio::awaitable<LoginOutcome> Pop3Session::store_login(const Target& t, const std::string& host,
                                                       const std::string& server,
                                                       const std::string& user,
                                                       const std::string& password,
                                                       std::string* reply, std::string* why) {
  std::string line;
  bool greeted = co_await read_upstream_line(&line);
  if (!greeted || line.rfind("+OK", 0) != 0) {
    *why = server + (greeted ? ": unexpected greeting \"" + line + "\"" : ": no greeting");
    co_return LoginOutcome::Unavailable;
  }
  // Dovecot announces XCLIENT in its greeting's response code, to trusted networks only.
  const bool xclient = line.find("[XCLIENT]") != std::string::npos;
  if (t.tls == "starttls") {
    static const std::string kStls = "STLS\r\n";
    bool sent = co_await send_upstream(kStls, why);
    bool answered = false;
    if (sent) answered = co_await read_upstream_line(&line);
    if (!answered || line.rfind("+OK", 0) != 0) {
      *why = server + ": STLS refused" + (answered ? ": " + line : std::string());
      co_return LoginOutcome::Unavailable;
    }
    bool secured = co_await store_tls_handshake(t, host, server, why);
    if (!secured) co_return LoginOutcome::Unavailable;
  }
  if (has_line_break(user) || has_line_break(password)) {
    *why = "user name or password with a line break";
    *reply = "-ERR [AUTH] Authentication failed.\r\n";
    co_return LoginOutcome::Failed;
  }
  // One write: XCLIENT (when wanted and offered), then the login; the answers are read in
  // order. A user name with a space cannot go in USER: AUTH PLAIN carries anything.
  std::string out;
  int expected = 1;
  if (t.forward_client_ip && xclient && !client_addr_.ip.empty()) {
    out += "XCLIENT ADDR=" + client_addr_.ip + " PORT=" + std::to_string(client_addr_.port) +
           " SESSION=" + session_tag() + "\r\n";
    ++expected;
  }
  if (user.find(' ') != std::string::npos) {
    std::string plain = std::string("\0", 1) + user + std::string("\0", 1) + password;
    out += "AUTH PLAIN " + base64_encode(plain) + "\r\n";
    wipe(plain);
  } else {
    out += "USER " + user + "\r\nPASS " + password + "\r\n";
    ++expected;
  }
  bool sent = co_await send_upstream(out, why);
  wipe(out);
  if (!sent) {
    *why = server + ": " + *why;
    co_return LoginOutcome::Unavailable;
  }
  // The last answer is the login's (a refused USER makes PASS fail too).
  for (int i = 0; i < expected; ++i) {
    bool answered = co_await read_upstream_line(&line);
    if (!answered) {
      *why = server + ": closed during login";
      co_return LoginOutcome::Unavailable;
    }
  }
  *reply = line + "\r\n";
  if (line.rfind("+OK", 0) == 0) co_return LoginOutcome::Ok;
  *why = server + ": " + line;
  co_return LoginOutcome::Failed;
}

}  // namespace

void start_pop3_session(WorkerContext& rt, Socket client, const ListenConfig& listen,
                        std::shared_ptr<TlsContext> tls) {
  std::make_shared<Pop3Session>(rt, std::move(client), listen, std::move(tls))->start();
}

}  // namespace sy
