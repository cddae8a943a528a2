// The one HTTP request the metrics listener reads: a request line and headers (HTTP/1.0
// or 1.1, no body), judged as a whole. Pure, for tests; the socket side is metrics/http.cc.
#ifndef SWITCHYARD_METRICS_REQUEST_H
#define SWITCHYARD_METRICS_REQUEST_H

#include <cstddef>
#include <string>
#include <string_view>

namespace sy::metrics {

// Longest request accepted (request line and headers).
constexpr std::size_t kMaxRequest = 8192;

struct HttpAnswer {
  int status = 0;  // 0: need more bytes
  const char* reason = "";
  bool body = false;  // the metrics themselves follow (GET /metrics)
  bool head = false;  // HEAD: headers only
};

// What to answer `request` (bytes read so far): 200 for GET or HEAD /metrics (a query
// string is ignored), 404 for any other path, 405 for other methods, 400 for anything that
// is not an HTTP/1.x request or is longer than kMaxRequest; status 0 while the headers
// have not ended yet.
HttpAnswer judge_request(std::string_view request);

// The status line and headers of a response with `length` bytes of body.
std::string response_head(const HttpAnswer& a, const char* content_type, std::size_t length);

}  // namespace sy::metrics

#endif
