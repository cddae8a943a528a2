// POP3 command parser (client -> server direction, before login).
//
// Event contract
// --------------
// feed() looks at the bytes one at a time and stops at the byte that completes an event;
// *consumed counts the bytes up to and including that byte. Every event other than
// NeedMore therefore consumes at least one byte, and the same byte stream produces the
// same events at the same stream offsets however it is split into feed() calls.
//
//   NeedMore  all the bytes given were consumed and no event is complete yet.
//   Command   the LF of the command's CRLF was consumed; take_command() has it.
//   Line      only after expect_line(): the LF of the raw line's CRLF was consumed; line()
//             holds the line without its CRLF. The parser is back in command mode.
//   Error     error() and fatal() describe it.
//     - Errors are reported once the rest of the bad line has been consumed, at its LF;
//       a bare LF ends a bad line too. That can take several feed() calls returning
//       NeedMore first. The parser then expects a new command (also after an error in
//       raw-line mode). A line over max_line_length is not kept from the first byte
//       over on, and gives LineTooLong (replacing an error found earlier on the line).
//     - The one fatal error is LineTooLong when memory for the line runs out. A fatal
//       parser is dead: every later feed() returns Error again and swallows its input.
//
// take_command() is valid right after Command; a command not taken is dropped by the next
// feed(). expect_line() belongs at a command boundary (after an event, before feeding the
// next bytes); a partially parsed command is discarded. error() keeps the last error.
//
// Line length: every byte before the final CRLF counts, in command and in raw-line mode.
// A line longer than max_line_length is an error; the count also runs while a bad line
// is skipped.
//
// Syntax accepted
// ---------------
// Lines end in CRLF. A bare LF is an error, not a line end (RFC 1939 says CRLF; the IMAP
// parser is just as strict), and so is a CR not followed by LF. NUL is never valid.
// keyword:  1..40 printable ASCII characters other than SP (0x21-0x7e), upper-cased. No
//           leading space.
// args:     separated from the keyword and from each other by one or more SP; trailing
//           spaces are ignored. An argument is any run of bytes other than SP, CR, LF and
//           NUL (8-bit and other control bytes are passed on: UTF-8 user names exist).
//           "USER" alone yields a command without arguments; the session decides.
// PASS:     everything after "PASS" and its single SP up to the CRLF is one argument,
//           verbatim: passwords may contain, begin or end with spaces. "PASS \r\n" has one
//           empty argument, "PASS\r\n" none.
// max_arguments: the first argument over the limit is an error (PASS's one argument
//           counts too).
// raw line: any bytes other than CR, LF and NUL (may be empty).
#include "pop3/parser.h"

#include <utility>

namespace sy::pop3 {
namespace {

bool is_keyword_char(unsigned char c) { return c > 0x20 && c < 0x7f; }

char to_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

}  // namespace

// Indexed by Error (None, LineTooLong, EmptyLine, BadSyntax, TooManyArguments).
constexpr std::string_view kErrorNames[] = {"no error", "line too long", "empty line",
                                            "syntax error", "too many arguments"};
static_assert(std::size(kErrorNames) == static_cast<std::size_t>(Error::TooManyArguments) + 1);

const char* error_name(Error e) { return kErrorNames[static_cast<std::size_t>(e)].data(); }

CommandParser::CommandParser(Limits limits) : limits_(limits) {}

void CommandParser::reset_command() {
  state_ = State::Name;
  line_len_ = 0;
}

Event CommandParser::feed_bytes(std::string_view in, std::size_t* consumed) {
  if (!begin_feed(in, consumed)) return Event::Error;
  for (std::size_t i = 0; i < in.size();) {
    const char c = in[i++];
    const Event ev = count_byte(c) ? step(c) : overflow(c);
    if (ev != Event::NeedMore) {
      *consumed = i;
      return ev;
    }
  }
  *consumed = in.size();
  return Event::NeedMore;
}

Event CommandParser::fail(Error e, char c) {
  error_ = e;
  fatal_ = false;
  cmd_ = Command{};
  line_.clear();
  state_ = State::Skip;
  return skip_step(c);  // the byte that showed the error may itself end the line
}

// Past max_line_length: nothing more of the line is kept; it is skipped to its LF and
// LineTooLong reported there (replacing an error found earlier on the line).
Event CommandParser::overflow(char c) {
  if (state_ == State::Skip) {
    error_ = Error::LineTooLong;
    return skip_step(c);
  }
  return fail(Error::LineTooLong, c);
}

Event CommandParser::fail_fatal(Error e) {
  error_ = e;
  fatal_ = true;
  state_ = State::Dead;
  cmd_ = Command{};
  line_.clear();
  return Event::Error;
}

Event CommandParser::skip_step(char c) {
  if (c != '\n') return Event::NeedMore;
  reset_command();
  return Event::Error;
}

Event CommandParser::step(char c) {
  const auto u = static_cast<unsigned char>(c);
  switch (state_) {
    case State::Name:
      if (is_keyword_char(u)) {
        if (cmd_.name.size() >= kMaxKeywordLength) return fail(Error::BadSyntax, c);
        cmd_.name.push_back(to_upper(c));
        return Event::NeedMore;
      }
      if (c == ' ') {
        if (cmd_.name.empty()) return fail(Error::BadSyntax, c);
        if (cmd_.name == "PASS") {
          if (limits_.max_arguments == 0) return fail(Error::TooManyArguments, c);
          cmd_.args.emplace_back();
          state_ = State::PassRest;
        } else {
          state_ = State::ArgStart;
        }
        return Event::NeedMore;
      }
      if (c == '\r') {  // an empty name is reported as EmptyLine at the LF
        state_ = State::EndCR;
        return Event::NeedMore;
      }
      return fail(Error::BadSyntax, c);

    case State::ArgStart:
      if (c == ' ') return Event::NeedMore;
      if (c == '\r') {
        state_ = State::EndCR;
        return Event::NeedMore;
      }
      if (c == '\n' || c == '\0') return fail(Error::BadSyntax, c);
      if (cmd_.args.size() >= limits_.max_arguments) return fail(Error::TooManyArguments, c);
      cmd_.args.emplace_back(1, c);
      state_ = State::Arg;
      return Event::NeedMore;

    case State::Arg:
      if (c == ' ') {
        state_ = State::ArgStart;
      } else if (c == '\r') {
        state_ = State::EndCR;
      } else if (c == '\n' || c == '\0') {
        return fail(Error::BadSyntax, c);
      } else {
        cmd_.args.back().push_back(c);
      }
      return Event::NeedMore;

    case State::PassRest:
      if (c == '\r') {
        state_ = State::EndCR;
      } else if (c == '\n' || c == '\0') {
        return fail(Error::BadSyntax, c);
      } else {
        cmd_.args.back().push_back(c);
      }
      return Event::NeedMore;

    case State::EndCR:
      if (c != '\n') return fail(Error::BadSyntax, c);
      reset_command();
      if (cmd_.name.empty()) {
        error_ = Error::EmptyLine;
        fatal_ = false;
        return Event::Error;
      }
      ready_ = true;
      return Event::Command;

    case State::Skip:
      return skip_step(c);

    case State::LineData: {
      const std::optional<Event> ev = raw_line_byte(c, /*nul_ok=*/false);
      return ev ? *ev : fail(Error::BadSyntax, c);
    }

    case State::Dead:
      break;  // handled in feed_bytes()
  }
  return Event::NeedMore;
}

}  // namespace sy::pop3
