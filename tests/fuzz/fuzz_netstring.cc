// Fuzz target for the netstring decoder, encoder and the socketmap request split.
//
// Input layout: byte 0 selects the decoder's length limit, the rest is the byte stream
// (what a socketmap peer sends). The stream is fed several ways (whole, one byte at a
// time, in pieces whose sizes come from the input) and the invariants below are checked;
// any violation traps.
//
// Invariants:
//  1. feed() never reports more consumed bytes than it was given; NeedMore consumes
//     everything; every other event consumes at least one byte; after an error every call
//     is an error that swallows its input.
//  2. The trace -- each event, its stream offset, payload or error -- is identical for
//     every way of splitting the stream.
//  3. It matches a reference parser that looks at the whole stream at once.
//  4. Each payload fits the limit, and the bytes it was decoded from are exactly
//     netstring_encode(payload) (the accepted form is canonical).
//  5. split_socketmap_request: name non-empty without SP, name + " " + key == payload;
//     nullopt only when the payload has no SP or starts with one.
//  6. netstring_encode() of the stream decodes back to the stream.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "socketmap/netstring.h"
#include "splits.h"

namespace {

using sy::NetstringDecoder;
using sy::NetstringError;
using sy::NetstringEvent;

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

struct Record {
  NetstringEvent event;
  std::size_t offset;  // stream offset just past the event
  std::string payload;
  NetstringError error = NetstringError::None;
  bool operator==(const Record&) const = default;
};

std::size_t limit_for(std::uint8_t sel) {
  switch (sel & 3) {
    case 0: return sy::kSocketmapMaxRequest;
    case 1: return sy::kSocketmapMaxReply;
    case 2: return sel >> 2;  // 0..63
    default: return static_cast<std::size_t>(-1);
  }
}

// Reference: parses the whole stream at once.
std::vector<Record> reference(std::string_view s, std::size_t max) {
  std::vector<Record> out;
  std::size_t pos = 0;
  auto fail = [&](NetstringError e, std::size_t at) {
    out.push_back(Record{NetstringEvent::Error, at + 1, {}, e});
  };
  while (pos < s.size()) {
    std::size_t i = pos;
    std::size_t len = 0;
    // Digits: reject a leading zero, a too long length, anything but digits then ":".
    if (s[i] < '0' || s[i] > '9') return fail(NetstringError::BadLength, i), out;
    if (s[i] == '0') {
      ++i;
      if (i == s.size()) return out;
      if (s[i] >= '0' && s[i] <= '9') return fail(NetstringError::BadLength, i), out;
    } else {
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        const auto d = static_cast<std::size_t>(s[i] - '0');
        if (static_cast<unsigned __int128>(len) * 10 + d > max) {
          return fail(NetstringError::TooLong, i), out;
        }
        len = len * 10 + d;
        ++i;
      }
      if (i == s.size()) return out;
    }
    if (s[i] != ':') return fail(NetstringError::MissingColon, i), out;
    ++i;
    if (s.size() - i < len + 1) return out;  // payload or comma still missing
    if (s[i + len] != ',') return fail(NetstringError::MissingComma, i + len), out;
    out.push_back(Record{NetstringEvent::Complete, i + len + 1, std::string(s.substr(i, len)),
                         NetstringError::None});
    pos = i + len + 1;
  }
  return out;
}

std::vector<Record> run(std::string_view data, const std::vector<std::size_t>& sizes,
                        std::size_t max) {
  NetstringDecoder d(max);
  std::vector<Record> trace;
  std::string pending;
  std::size_t base = 0;
  std::size_t pos = 0;
  std::size_t piece = 0;
  bool dead = false;
  while (pos < data.size() || piece == 0) {
    std::size_t n = sizes.empty() ? data.size() : sizes[piece % sizes.size()];
    ++piece;
    if (n > data.size() - pos) n = data.size() - pos;
    pending.append(data.substr(pos, n));
    pos += n;
    if (dead) {  // a dead decoder swallows everything and keeps failing
      std::size_t used = 0;
      CHECK(d.feed(pending, &used) == NetstringEvent::Error);
      CHECK(used == pending.size());
      pending.clear();
      continue;
    }
    for (;;) {
      std::size_t used = static_cast<std::size_t>(-1);
      const NetstringEvent ev = d.feed(pending, &used);
      CHECK(used <= pending.size());
      if (ev == NetstringEvent::NeedMore) {
        CHECK(used == pending.size());
        base += used;
        pending.clear();
        break;
      }
      CHECK(used > 0);
      const std::size_t start = trace.empty() ? 0 : trace.back().offset;  // this frame's start
      pending.erase(0, used);
      base += used;
      Record r{ev, base, {}, NetstringError::None};
      if (ev == NetstringEvent::Error) {
        r.error = d.error();
        CHECK(r.error != NetstringError::None);
        dead = true;
      } else {
        r.payload = d.take();
        CHECK(r.payload.size() <= max);
        CHECK(sy::netstring_encode(r.payload) == data.substr(start, base - start));
      }
      if (!trace.empty()) CHECK(trace.back().offset < r.offset);
      trace.push_back(std::move(r));
      if (dead) {
        pending.clear();
        break;
      }
    }
  }
  return trace;
}

void check_split(const std::string& payload) {
  const std::optional<sy::SocketmapRequest> req = sy::split_socketmap_request(payload);
  const std::size_t sp = payload.find(' ');
  if (!req) {
    CHECK(sp == std::string::npos || sp == 0);
    return;
  }
  CHECK(!req->name.empty() && req->name.find(' ') == std::string_view::npos);
  CHECK(std::string(req->name) + " " + std::string(req->key) == payload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t max = limit_for(data[0]);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::vector<Record> whole = run(stream, {}, max);
  CHECK(whole == reference(stream, max));
  for (const Record& r : whole) {
    if (r.event == NetstringEvent::Complete) check_split(r.payload);
  }

  const std::vector<std::size_t> sizes = sy::fuzz::derived_sizes(stream);
  CHECK(run(stream, sizes, max) == whole);
  if (stream.size() <= 4096) CHECK(run(stream, {1}, max) == whole);

  // Encoding any bytes gives one netstring that decodes back to them.
  const std::string encoded = sy::netstring_encode(stream);
  NetstringDecoder d(stream.size());
  std::size_t used = 0;
  CHECK(d.feed(encoded, &used) == NetstringEvent::Complete);
  CHECK(used == encoded.size());
  CHECK(d.take() == stream);
  return 0;
}
