// Fuzz target: the config reader, plus the small pure parsers around it (durations,
// listen addresses, SASL PLAIN). Invariants: no crash, and an accepted config is
// consistent (every listen address parses, every backend has a host).
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.h"
#include "config/duration.h"
#include "core/sasl.h"
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
  return 0;
}
