// IMAP command parser (client -> server direction, RFC 3501 syntax with RFC 7888 LITERAL+).
//
// Event contract
// --------------
// feed() looks at the bytes one at a time and stops at the byte that completes an event;
// *consumed counts the bytes up to and including that byte. Every event other than
// NeedMore therefore consumes at least one byte, and the same byte stream produces the
// same events at the same stream offsets however it is split into feed() calls.
//
//   NeedMore  all the bytes given were consumed and no event is complete yet.
//   Command   the LF of the command's final CRLF was consumed; take_command() has it.
//   Continue  the LF ending a synchronising literal header "{n}" CRLF was consumed
//             (n <= max_literal_size, also for n == 0). The session sends "+ ..." and
//             feeds on; the literal bytes and the rest of the line follow.
//   Line      only after expect_line(): the LF of the raw line's CRLF was consumed; line()
//             holds the line without its CRLF. The parser is back in command mode.
//   Error     error(), error_tag(), fatal() describe it. When it is reported:
//     - Non-fatal errors are reported only once the rest of the bad line has been
//       consumed, i.e. at its LF (a bare LF ends a bad line too). That can take several
//       feed() calls returning NeedMore first. While skipping, a line end that is
//       announced as a literal header ("{n+}" CRLF, n <= max_literal_size) makes the
//       parser skip those n literal bytes too and keep skipping the line after them, as
//       the client sends them without waiting. A synchronising "{n}" CRLF ends the bad
//       line: the client waits for a "+" that never comes. After a non-fatal error the
//       parser expects a new command.
//     - LiteralTooLarge for a synchronising {n} is non-fatal and reported at the LF of
//       the literal header (no literal bytes follow, the client waits for "+").
//     - LineTooLong is non-fatal too: from the first byte over the limit on, nothing of
//       the line is kept and the rest is skipped like a bad line's (literals included),
//       then reported at its LF. It replaces an error found earlier on the same line.
//     - Fatal errors (fatal() == true) are reported at the byte that proves them:
//       LiteralTooLarge for {n+} at the LF of its header (also when the {n+} header ends
//       a bad line being skipped; it then replaces the error found earlier), and
//       LineTooLong when memory for the command runs out. A fatal parser is dead: every
//       later feed() returns Error again and swallows everything it is given.
//   error_tag() is the command's tag once the tag was complete and valid (followed by SP,
//   CR or LF), otherwise "*" (also for all errors in raw-line mode).
//
// take_command() is valid right after Command; a command not taken is dropped by the next
// feed(). expect_line() belongs at a command boundary (after an event, before feeding the
// next bytes); a partially parsed command is discarded. error() keeps the last error.
//
// Line length: every byte outside literal contents counts, literal headers and their CRLF
// included; the final CRLF does not. A line whose bytes before the final CRLF exceed
// max_line_length is an error. So the memory a command takes is bounded by
// max_line_length plus max_arguments * max_literal_size.
//
// Syntax accepted
// ---------------
// tag:      1*(ASTRING-CHAR except "+").
// command:  1*ATOM-CHAR, upper-cased. Exactly one SP between tag, command and arguments;
//           no leading, doubled or trailing spaces.
// args:     atom    1*(printable ASCII except SP ( ) " {) -- liberal: allows % * ] \ [
//           quoted  "..." with \\ and \" escapes only; 8-bit bytes and other CTLs allowed,
//                   NUL, CR and LF not.
//           literal {n} CRLF <n bytes> or {n+} CRLF <n bytes>; any bytes.
//           list    "(" [arg *(SP arg)] ")", nested, emitted as ListOpen/ListClose markers.
//           An argument ends at SP, ")" (inside a list) or CRLF; anything else after it,
//           e.g. `BODY[HEADER.FIELDS (A)]` trailing "]", is a syntax error.
// max_arguments counts list markers; the first argument over the limit is an error.
#include "imap/parser.h"

#include <algorithm>
#include <utility>

