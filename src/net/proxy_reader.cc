// PROXY header reader (see proxy_reader.h).
#include "net/proxy_reader.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace sy {

asio::awaitable<std::optional<ProxyHeader>> read_proxy_header(Socket& sock, std::string* why) {
  const int fd = sock.native_handle();
  char buf[kProxyV2FixedLength + kProxyV2DefaultMaxBody];
  asio::steady_timer pause(sock.get_executor());
  std::size_t seen = 0;
  for (;;) {
    std::error_code ec;
    co_await sock.async_wait(Socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      *why = "no PROXY header: " + ec.message();
      co_return std::nullopt;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
      *why = "closed before the PROXY header";
      co_return std::nullopt;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      *why = std::string("PROXY header: ") + std::strerror(errno);
      co_return std::nullopt;
    }
    ProxyParser parser;
    ProxyResult r = parser.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    if (r.status == ProxyResult::Done) {
      // Take exactly the header; the rest stays queued for the session.
      if (::recv(fd, buf, r.consumed, MSG_DONTWAIT) != static_cast<ssize_t>(r.consumed)) {
        *why = "PROXY header: short read";
        co_return std::nullopt;
      }
      co_return parser.header();
    }
    if (r.status == ProxyResult::Error) {
      *why = std::string("bad PROXY header: ") + proxy_error_name(r.error);
      co_return std::nullopt;
    }
    if (static_cast<std::size_t>(n) >= sizeof buf) {
      *why = "PROXY header too long";
      co_return std::nullopt;
    }
    // Only part of the header has arrived (rare: proxies send it in one segment). The
    // peeked bytes keep the socket readable, so wait a moment for more instead.
    if (static_cast<std::size_t>(n) == seen) {
      pause.expires_after(std::chrono::milliseconds(5));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    seen = static_cast<std::size_t>(n);
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
