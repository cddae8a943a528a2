// The metrics listener's request (see request.h).
#include "metrics/request.h"

#include <algorithm>

namespace sy::metrics {
namespace {

constexpr HttpAnswer kBad{400, "Bad Request"};

bool is_token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' ||
         c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~';
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// The next line (without its CRLF or LF) from `rest`, which moves past it.
std::string_view next_line(std::string_view& rest) {
  std::size_t eol = rest.find('\n');
  std::string_view line = rest.substr(0, eol);
  rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

}  // namespace

HttpAnswer judge_request(std::string_view request) {
  // The end of the headers: an empty line. Leading empty lines are tolerated (RFC 9112 2.2).
  std::size_t start = 0;
  while (start < request.size() && (request[start] == '\r' || request[start] == '\n')) ++start;
  std::string_view text = request.substr(start);
  const std::size_t crlf = text.find("\r\n\r\n");
  const std::size_t lf = text.find("\n\n");
  const std::size_t end = std::min(crlf, lf);  // npos when neither
  if (end == std::string_view::npos) return request.size() >= kMaxRequest ? kBad : HttpAnswer{};
  if (start + end + (end == crlf ? 4 : 2) > kMaxRequest) return kBad;
  std::string_view rest = text.substr(0, end + 1);

  // Request line: METHOD SP target SP HTTP/1.x
  std::string_view line = next_line(rest);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return kBad;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || target.empty() || target[0] != '/') return kBad;
  for (char c : method)
    if (!is_token_char(c)) return kBad;
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return kBad;
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return kBad;

  // Headers: "name: value"; HTTP/1.1 needs Host (RFC 9112 3.2).
  bool host = false;
  while (!rest.empty()) {
    std::string_view h = next_line(rest);
    if (h.empty()) break;
    const std::size_t colon = h.find(':');
    if (colon == 0 || colon == std::string_view::npos) return kBad;
    for (char c : h.substr(0, colon))
      if (!is_token_char(c)) return kBad;
    if (iequals(h.substr(0, colon), "host")) host = true;
  }
  if (version == "HTTP/1.1" && !host) return kBad;

  const bool head = method == "HEAD";
  if (method != "GET" && !head) return HttpAnswer{405, "Method Not Allowed"};
  const std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return HttpAnswer{404, "Not Found", false, head};
  return HttpAnswer{200, "OK", true, head};
}

std::string response_head(const HttpAnswer& a, const char* content_type, std::size_t length) {
  std::string out = "HTTP/1.1 " + std::to_string(a.status) + " " + a.reason + "\r\n";
  out += std::string("Content-Type: ") + content_type + "\r\n";
  out += "Content-Length: " + std::to_string(length) + "\r\n";
  if (a.status == 405) out += "Allow: GET, HEAD\r\n";
  out += "Connection: close\r\n\r\n";
  return out;
}

}  // namespace sy::metrics