namespace sy::imap {
namespace {

bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// RFC 3501 ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ]
bool is_atom_char(unsigned char c) {
  if (c >= 0x80 || is_ctl(c)) return false;
  switch (c) {
    case '(': case ')': case '{': case ' ': case '%': case '*': case '"': case '\\':
    case ']':
      return false;
    default:
      return true;
  }
}

bool is_tag_char(unsigned char c) { return (is_atom_char(c) || c == ']') && c != '+'; }

// The liberal atom used for arguments (list-mailbox wildcards, flags, FETCH sections).
bool is_arg_atom_char(unsigned char c) {
  if (c >= 0x80 || is_ctl(c)) return false;
  switch (c) {
    case '(': case ')': case '{': case ' ': case '"':
      return false;
    default:
      return true;
  }
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

char to_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

}  // namespace

constexpr const char* kErrorNames[] = {"no error",    "line too long", "literal too large",
                                       "too many arguments", "missing tag",  "invalid tag",
                                       "missing command",    "syntax error"};
static_assert(std::size(kErrorNames) == static_cast<std::size_t>(Error::BadSyntax) + 1);

const char* error_name(Error e) { return kErrorNames[static_cast<std::size_t>(e)]; }

CommandParser::CommandParser(Limits limits) : limits_(limits) {}

void CommandParser::reset_command() {
  state_ = State::Tag;
  skip_lit_ = SkipLit::None;
  skip_literals_ = true;
  tag_done_ = false;
  lit_sync_ = true;
  lit_big_ = false;
  lit_len_ = 0;
  lit_total_ = 0;
  line_len_ = 0;
  depth_ = 0;
}

Event CommandParser::feed_bytes(std::string_view in, std::size_t* consumed) {
  if (!begin_feed(in, consumed)) return Event::Error;
  std::size_t i = 0;
  while (i < in.size()) {
    if (state_ == State::LitData || state_ == State::SkipLitData) {
      const std::size_t take = std::min(lit_len_, in.size() - i);
      if (state_ == State::LitData) cmd_.args.back().value.append(in.data() + i, take);
      i += take;
      lit_len_ -= take;
      if (lit_len_ == 0) {
        if (state_ == State::LitData) {
          state_ = State::AfterArg;
        } else {
          state_ = State::Skip;
          skip_lit_ = SkipLit::None;
        }
      }
      continue;
    }
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

bool CommandParser::start_arg(Arg::Kind kind) {
  if (cmd_.args.size() >= limits_.max_arguments) return false;
  cmd_.args.emplace_back();
  cmd_.args.back().kind = kind;
  return true;
}

void CommandParser::add_digit(char c) {
  if (lit_big_) return;
  const auto d = static_cast<std::size_t>(c - '0');
  const std::size_t max = limits_.max_literal_size;
  if (max < d || lit_len_ > (max - d) / 10) {
    lit_big_ = true;
  } else {
    lit_len_ = lit_len_ * 10 + d;
  }
}

Event CommandParser::fail(Error e, char c, SkipLit header) {
  error_ = e;
  fatal_ = false;
  error_tag_ = tag_done_ ? cmd_.tag : "*";
  cmd_ = Command{};  // nothing of the bad command is needed any more
  state_ = State::Skip;
  skip_lit_ = header;
  // The byte that showed the error belongs to the bad line: it may end it or start a
  // literal header at its end.
  return skip_step(c);
}

// The line has grown past max_line_length: nothing more of it is kept, the rest is
// skipped like a bad line's, and LineTooLong is reported at its end.
Event CommandParser::overflow(char c) {
  if (state_ == State::Skip) {
    error_ = Error::LineTooLong;  // replaces the error found earlier on this line
    return skip_step(c);
  }
  if (state_ == State::LineData) {
    line_.clear();
    skip_literals_ = false;
  }
  // A literal header being read goes on being recognised, so that the bytes of a {n+}
  // ending the line are skipped as literal data, not taken for commands.
  SkipLit header = SkipLit::None;
  if (state_ == State::LitOpen) header = SkipLit::Open;
  else if (state_ == State::LitDigits) header = SkipLit::Digits;
  else if (state_ == State::LitPlus) header = SkipLit::Plus;
  else if (state_ == State::LitClose) header = SkipLit::Close;
  else if (state_ == State::LitCR) header = SkipLit::CR;
  return fail(Error::LineTooLong, c, header);
}

Event CommandParser::fail_fatal(Error e) {
  error_ = e;
  fatal_ = true;
  if (state_ != State::Skip && state_ != State::SkipLitData) {
    error_tag_ = tag_done_ ? cmd_.tag : "*";
  }  // else keep the tag found before the error being skipped
  state_ = State::Dead;
  cmd_ = Command{};
  line_.clear();
  return Event::Error;
}

Event CommandParser::skip_step(char c) {
  if (c == '\n') {
    if (skip_literals_ && skip_lit_ == SkipLit::CR && !lit_sync_) {
      // "{n+}" CRLF: the client sends the n bytes anyway, then the line goes on.
      if (lit_big_) return fail_fatal(Error::LiteralTooLarge);
      skip_lit_ = SkipLit::None;
      if (lit_len_ > 0) state_ = State::SkipLitData;
      return Event::NeedMore;
    }
    // End of the bad line (also after a synchronising "{n}" CRLF: the client waits).
    cmd_ = Command{};
    reset_command();
    return Event::Error;
  }
  switch (c) {
    case '{':
      skip_lit_ = SkipLit::Open;
      lit_len_ = 0;
      lit_big_ = false;
      lit_sync_ = true;
      break;
    case '+':
      skip_lit_ = skip_lit_ == SkipLit::Digits ? SkipLit::Plus : SkipLit::None;
      break;
    case '}':
      if (skip_lit_ == SkipLit::Digits) {
        lit_sync_ = true;
        skip_lit_ = SkipLit::Close;
      } else if (skip_lit_ == SkipLit::Plus) {
        lit_sync_ = false;
        skip_lit_ = SkipLit::Close;
      } else {
        skip_lit_ = SkipLit::None;
      }
      break;
    case '\r':
      skip_lit_ = skip_lit_ == SkipLit::Close ? SkipLit::CR : SkipLit::None;
      break;
    default:
      if (is_digit(c) && (skip_lit_ == SkipLit::Open || skip_lit_ == SkipLit::Digits)) {
        skip_lit_ = SkipLit::Digits;
        add_digit(c);
      } else {
        skip_lit_ = SkipLit::None;
      }
      break;
  }
  return Event::NeedMore;
}

Event CommandParser::step(char c) {
  const auto u = static_cast<unsigned char>(c);
  switch (state_) {
    case State::Tag:
      if (c == ' ' || c == '\r' || c == '\n') {
        if (cmd_.tag.empty()) return fail(c == '\n' ? Error::BadSyntax : Error::MissingTag, c);
        tag_done_ = true;
        if (c == ' ') {
          state_ = State::Name;
          return Event::NeedMore;
        }
        return fail(c == '\r' ? Error::MissingCommand : Error::BadSyntax, c);
      }
      if (!is_tag_char(u)) return fail(Error::BadTag, c);
      cmd_.tag.push_back(c);
      return Event::NeedMore;

    case State::Name:
      if (is_atom_char(u)) {
        cmd_.name.push_back(to_upper(c));
        return Event::NeedMore;
      }
      if (c == ' ' && !cmd_.name.empty()) {
        state_ = State::ArgStart;
        return Event::NeedMore;
      }
      if (c == '\r') {
        if (cmd_.name.empty()) return fail(Error::MissingCommand, c);
        state_ = State::EndCR;
        return Event::NeedMore;
      }
      return fail(Error::BadSyntax, c);

    case State::ListStart:
      if (c == ')') {
        if (!start_arg(Arg::Kind::ListClose)) return fail(Error::TooManyArguments, c);
        --depth_;
        state_ = State::AfterArg;
        return Event::NeedMore;
      }
      [[fallthrough]];
    case State::ArgStart:
      if (c == '"') {
        if (!start_arg(Arg::Kind::Quoted)) return fail(Error::TooManyArguments, c);
        state_ = State::Quoted;
      } else if (c == '{') {
        if (!start_arg(Arg::Kind::Literal)) return fail(Error::TooManyArguments, c);
        lit_len_ = 0;
        lit_big_ = false;
        lit_sync_ = true;
        state_ = State::LitOpen;
      } else if (c == '(') {
        if (!start_arg(Arg::Kind::ListOpen)) return fail(Error::TooManyArguments, c);
        ++depth_;
        state_ = State::ListStart;
      } else if (is_arg_atom_char(u)) {
        if (!start_arg(Arg::Kind::Atom)) return fail(Error::TooManyArguments, c);
        cmd_.args.back().value.push_back(c);
        state_ = State::Atom;
      } else {
        return fail(Error::BadSyntax, c);
      }
      return Event::NeedMore;

    case State::Atom:
      if (is_arg_atom_char(u)) {
        cmd_.args.back().value.push_back(c);
        return Event::NeedMore;
      }
      state_ = State::AfterArg;
      [[fallthrough]];
    case State::AfterArg:
      if (c == ' ') {
        state_ = State::ArgStart;
      } else if (c == ')' && depth_ > 0) {
        if (!start_arg(Arg::Kind::ListClose)) return fail(Error::TooManyArguments, c);
        --depth_;
      } else if (c == '\r' && depth_ == 0) {
        state_ = State::EndCR;
      } else {
        return fail(Error::BadSyntax, c);
      }
      return Event::NeedMore;

    case State::Quoted:
      if (c == '"') {
        state_ = State::AfterArg;
      } else if (c == '\\') {
        state_ = State::QuotedEscape;
      } else if (c == '\0' || c == '\r' || c == '\n') {
        return fail(Error::BadSyntax, c);
      } else {
        cmd_.args.back().value.push_back(c);
      }
      return Event::NeedMore;

    case State::QuotedEscape:
      if (c != '"' && c != '\\') return fail(Error::BadSyntax, c);
      cmd_.args.back().value.push_back(c);
      state_ = State::Quoted;
      return Event::NeedMore;

    case State::LitOpen:
      if (!is_digit(c)) return fail(Error::BadSyntax, c);
      add_digit(c);
      state_ = State::LitDigits;
      return Event::NeedMore;

    case State::LitDigits:
      if (is_digit(c)) {
        add_digit(c);
      } else if (c == '+') {
        lit_sync_ = false;
        state_ = State::LitPlus;
      } else if (c == '}') {
        state_ = State::LitClose;
      } else {
        return fail(Error::BadSyntax, c);
      }
      return Event::NeedMore;

    case State::LitPlus:
      if (c != '}') return fail(Error::BadSyntax, c);
      state_ = State::LitClose;
      return Event::NeedMore;

    case State::LitClose:
      if (c != '\r') return fail(Error::BadSyntax, c);
      state_ = State::LitCR;
      return Event::NeedMore;

    case State::LitCR:
      if (c != '\n') return fail(Error::BadSyntax, c);
      // One command's literals together stay within max_literal_total too, so a command
      // before login holds at most a line and that much.
      if (!lit_big_ && lit_len_ > limits_.max_literal_total - std::min(lit_total_, limits_.max_literal_total))
        lit_big_ = true;
      if (lit_big_) {
        if (!lit_sync_) return fail_fatal(Error::LiteralTooLarge);
        // The client waits for "+" and sends nothing more of this command.
        error_ = Error::LiteralTooLarge;
        fatal_ = false;
        error_tag_ = cmd_.tag;
        cmd_ = Command{};
        reset_command();
        return Event::Error;
      }
      lit_total_ += lit_len_;
      cmd_.args.back().value.reserve(lit_len_);
      state_ = lit_len_ > 0 ? State::LitData : State::AfterArg;
      return lit_sync_ ? Event::Continue : Event::NeedMore;

    case State::EndCR:
      if (c != '\n') return fail(Error::BadSyntax, c);
      reset_command();
      ready_ = true;
      return Event::Command;

    case State::Skip:
      return skip_step(c);

    case State::LineData: {
      const std::optional<Event> ev = raw_line_byte(c, /*nul_ok=*/true);
      if (ev) return *ev;
      line_.clear();
      skip_literals_ = false;  // a "{n}" at the end of a SASL answer is not a literal
      return fail(Error::BadSyntax, c);
    }

    case State::LitData:
    case State::SkipLitData:
    case State::Dead:
      break;  // handled in feed_bytes()
  }
  return Event::NeedMore;
}

}  // namespace sy::imap
