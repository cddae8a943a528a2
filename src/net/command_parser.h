// What the IMAP and POP3 command parsers share (imap/parser.h, pop3/parser.h): the
// finished command and the raw line they hand out, the error and whether it is fatal, the
// line-length accounting (the final CRLF does not count), the raw-line mode for SASL
// answers, and the rule that only allocation can throw, in which case the input counts as
// one overlong line and the parser is dead. Pure; CRTP, so nothing is virtual.
//
// Derived supplies: Event feed_bytes(std::string_view, std::size_t*) (starting with
// begin_feed()), bool dead() const, void die(), void reset_command(), void
// enter_line_mode() and std::size_t max_line_length() const.
#ifndef SWITCHYARD_NET_COMMAND_PARSER_H
#define SWITCHYARD_NET_COMMAND_PARSER_H

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sy {

template <class Derived, class Command, class Error, class Event>
class CommandParserBase {
 public:
  // Parses from the start of `in`. *consumed is set to the number of bytes used; the
  // caller drops them and calls again with the rest (plus new bytes) until NeedMore.
  // NeedMore always consumes everything given (the parser keeps partial state itself).
  Event feed(std::string_view in, std::size_t* consumed) {
    try {
      return self().feed_bytes(in, consumed);
    } catch (...) {
      *consumed = in.size();
      cmd_ = Command{};
      ready_ = false;
      line_.clear();
      error_ = Error::LineTooLong;
      fatal_ = true;
      self().die();
      return Event::Error;
    }
  }

  Command take_command() {
    Command out = std::move(cmd_);
    cmd_ = Command{};
    ready_ = false;
    return out;
  }
  const std::string& line() const { return line_; }
  Error error() const { return error_; }
  // After Error: true when the input cannot be resynchronised; the session must close.
  bool fatal() const { return fatal_; }

  // The next event will be Line: one raw CRLF-terminated line (a SASL answer: base64 or
  // "*"), limited by the line length.
  void expect_line() {
    if (self().dead()) return;
    if (!ready_) cmd_ = Command{};  // drop a partial command; keep an untaken finished one
    self().reset_command();
    line_.clear();
    line_cr_ = false;
    self().enter_line_mode();
  }

 protected:
  // The start of every feed: a dead parser swallows everything (false: answer Error); a
  // finished command nobody took is dropped.
  bool begin_feed(std::string_view in, std::size_t* consumed) {
    *consumed = 0;
    if (self().dead()) {
      *consumed = in.size();
      return false;
    }
    if (ready_) {
      cmd_ = Command{};
      ready_ = false;
    }
    return true;
  }

  // One byte of a raw line: NeedMore until its CRLF, then Line (the line in line()).
  // nullopt: the byte is bad (a bare CR or LF; NUL unless nul_ok), and the derived parser
  // fails the line with it.
  std::optional<Event> raw_line_byte(char c, bool nul_ok) {
    if (line_cr_) {
      line_cr_ = false;
      if (c != '\n') return std::nullopt;
      self().reset_command();
      return Event::Line;
    }
    if (c == '\r') {
      line_cr_ = true;
      return Event::NeedMore;
    }
    if (c == '\n' || (c == '\0' && !nul_ok)) return std::nullopt;
    line_.push_back(c);
    return Event::NeedMore;
  }

  // Counts one byte of the current line: false once the line is longer than allowed. The
  // final CRLF does not count: a CR may be the line's last-but-one byte, LF its last.
  bool count_byte(char c) {
    ++line_len_;
    const std::size_t max = self().max_line_length();
    std::size_t allowed = max;
    if (c == '\r') allowed += 1;
    else if (c == '\n') allowed += 2;
    if (allowed < max) return true;  // overflow: the limit is effectively none
    return line_len_ <= allowed;
  }

  Command cmd_;
  bool ready_ = false;        // cmd_ holds a finished command not yet taken
  std::string line_;          // the raw line, in raw-line mode
  Error error_ = Error::None;
  bool fatal_ = false;
  std::size_t line_len_ = 0;  // bytes of the current line so far
  bool line_cr_ = false;      // raw-line mode: the line's CR was just read

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

}  // namespace sy

#endif
