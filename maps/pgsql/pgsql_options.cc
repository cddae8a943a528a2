// The pgsql map module's options (see pgsql_options.h).
#include "pgsql_options.h"

#include <algorithm>
#include <climits>
#include <cstdint>

#include "../common/support.h"

namespace sy::pgsql {
namespace {

constexpr std::string_view kBlanks = " \t\r\n";

bool starts_with_scheme(std::string_view text) {
  return text.starts_with("postgresql://") || text.starts_with("postgres://");
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "N", "Nms", "Ns" or "Nmin" as milliseconds; nullopt when malformed or too large.
std::optional<int> parse_duration_ms(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 10) return std::nullopt;
  std::int64_t n = std::stoll(std::string(text.substr(0, digits)));
  std::string_view unit = text.substr(digits);
  std::int64_t scale;
  if (unit.empty() || unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1000;
  else if (unit == "min")
    scale = 60'000;
  else
    return std::nullopt;
  if (n > INT_MAX / scale) return std::nullopt;
  return static_cast<int>(n * scale);
}

std::optional<Options> parse_fields(std::string_view text, std::string* error) {
  std::vector<std::string_view> fields;
  for (;;) {
    auto colon = text.find(':');
    fields.push_back(text.substr(0, colon));
    if (colon == std::string_view::npos) break;
    text.remove_prefix(colon + 1);
  }
  if (fields.size() > 9) {
    *error = std::to_string(fields.size()) +
             " ':'-separated fields, at most 9 expected "
             "(dbhost:dbport:dbname:dbtable:dbuser:dbpwd:dbsrvcol:dbusercol:dbportcol); "
             "a ':' in the password or host needs the postgresql:// URI form";
    return std::nullopt;
  }
  Options out;
  std::string* targets[] = {&out.host,          &out.port,        &out.dbname,
                            &out.table,         &out.user,        &out.password,
                            &out.server_column, &out.user_column, &out.port_column};
  for (std::size_t i = 0; i < fields.size(); ++i)
    if (!fields[i].empty()) *targets[i] = std::string(fields[i]);
  if (!all_digits(out.port) || out.port.size() > 5 || std::stoi(out.port) < 1 ||
      std::stoi(out.port) > 65535) {
    *error = "dbport \"" + out.port + "\" is not a port number (1-65535)";
    return std::nullopt;
  }
  // An empty part ("mail." or "a..b") would be an empty quoted identifier.
  std::string_view table = out.table;
  for (;;) {
    auto dot = table.find('.');
    if (dot == 0 || table.empty()) {
      *error = "dbtable \"" + out.table + "\" has an empty part";
      return std::nullopt;
    }
    if (dot == std::string_view::npos) break;
    table.remove_prefix(dot + 1);
  }
  return out;
}

std::optional<Options> parse_uri_form(std::string_view text, std::string* error) {
  Options out;
  out.form = Options::Form::Uri;
  auto semi = text.find(';');
  out.uri = std::string(text.substr(0, semi));
  std::string_view rest =
      semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
  while (!rest.empty()) {
    std::string_view part;
    if (rest.starts_with("query=")) {
      part = rest;  // the query runs to the end, ';' included
      rest = {};
    } else {
      semi = rest.find(';');
      part = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    }
    if (part.find_first_not_of(kBlanks) == std::string_view::npos) continue;
    if (part.starts_with("query=")) {
      out.query = std::string(part.substr(6));
      if (out.query.find_first_not_of(" \t\r\n;") == std::string::npos) {
        *error = "query= is empty";
        return std::nullopt;
      }
    } else if (part.starts_with("statement_timeout=")) {
      auto ms = parse_duration_ms(part.substr(18));
      if (!ms) {
        *error =
            "statement_timeout=" + std::string(part.substr(18)) + ": expected N, Nms, Ns or Nmin";
        return std::nullopt;
      }
      out.statement_timeout_ms = *ms;
    } else {
      auto eq = part.find('=');
      *error = "unknown setting \"" + std::string(part.substr(0, eq)) +
               "\" after the URI (expected statement_timeout= or query=)";
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace

std::optional<Options> parse_options(const char* text, std::string* error) {
  if (text == nullptr) return Options{};
  std::string_view s(text);
  if (starts_with_scheme(s)) return parse_uri_form(s, error);
  return parse_fields(s, error);
}

std::string quote_identifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string quote_table(std::string_view name) {
  std::string out;
  for (;;) {
    auto dot = name.find('.');
    out += quote_identifier(name.substr(0, dot));
    if (dot == std::string_view::npos) return out;
    out += '.';
    name.remove_prefix(dot + 1);
  }
}

std::string fold_identifier(std::string_view name) {
  std::string out(name);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string table_query(const Options& o, bool folded) {
  auto id = [folded](const std::string& s) { return folded ? fold_identifier(s) : s; };
  return "SELECT " + quote_identifier(id(o.server_column)) + ", " +
         quote_identifier(id(o.port_column)) + " FROM " + quote_table(id(o.table)) + " WHERE " +
         quote_identifier(id(o.user_column)) + " = $1 LIMIT 1";
}

std::string lookup_query(const Options& o, bool folded) {
  return o.query.empty() ? table_query(o, folded) : o.query;
}

ConnectParams connect_params(const Options& o) {
  ConnectParams p;
  auto add = [&p](const char* k, std::string v) { p.keywords.emplace_back(k, std::move(v)); };
  add("connect_timeout", std::to_string(kDefaultConnectTimeoutSeconds));
  add("fallback_application_name", "switchyard");
  if (o.form == Options::Form::Uri) {
    add("dbname", o.uri);  // expanded: its settings override the ones above
    p.expand_dbname = true;
  } else {
    add("host", o.host);
    add("port", o.port);
    add("dbname", o.dbname);  // taken literally: expand_dbname is off
    add("user", o.user);
    add("password", o.password);
  }
  return p;
}

namespace {

// A URI's parts as libpq reads them: the user-info ends at the first '@' before any '/',
// the query string starts at the first '?'.
struct UriParts {
  std::string_view scheme;    // "postgresql://"
  std::string_view user;      // "" when none
  std::string_view password;  // raw; "" when none
  std::string_view hosts;     // host[:port][,host[:port]...] and "/dbname"
  std::string_view query;     // after the '?'
};

UriParts split_uri(std::string_view uri) {
  UriParts p;
  auto scheme_end = uri.find("://");
  if (scheme_end == std::string_view::npos) return p;
  p.scheme = uri.substr(0, scheme_end + 3);
  std::string_view rest = uri.substr(scheme_end + 3);
  auto question = rest.find('?');
  if (question != std::string_view::npos) {
    p.query = rest.substr(question + 1);
    rest = rest.substr(0, question);
  }
  auto at = rest.substr(0, rest.find('/')).find('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    auto colon = userinfo.find(':');
    p.user = userinfo.substr(0, colon);
    if (colon != std::string_view::npos) p.password = userinfo.substr(colon + 1);
    rest.remove_prefix(at + 1);
  }
  p.hosts = rest;
  return p;
}

std::string percent_decode(std::string_view raw) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '%' && i + 2 < raw.size() && hex(raw[i + 1]) >= 0 && hex(raw[i + 2]) >= 0) {
      out += static_cast<char>(hex(raw[i + 1]) * 16 + hex(raw[i + 2]));
      i += 2;
    } else {
      out += raw[i];
    }
  }
  return out;
}

}  // namespace

std::string describe(const Options& o) {
  if (o.form == Options::Form::Fields) return o.user + "@" + o.host + ":" + o.port + "/" + o.dbname;
  // scheme://[user@]hosts/dbname: neither the password nor the query string, which may
  // hold password=.
  UriParts p = split_uri(o.uri);
  return std::string(p.scheme) + (p.user.empty() ? "" : std::string(p.user) + "@") +
         std::string(p.hosts);
}

std::vector<std::string> uri_secrets(std::string_view uri) {
  std::vector<std::string> out;
  auto add = [&out](std::string_view raw) {
    if (raw.empty()) return;
    out.emplace_back(raw);
    std::string decoded = percent_decode(raw);
    if (decoded != raw) out.push_back(decoded);
  };
  UriParts p = split_uri(uri);
  add(p.password);
  for (std::string_view q = p.query; !q.empty();) {
    auto amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    if (pair.starts_with("password=")) add(pair.substr(9));
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
  }
  return out;
}

std::string scrub(std::string message, const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    for (auto at = message.find(secret); at != std::string::npos; at = message.find(secret, at + 4))
      message.replace(at, secret.size(), "****");
  }
  return message;
}

std::string first_word(std::string_view value) {
  auto start = value.find_first_not_of(kBlanks);
  if (start == std::string_view::npos) return {};
  value.remove_prefix(start);
  return std::string(value.substr(0, value.find_first_of(kBlanks)));
}

std::string trim(std::string_view value) { return std::string(sy::maps::trim(value)); }

std::string make_answer(const std::string& user, const std::string& server,
                        const std::string& port) {
  return sy::maps::format_answer(user, server, port);
}

}  // namespace sy::pgsql
