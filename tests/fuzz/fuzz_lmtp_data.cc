// Fuzz target for DATA framing (decoder and encoder).
//
// Input layout: byte 0 selects the size limit (none, or 0..127 decoded bytes), the rest is
// the byte stream after "354". The stream is decoded several ways (whole, one byte at a
// time, in pieces whose sizes come from the input, through feed() and feed_to()) and
// encoded as a message; any violated invariant traps.
//
// Invariants:
//  1. feed() never reports more consumed bytes than it was given; NeedMore consumes
//     everything; End and TooBig consume at least one byte, end on a LF, and later calls
//     consume nothing and repeat the event.
//  2. The result -- message bytes, end offset, event, size -- is identical for every way
//     of splitting the stream and for both output forms.
//  3. It matches a reference decoder that works on the whole stream line by line.
//  4. TooBig exactly when a limit is set and the message exceeds it; nothing is written
//     past the limit.
//  5. Round trips: a decoded message re-encodes (in any chunking) to a stream that decodes
//     back to it, and to the very input when the input was canonically stuffed; any byte
//     string encoded as a message decodes back to itself (plus CRLF if it lacked one).
//  6. In encoder output no line starts with a single "." except the final ".\r\n" (with
//     stuff_after_bare_lf: also no "." after a bare LF).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/data.h"
#include "splits.h"

