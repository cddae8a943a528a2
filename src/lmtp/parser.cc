// LMTP command parser (client -> server direction).
//
// Event contract
// --------------
// feed() looks at the bytes one at a time and stops at the byte that completes an event;
// *consumed counts the bytes up to and including that byte. Every event other than
// NeedMore therefore consumes at least one byte, and the same byte stream produces the
// same events at the same stream offsets however it is split into feed() calls.
//
//   NeedMore  all the bytes given were consumed and no event is complete yet.
//   Command   the LF of the command's CRLF was consumed; take_command() has it. After
//             DATA the bytes that follow are the message: hand them to a DataDecoder.
//   Error     error() says why. The bad line has been consumed through its LF (a bare LF
//             ends a bad line too, so the client's next line parses normally): answer
//             reply_code(error()) and carry on. Nothing is fatal; a line of any length is
//             skipped in constant memory (the session's timeouts bound the time).
//
// take_command() is valid right after Command; a command not taken is dropped by the next
// feed(). error() keeps the last error.
//
// Line ends
// ---------
// Strict: only CRLF ends a command line. Postfix always sends CRLF, and SMTP smuggling
// lives on the difference between CRLF and a bare LF, so a bare LF is an error (BareLf,
// reported at that LF, which also ends the bad line), and so is a CR not followed by LF
// (BareCr, reported at the next LF). NUL is never valid.
//
// When one line has several faults the first one found is reported, except that a line
// over max_line_length is always reported as LineTooLong. The length counts every byte
// before the final CRLF (for a line ended by a bare LF, before that LF).
//
// Syntax accepted (RFC 5321 4.1, RFC 2033)
// ----------------------------------------
// verb:     LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY in any case, first on the line, ended
//           by SP or the end of the line. Anything else (HELO and EHLO too: RFC 2033
//           replaces them with LHLO) is UnknownCommand.
// LHLO:     one SP or more, one word of printable non-space bytes (8-bit allowed), trailing
//           spaces ignored. Its syntax as a domain is not checked: the name is only logged.
// MAIL:     "MAIL FROM:" (case-insensitive, one SP after MAIL), then optional SP/HTAB (many
//           clients write "FROM: <a@b>"), a reverse-path, then parameters.
// RCPT:     "RCPT TO:" likewise, a forward-path, then parameters.
// path:     "<" [source-route ":"] mailbox ">"; the source route ("@a,@b:") is accepted
//           and dropped (RFC 5321 4.1.1.3). MAIL also takes "<>"; RCPT also takes
//           "<Postmaster>" (any case) without a domain. Brackets are required.
// mailbox:  local-part "@" domain.
//   local-part: a dot-string of atext (RFC 5322) and "." -- leniently: dots anywhere,
//           as Postfix passes "a..b" and "a." on and bouncing them here would lose mail --
//           or a quoted string (qtextSMTP, quoted pairs "\" + 0x20-0x7e), unquoted into the
//           address. Bytes >= 0x80 are allowed in both (SMTPUTF8, RFC 6531).
//   domain: labels of letters, digits, "-", "_" and bytes >= 0x80, separated by single
//           dots, no empty label; or an address literal "[...]" of printable bytes other
//           than "[", "\" and "]", kept with its brackets.
// params:   after the path, SP-separated (runs of SP and trailing SP tolerated)
//           keyword[=value]; keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"), value =
//           1* printable non-space bytes other than "=" (8-bit allowed). A keyword may
//           appear once. On MAIL, SIZE must be 1-20 digits fitting 64 bits and BODY must be
//           7BIT or 8BITMIME (any case); other keywords are kept for the session to judge.
// DATA, RSET, QUIT: no arguments (trailing spaces tolerated).
// NOOP:     optional; everything after "NOOP " is kept verbatim in arg.
// VRFY:     everything after "VRFY " verbatim in arg; must hold a non-space byte.
// Lengths of local part, domain and path (RFC 5321 4.5.3.1) are not checked here: the
// line limit bounds them, and the stores judge addresses.
#include "lmtp/parser.h"

#include <new>
#include <set>
#include <utility>

