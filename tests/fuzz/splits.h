// Split patterns for the fuzz targets of the resumable parsers.
//
// A target's run() feeds the stream in pieces whose sizes it is given, cycling through
// them (0 is an empty feed, no sizes at all means the whole stream at once), and the
// trace must come out the same for every pattern. The patterns come from the input
// itself, so the fuzzer explores the splits too.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace sy::fuzz {

// Pieces of 0 .. modulus - 1 bytes taken from the first three bytes of the stream,
// followed by a piece of 1.
inline std::vector<std::size_t> derived_sizes(std::string_view stream, unsigned modulus = 17) {
  std::vector<std::size_t> sizes;
  for (std::size_t i = 0; i < 3 && i < stream.size(); ++i) {
    sizes.push_back(static_cast<unsigned char>(stream[i]) % modulus);
  }
  sizes.push_back(1);
  return sizes;
}

// Calls check(sizes) for the derived pieces, for one byte at a time (the most demanding
// resumption pattern, kept to inputs of up to 4096 bytes) and for two halves split in the
// middle (inputs of two bytes or more).
template <class F>
void for_each_split(std::string_view stream, F&& check) {
  check(derived_sizes(stream));
  if (stream.size() <= 4096) check(std::vector<std::size_t>{1});
  if (stream.size() >= 2) {
    const std::size_t half = stream.size() / 2;
    check(std::vector<std::size_t>{half, stream.size() - half});
  }
}

}  // namespace sy::fuzz
