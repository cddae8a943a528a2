// Fuzz target for src/map/answer.{h,cc}: parse_map_answer must never crash, never read
// outside its view, and every answer it returns must be well-formed and survive
// format_map_answer -> parse_map_answer unchanged. Owner: the map-modules engineer.
// Build with libFuzzer (-fsanitize=fuzzer) or with tests/fuzz/driver.cc.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "map/answer.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool is_control(char c) {
  auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

void check_well_formed(const sy::MapAnswer& a) {
  check(!a.host.empty());
  for (char c : a.host) check(!is_control(c) && c != ' ' && c != '[' && c != ']');
  for (char c : a.user) check(!is_control(c));
  if (!a.user.empty()) check(a.user.front() != ' ');
  for (char c : a.port)
    check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          c == '-' || c == '_');
}

void exercise(std::string_view value, std::string_view delimiter) {
  auto a = sy::parse_map_answer(value, delimiter);
  if (!a) return;
  check_well_formed(*a);
  std::string text = sy::format_map_answer(*a, delimiter);
  auto again = sy::parse_map_answer(text, delimiter);
  check(again.has_value() && *again == *a);
  check(sy::format_map_answer(*again, delimiter) == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so a read past the view is a read past the allocation.
  auto copy = std::make_unique<char[]>(size ? size : 1);
  if (size) std::memcpy(copy.get(), data, size);
  std::string_view value(copy.get(), size);

  static constexpr std::string_view kDelimiters[] = {"@", "%%", "%", "", ":", "]"};
  for (auto delimiter : kDelimiters) exercise(value, delimiter);

  // The first byte picks a delimiter made of input bytes, the rest is the value.
  if (size >= 2) {
    std::size_t n = 1 + data[0] % 3;
    if (n < size) {
      std::string_view delimiter(copy.get() + 1, n);
      exercise(value.substr(1 + n), delimiter);
    }
  }

  // Surrounding whitespace and trailing NULs never change the answer.
  if (value.find('\0') == std::string_view::npos) {
    std::string padded = " \t" + std::string(value) + " \r\n";
    check(sy::parse_map_answer(padded) == sy::parse_map_answer(value));
    std::string terminated = std::string(value) + '\0';
    check(sy::parse_map_answer(terminated) == sy::parse_map_answer(value));
  }
  return 0;
}
