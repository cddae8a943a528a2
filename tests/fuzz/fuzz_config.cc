// Fuzz target: the config reader, plus the small pure parsers around it (durations,
// listen addresses, SASL PLAIN and LOGIN). Invariants: no crash, and an accepted config is
// consistent (every listen address parses, every backend has a host, pop3_capabilities
// only on POP3 listeners); a SASL exchange fed the input's lines as answers ends within
// as many answers as the mechanism has steps, and its credentials have a name.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/duration.h"
#include "proxy/sasl.h"
#include "net/address.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  sy::Config c;
  std::string error;
  if (sy::parse_config(text, "fuzz.conf", &c, &error)) {
    for (const auto& l : c.listen) {
      std::string why;
      if (!sy::parse_socket_address(l.address, &why)) __builtin_trap();
    }
    for (const auto& [name, b] : c.backends)
      if (b.hosts.empty()) __builtin_trap();
    for (const auto& l : c.listen)
      for (const auto& cap : l.pop3_capabilities)
        if (cap.empty() || cap.find_first_of("\r\n") != std::string::npos) __builtin_trap();
  } else if (error.rfind("fuzz.conf:", 0) != 0) {
    __builtin_trap();  // every error names the file (and line)
  }
  (void)sy::parse_duration(text);
  std::string why;
  (void)sy::parse_socket_address(text, &why);
  if (auto plain = sy::decode_sasl_plain(text)) {
    if (plain->authcid.empty()) __builtin_trap();
  }
  if (auto raw = sy::base64_decode(text)) {
    if (sy::base64_encode(*raw) != text) __builtin_trap();
  }
  // The first line is the initial response unless it is "-"; the others are answers.
  std::vector<std::string> lines;
  for (std::size_t at = 0; at <= text.size();) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  for (sy::SaslMechanism m : sy::kSaslMechanisms) {
    sy::SaslServer sasl(m);
    std::optional<std::string_view> initial;
    if (lines[0] != "-") initial = lines[0];
    auto status = sasl.start(initial);
    std::size_t answers = 0;
    for (std::size_t i = 1; i < lines.size() && status == sy::SaslServer::Status::Challenge; ++i) {
      if (sasl.challenge() != "" && sasl.challenge() != sy::kLoginUserPrompt &&
          sasl.challenge() != sy::kLoginPasswordPrompt)
        __builtin_trap();
      status = sasl.respond(lines[i]);
      ++answers;
    }
    if (answers > 2) __builtin_trap();  // LOGIN has two steps, PLAIN one
    if (status == sy::SaslServer::Status::Done) {
      sy::PlainCredentials creds = sasl.take_credentials();
      if (creds.authcid.empty()) __builtin_trap();
      if (m == sy::SaslMechanism::Login && !creds.authzid.empty()) __builtin_trap();
    }
  }
  return 0;
}
