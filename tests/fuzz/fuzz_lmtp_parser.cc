// Fuzz target for the LMTP command parser.
//
// Input layout: byte 0 selects the line limit, the rest is the client byte stream. The
// stream is fed several ways (whole, one byte at a time, and in pieces whose sizes come
// from the input) and the invariants below are checked; any violation traps.
//
// Invariants:
//  1. feed() never reports more consumed bytes than it was given; NeedMore consumes
//     everything; every other event consumes at least one byte.
//  2. The trace -- each event, its stream offset, and its command / error -- is identical
//     for every way of splitting the stream.
//  3. Events happen exactly at the LFs of the stream: one event per LF, none elsewhere.
//  4. Each event matches a reference model that looks at the whole line at once: a line
//     over the limit is LineTooLong; otherwise the first NUL or CR inside it is Nul or
//     BareCr; otherwise a line ended by a bare LF is BareLf; otherwise the result is
//     parse_command_line() of the line.
//  5. Commands are well formed (no CR, LF or NUL anywhere; SIZE/BODY agree with params),
//     errors have a type and reply code 500 or 501.
//  6. format_command() of every command succeeds and parses back to the same command.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/parser.h"
#include "splits.h"

namespace {

using sy::lmtp::Command;
using sy::lmtp::CommandParser;
using sy::lmtp::Error;
using sy::lmtp::Event;
using sy::lmtp::Limits;
using sy::lmtp::Verb;

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

struct Record {
  Event event;
  std::size_t offset;  // stream offset just past the event
  Command command;
  Error error = Error::None;
  bool operator==(const Record&) const = default;
};

Limits limits_for(std::uint8_t sel) {
  Limits l;
  switch (sel & 3) {
    case 0: break;  // defaults
    case 1: l.max_line_length = 510; break;  // RFC 5321's 512 with the CRLF
    case 2: l.max_line_length = 16; break;
    case 3: l.max_line_length = sel >> 2; break;  // 0..63
  }
  return l;
}

bool clean(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

void check_well_formed(const Record& r) {
  switch (r.event) {
    case Event::Command: {
      const Command& c = r.command;
      CHECK(clean(c.arg) && clean(c.address));
      for (const auto& [k, v] : c.params) {
        CHECK(!k.empty() && clean(k) && clean(v));
        CHECK(k.find_first_of(" =") == std::string::npos);
      }
      if (c.verb != Verb::Mail && c.verb != Verb::Rcpt) {
        CHECK(c.address.empty() && c.params.empty());
      }
      if (c.verb == Verb::Rcpt) CHECK(!c.address.empty());
      if (c.verb != Verb::Mail) CHECK(!c.size && c.body == sy::lmtp::Body::Unspecified);
      bool has_size = false;
      bool has_body = false;
      for (const auto& kv : c.params) {
        has_size |= kv.first == "SIZE";
        has_body |= kv.first == "BODY";
      }
      if (c.verb == Verb::Mail) {
        CHECK(has_size == c.size.has_value());
        CHECK(has_body == (c.body != sy::lmtp::Body::Unspecified));
      }
      break;
    }
    case Event::Error:
      CHECK(r.error != Error::None);
      CHECK(r.command == Command{});
      CHECK(sy::lmtp::reply_code(r.error) == (r.error == Error::Syntax ? 501 : 500));
      break;
    case Event::NeedMore: CHECK(false); break;
  }
}

// What the parser must report for one whole line (its bytes through the LF).
Record reference(std::string_view line_with_lf, std::size_t offset, const Limits& lim) {
  Record r{Event::Error, offset, {}, Error::None};
  const bool crlf = line_with_lf.size() >= 2 && line_with_lf[line_with_lf.size() - 2] == '\r';
  const std::string_view line = line_with_lf.substr(0, line_with_lf.size() - (crlf ? 2 : 1));
  if (line.size() > lim.max_line_length) {
    r.error = Error::LineTooLong;
    return r;
  }
  const std::size_t fault = line.find_first_of(std::string_view("\r\0", 2));
  if (fault != std::string_view::npos) {
    r.error = line[fault] == '\0' ? Error::Nul : Error::BareCr;
    return r;
  }
  if (!crlf) {
    r.error = Error::BareLf;
    return r;
  }
  r.error = sy::lmtp::parse_command_line(line, &r.command);
  if (r.error == Error::None) r.event = Event::Command;
  return r;
}

// Feeds `data` in pieces of the given sizes (cycled; 0 means an empty feed) and records
// every event. Unconsumed bytes are re-fed together with the next piece, as a session does.
std::vector<Record> run(std::string_view data, const std::vector<std::size_t>& sizes,
                        const Limits& lim) {
  CommandParser p(lim);
  std::vector<Record> trace;
  std::string pending;
  std::size_t base = 0;  // stream offset of pending[0]
  std::size_t pos = 0;   // bytes of data handed over so far
  std::size_t piece = 0;
  while (pos < data.size() || piece == 0) {
    std::size_t n = sizes.empty() ? data.size() : sizes[piece % sizes.size()];
    ++piece;
    if (n > data.size() - pos) n = data.size() - pos;
    pending.append(data.substr(pos, n));
    pos += n;
    for (;;) {
      std::size_t used = static_cast<std::size_t>(-1);
      const Event ev = p.feed(pending, &used);
      CHECK(used <= pending.size());
      if (ev == Event::NeedMore) {
        CHECK(used == pending.size());
        base += used;
        pending.clear();
        break;
      }
      CHECK(used > 0);
      CHECK(!p.fatal());
      pending.erase(0, used);
      base += used;
      Record r{ev, base, {}, Error::None};
      if (ev == Event::Command) r.command = p.take_command();
      if (ev == Event::Error) r.error = p.error();
      check_well_formed(r);
      CHECK(data[base - 1] == '\n');
      if (!trace.empty()) CHECK(trace.back().offset < r.offset);
      trace.push_back(std::move(r));
    }
  }
  return trace;
}

void check_round_trip(const Command& c) {
  const std::optional<std::string> text = sy::lmtp::format_command(c);
  CHECK(text.has_value());
  CHECK(text->size() >= 2 && text->compare(text->size() - 2, 2, "\r\n") == 0);
  Command again;
  CHECK(sy::lmtp::parse_command_line(std::string_view(*text).substr(0, text->size() - 2),
                                     &again) == Error::None);
  CHECK(again == c);
  // And through the incremental parser too.
  Limits big;
  big.max_line_length = static_cast<std::size_t>(-1);
  CommandParser p(big);
  std::size_t used = 0;
  CHECK(p.feed(*text, &used) == Event::Command);
  CHECK(used == text->size());
  CHECK(p.take_command() == c);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Limits lim = limits_for(data[0]);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::vector<Record> whole = run(stream, {}, lim);

  // The reference model, line by line: one event per LF.
  std::size_t start = 0;
  std::size_t i = 0;
  for (std::size_t lf = stream.find('\n'); lf != std::string_view::npos;
       lf = stream.find('\n', lf + 1)) {
    CHECK(i < whole.size());
    CHECK(whole[i] == reference(stream.substr(start, lf + 1 - start), lf + 1, lim));
    start = lf + 1;
    ++i;
  }
  CHECK(i == whole.size());

  for (const Record& r : whole) {
    if (r.event == Event::Command) check_round_trip(r.command);
  }

  // Pieces derived from the input, one byte at a time, and two halves.
  sy::fuzz::for_each_split(stream, [&](const std::vector<std::size_t>& sizes) {
    CHECK(run(stream, sizes, lim) == whole);
  });
  return 0;
}
