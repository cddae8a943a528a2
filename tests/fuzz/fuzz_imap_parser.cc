// Fuzz target for the IMAP command parser.
//
// Input layout: byte 0 selects the limits and when expect_line() is called, bytes 1..3
// shape one of the split patterns, the rest (from byte 1 on) is the client byte stream.
// The stream is fed several ways (whole, one byte at a time, and in pieces whose sizes
// come from the input) and the invariants below are checked; any violation traps.
//
// Invariants:
//  1. feed() never reports more consumed bytes than it was given.
//  2. NeedMore consumes everything it was given.
//  3. Every other event consumes at least one byte, so the stream offset at which events
//     occur strictly increases (no event without progress, no infinite loop). The one
//     exception, a dead parser repeating its fatal Error, is never fed again here.
//  4. The trace -- each event, its stream offset, and its command / line / error -- is
//     identical for every way of splitting the stream.
//  5. Events are well formed: commands have a valid tag, an upper-case atom name, at most
//     max_arguments arguments with balanced list markers, literals within
//     max_literal_size; lines fit max_line_length and hold no CR or LF; errors have a
//     type and a tag.
//  6. A command written back in canonical form (atoms, escaped quoted strings, {n+}
//     literals) parses again to the very same command.
//  7. Every event ends at a LF of the stream: a too-long line is skipped to its end, not
//     cut short. The one fatal error is a too-large non-synchronising literal.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "imap/parser.h"
#include "splits.h"

namespace {

using sy::imap::Arg;
using sy::imap::Command;
using sy::imap::CommandParser;
using sy::imap::Error;
using sy::imap::Event;
using sy::imap::Limits;

#define CHECK(cond)                     \
  do {                                  \
    if (!(cond)) __builtin_trap();      \
  } while (0)

struct Record {
  Event event;
  std::size_t offset;  // stream offset just past the event
  Command command;
  std::string line;
  Error error = Error::None;
  std::string tag;
  bool fatal = false;
  bool operator==(const Record&) const = default;
};

Limits limits_for(std::uint8_t sel) {
  Limits l;
  switch (sel & 3) {
    case 0: break;  // defaults
    case 1: l.max_line_length = 64; l.max_literal_size = 16; l.max_arguments = 8; break;
    case 2: l.max_line_length = 16; l.max_literal_size = 4; l.max_arguments = 3; break;
    case 3: l.max_line_length = 300; l.max_literal_size = 1000; l.max_arguments = 0; break;
  }
  return l;
}

// Whether to call expect_line() after the n-th event: after AUTHENTICATE without an
// initial response always, and after some other events depending on the selector.
bool wants_line(std::uint8_t sel, std::size_t n, const Record& r) {
  if (r.event == Event::Command && r.command.name == "AUTHENTICATE" &&
      r.command.args.size() == 1)
    return true;
  const unsigned every = (sel >> 2) & 7;  // 0: never
  return every != 0 && r.event != Event::Continue && (n % (every + 1)) == every;
}

bool is_tag_char(unsigned char c) {
  if (c <= 0x20 || c >= 0x7f) return false;
  switch (c) {
    case '(': case ')': case '{': case '%': case '*': case '"': case '\\': case '+':
      return false;
    default:
      return true;
  }
}

void check_well_formed(const Record& r, const Limits& lim) {
  switch (r.event) {
    case Event::Command: {
      const Command& c = r.command;
      CHECK(!c.tag.empty());
      for (char ch : c.tag) CHECK(is_tag_char(static_cast<unsigned char>(ch)));
      CHECK(!c.name.empty());
      for (char ch : c.name) CHECK(ch > 0x20 && ch < 0x7f && !(ch >= 'a' && ch <= 'z'));
      CHECK(c.args.size() <= lim.max_arguments);
      long depth = 0;
      for (const Arg& a : c.args) {
        switch (a.kind) {
          case Arg::Kind::Atom: CHECK(!a.value.empty()); break;
          case Arg::Kind::Quoted:
            CHECK(a.value.find_first_of(std::string_view("\0\r\n", 3)) == std::string::npos);
            break;
          case Arg::Kind::Literal: CHECK(a.value.size() <= lim.max_literal_size); break;
          case Arg::Kind::ListOpen: CHECK(a.value.empty()); ++depth; break;
          case Arg::Kind::ListClose: CHECK(a.value.empty()); CHECK(--depth >= 0); break;
        }
      }
      CHECK(depth == 0);
      break;
    }
    case Event::Line:
      CHECK(r.line.size() <= lim.max_line_length);
      CHECK(r.line.find_first_of("\r\n") == std::string::npos);
      break;
    case Event::Error:
      CHECK(r.error != Error::None);
      CHECK(!r.tag.empty());
      break;
    case Event::Continue: break;
    case Event::NeedMore: CHECK(false); break;
  }
}

// Feeds `data` in pieces of the given sizes (cycled; 0 means an empty feed) and records
// every event. Unconsumed bytes are re-fed together with the next piece, as a session does.
std::vector<Record> run(std::string_view data, const std::vector<std::size_t>& sizes,
                        std::uint8_t sel) {
  const Limits lim = limits_for(sel);
  CommandParser p(lim);
  std::vector<Record> trace;
  std::string pending;
  std::size_t base = 0;  // stream offset of pending[0]
  std::size_t pos = 0;   // bytes of data handed over so far
  std::size_t piece = 0;
  bool dead = false;
  while (!dead && (pos < data.size() || piece == 0)) {
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
      pending.erase(0, used);
      base += used;
      Record r{ev, base, {}, {}, Error::None, {}, false};
      if (ev == Event::Command) r.command = p.take_command();
      if (ev == Event::Line) r.line = p.line();
      if (ev == Event::Error) {
        r.error = p.error();
        r.tag = p.error_tag();
        r.fatal = p.fatal();
      }
      check_well_formed(r, lim);
      CHECK(data[base - 1] == '\n');
      if (r.fatal) CHECK(r.error == Error::LiteralTooLarge);
      if (!trace.empty()) CHECK(trace.back().offset < r.offset);
      trace.push_back(std::move(r));
      const Record& last = trace.back();
      if (last.event == Event::Error && last.fatal) {
        dead = true;
        break;
      }
      if (wants_line(sel, trace.size(), last)) p.expect_line();
    }
  }
  return trace;
}

