// The pure parts of the LDAP map module (see ldap_options.h).
#include "ldap_options.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "../common/support.h"

namespace sy::ldap_map {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 4516 %XX decoding; false on a '%' not followed by two hex digits.
bool percent_decode(std::string_view in, std::string* out) {
  out->clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits at any of `separators`, keeping empty pieces.
std::vector<std::string_view> split(std::string_view s, std::string_view separators) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    std::size_t at = s.find_first_of(separators, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos
                                                               : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

bool parse_number(std::string_view s, int min, int max, int* out) {
  if (s.empty() || s.size() > 6) return false;
  int value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value < min || value > max)
    return false;
  *out = value;
  return true;
}

bool valid_port(std::string_view s) {
  int port;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         parse_number(s, 1, 65535, &port);
}

// host, host:port, [v6], [v6]:port.
bool valid_host(std::string_view h) {
  std::string_view name = h, port;
  if (h.starts_with('[')) {
    auto close = h.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    std::string_view inside = h.substr(1, close - 1);
    if (!std::all_of(inside.begin(), inside.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        }))
      return false;
    std::string_view after = h.substr(close + 1);
    if (after.empty()) return true;
    return after.front() == ':' && valid_port(after.substr(1));
  }
  auto colon = h.find(':');
  if (colon != std::string_view::npos) {
    name = h.substr(0, colon);
    port = h.substr(colon + 1);
    if (!valid_port(port)) return false;
  }
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

bool valid_attribute(std::string_view a) {
  return !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == ';';
  });
}

bool parse_scope(std::string_view text, Scope* out) {
  std::string s = lower(text);
  if (s.empty() || s == "base") *out = Scope::Base;
  else if (s == "one" || s == "onelevel") *out = Scope::OneLevel;
  else if (s == "sub" || s == "subtree") *out = Scope::Subtree;
  else if (s == "children" || s == "subord" || s == "subordinate") *out = Scope::Children;
  else return false;
  return true;
}

// The filter: %s placeholders split it, %XX escapes are decoded.
bool parse_filter(std::string_view text, std::vector<std::string>* parts, std::string* error) {
  parts->assign(1, std::string());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      parts->back().push_back(text[i]);
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == 's') {
      parts->emplace_back();
      ++i;
      continue;
    }
    int hi = i + 2 < text.size() ? hex_value(text[i + 1]) : -1;
    int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      *error = "filter: '%' must start %s (the key) or a %XX escape";
      return false;
    }
    parts->back().push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  if (parts->size() == 1 && parts->front().empty()) parts->front() = "(objectClass=*)";
  return true;
}

bool parse_extensions(std::string_view text, LdapOptions* out, std::string* error) {
  if (text.empty()) return true;
  bool seen_bindname = false, seen_bindpw = false, seen_starttls = false, seen_timeout = false,
       seen_cacert = false;
  std::string previous;
  for (std::string_view ext : split(text, ",")) {
    if (ext.starts_with('!')) ext.remove_prefix(1);  // critical: we know them all anyway
    auto eq = ext.find('=');
    std::string name = lower(ext.substr(0, eq));
    bool has_value = eq != std::string_view::npos;
    std::string_view raw = has_value ? ext.substr(eq + 1) : std::string_view();
    std::string value;
    if (name.empty()) {
      *error = "empty URL extension (write ',' inside a value as %2C)";
      return false;
    }
    if (!percent_decode(raw, &value)) {
      *error = "extension " + name + ": bad %-escape";
      return false;
    }
    auto once = [&](bool* seen) {
      if (*seen) *error = "extension " + name + " given twice";
      bool first = !*seen;
      *seen = true;
      return first;
    };
    if (name == "bindname") {
      if (!once(&seen_bindname)) return false;
      if (value.empty()) {
        *error = "bindname= is empty";
        return false;
      }
      out->bind_dn = value;
    } else if (name == "x-bindpw") {
      if (!once(&seen_bindpw)) return false;
      out->bind_password = value;
    } else if (name == "x-starttls") {
      if (!once(&seen_starttls)) return false;
      if (!value.empty()) {
        *error = "x-starttls takes no value";
        return false;
      }
      out->starttls = true;
    } else if (name == "x-timeout") {
      if (!once(&seen_timeout)) return false;
      if (!parse_number(value, 1, 600, &out->timeout_seconds)) {
        *error = "x-timeout=" + value + ": expected whole seconds, 1 to 600";
        return false;
      }
    } else if (name == "x-cacert") {
      if (!once(&seen_cacert)) return false;
      if (value.empty()) {
        *error = "x-cacert= is empty";
        return false;
      }
      out->ca_file = value;
    } else if (previous == "x-bindpw") {
      // Most likely the rest of a password holding a ',': not a word of it in the log.
      *error = "unknown URL extension after x-bindpw (write ',' inside a value as %2C)";
      return false;
    } else {
      // Refused even when not critical: a mistyped x-bindpw must not mean anonymous.
      *error = "unknown URL extension \"" + name +
               "\" (known: bindname, x-bindpw, x-starttls, x-timeout, x-cacert; "
               "write ',' inside a value as %2C)";
      return false;
    }
    previous = name;
  }
  if (out->bind_password && out->bind_dn.empty()) {
    *error = "x-bindpw needs bindname";
    return false;
  }
  return true;
}

}  // namespace

