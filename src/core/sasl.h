// SASL PLAIN (RFC 4616) decoding, shared by the IMAP and POP3 front ends. Pure.
#ifndef SWITCHYARD_CORE_SASL_H
#define SWITCHYARD_CORE_SASL_H

#include <optional>
#include <string>
#include <string_view>

namespace sy {

// Standard base64 (RFC 4648) with padding; nullopt on any invalid character or length.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

struct PlainCredentials {
  std::string authzid;  // usually empty
  std::string authcid;  // the login name
  std::string password;
};

// Decodes a base64 PLAIN response "authzid\0authcid\0password". "=" is an empty response
// (and fails, as PLAIN needs credentials). nullopt when malformed.
[[nodiscard]] std::optional<PlainCredentials> decode_sasl_plain(std::string_view base64);

// Overwrites a secret before its memory is released.
void wipe(std::string& secret);

}  // namespace sy

#endif
