// base64, SASL PLAIN and LOGIN, and SaslServer (see sasl.h).
#include "proxy/sasl.h"

#include <cstring>
#include <utility>

namespace sy {
namespace {

int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      unsigned char c = static_cast<unsigned char>(in[i + j]);
      if (c == '=' && i + 4 == in.size() && j >= 2) {
        v[j] = 0;
        ++pad;
        continue;
      }
      if (pad) return std::nullopt;  // data after padding
      v[j] = b64_value(c);
      if (v[j] < 0) return std::nullopt;
    }
    unsigned n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    // Canonical only: the bits below the last byte must be zero.
    if ((pad == 2 && (n & 0xffff)) || (pad == 1 && (n & 0xff))) return std::nullopt;
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

std::string base64_encode(std::string_view in) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    unsigned n = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size()) n |= static_cast<unsigned char>(in[i + 2]);
    out += tbl[(n >> 18) & 63];
    out += tbl[(n >> 12) & 63];
    out += i + 1 < in.size() ? tbl[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? tbl[n & 63] : '=';
  }
  return out;
}

std::optional<PlainCredentials> decode_sasl_plain(std::string_view base64) {
  if (base64 == "=") return std::nullopt;
  auto raw = base64_decode(base64);
  if (!raw) return std::nullopt;
  auto first = raw->find('\0');
  if (first == std::string::npos) return std::nullopt;
  auto second = raw->find('\0', first + 1);
  if (second == std::string::npos || raw->find('\0', second + 1) != std::string::npos) {
    wipe(*raw);
    return std::nullopt;
  }
  PlainCredentials c;
  c.authzid = raw->substr(0, first);
  c.authcid = raw->substr(first + 1, second - first - 1);
  c.password = raw->substr(second + 1);
  wipe(*raw);
  if (c.authcid.empty()) return std::nullopt;
  return c;
}

std::optional<SaslMechanism> parse_sasl_mechanism(std::string_view name) {
  auto is = [name](std::string_view upper) {
    if (name.size() != upper.size()) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
      char c = name[i];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      if (c != upper[i]) return false;
    }
    return true;
  };
  if (is("PLAIN")) return SaslMechanism::Plain;
  if (is("LOGIN")) return SaslMechanism::Login;
  return std::nullopt;
}

const char* sasl_mechanism_name(SaslMechanism m) {
  return m == SaslMechanism::Plain ? "PLAIN" : "LOGIN";
}

SaslServer::~SaslServer() {
  wipe(creds_.authzid);
  wipe(creds_.authcid);
  wipe(creds_.password);
}

SaslServer::Status SaslServer::finish(Status s) {
  step_ = Step::Finished;
  if (s != Status::Done) {
    wipe(creds_.authcid);
    wipe(creds_.password);
  }
  return s;
}

SaslServer::Status SaslServer::start(std::optional<std::string_view> initial) {
  if (step_ != Step::Start) return finish(Status::Malformed);
  if (mechanism_ == SaslMechanism::Plain) {
    step_ = Step::Plain;
    if (!initial) return Status::Challenge;
    return respond(*initial);
  }
  step_ = Step::LoginUser;
  // An empty initial response ("=") only says "no data yet", as Dovecot reads it too.
  if (!initial || *initial == "=") return Status::Challenge;
  return respond(*initial);
}

SaslServer::Status SaslServer::respond(std::string_view answer) {
  if (answer == "*") return finish(Status::Cancelled);
  if (step_ == Step::Plain) {
    auto creds = decode_sasl_plain(answer);
    if (!creds) return finish(Status::Malformed);
    creds_ = *creds;
    wipe(creds->authcid);
    wipe(creds->password);
    return finish(Status::Done);
  }
  auto value = base64_decode(answer);
  if (!value) return finish(Status::Malformed);
  if (step_ == Step::LoginUser) {
    if (value->empty()) return finish(Status::Malformed);
    creds_.authcid = std::move(*value);
    step_ = Step::LoginPassword;
    return Status::Challenge;
  }
  if (step_ == Step::LoginPassword) {
    creds_.password = *value;
    wipe(*value);
    return finish(Status::Done);
  }
  wipe(*value);
  return finish(Status::Malformed);  // answer before start() or after the end
}

std::string_view SaslServer::challenge() const {
  if (step_ == Step::LoginUser) return kLoginUserPrompt;
  if (step_ == Step::LoginPassword) return kLoginPasswordPrompt;
  return {};
}

PlainCredentials SaslServer::take_credentials() {
  // A copy, then the originals wiped: a moved-from short string keeps its bytes.
  PlainCredentials out = creds_;
  wipe(creds_.authzid);
  wipe(creds_.authcid);
  wipe(creds_.password);
  return out;
}

void wipe(std::string& secret) {
  volatile char* p = secret.data();
  for (std::size_t i = 0; i < secret.size(); ++i) p[i] = 0;
  secret.clear();
}

}  // namespace sy
