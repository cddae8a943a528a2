// IMAP front end (see proxy/front_ends.h): the pre-login dialogue over the pure CommandParser,
// and the IMAP side of logging in to a store. Everything protocol-neutral (deadlines,
// PROXY, admission, lookup, penalty, relay) is ProxySession's.
#include <config.h>

#include "proxy/front_ends.h"

#include <memory>
#include <optional>

#include "proxy/sasl.h"
#include "imap/parser.h"
#include "log/log.h"
#include "metrics/metrics.h"
#include "proxy/session.h"

namespace sy {
namespace {

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

// The tags the store sees. Never the client's: a tag the IMAP grammar allows may be one a
// store refuses (Dovecot answers "a] LOGIN" with an untagged BAD), and an answer without
// our tag would leave us waiting for it.
const std::string kStartTlsTag = "S";
const std::string kLoginTag = "SYL";
const std::string kIdTag = "SYID";

// An untagged BAD or BYE while logging in: the store gave up on the command (or on us),
// and the tagged answer will not come.
bool store_gave_up(std::string_view line) {
  for (std::string_view word : {"* BAD", "* BYE"})
    if (iequals_prefix(line, word) && (line.size() == word.size() || line[word.size()] == ' '))
      return true;
  return false;
}

bool is_string_arg(const imap::Arg& a) {
  return a.kind == imap::Arg::Kind::Atom || a.kind == imap::Arg::Kind::Quoted ||
         a.kind == imap::Arg::Kind::Literal;
}

// The capability list inside "[CAPABILITY ...]" of a greeting or response, upper-cased
// and padded with spaces, so " NAME " finds a capability.
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

class ImapSession final : public ParsingSession<imap::CommandParser, imap::Command> {
 public:
  ImapSession(WorkerContext& rt, Socket client, const ListenConfig& listen,
              std::shared_ptr<TlsContext> tls)
      : ParsingSession(rt, std::move(client), listen, std::move(tls)) {
    new_parser();
  }

 private:
  std::string greeting() const override { return "* OK [CAPABILITY " + capabilities() + "] Switchyard ready.\r\n"; }
  std::string goodbye(const std::string& text) const override { return "* BYE " + text + "\r\n"; }
  std::string bad_line_reply(const char* what) const override {
    return parser_->error_tag() + " BAD " + what + "\r\n";
  }
  asio::awaitable<LoginOutcome> store_login(const Target& t, const std::string& host,
                                            const std::string& server, const std::string& user,
                                            const std::string& password, std::string* reply,
                                            std::string* why) override;

  asio::awaitable<Next> handle(imap::Command cmd) override;
  asio::awaitable<Next> authenticate(imap::Command& cmd);
  asio::awaitable<Next> login_command(const std::string& tag, std::string user,
                                      std::string password);
  asio::awaitable<Next> starttls(const std::string& tag);
  std::string capabilities() const;
  std::string forwarding_id(const std::string& tag) const;
  void new_parser() {
    parser_ = std::make_unique<imap::CommandParser>(
        imap::Limits{limits_.max_line_length, limits_.max_literal_size, 64,
                     limits_.max_literal_total});
  }

