// IMAP command parser: a pure, resumable state machine over bytes from the client.
//
// Feed it whatever bytes have arrived; it reports "need more", a complete command, a
// request to send a "+ " continuation (synchronising literal), a raw line (the client's
// answer to an AUTHENTICATE challenge), or a typed error. No sockets, no logging.
// The parser owns the command it is building; take_command() moves it out.
#ifndef SWITCHYARD_IMAP_PARSER_H
#define SWITCHYARD_IMAP_PARSER_H

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "net/command_parser.h"

namespace sy::imap {

struct Limits {
  std::size_t max_line_length = 8192;   // bytes of one line, literal contents excluded
  std::size_t max_literal_size = 8192;  // bytes of one literal
  std::size_t max_arguments = 64;       // arguments (list markers included) per command
  std::size_t max_literal_total = 65536;  // bytes of all the literals of one command
};

struct Arg {
  enum class Kind { Atom, Quoted, Literal, ListOpen, ListClose };
  Kind kind = Kind::Atom;
  std::string value;  // unescaped contents; empty for list markers
  bool operator==(const Arg&) const = default;
};

struct Command {
  std::string tag;
  std::string name;  // upper-cased ASCII
  std::vector<Arg> args;
  bool operator==(const Command&) const = default;
};

enum class Event {
  NeedMore,  // every byte given was consumed; call again with more
  Command,   // a whole command is ready: take_command()
  Continue,  // a synchronising literal {n} was announced: send "+ ..." then feed on
  Line,      // raw-line mode (after expect_line()): line() holds it, CRLF removed
  Error,     // error(): the bad input up to its end of line was consumed (unless fatal())
};

enum class Error {
  None,
  LineTooLong,       // the line exceeded max_line_length (skipped to its end)
  LiteralTooLarge,   // {n} > max_literal_size; fatal for a non-synchronising {n+}
  TooManyArguments,  // more than max_arguments
  MissingTag,        // empty line or no tag
  BadTag,            // tag with characters not allowed in a tag
  MissingCommand,    // a tag and nothing else
  BadSyntax,         // anything else malformed (unbalanced quotes/parens, bad escape, NUL,
                     // bare CR or LF, bad literal header, junk after a literal)
};

const char* error_name(Error e);  // "line too long", ... for protocol messages and logs

class CommandParser : public CommandParserBase<CommandParser, Command, Error, Event> {
 public:
  explicit CommandParser(Limits limits = {});

  // feed(), take_command(), line(), error(), fatal() and expect_line() are the base's
  // (net/command_parser.h).

  // Tag of the command the error belongs to, or "*" when none was read yet.
  const std::string& error_tag() const { return error_tag_; }

 private:
  friend class CommandParserBase<CommandParser, Command, Error, Event>;
  bool dead() const { return state_ == State::Dead; }
  void die() {
    error_tag_.assign(1, '*');
    state_ = State::Dead;
  }
  void enter_line_mode() { state_ = State::LineData; }
  std::size_t max_line_length() const { return limits_.max_line_length; }

  Limits limits_;
  std::string error_tag_;
  // The resumable state (the parser's own choice) follows.
  enum class State : unsigned char {
    Tag, Name, ArgStart, ListStart, Atom, AfterArg, Quoted, QuotedEscape,
    LitOpen, LitDigits, LitPlus, LitClose, LitCR, LitData, EndCR,
    Skip, SkipLitData, LineData, Dead,
  };
  // Recogniser for "{n}" / "{n+}" right before CRLF while skipping a bad line.
  enum class SkipLit : unsigned char { None, Open, Digits, Plus, Close, CR };

  Event feed_bytes(std::string_view in, std::size_t* consumed);
  Event step(char c);
  Event skip_step(char c);
  Event fail(Error e, char c, SkipLit header = SkipLit::None);
  Event fail_fatal(Error e);
  Event overflow(char c);
  bool start_arg(Arg::Kind kind);
  void add_digit(char c);
  void reset_command();

  State state_ = State::Tag;
  SkipLit skip_lit_ = SkipLit::None;
  bool skip_literals_ = true;  // false while skipping a bad raw line (expect_line)
  bool tag_done_ = false;      // cmd_.tag is complete and valid
  bool lit_sync_ = true;       // literal being announced is {n}, not {n+}
  bool lit_big_ = false;       // literal being announced exceeds max_literal_size
  std::size_t lit_len_ = 0;    // announced literal size, then bytes still to read
  std::size_t lit_total_ = 0;  // literal bytes taken into the current command
  std::size_t depth_ = 0;      // open parentheses
};

}  // namespace sy::imap

#endif
