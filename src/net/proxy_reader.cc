// PROXY header reader (see proxy_reader.h).
#include "net/proxy_reader.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace sy {

// The parser is resumable and never claims a byte past the header, so each round peeks
// at what has arrived, feeds it, and takes off the socket exactly the bytes the parser
// used: all of them while the header is incomplete, its last ones when it completes.
// Every round therefore takes at least one byte or sees the peer's close, and the only
// wait is for readability: no polling, and nothing but the socket to cancel.
asio::awaitable<std::optional<ProxyHeader>> read_proxy_header(Socket& sock, std::string* why) {
  const int fd = sock.native_handle();
  char buf[kProxyV2FixedLength + kProxyV2DefaultMaxBody];
  ProxyParser parser;
  std::size_t taken = 0;
  for (;;) {
    std::error_code ec;
    co_await sock.async_wait(Socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      *why = "no PROXY header: " + ec.message();
      co_return std::nullopt;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
      *why = taken == 0 ? "closed before the PROXY header"
                        : "closed during the PROXY header (after " + std::to_string(taken) +
                              " bytes)";
      co_return std::nullopt;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      *why = std::string("PROXY header: ") + std::strerror(errno);
      co_return std::nullopt;
    }
    ProxyResult r = parser.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    if (r.status == ProxyResult::Error) {
      *why = std::string("bad PROXY header: ") + proxy_error_name(r.error);
      co_return std::nullopt;
    }
    if (r.consumed == 0) {  // cannot happen (see above); never spin on readable bytes
      *why = "PROXY header: parser took no bytes";
      co_return std::nullopt;
    }
    if (::recv(fd, buf, r.consumed, MSG_DONTWAIT) != static_cast<ssize_t>(r.consumed)) {
      *why = "PROXY header: short read";
      co_return std::nullopt;
    }
    taken += r.consumed;
    if (r.status == ProxyResult::Done) co_return parser.header();
  }
}

Endpoint endpoint_of(const ProxyEndpoint& e) {
  if (e.addr_len == 0) return {};
  // A Unix path names a socket on the proxy's host, not where the client is: no address,
  // and not loopback (only an IP loopback address in the header is).
  if (e.addr.ss_family == AF_UNIX) return {};
  return endpoint_of(reinterpret_cast<const sockaddr*>(&e.addr));
}

}  // namespace sy