  std::string tag_;  // of the LOGIN/AUTHENTICATE in progress, for the store's answer
};

std::string ImapSession::capabilities() const {
  std::string caps = "IMAP4rev1 SASL-IR ID LITERAL+";
  if (starttls_offered()) caps += " STARTTLS";
  if (plaintext_ok()) {
    for (SaslMechanism m : kSaslMechanisms) caps += std::string(" AUTH=") + sasl_mechanism_name(m);
  } else {
    caps += " LOGINDISABLED";
  }
  return caps;
}

asio::awaitable<Next> ImapSession::handle(imap::Command cmd) {
  const std::string& tag = cmd.tag;
  const std::string& name = cmd.name;
  if (name == "CAPABILITY")
    co_return co_await reply("* CAPABILITY " + capabilities() + "\r\n" + tag +
                             " OK Capability completed.\r\n");
  if (name == "NOOP") co_return co_await reply(tag + " OK NOOP completed.\r\n");
  if (name == "LOGOUT") {
    co_await send("* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n");
    co_await close_with("", "logout");
    co_return Next::Close;
  }
  if (name == "ID") {
    client_id_.clear();
    bool key = true;
    for (auto& a : cmd.args) {
      if (!is_string_arg(a)) continue;
      if (key) client_id_.emplace_back(std::move(a.value), "");
      else if (!(a.kind == imap::Arg::Kind::Atom && a.value == "NIL"))
        client_id_.back().second = std::move(a.value);
      key = !key;
    }
    co_return co_await reply("* ID (\"name\" \"Switchyard\" \"version\" \"" PACKAGE_VERSION
                             "\")\r\n" + tag + " OK ID completed.\r\n");
  }
  if (name == "LOGIN") {
    if (cmd.args.size() != 2 || !is_string_arg(cmd.args[0]) || !is_string_arg(cmd.args[1])) {
      ++bad_commands_;
      co_return co_await reply(tag + " BAD LOGIN expects a user name and a password.\r\n");
    }
    if (!plaintext_ok()) {
      wipe(cmd.args[1].value);
      metrics::login(listen_.protocol, metrics::LoginResult::Refused);
      co_return co_await reply(tag + " NO [PRIVACYREQUIRED] Plaintext authentication is "
                                     "disallowed on non-secure connections.\r\n");
    }
    co_return co_await login_command(tag, std::move(cmd.args[0].value),
                                     std::move(cmd.args[1].value));
  }
  if (name == "AUTHENTICATE") co_return co_await authenticate(cmd);
  if (name == "STARTTLS") co_return co_await starttls(tag);
  ++bad_commands_;
  co_return co_await reply(tag + " BAD Command unknown or not allowed before login.\r\n");
}

asio::awaitable<Next> ImapSession::authenticate(imap::Command& cmd) {
  const std::string tag = cmd.tag;
  if (cmd.args.empty() || cmd.args.size() > 2 || !is_string_arg(cmd.args[0]) ||
      (cmd.args.size() == 2 && !is_string_arg(cmd.args[1]))) {
    ++bad_commands_;
    co_return co_await reply(tag + " BAD AUTHENTICATE expects a mechanism.\r\n");
  }
  const std::optional<SaslMechanism> mechanism = parse_sasl_mechanism(cmd.args[0].value);
  if (!mechanism)
    co_return co_await reply(tag + " NO Unsupported authentication mechanism.\r\n");
  if (!plaintext_ok()) {
    if (cmd.args.size() == 2) wipe(cmd.args[1].value);
    metrics::login(listen_.protocol, metrics::LoginResult::Refused);
    co_return co_await reply(tag + " NO [PRIVACYREQUIRED] Plaintext authentication is "
                                   "disallowed on non-secure connections.\r\n");
  }
  SaslServer sasl(*mechanism);
  SaslServer::Status status;
  if (cmd.args.size() == 2) {
    status = sasl.start(cmd.args[1].value);  // SASL-IR
    wipe(cmd.args[1].value);
  } else {
    status = sasl.start(std::nullopt);
  }
  const char* bad = nullptr;
  bool open = co_await sasl_exchange(sasl, &status, &bad);
  if (!open) co_return Next::Close;
  if (bad) {
    ++bad_commands_;
    co_return co_await reply(tag + " BAD " + bad + "\r\n");
  }
  if (status == SaslServer::Status::Cancelled) {
    ++bad_commands_;  // counted: AUTHENTICATE and "*" must not go round for ever
    co_return co_await reply(tag + " BAD Authentication cancelled.\r\n");
  }
  if (status == SaslServer::Status::Malformed) {
    ++bad_commands_;
    co_return co_await reply(tag + " BAD Invalid SASL " + sasl_mechanism_name(*mechanism) +
                             " response.\r\n");
  }
  PlainCredentials creds = sasl.take_credentials();
  if (!creds.authzid.empty() && creds.authzid != creds.authcid) {
    wipe(creds.password);
    co_return co_await reply(tag + " NO [AUTHORIZATIONFAILED] Authorization identity not "
                                   "supported.\r\n");
  }
  co_return co_await login_command(tag, std::move(creds.authcid), std::move(creds.password));
}

asio::awaitable<Next> ImapSession::login_command(const std::string& tag, std::string user,
                                                 std::string password) {
  tag_ = tag;
  std::string store_reply;
  LoginOutcome outcome = co_await login(std::move(user), std::move(password), &store_reply);
  if (interrupted_ != Interrupt::None) co_return Next::Continue;  // dialogue() says goodbye
  std::string text;
  switch (outcome) {
    case LoginOutcome::Ok:
    case LoginOutcome::Failed: text = store_reply; break;
    case LoginOutcome::UnknownUser:
      text = tag + " NO [AUTHENTICATIONFAILED] Authentication failed.\r\n";
      break;
    case LoginOutcome::TempFail:
      text = tag + " NO [UNAVAILABLE] Temporary failure, please try again later.\r\n";
      break;
    case LoginOutcome::Hold:
      text = tag + " NO [UNAVAILABLE] Mailbox is being moved, please try again later.\r\n";
      break;
    case LoginOutcome::Unavailable:
      text = tag + " NO [UNAVAILABLE] Mail store not available, please try again later.\r\n";
      break;
  }
  bool sent = co_await send(text);
  if (!sent) co_return Next::Close;
  if (outcome == LoginOutcome::Ok) co_return Next::Relay;
  co_return co_await after_failed_login();
}

asio::awaitable<Next> ImapSession::starttls(const std::string& tag) {
  if (!starttls_offered()) {
    ++bad_commands_;
    co_return co_await reply(tag + " BAD STARTTLS is not available here.\r\n");
  }
  bool answered = co_await send(tag + " OK Begin TLS negotiation now.\r\n");
  if (!answered) co_return Next::Close;
  new_parser();  // nothing said before TLS carries over
  bool secured = co_await accept_starttls();
  co_return secured ? Next::Continue : Next::Close;
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
  field("x-session-id", session_tag());
  // The client's own fields, except any that would claim to be the proxy's.
  int n = 0;
  for (const auto& [k, v] : client_id_) {
    if (iequals_prefix(k, "X-") || !quotable(k) || !quotable(v) || k.size() > 64 ||
        v.size() > 1024 || ++n > 20)
      continue;
    field(k, v);
  }
  return id + ")\r\n";
}

asio::awaitable<LoginOutcome> ImapSession::store_login(const Target& t, const std::string& host,
                                                       const std::string& server,
                                                       const std::string& user,
                                                       const std::string& password,
                                                       std::string* reply, std::string* why) {
  std::string line;
  bool greeted = co_await read_upstream_line(&line);
  if (!greeted) {
    *why = server + ": no greeting";
    co_return LoginOutcome::Unavailable;
  }
  if (!iequals_prefix(line, "* OK")) {
    *why = server + ": unexpected greeting \"" + line + "\"";
    co_return LoginOutcome::Unavailable;
  }
  std::string caps = capability_code(line);
  if (t.tls == "starttls") {
    bool sent = co_await send_upstream(kStartTlsTag + " STARTTLS\r\n", why);
    if (!sent) co_return LoginOutcome::Unavailable;
    do {
      bool answered = co_await read_upstream_line(&line);
      if (!answered || store_gave_up(line)) {
        *why = server + ": STARTTLS failed" + (answered ? ": " + line : std::string());
        co_return LoginOutcome::Unavailable;
      }
    } while (line.rfind(kStartTlsTag + " ", 0) != 0);  // skip untagged lines
    if (!iequals_prefix(std::string_view(line).substr(kStartTlsTag.size() + 1), "OK")) {
      *why = server + ": STARTTLS refused: " + line;
      co_return LoginOutcome::Unavailable;
    }
    bool secured = co_await store_tls_handshake(t, host, server, why);
    if (!secured) co_return LoginOutcome::Unavailable;
    // The pre-TLS list is kept for LITERAL+ only: at worst a tampered list costs a round
    // trip; LOGINDISABLED no longer applies once TLS is up.
    std::string::size_type at;
    while ((at = caps.find(" LOGINDISABLED ")) != std::string::npos) caps.erase(at, 14);
  }
  if (caps.find(" LOGINDISABLED ") != std::string::npos) {
    *why = server + ": store refuses LOGIN (LOGINDISABLED)";
    co_return LoginOutcome::Unavailable;
  }
  const bool literal_plus = caps.find(" LITERAL+ ") != std::string::npos;

  // LOGIN in as few writes as the store allows: quoted strings, or LITERAL+; a store
  // without LITERAL+ gets synchronising literals, one continuation each. With
  // forward_client_ip an ID with the client's address rides in the same write; its
  // answer is read and dropped below.
  std::vector<std::string> parts(1, t.forward_client_ip ? forwarding_id(kIdTag) : "");
  parts.back() += kLoginTag + " LOGIN ";
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
  line.clear();
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) {
      bool continued = co_await read_upstream_line(&line);
      if (!continued) break;
      if (line.empty() || line[0] != '+') break;  // the store refused the literal
      line.clear();
    }
    bool sent = co_await send_upstream(parts[i], why);
    wipe(parts[i]);
    if (!sent) {
      *why = server + ": " + *why;
      co_return LoginOutcome::Unavailable;
    }
  }
  const std::string tagged = kLoginTag + " ";
  std::string untagged;
  while (line.rfind(tagged, 0) != 0) {
    if (store_gave_up(line)) {
      *why = server + ": LOGIN answered untagged: " + line;
      co_return LoginOutcome::Unavailable;
    }
    if (!line.empty()) {
      const bool id_answer = t.forward_client_ip && (line.rfind(kIdTag + " ", 0) == 0 ||
                                                     iequals_prefix(line, "* ID "));
      if (!id_answer && line.rfind("* ", 0) == 0) untagged += line + "\r\n";
    }
    bool more = co_await read_upstream_line(&line);
    if (!more) {
      *why = server + (interrupted_ != Interrupt::None ? ": login interrupted"
                                                       : ": closed during login");
      co_return LoginOutcome::Unavailable;
    }
  }
  std::string_view status = std::string_view(line).substr(tagged.size());
  *reply = untagged + tag_ + " " + std::string(status) + "\r\n";  // the client's own tag
  if (iequals_prefix(status, "OK")) co_return LoginOutcome::Ok;
  *why = server + ": " + std::string(status);
  co_return LoginOutcome::Failed;
}

}  // namespace

void start_imap_session(WorkerContext& rt, Socket client, const ListenConfig& listen,
                        std::shared_ptr<TlsContext> tls) {
  std::make_shared<ImapSession>(rt, std::move(client), listen, std::move(tls))->start();
}

}  // namespace sy
