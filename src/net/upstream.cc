// Fail-over connect (see upstream.h).
#include "net/upstream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

namespace sy {
namespace {

// One connect attempt bounded by `timeout`: the watchdog closes the socket on expiry.
asio::awaitable<std::error_code> connect_one(Socket& sock,
                                             const asio::generic::stream_protocol::endpoint& ep,
                                             Millis timeout) {
  // The flags outlive this frame: a watchdog handler already queued when the connect
  // completes must not touch the socket.
  struct Flags {
    bool done = false;
    bool expired = false;
  };
  auto flags = std::make_shared<Flags>();
  asio::steady_timer watchdog(sock.get_executor());
  watchdog.expires_after(timeout);
  watchdog.async_wait([&sock, flags](const std::error_code& ec) {
    if (ec || flags->done) return;
    flags->expired = true;
    std::error_code ignored;
    sock.close(ignored);
  });
  std::error_code ec;
  co_await sock.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
  flags->done = true;
  watchdog.cancel();
  if (flags->expired) ec = asio::error::timed_out;
  if (ec) {
    std::error_code ignored;
    sock.close(ignored);
  }
  co_return ec;
}

}  // namespace

asio::awaitable<bool> connect_target(Socket& sock, const Target& t, std::string* server,
                                     std::string* host_used, std::string* why) {
  why->clear();
  if (t.port.rfind("unix:", 0) == 0) {
    asio::local::stream_protocol::endpoint lep(t.port.substr(5));
    std::error_code ec = co_await connect_one(sock, lep, t.connect_timeout);
    *server = t.port;
    *host_used = t.hosts.empty() ? std::string("localhost") : t.hosts.front();
    if (!ec) co_return true;
    *why = t.port + ": " + ec.message();
    co_return false;
  }
  asio::ip::tcp::resolver resolver(sock.get_executor());
  for (std::size_t i = 0; i < t.hosts.size(); ++i) {
    const std::string& host = t.hosts[i];
    const std::string& port = port_of(t, i);
    std::vector<asio::ip::tcp::endpoint> endpoints;
    std::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    unsigned long numeric_port = std::strtoul(port.c_str(), nullptr, 10);
    if (!ec && numeric_port > 0 && numeric_port < 65536) {
      endpoints.emplace_back(addr, static_cast<unsigned short>(numeric_port));
    } else {
      auto results = co_await resolver.async_resolve(host, port,
                                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        *why += (why->empty() ? "" : "; ") + host_port(host, port) + ": " + ec.message();
        continue;
      }
      for (const auto& r : results) endpoints.push_back(r.endpoint());
    }
    for (const auto& ep : endpoints) {
      ec = co_await connect_one(sock, asio::generic::stream_protocol::endpoint(ep),
                                t.connect_timeout);
      if (!ec) {
        int one = 1;
        ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        *server = host_port(ep.address().to_string(), std::to_string(ep.port()));
        *host_used = host;
        co_return true;
      }
      *why += (why->empty() ? "" : "; ") +
              host_port(ep.address().to_string(), std::to_string(ep.port())) + ": " +
              ec.message();
    }
  }
  co_return false;
}

}  // namespace sy