namespace sy::lmtp {
namespace {

bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }

char to_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_upper(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_upper(a[i]) != to_upper(b[i])) return false;
  }
  return true;
}

// RFC 5322 atext, plus UTF-8 bytes (RFC 6531).
bool is_atext(unsigned char c) {
  if (is_alnum(c) || c >= 0x80) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '/': case '=': case '?': case '^': case '_': case '`': case '{':
    case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

// RFC 5321 qtextSMTP (%d32-33 / %d35-91 / %d93-126), plus UTF-8 bytes.
bool is_qtext(unsigned char c) {
  return c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126) || c >= 0x80;
}

// The byte after "\" in a quoted pair: %d32-126, plus UTF-8 bytes.
bool is_quotable(unsigned char c) { return (c >= 32 && c <= 126) || c >= 0x80; }

bool is_label_char(unsigned char c) { return is_alnum(c) || c == '-' || c == '_' || c >= 0x80; }

// RFC 5321 dcontent: %d33-90 / %d94-126.
bool is_dcontent(unsigned char c) { return (c >= 33 && c <= 90) || (c >= 94 && c <= 126); }

bool is_keyword_char(unsigned char c) { return is_alnum(c) || c == '-'; }

// RFC 5321 esmtp-value: %d33-60 / %d62-126, plus UTF-8 bytes.
bool is_value_char(unsigned char c) { return (c >= 33 && c <= 126 && c != '=') || c >= 0x80; }

bool is_word_char(unsigned char c) { return (c >= 33 && c <= 126) || c >= 0x80; }

