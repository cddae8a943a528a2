// Ways of splitting an input byte stream into the chunks a parser test feeds it in.
//
// A resumable parser must give the same result however its input is cut up, so the
// parser tests run each case fed whole, one byte at a time and in several seeded random
// splits. for_each_split() does all of those, each under a SCOPED_TRACE that names the
// splitting, so a failure says which one broke.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <random>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace sy::test {

using Chunks = std::vector<std::string>;

inline Chunks whole(const std::string& in) { return {in}; }

inline Chunks bytes(const std::string& in) {
  Chunks c;
  for (char ch : in) c.emplace_back(1, ch);
  return c;
}

// Mostly small pieces (0 .. small_max - 1 bytes), sometimes large ones; empty chunks are
// legal input too. The same seed always gives the same chunks.
inline Chunks random_split(const std::string& in, unsigned seed, unsigned small_max = 7) {
  std::mt19937 rng(seed);
  Chunks c;
  std::size_t pos = 0;
  while (pos < in.size()) {
    std::size_t n = rng() % 4 == 0 ? rng() % (in.size() + 1) : rng() % small_max;
    n = std::min(n, in.size() - pos);
    c.push_back(in.substr(pos, n));
    pos += n;
  }
  return c;
}

// Calls check(chunks) for the input fed whole, one byte at a time and in random splits
// with seeds 1 to 12 (small pieces below small_max bytes).
template <class F>
void for_each_split(const std::string& input, F&& check, unsigned small_max = 7) {
  {
    SCOPED_TRACE("fed whole");
    check(whole(input));
  }
  {
    SCOPED_TRACE("fed one byte at a time");
    check(bytes(input));
  }
  for (unsigned seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE("fed in random split, seed " + std::to_string(seed));
    check(random_split(input, seed, small_max));
  }
}

// Printable form of bytes for test messages: control and 8-bit bytes as escapes.
inline std::string Escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace sy::test
