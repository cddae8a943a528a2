// SASL for the IMAP and POP3 front ends: base64, the PLAIN (RFC 4616) and LOGIN
// (draft-murchison-sasl-login) mechanisms, and SaslServer, the server side of one
// exchange. Pure: no sockets, no logging. The session sends the challenges SaslServer
// returns and feeds back the client's answers; SaslServer owns the credentials until
// they are taken, and wipes what it held when it is destroyed.
#ifndef SWITCHYARD_PROXY_SASL_H
#define SWITCHYARD_PROXY_SASL_H

#include <optional>
#include <string>
#include <string_view>

namespace sy {

// Standard base64 (RFC 4648) with padding; nullopt on any invalid character or length.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

struct PlainCredentials {
  std::string authzid;  // usually empty (always for LOGIN)
  std::string authcid;  // the login name
  std::string password;
};

// Decodes a base64 PLAIN response "authzid\0authcid\0password". "=" is an empty response
// (and fails, as PLAIN needs credentials). nullopt when malformed.
[[nodiscard]] std::optional<PlainCredentials> decode_sasl_plain(std::string_view base64);

// The mechanisms Switchyard offers, both clear-text ones: they fall under the same
// plaintext rules (see ProxySession::plaintext_ok()).
enum class SaslMechanism { Plain, Login };

// A mechanism name from AUTHENTICATE / AUTH, case-insensitive; nullopt for any other.
[[nodiscard]] std::optional<SaslMechanism> parse_sasl_mechanism(std::string_view name);
const char* sasl_mechanism_name(SaslMechanism m);  // "PLAIN", "LOGIN"

// What IMAP "AUTH=..." and POP3 "SASL ..." announce, in this order.
inline constexpr SaslMechanism kSaslMechanisms[] = {SaslMechanism::Plain, SaslMechanism::Login};

// LOGIN's two server challenges, base64 of "Username:" and "Password:" (what clients
// such as older Outlook expect to see, though most ignore the text).
inline constexpr std::string_view kLoginUserPrompt = "VXNlcm5hbWU6";
inline constexpr std::string_view kLoginPasswordPrompt = "UGFzc3dvcmQ6";

// The server side of one SASL exchange.
//
//   PLAIN  no initial response: an empty challenge; the client's one answer carries
//          authzid, name and password. An initial response of "=" (empty) is malformed.
//   LOGIN  no initial response, or "=": challenge "Username:"; the answer (or a
//          non-empty initial response) is the base64 name, which must not be empty;
//          then challenge "Password:"; the answer is the base64 password (may be empty).
//
// "*" as an answer, or as the initial response, cancels. Every answer is base64 without
// the "+ " a session strips; the empty line is the empty answer.
class SaslServer {
 public:
  enum class Status {
    Challenge,  // send "+ " + challenge() and feed the client's answer to respond()
    Done,       // take_credentials()
    Cancelled,  // the client sent "*"
    Malformed,  // not base64, or not what the mechanism expects
  };

  explicit SaslServer(SaslMechanism mechanism) : mechanism_(mechanism) {}
  ~SaslServer();
  SaslServer(const SaslServer&) = delete;
  SaslServer& operator=(const SaslServer&) = delete;

  SaslMechanism mechanism() const { return mechanism_; }
  // Begins the exchange; `initial` is the client's initial response (SASL-IR, RFC 5034),
  // if it gave one.
  [[nodiscard]] Status start(std::optional<std::string_view> initial);
  // The client's answer to the last challenge.
  [[nodiscard]] Status respond(std::string_view answer);
  // After Challenge: the base64 text to send after "+ " (may be empty).
  std::string_view challenge() const;
  // After Done: the credentials; the server keeps no copy.
  PlainCredentials take_credentials();

 private:
  enum class Step { Start, Plain, LoginUser, LoginPassword, Finished };
  Status finish(Status s);

  SaslMechanism mechanism_;
  Step step_ = Step::Start;
  PlainCredentials creds_;
};

// Overwrites a secret before its memory is released.
void wipe(std::string& secret);

}  // namespace sy

#endif