std::optional<LdapOptions> parse_options(const char* text, std::string* error) {
  std::string_view rest = (text == nullptr || *text == '\0') ? kDefaultUrl : text;
  LdapOptions out;
  auto fail = [&](std::string why) {
    *error = std::move(why);
    return std::nullopt;
  };

  // [ldap_version:]
  auto colon = rest.find(':');
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (colon != std::string_view::npos && colon > 0 &&
      std::all_of(rest.begin(), rest.begin() + colon, digit)) {
    std::string_view version = rest.substr(0, colon);
    if (version != "2" && version != "3")
      return fail("LDAP version " + std::string(version) + ": expected 2 or 3");
    out.version = version[0] - '0';
    rest.remove_prefix(colon + 1);
  }

  auto sep = rest.find("://");
  std::string scheme = lower(rest.substr(0, sep));
  if (sep == std::string_view::npos || (scheme != "ldap" && scheme != "ldaps" && scheme != "ldapi"))
    return fail("expected [2:|3:]ldap://, ldaps:// or ldapi:// URL");
  out.scheme = scheme;
  rest.remove_prefix(sep + 3);

  auto slash = rest.find('/');
  std::string_view host_part = rest.substr(0, slash);
  if (host_part.find('?') != std::string_view::npos)
    return fail("URL: '?' before the '/' that starts the base DN");
  rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  for (std::string_view h : split(host_part, ", ")) {
    if (h.empty()) continue;
    if (out.scheme == "ldapi") {
      std::string decoded;
      if (!percent_decode(h, &decoded) || decoded.empty() || decoded.front() != '/')
        return fail("ldapi host \"" + std::string(h) + "\": expected a %2F-encoded socket path");
    } else if (!valid_host(h)) {
      return fail("host \"" + std::string(h) + "\": expected host[:port] or [v6-address][:port]");
    }
    out.hosts.emplace_back(h);
  }
  if (out.hosts.empty() && out.scheme != "ldapi") out.hosts.emplace_back("localhost");

  auto fields = split(rest, "?");
  if (fields.size() > 5) return fail("URL: too many '?' (a '?' inside a field is %3F)");
  fields.resize(5);

  if (!percent_decode(fields[0], &out.base)) return fail("base DN: bad %-escape");

  std::string attrs;
  if (!percent_decode(fields[1], &attrs)) return fail("attributes: bad %-escape");
  if (attrs.empty()) attrs = "username,mailhost,port";
  for (std::string_view a : split(attrs, ",")) {
    if (!valid_attribute(a))
      return fail("attributes \"" + attrs + "\": a name is empty or invalid");
    out.attributes.emplace_back(a);
  }
  if (out.attributes.size() > 3)
    return fail("attributes \"" + attrs + "\": at most three (user, host, port)");

  std::string scope;
  if (!percent_decode(fields[2], &scope) || !parse_scope(scope, &out.scope))
    return fail("scope \"" + std::string(fields[2]) + "\": expected base, one, sub or children");

  if (!parse_filter(fields[3], &out.filter_parts, error)) return std::nullopt;
  if (!parse_extensions(fields[4], &out, error)) return std::nullopt;

  if (out.starttls && out.scheme == "ldaps") return fail("x-starttls with ldaps://: pick one");
  if (out.starttls && out.version == 2) return fail("x-starttls needs LDAP version 3");
  if (!out.ca_file.empty() && !out.tls())
    return fail("x-cacert needs ldaps:// or x-starttls");
  return out;
}

std::string uri_list(const LdapOptions& options) {
  std::string out;
  if (options.hosts.empty()) return options.scheme + "://";
  for (const auto& h : options.hosts) {
    if (!out.empty()) out += ' ';
    out += options.scheme + "://" + h;
  }
  return out;
}

std::string escape_filter_value(std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b >= 0x7f || c == '*' || c == '(' || c == ')' || c == '\\') {
      out += '\\';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    } else {
      out += c;
    }
  }
  return out;
}

std::string expand_filter(const LdapOptions& options, std::string_view key) {
  std::string escaped = escape_filter_value(key);
  std::string out = options.filter_parts.empty() ? std::string() : options.filter_parts.front();
  for (std::size_t i = 1; i < options.filter_parts.size(); ++i)
    out += escaped + options.filter_parts[i];
  return out;
}

std::optional<std::string> make_answer(std::string_view user, std::string_view host,
                                       std::string_view port) {
  user = sy::maps::trim(user);
  host = sy::maps::trim(host);
  if (host.empty()) {
    if (user.empty()) return std::nullopt;
    return std::string(user);
  }
  return sy::maps::format_answer(user, host, sy::maps::trim(port));
}

}  // namespace sy::ldap_map
