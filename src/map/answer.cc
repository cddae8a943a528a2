// Parsing and formatting of a map's answer, Perdition's "[user<delim>]host[:port]".
// Contract in answer.h; the edge cases this file decides:
//  - trailing NUL bytes are dropped first (Perdition's makegdbm stores values with their
//    terminator, and Perdition itself read values as C strings); any other control byte
//    (NUL, CR, LF, TAB, DEL, ...) left after trimming makes the value malformed;
//  - surrounding whitespace (space, TAB, CR, LF, VT, FF) is trimmed;
//  - the port is split off at the last ':' first, then user and host at the last delimiter;
//  - an unbracketed host may not contain ':' (so plain "::1" or "2001:db8::1" without
//    brackets is malformed: the rule would make "1" the port of the host "::" / "2001:db8:");
//  - brackets quote any host ("[::1]", "[fe80::1%eth0]", "[192.0.2.1]"); they are removed;
//    text before '[' must be empty or end with the delimiter ("user@[::1]:143");
//  - an empty user ("@host") means "no user"; an empty delimiter disables the user split;
//  - format_map_answer brackets an IPv6 host, and any host whose plain form would parse
//    differently, so parse(format(a)) == a for every answer parse_map_answer returns;
//  - a port is 1..65535 in digits (leading zeros allowed) or a service name of letters,
//    digits, '-' and '_' with at least one letter.
#include "map/answer.h"

#include <cstddef>

namespace sy {
namespace {

constexpr std::string_view kSpace = " \t\r\n\v\f";

bool is_control(char c) {
  auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.back() == '\0') s.remove_suffix(1);
  auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  auto last = s.find_last_not_of(kSpace);
  return s.substr(first, last - first + 1);
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool valid_port(std::string_view port) {
  if (port.empty()) return false;
  bool digits_only = true;
  for (char c : port) {
    if (is_digit(c)) continue;
    if (!is_alpha(c) && c != '-' && c != '_') return false;
    digits_only = false;
  }
  if (!digits_only) {
    for (char c : port)
      if (is_alpha(c)) return true;
    return false;  // "-", "1-2": neither a number nor a name
  }
  unsigned long value = 0;
  for (char c : port) {
    value = value * 10 + static_cast<unsigned long>(c - '0');
    if (value > 65535) return false;
  }
  return value != 0;
}

// A host as written between brackets: anything printable without spaces or brackets.
bool valid_bracketed_host(std::string_view host) {
  if (host.empty()) return false;
  for (char c : host)
    if (c == ' ' || c == '[' || c == ']') return false;
  return true;
}

// A host without brackets: as above, and no ':' (the port separator).
bool valid_plain_host(std::string_view host) {
  return valid_bracketed_host(host) && host.find(':') == std::string_view::npos;
}

}  // namespace

std::optional<MapAnswer> parse_map_answer(std::string_view value, std::string_view delimiter) {
  std::string_view s = trim(value);
  if (s.empty()) return std::nullopt;
  for (char c : s)
    if (is_control(c)) return std::nullopt;

  MapAnswer out;
  std::string_view rest = s;  // "[user<delim>]host", the port cut off
  if (s.back() != ']') {
    auto colon = s.rfind(':');
    if (colon != std::string_view::npos) {
      std::string_view port = s.substr(colon + 1);
      if (!valid_port(port)) return std::nullopt;
      out.port = port;
      rest = s.substr(0, colon);
    }
  }

  std::string_view user, host;
  if (!rest.empty() && rest.back() == ']') {
    auto open = rest.rfind('[');
    if (open == std::string_view::npos) return std::nullopt;
    host = rest.substr(open + 1, rest.size() - open - 2);
    if (!valid_bracketed_host(host)) return std::nullopt;
    std::string_view prefix = rest.substr(0, open);
    if (!prefix.empty()) {
      if (delimiter.empty() || !prefix.ends_with(delimiter)) return std::nullopt;
      user = prefix.substr(0, prefix.size() - delimiter.size());
    }
  } else {
    auto at = delimiter.empty() ? std::string_view::npos : rest.rfind(delimiter);
    if (at == std::string_view::npos) {
      host = rest;
    } else {
      user = rest.substr(0, at);
      host = rest.substr(at + delimiter.size());
    }
    if (!valid_plain_host(host)) return std::nullopt;
  }
  out.user = user;
  out.host = host;
  return out;
}

std::string format_map_answer(const MapAnswer& a, std::string_view delimiter) {
  auto render = [&](bool brackets) {
    std::string out;
    if (!a.user.empty()) {
      out += a.user;
      out += delimiter;
    }
    if (brackets) out += '[';
    out += a.host;
    if (brackets) out += ']';
    if (!a.port.empty()) {
      out += ':';
      out += a.port;
    }
    return out;
  };
  // Brackets for an IPv6 host, and for any host the plain form would not give back
  // (a host holding the delimiter, or a delimiter that is itself ':').
  if (a.host.find(':') != std::string::npos) return render(true);
  std::string plain = render(false);
  if (parse_map_answer(plain, delimiter) == a) return plain;
  std::string bracketed = render(true);
  return parse_map_answer(bracketed, delimiter) == a ? bracketed : plain;
}

}  // namespace sy