class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool done() const { return pos_ >= s_.size(); }
  unsigned char peek() const { return done() ? 0 : static_cast<unsigned char>(s_[pos_]); }
  char next() { return s_[pos_++]; }
  bool eat(char c) {
    if (done() || s_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  bool eat_ci(std::string_view word) {
    if (s_.size() - pos_ < word.size() || !iequals(s_.substr(pos_, word.size()), word)) return false;
    pos_ += word.size();
    return true;
  }
  void skip_spaces() {
    while (!done() && s_[pos_] == ' ') ++pos_;
  }
  void skip_blanks() {
    while (!done() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  std::string_view rest() const { return s_.substr(pos_); }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

// domain or address literal, appended to *out (brackets kept).
bool parse_domain(Cursor& cur, std::string* out) {
  if (cur.eat('[')) {
    out->push_back('[');
    if (!is_dcontent(cur.peek())) return false;
    while (is_dcontent(cur.peek())) out->push_back(cur.next());
    if (!cur.eat(']')) return false;
    out->push_back(']');
    return true;
  }
  for (;;) {
    if (!is_label_char(cur.peek())) return false;  // an empty label
    while (is_label_char(cur.peek())) out->push_back(cur.next());
    if (!cur.eat('.')) return true;
    out->push_back('.');
  }
}

// The local part, unquoted, into *out; *quoted tells which form it had.
bool parse_local_part(Cursor& cur, std::string* out, bool* quoted) {
  *quoted = cur.eat('"');
  if (*quoted) {
    for (;;) {
      if (cur.done()) return false;
      const auto c = static_cast<unsigned char>(cur.next());
      if (c == '"') return true;
      if (c == '\\') {
        if (!is_quotable(cur.peek())) return false;
        out->push_back(cur.next());
      } else if (is_qtext(c)) {
        out->push_back(static_cast<char>(c));
      } else {
        return false;
      }
    }
  }
  while (is_atext(cur.peek()) || cur.peek() == '.') out->push_back(cur.next());
  return !out->empty();
}

enum class PathKind { Reverse, Forward };

bool parse_path(Cursor& cur, PathKind kind, std::string* address) {
  if (!cur.eat('<')) return false;
  if (kind == PathKind::Reverse && cur.eat('>')) return true;  // the null reverse-path
  if (cur.peek() == '@') {  // a source route, "@a,@b:": accepted and ignored
    std::string ignored;
    do {
      if (!cur.eat('@') || !parse_domain(cur, &ignored)) return false;
    } while (cur.eat(','));
    if (!cur.eat(':')) return false;
  }
  std::string local;
  bool quoted = false;
  if (!parse_local_part(cur, &local, &quoted)) return false;
  if (cur.eat('@')) {
    std::string domain;
    if (!parse_domain(cur, &domain)) return false;
    *address = std::move(local);
    address->push_back('@');
    address->append(domain);
  } else if (kind == PathKind::Forward && !quoted && iequals(local, "postmaster")) {
    *address = std::move(local);
  } else {
    return false;
  }
  return cur.eat('>');
}

bool parse_size(std::string_view v, std::uint64_t* out) {
  if (v.empty() || v.size() > 20) return false;
  std::uint64_t n = 0;
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (!is_digit(c)) return false;
    const std::uint64_t d = c - '0';
    if (n > (UINT64_MAX - d) / 10) return false;
    n = n * 10 + d;
  }
  *out = n;
  return true;
}

bool parse_params(Cursor& cur, Command* cmd) {
  if (cur.done()) return true;
  if (cur.peek() != ' ') return false;  // something glued to the ">"
  std::set<std::string> seen;
  for (;;) {
    cur.skip_spaces();
    if (cur.done()) return true;
    if (!is_alnum(cur.peek())) return false;
    std::string key;
    while (is_keyword_char(cur.peek())) key.push_back(to_upper(cur.next()));
    std::string value;
    if (cur.eat('=')) {
      if (!is_value_char(cur.peek())) return false;
      while (is_value_char(cur.peek())) value.push_back(cur.next());
    }
    if (!cur.done() && cur.peek() != ' ') return false;
    if (!seen.insert(key).second) return false;
    cmd->params.emplace_back(std::move(key), std::move(value));
  }
}

// SIZE and BODY of MAIL, from the parameters.
bool check_mail_params(Command* cmd) {
  for (auto& [key, value] : cmd->params) {
    if (key == "SIZE") {
      std::uint64_t n = 0;
      if (!parse_size(value, &n)) return false;
      cmd->size = n;
    } else if (key == "BODY") {
      value = upper(value);
      if (value == "7BIT") {
        cmd->body = Body::SevenBit;
      } else if (value == "8BITMIME") {
        cmd->body = Body::EightBitMime;
      } else {
        return false;
      }
    }
  }
  return true;
}

bool only_spaces(std::string_view s) { return s.find_first_not_of(' ') == std::string_view::npos; }

struct VerbEntry {
  std::string_view name;
  Verb verb;
};

constexpr VerbEntry kVerbs[] = {
    {"LHLO", Verb::Lhlo}, {"MAIL", Verb::Mail}, {"RCPT", Verb::Rcpt}, {"DATA", Verb::Data},
    {"RSET", Verb::Rset}, {"NOOP", Verb::Noop}, {"QUIT", Verb::Quit}, {"VRFY", Verb::Vrfy},
};

// A strict RFC 5321 Dot-string: atoms separated by single dots.
bool is_dot_string(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!is_atext(c)) {
      return false;
    }
    prev = ch;
  }
  return true;
}

bool is_domain(std::string_view s) {
  Cursor cur(s);
  std::string ignored;
  return parse_domain(cur, &ignored) && cur.done();
}

bool has_line_breakers(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

}  // namespace

const char* verb_name(Verb v) {
  for (const VerbEntry& e : kVerbs) {
    if (e.verb == v) return e.name.data();
  }
  return "?";
}

const char* error_name(Error e) {
  switch (e) {
    case Error::None: return "no error";
    case Error::LineTooLong: return "line too long";
    case Error::BareLf: return "bare LF";
    case Error::BareCr: return "bare CR";
    case Error::Nul: return "NUL byte";
    case Error::UnknownCommand: return "unknown command";
    case Error::Syntax: return "syntax error in arguments";
  }
  return "unknown error";
}

int reply_code(Error e) { return e == Error::Syntax ? 501 : 500; }

Error parse_command_line(std::string_view line, Command* cmd) {
  *cmd = Command{};
  const std::string_view word = line.substr(0, line.find(' '));
  const VerbEntry* entry = nullptr;
  for (const VerbEntry& e : kVerbs) {
    if (iequals(word, e.name)) entry = &e;
  }
  if (entry == nullptr) return Error::UnknownCommand;
  cmd->verb = entry->verb;
  const std::string_view rest = line.substr(word.size());  // "" or starts with SP

  bool ok = false;
  switch (cmd->verb) {
    case Verb::Lhlo: {
      Cursor cur(rest);
      cur.skip_spaces();
      while (is_word_char(cur.peek())) cmd->arg.push_back(cur.next());
      cur.skip_spaces();
      ok = !cmd->arg.empty() && cur.done();
      break;
    }
    case Verb::Mail:
    case Verb::Rcpt: {
      const bool mail = cmd->verb == Verb::Mail;
      Cursor cur(rest);
      ok = cur.eat_ci(mail ? " FROM:" : " TO:");
      if (ok) {
        cur.skip_blanks();
        ok = parse_path(cur, mail ? PathKind::Reverse : PathKind::Forward, &cmd->address) &&
             parse_params(cur, cmd) && (!mail || check_mail_params(cmd));
      }
      break;
    }
    case Verb::Data:
    case Verb::Rset:
    case Verb::Quit:
      ok = only_spaces(rest);
      break;
    case Verb::Noop:
      if (!rest.empty()) cmd->arg.assign(rest.substr(1));
      ok = true;
      break;
    case Verb::Vrfy:
      if (!rest.empty()) cmd->arg.assign(rest.substr(1));
      ok = !only_spaces(cmd->arg);
      break;
  }
  if (!ok) {
    *cmd = Command{};
    return Error::Syntax;
  }
  return Error::None;
}

std::optional<Mailbox> split_mailbox(std::string_view address) {
  std::size_t at = std::string_view::npos;
  if (!address.empty() && address.back() == ']') {
    const std::size_t bracket = address.rfind('[');
    if (bracket != std::string_view::npos && bracket > 0 && address[bracket - 1] == '@') {
      at = bracket - 1;
    }
  } else {
    at = address.rfind('@');
  }
  if (at == std::string_view::npos) return std::nullopt;
  return Mailbox{address.substr(0, at), address.substr(at + 1)};
}

std::optional<std::string> format_path(std::string_view address) {
  if (address.empty()) return std::string("<>");
  const std::optional<Mailbox> mailbox = split_mailbox(address);
  if (!mailbox) {
    if (!iequals(address, "postmaster")) return std::nullopt;
    return "<" + std::string(address) + ">";
  }
  const std::string_view local = mailbox->local;
  const std::string_view domain = mailbox->domain;
  if (!is_domain(domain)) return std::nullopt;
  std::string out = "<";
  if (is_dot_string(local)) {
    out.append(local);
  } else {
    out.push_back('"');
    for (char ch : local) {
      if (!is_quotable(static_cast<unsigned char>(ch))) return std::nullopt;
      if (ch == '"' || ch == '\\') out.push_back('\\');
      out.push_back(ch);
    }
    out.push_back('"');
  }
  out.push_back('@');
  out.append(domain);
  out.push_back('>');
  return out;
}

std::optional<std::string> format_command(const Command& cmd) {
  if (has_line_breakers(cmd.arg)) return std::nullopt;
  std::string out = verb_name(cmd.verb);
  switch (cmd.verb) {
    case Verb::Lhlo:
      if (cmd.arg.empty()) return std::nullopt;
      for (char c : cmd.arg) {
        if (!is_word_char(static_cast<unsigned char>(c))) return std::nullopt;
      }
      out += " " + cmd.arg;
      break;
    case Verb::Mail:
    case Verb::Rcpt: {
      const bool mail = cmd.verb == Verb::Mail;
      // MAIL's path needs a domain or is <>; RCPT's is never <>.
      const bool bare = !split_mailbox(cmd.address);
      if (mail ? (bare && !cmd.address.empty()) : cmd.address.empty()) return std::nullopt;
      const std::optional<std::string> path = format_path(cmd.address);
      if (!path) return std::nullopt;
      out += mail ? " FROM:" : " TO:";
      out += *path;
      for (const auto& [key, value] : cmd.params) {
        if (key.empty() || !is_alnum(static_cast<unsigned char>(key[0]))) return std::nullopt;
        for (char c : key) {
          if (!is_keyword_char(static_cast<unsigned char>(c))) return std::nullopt;
        }
        out += " " + key;
        if (!value.empty()) {
          for (char c : value) {
            if (!is_value_char(static_cast<unsigned char>(c))) return std::nullopt;
          }
          out += "=" + value;
        }
      }
      break;
    }
    case Verb::Data:
    case Verb::Rset:
    case Verb::Quit:
      break;
    case Verb::Noop:
      if (!cmd.arg.empty()) out += " " + cmd.arg;
      break;
    case Verb::Vrfy:
      if (only_spaces(cmd.arg)) return std::nullopt;
      out += " " + cmd.arg;
      break;
  }
  out += "\r\n";
  return out;
}

CommandParser::CommandParser(Limits limits) : limits_(limits) {}

Command CommandParser::take_command() {
  Command out = std::move(cmd_);
  cmd_ = Command{};
  ready_ = false;
  return out;
}

Event CommandParser::feed(std::string_view in, std::size_t* consumed) {
  *consumed = 0;
  if (ready_) {  // the previous command was not taken: it is dropped now
    cmd_ = Command{};
    ready_ = false;
  }
  for (std::size_t i = 0; i < in.size();) {
    const Event ev = step(in[i++]);
    if (ev != Event::NeedMore) {
      *consumed = i;
      return ev;
    }
  }
  *consumed = in.size();
  return Event::NeedMore;
}

void CommandParser::start_skip(Error e, std::size_t len_so_far) {
  error_ = e;
  skip_len_ = len_so_far;
  if (skip_len_ > limits_.max_line_length) error_ = Error::LineTooLong;
  line_.clear();
  state_ = State::Skip;
}

Event CommandParser::end_of_bad_line() {
  state_ = State::Line;
  skip_len_ = 0;
  line_.clear();
  cmd_ = Command{};
  return Event::Error;
}

Event CommandParser::step(char c) {
  switch (state_) {
    case State::Line:
      if (c == '\r') {
        state_ = State::Cr;
        return Event::NeedMore;
      }
      if (c == '\n') {
        start_skip(Error::BareLf, line_.size());
        return end_of_bad_line();
      }
      if (c == '\0') {
        start_skip(Error::Nul, line_.size() + 1);
        return Event::NeedMore;
      }
      if (line_.size() >= limits_.max_line_length) {
        start_skip(Error::LineTooLong, line_.size() + 1);
        return Event::NeedMore;
      }
      try {
        line_.push_back(c);
      } catch (const std::bad_alloc&) {  // only with an enormous configured limit
        start_skip(Error::LineTooLong, line_.size() + 1);
      }
      return Event::NeedMore;

    case State::Cr:
      if (c == '\n') {
        error_ = parse_command_line(line_, &cmd_);
        line_.clear();
        state_ = State::Line;
        if (error_ != Error::None) return Event::Error;
        ready_ = true;
        return Event::Command;
      }
      if (c == '\r') {  // the first CR was data; this one may still start the CRLF
        start_skip(Error::BareCr, line_.size() + 1);
        state_ = State::SkipCr;
        return Event::NeedMore;
      }
      start_skip(Error::BareCr, line_.size() + 2);
      return Event::NeedMore;

    case State::Skip:
      if (c == '\n') return end_of_bad_line();
      if (c == '\r') {
        state_ = State::SkipCr;
        return Event::NeedMore;
      }
      if (++skip_len_ > limits_.max_line_length) error_ = Error::LineTooLong;
      return Event::NeedMore;

    case State::SkipCr:
      if (c == '\n') return end_of_bad_line();
      if (c == '\r') {
        ++skip_len_;  // the CR before was data
      } else {
        skip_len_ += 2;
        state_ = State::Skip;
      }
      if (skip_len_ > limits_.max_line_length) error_ = Error::LineTooLong;
      return Event::NeedMore;
  }
  return Event::NeedMore;
}

}  // namespace sy::lmtp
