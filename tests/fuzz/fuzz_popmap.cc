// Fuzz target: the regex map's popmap.re reader and its substitution. The first line of
// the input is the key; the rest is the file. Invariants: no crash; a load error names
// file:line.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "../../maps/regex/popmap.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto nl = in.find('\n');
  std::string_view key = nl == std::string_view::npos ? in : in.substr(0, nl);
  std::string_view file = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  std::string error;
  auto map = sy::PopMap::load_from_string(file, "fuzz.re", &error);
  if (!map) {
    if (error.rfind("fuzz.re:", 0) != 0) __builtin_trap();
    return 0;
  }
  (void)map->lookup(key);
  return 0;
}
