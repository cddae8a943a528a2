// LMTP command parser: a pure, resumable state machine over the bytes an LMTP client
// (Postfix's lmtp(8)) sends to the router: RFC 2033 LHLO and the RFC 5321 commands an LMTP
// server needs (MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY) with their argument syntax.
//
// Feed it whatever bytes have arrived; it reports "need more", a complete command, or a
// typed error. No sockets, no logging. The parser owns the command it is building;
// take_command() moves it out. Same shape as sy::pop3::CommandParser. The message after
// DATA is not for this parser: once DATA is reported the session feeds the following
// bytes to sy::lmtp::DataDecoder (lmtp/data.h) and comes back here after the final dot.
//
// format_path() and format_command() go the other way, for the commands the router sends
// to a store; what they write parses back to the same Command.
#ifndef SWITCHYARD_LMTP_PARSER_H
#define SWITCHYARD_LMTP_PARSER_H

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sy::lmtp {

struct Limits {
  // Bytes of one command line before its CRLF. RFC 5321 4.5.3.1.4 allows 512 with the
  // CRLF (so 510 here) but extensions lengthen lines; Postfix itself accepts 2048.
  std::size_t max_line_length = 4096;
};

enum class Verb { Lhlo, Mail, Rcpt, Data, Rset, Noop, Quit, Vrfy };

const char* verb_name(Verb v);  // "LHLO", "MAIL", ...

// The BODY parameter of MAIL (RFC 6152). BINARYMIME needs BDAT, which is not offered.
enum class Body { Unspecified, SevenBit, EightBitMime };

struct Command {
  Verb verb = Verb::Noop;
  // LHLO: the client's name (a domain or an address literal). NOOP: its optional string,
  // VRFY: its string, both verbatim after the verb's SP. Empty otherwise.
  std::string arg;
  // MAIL, RCPT: the mailbox with a quoted local part unquoted ("a b"@x is `a b@x`), the
  // domain as written, a source route dropped. "" for MAIL's null reverse-path <>.
  // RCPT TO:<Postmaster> (any case, no domain) gives the word as written.
  std::string address;
  // MAIL, RCPT: every ESMTP parameter in order, keyword upper-cased, value as written
  // ("" when the keyword has no "="), except that BODY's value is upper-cased.
  std::vector<std::pair<std::string, std::string>> params;
  // MAIL only, from params: SIZE=n (RFC 1870) and BODY= (RFC 6152), checked.
  std::optional<std::uint64_t> size;
  Body body = Body::Unspecified;
  bool operator==(const Command&) const = default;
};

enum class Event {
  NeedMore,  // every byte given was consumed; call again with more
  Command,   // a whole command is ready: take_command()
  Error,     // error(): the bad line was consumed through its LF
};

enum class Error {
  None,
  LineTooLong,     // the line exceeded max_line_length; its rest was discarded
  BareLf,          // a LF without CR before it (the LF still ends the bad line)
  BareCr,          // a CR not followed by LF
  Nul,             // a NUL byte in the line
  UnknownCommand,  // not one of the verbs above (also an empty line, a leading space)
  Syntax,          // a known verb with bad arguments: missing or malformed path, bad
                   // parameter, duplicate parameter, arguments to DATA/RSET/QUIT
};

const char* error_name(Error e);  // "line too long", ... for logs
// The reply code for the error: 501 for Syntax (arguments), 500 for everything else.
int reply_code(Error e);

class CommandParser {
 public:
  explicit CommandParser(Limits limits = {});

  // Parses from the start of `in`. *consumed is set to the number of bytes used; the
  // caller drops them and calls again with the rest (plus new bytes) until NeedMore.
  // NeedMore always consumes everything given (the parser keeps partial state itself).
  Event feed(std::string_view in, std::size_t* consumed);

  Command take_command();
  Error error() const { return error_; }
  // Errors never kill this parser: every bad line is skipped to its LF and the next line
  // parses normally. Kept for the shape the sessions share with the other parsers.
  bool fatal() const { return false; }

 private:
  enum class State : unsigned char { Line, Cr, Skip, SkipCr };

  Event step(char c);
  void start_skip(Error e, std::size_t len_so_far);
  Event end_of_bad_line();

  Limits limits_;
  State state_ = State::Line;
  Error error_ = Error::None;
  std::string line_;           // the current line without CRLF (State::Line, Cr)
  std::size_t skip_len_ = 0;   // bytes of a bad line so far (State::Skip, SkipCr)
  bool ready_ = false;         // cmd_ holds a finished command not yet taken
  Command cmd_;
};

// Parses one command line without its CRLF (no CR, LF or NUL inside). What feed() uses.
// Returns Error::None and fills *cmd, or UnknownCommand / Syntax.
[[nodiscard]] Error parse_command_line(std::string_view line, Command* cmd);

// A mailbox from Command::address split into its unquoted local part and its domain. The
// domain starts after the last "@", except that an address literal (which may hold "@"
// but never "[") starts at the last "[". Views into the address; nullopt when there is no
// "@" before the domain (the null path, Postmaster).
struct Mailbox {
  std::string_view local;
  std::string_view domain;
};
[[nodiscard]] std::optional<Mailbox> split_mailbox(std::string_view address);

// "<address>" for MAIL FROM / RCPT TO, quoting the local part (see split_mailbox())
// when it is not a plain dot-string. "" gives "<>", and "Postmaster" (any case)
// stays bare. nullopt when the address cannot be written: no "@" (other than postmaster),
// a malformed domain, or a local part with control characters.
[[nodiscard]] std::optional<std::string> format_path(std::string_view address);

// The command line with its CRLF, canonical: verb upper-case, "MAIL FROM:<...>",
// "RCPT TO:<...>", parameters from cmd.params (size and body are not consulted). nullopt
// when the address cannot be written (see format_path()), or a parameter keyword or value
// is not valid ESMTP syntax, or arg holds CR, LF or NUL.
[[nodiscard]] std::optional<std::string> format_command(const Command& cmd);

}  // namespace sy::lmtp

#endif
