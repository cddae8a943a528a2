// POP3 command parser: a pure, resumable state machine over bytes from the client
// (RFC 1939 commands, RFC 2449 CAPA, RFC 5034 AUTH, RFC 2595 STLS), used before login.
//
// Feed it whatever bytes have arrived; it reports "need more", a complete command, a raw
// line (the client's answer to an AUTH challenge, after expect_line()), or a typed error.
// No sockets, no logging. The parser owns the command it is building; take_command()
// moves it out. Same shape as sy::imap::CommandParser.
#ifndef SWITCHYARD_POP3_PARSER_H
#define SWITCHYARD_POP3_PARSER_H

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "net/command_parser.h"

namespace sy::pop3 {

struct Limits {
  // Bytes of one line before its CRLF. RFC 2449 caps commands at 255 bytes, but an AUTH
  // initial response (RFC 5034) can be far longer, so one configured limit covers all.
  std::size_t max_line_length = 8192;
  std::size_t max_arguments = 4;  // arguments after the keyword
};

// The longest keyword accepted; RFC 2449 keywords are 3 or 4 characters.
inline constexpr std::size_t kMaxKeywordLength = 40;

struct Command {
  std::string name;               // the keyword, upper-cased ASCII
  std::vector<std::string> args;  // for PASS: at most one, the rest of the line verbatim
  bool operator==(const Command&) const = default;
};

enum class Event {
  NeedMore,  // every byte given was consumed; call again with more
  Command,   // a whole command is ready: take_command()
  Line,      // raw-line mode (after expect_line()): line() holds it, CRLF removed
  Error,     // error(): the bad line was consumed through its LF (unless fatal())
};

enum class Error {
  None,
  LineTooLong,       // the line exceeded max_line_length (fatal only if out of memory)
  EmptyLine,         // a line that is just CRLF (command mode only)
  BadSyntax,         // NUL, bare CR or LF, leading space, keyword not 1-40 printable
                     // non-space ASCII characters
  TooManyArguments,  // more than max_arguments
};

const char* error_name(Error e);  // "line too long", ... for protocol messages and logs

class CommandParser : public CommandParserBase<CommandParser, Command, Error, Event> {
 public:
  explicit CommandParser(Limits limits = {});

  // feed(), take_command(), line(), error(), fatal() and expect_line() are the base's
  // (net/command_parser.h).

 private:
  friend class CommandParserBase<CommandParser, Command, Error, Event>;
  bool dead() const { return state_ == State::Dead; }
  void die() { state_ = State::Dead; }
  void enter_line_mode() { state_ = State::LineData; }
  std::size_t max_line_length() const { return limits_.max_line_length; }

  enum class State : unsigned char {
    Name, ArgStart, Arg, PassRest, EndCR, Skip, LineData, Dead,
  };

  Event feed_bytes(std::string_view in, std::size_t* consumed);
  Event step(char c);
  Event skip_step(char c);
  Event fail(Error e, char c);
  Event fail_fatal(Error e);
  Event overflow(char c);
  void reset_command();

  Limits limits_;
  State state_ = State::Name;
};

}  // namespace sy::pop3

#endif