namespace {

using sy::lmtp::DataDecoder;
using sy::lmtp::DataEncoder;
using sy::lmtp::DataEvent;

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

struct Result {
  std::string message;  // as written (cleared when too big)
  DataEvent event = DataEvent::NeedMore;
  std::size_t end = 0;  // stream offset past the terminator (0: none)
  std::uint64_t size = 0;
  bool operator==(const Result&) const = default;
};

bool ends_crlf(std::string_view s) {
  return s.size() >= 2 && s[s.size() - 2] == '\r' && s[s.size() - 1] == '\n';
}

// Reference: the whole stream at once, line by line (lines end at CRLF only).
struct Reference {
  std::string message;
  std::size_t end = 0;
  bool canonical = true;  // every line-start dot was followed by a second dot
};

Reference reference(std::string_view s) {
  Reference r;
  std::size_t pos = 0;
  while (pos < s.size()) {
    if (s.substr(pos, 3) == ".\r\n") {
      r.end = pos + 3;
      return r;
    }
    // The stream stops inside what may still become the terminator: nothing to write yet.
    if (std::string_view(".\r\n").starts_with(s.substr(pos))) return r;
    if (s[pos] == '.') {
      if (pos + 1 >= s.size() || s[pos + 1] != '.') r.canonical = false;
      ++pos;
    }
    const std::size_t crlf = s.find("\r\n", pos);
    const std::size_t next = crlf == std::string_view::npos ? s.size() : crlf + 2;
    r.message.append(s.substr(pos, next - pos));
    pos = next;
  }
  return r;
}

Result decode(std::string_view data, const std::vector<std::size_t>& sizes,
              std::uint64_t max_size, bool use_sink) {
  DataDecoder d(max_size);
  Result r;
  std::string pending;
  std::size_t base = 0;
  std::size_t pos = 0;
  std::size_t piece = 0;
  while (pos < data.size() || piece == 0) {
    std::size_t n = sizes.empty() ? data.size() : sizes[piece % sizes.size()];
    ++piece;
    if (n > data.size() - pos) n = data.size() - pos;
    pending.append(data.substr(pos, n));
    pos += n;
    std::size_t used = static_cast<std::size_t>(-1);
    DataEvent ev;
    if (use_sink) {
      ev = d.feed_to(pending, &used, [&](std::string_view s) {
        CHECK(!s.empty());
        r.message.append(s);
      });
    } else {
      ev = d.feed(pending, &used, &r.message);
    }
    CHECK(used <= pending.size());
    if (ev == DataEvent::NeedMore) {
      CHECK(used == pending.size());
      CHECK(!d.finished());
      base += used;
      pending.clear();
      continue;
    }
    CHECK(used > 0);
    CHECK(d.finished());
    CHECK((ev == DataEvent::TooBig) == d.too_big());
    base += used;
    CHECK(data[base - 1] == '\n');
    r.event = ev;
    r.end = base;
    // Finished: further feeds repeat the event and take nothing.
    std::string more;
    std::size_t used2 = 1;
    CHECK(d.feed(pending.substr(used), &used2, &more) == ev);
    CHECK(used2 == 0 && more.empty());
    break;
  }
  r.size = d.size();
  if (max_size != 0) CHECK(r.message.size() <= max_size);
  // What was written before the limit was crossed depends on the split; it is discarded.
  if (d.too_big()) r.message.clear();
  return r;
}

std::string decode_simple(std::string_view wire, std::size_t* end) {
  DataDecoder d;
  std::string out;
  CHECK(d.feed(wire, end, &out) == DataEvent::End);
  return out;
}

std::string encode(std::string_view message, const std::vector<std::size_t>& sizes,
                   DataEncoder::Options options) {
  DataEncoder enc(options);
  std::string out;
  std::size_t pos = 0;
  std::size_t piece = 0;
  while (pos < message.size()) {
    std::size_t n = sizes.empty() ? message.size() : sizes[piece++ % sizes.size()];
    if (n > message.size() - pos) n = message.size() - pos;
    enc.encode(message.substr(pos, n), &out);
    pos += n;
  }
  enc.finish(&out);
  return out;
}

// No line of the stuffed body starts with a lone dot; the last 3 bytes are ".\r\n".
void check_stuffed(std::string_view wire, bool after_bare_lf) {
  CHECK(wire.size() >= 3 && wire.substr(wire.size() - 3) == ".\r\n");
  const std::string_view body = wire.substr(0, wire.size() - 3);
  CHECK(body.empty() || ends_crlf(body));
  for (std::size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '.') continue;
    const bool line_start = i == 0 || (body[i - 1] == '\n' &&
                                       (after_bare_lf || (i >= 2 && body[i - 2] == '\r')));
    if (line_start) CHECK(i + 1 < body.size() && body[i + 1] == '.');
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint64_t max_size = data[0] & 0x80 ? 0 : data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::vector<std::size_t> sizes = sy::fuzz::derived_sizes(stream);

  // Decoding, split-independent and against the reference.
  const Result whole = decode(stream, {}, max_size, false);
  CHECK(decode(stream, {}, max_size, true) == whole);
  CHECK(decode(stream, sizes, max_size, false) == whole);
  CHECK(decode(stream, sizes, max_size, true) == whole);
  if (stream.size() <= 4096) CHECK(decode(stream, {1}, max_size, false) == whole);

  const Reference ref = reference(stream);
  CHECK(whole.end == ref.end);
  CHECK(whole.size == ref.message.size());
  const bool too_big = max_size != 0 && ref.message.size() > max_size;
  if (ref.end != 0) CHECK(whole.event == (too_big ? DataEvent::TooBig : DataEvent::End));
  if (!too_big) CHECK(whole.message == ref.message);
  if (ref.end != 0) CHECK(ref.message.empty() || ends_crlf(ref.message));

  // Round trips from the decoder's side.
  if (ref.end != 0) {
    for (bool chunked : {false, true}) {
      const std::string wire = encode(ref.message, chunked ? sizes : std::vector<std::size_t>{}, {});
      check_stuffed(wire, false);
      std::size_t end = 0;
      CHECK(decode_simple(wire, &end) == ref.message);
      CHECK(end == wire.size());
      if (ref.canonical) CHECK(wire == stream.substr(0, ref.end));
    }
  }

  // Round trip from the encoder's side: the stream itself as a message.
  const std::string expected =
      stream.empty() || ends_crlf(stream) ? std::string(stream) : std::string(stream) + "\r\n";
  const std::string wire = encode(stream, sizes, {});
  CHECK(wire == encode(stream, {}, {}));
  check_stuffed(wire, false);
  std::size_t end = 0;
  CHECK(decode_simple(wire, &end) == expected);
  CHECK(end == wire.size());

  DataEncoder::Options lenient;
  lenient.stuff_after_bare_lf = true;
  const std::string lenient_wire = encode(stream, sizes, lenient);
  check_stuffed(lenient_wire, true);
  if (stream.find("\n.") == std::string_view::npos) CHECK(lenient_wire == wire);
  return 0;
}