std::string serialize(const Command& c) {
  std::string out = c.tag + " " + c.name;
  bool after_open = false;
  for (const Arg& a : c.args) {
    if (a.kind != Arg::Kind::ListClose && !after_open) out += ' ';
    after_open = a.kind == Arg::Kind::ListOpen;
    switch (a.kind) {
      case Arg::Kind::Atom: out += a.value; break;
      case Arg::Kind::Quoted:
        out += '"';
        for (char ch : a.value) {
          if (ch == '"' || ch == '\\') out += '\\';
          out += ch;
        }
        out += '"';
        break;
      case Arg::Kind::Literal:
        out += "{" + std::to_string(a.value.size()) + "+}\r\n" + a.value;
        break;
      case Arg::Kind::ListOpen: out += '('; break;
      case Arg::Kind::ListClose: out += ')'; break;
    }
  }
  out += "\r\n";
  return out;
}

void check_round_trip(const Command& c) {
  Limits big;
  big.max_line_length = static_cast<std::size_t>(-1);
  big.max_literal_size = static_cast<std::size_t>(-1);
  big.max_arguments = static_cast<std::size_t>(-1);
  CommandParser p(big);
  const std::string text = serialize(c);
  std::size_t used = 0;
  CHECK(p.feed(text, &used) == Event::Command);
  CHECK(used == text.size());
  CHECK(p.take_command() == c);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t sel = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::vector<Record> whole = run(stream, {}, sel);
  for (const Record& r : whole) {
    if (r.event == Event::Command) check_round_trip(r.command);
  }

  // Pieces derived from the input, one byte at a time, and two halves.
  sy::fuzz::for_each_split(stream, [&](const std::vector<std::size_t>& sizes) {
    CHECK(run(stream, sizes, sel) == whole);
  });
  return 0;
}
