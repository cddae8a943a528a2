// Fail-over connect (see upstream.h).
#include "backend/upstream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "log/log.h"
#include "metrics/metrics.h"

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

// Connects to one configured host (all its addresses, in order).
asio::awaitable<bool> connect_host(Socket& sock, asio::ip::tcp::resolver& resolver,
                                   const std::string& host, const std::string& port,
                                   Millis timeout, std::string* server, std::string* why) {
  std::vector<asio::ip::tcp::endpoint> endpoints;
  std::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  unsigned long numeric_port = std::strtoul(port.c_str(), nullptr, 10);
  if (!ec && numeric_port > 0 && numeric_port < 65536) {
    endpoints.emplace_back(addr, static_cast<unsigned short>(numeric_port));
  } else {
    auto results =
        co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      *why += (why->empty() ? "" : "; ") + host_port(host, port) + ": " + ec.message();
      co_return false;
    }
    for (const auto& r : results) endpoints.push_back(r.endpoint());
  }
  for (const auto& ep : endpoints) {
    std::string shown = host_port(ep.address().to_string(), std::to_string(ep.port()));
    ec = co_await connect_one(sock, asio::generic::stream_protocol::endpoint(ep), timeout);
    if (!ec) {
      int one = 1;
      ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      *server = shown;
      co_return true;
    }
    *why += (why->empty() ? "" : "; ") + shown + ": " + ec.message();
  }
  co_return false;
}

}  // namespace

asio::awaitable<bool> connect_target(Socket& sock, const Target& t, HealthTable& health,
                                     std::string* server, std::string* host_used,
                                     std::string* why) {
  why->clear();
  if (t.port.rfind("unix:", 0) == 0) {
    asio::local::stream_protocol::endpoint lep(t.port.substr(5));
    std::error_code ec = co_await connect_one(sock, lep, t.connect_timeout);
    *server = t.port;
    *host_used = t.hosts.empty() ? std::string("localhost") : t.hosts.front();
    if (!ec) co_return true;
    *why = t.port + ": " + ec.message();
    metrics::backend_connect_failed(t.backend);
    co_return false;
  }
  asio::ip::tcp::resolver resolver(sock.get_executor());
  // First the hosts not known to be down, in order; then, if none answered, the rest.
  std::vector<std::size_t> order, later;
  auto now = HealthTable::Clock::now();
  for (std::size_t i = 0; i < t.hosts.size(); ++i)
    (health.is_down(host_port(t.hosts[i], port_of(t, i)), now) ? later : order).push_back(i);
  order.insert(order.end(), later.begin(), later.end());
  for (std::size_t i : order) {
    const std::string& host = t.hosts[i];
    const std::string& port = port_of(t, i);
    const std::string key = host_port(host, port);
    bool connected =
        co_await connect_host(sock, resolver, host, port, t.connect_timeout, server, why);
    if (connected) {
      health.ok(key);
      *host_used = host;
      co_return true;
    }
    metrics::backend_connect_failed(t.backend);
    if (health.failed(key, HealthTable::Clock::now(), t.down_time))
      LOG_WARN("store %s%s%s is down, skipped for %s: %s", key.c_str(),
               t.backend.empty() ? "" : " of backend ", t.backend.c_str(),
               format_duration(t.down_time).c_str(), why->c_str());
  }
  co_return false;
}

asio::awaitable<bool> probe_store(asio::io_context& io, const std::string& host,
                                  const std::string& port, Millis timeout, std::string* why) {
  Socket sock(io);
  asio::ip::tcp::resolver resolver(io);
  std::string server;
  why->clear();
  bool connected = co_await connect_host(sock, resolver, host, port, timeout, &server, why);
  if (!connected) co_return false;
  // The greeting, within the same timeout.
  auto done = std::make_shared<bool>(false);
  asio::steady_timer watchdog(io, timeout);
  watchdog.async_wait([&sock, done](const std::error_code& ec) {
    if (ec || *done) return;
    std::error_code ignored;
    sock.close(ignored);
  });
  char buf[256];
  std::error_code ec;
  std::size_t n = co_await sock.async_read_some(asio::buffer(buf),
                                                asio::redirect_error(asio::use_awaitable, ec));
  *done = true;
  watchdog.cancel();
  std::string_view greeting(buf, ec ? 0 : n);
  bool ok = greeting.rfind("* OK", 0) == 0 || greeting.rfind("+OK", 0) == 0 ||
            greeting.rfind("220", 0) == 0;
  if (!ok) *why = server + ": " + (ec ? ec.message() : "no greeting");
  std::error_code ignored;
  sock.close(ignored);
  co_return ok;
}

}  // namespace sy
