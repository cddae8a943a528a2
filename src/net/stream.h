// One side of a proxied connection: a socket, plain or with TLS on top. The sessions and
// the relay read and write through it without caring which; the socket stays reachable
// for readiness waits and for splice(2) when no TLS is involved.
#ifndef SWITCHYARD_NET_STREAM_H
#define SWITCHYARD_NET_STREAM_H

#include <asio/ssl.hpp>
#include <memory>
#include <string>

#include "master/runtime.h"
#include "tls/tls.h"

namespace sy {

class Stream {
 public:
  explicit Stream(Socket s) : sock_(std::move(s)) {}
  explicit Stream(asio::io_context& io) : sock_(io) {}

  Socket& socket() { return sock_; }
  bool is_open() const { return sock_.is_open(); }
  bool is_tls() const { return tls_ != nullptr; }
  // Decrypted bytes OpenSSL already holds (a readiness wait would not see them).
  std::size_t tls_pending() const;

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer b, std::error_code& ec);
  asio::awaitable<void> write_all(asio::const_buffer b, std::error_code& ec);

  // TLS handshakes; false and *why (with OpenSSL's reason) on failure.
  asio::awaitable<bool> accept_tls(TlsContext& ctx, std::string* why);
  asio::awaitable<bool> connect_tls(TlsContext& ctx, const std::string& host, bool verify,
                                    std::string* why);

  void cancel();
  void close();  // no close_notify: the peer sees the TCP close
  void reset();  // close and forget TLS, ready for a new connect

  Stream(const Stream&) = delete;  // the TLS layer refers to sock_
  Stream& operator=(const Stream&) = delete;

 private:
  Socket sock_;
  std::unique_ptr<asio::ssl::stream<Socket&>> tls_;
};

}  // namespace sy

#endif
