// One side of a proxied connection: a socket, plain or with TLS on top. The sessions and
// the relay read and write through it without caring which; the socket stays reachable
// for readiness waits and for splice(2) when no TLS is involved.
//
// TLS is OpenSSL reading and writing the socket's descriptor itself (no BIO pair, no
// read-ahead), non-blocking, driven by readiness waits on the socket. So every byte that
// has arrived is either still in the kernel, where a readiness wait sees it, or in the
// SSL object, where tls_pending() sees it: a relay that waits for readiness only when
// tls_pending() is false never sleeps on bytes it already has. One read and one write may
// be in progress at once (the relay's two directions), on the one event-loop thread.
#ifndef SWITCHYARD_NET_STREAM_H
#define SWITCHYARD_NET_STREAM_H

#include <memory>
#include <string>

#include "net/socket.h"
#include "tls/tls.h"

struct ssl_st;  // OpenSSL's SSL

namespace sy {

class Stream {
 public:
  explicit Stream(Socket s);
  explicit Stream(asio::io_context& io);
  ~Stream();

  Socket& socket() { return sock_; }
  bool is_open() const { return sock_.is_open(); }
  bool is_tls() const { return ssl_ != nullptr; }
  // True when OpenSSL holds bytes of the peer's (decrypted data, or part of a record) that
  // a readiness wait would not report: try a read before waiting.
  bool tls_pending() const;

  // Non-blocking steps, for the relay. Each returns the bytes moved (> 0), or 0 with ec
  // set: asio::error::would_block (then wait for *want: TLS may need to write to read, or
  // read to write), asio::error::eof (the peer closed, with or without close_notify), or
  // another error. After would_block from try_write, call it again with the same bytes
  // (OpenSSL may have taken part of them into a record already).
  std::size_t try_read(asio::mutable_buffer b, std::error_code& ec, Socket::wait_type* want);
  std::size_t try_write(asio::const_buffer b, std::error_code& ec, Socket::wait_type* want);
  // Readiness wait on the socket; operation_aborted when cancelled or closed.
  asio::awaitable<void> wait(Socket::wait_type w, std::error_code& ec);

  // At least one byte, or 0 with ec (eof when the peer closed).
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer b, std::error_code& ec);
  asio::awaitable<void> write_all(asio::const_buffer b, std::error_code& ec);

  // TLS handshakes; false and *why (with OpenSSL's reason) on failure.
  asio::awaitable<bool> accept_tls(TlsContext& ctx, std::string* why);
  asio::awaitable<bool> connect_tls(TlsContext& ctx, const std::string& host, bool verify,
                                    std::string* why);

  void cancel();  // wakes every wait on the socket with operation_aborted
  void close();   // no close_notify: the peer sees the TCP close
  void reset();   // close and forget TLS, ready for a new connect

  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

 private:
  struct SslFree {
    void operator()(ssl_st* s) const;
  };
  bool start_tls(TlsContext& ctx, std::string* why);  // the SSL object on our descriptor
  asio::awaitable<bool> handshake(std::error_code& ec);

  Socket sock_;
  std::unique_ptr<ssl_st, SslFree> ssl_;
};

}  // namespace sy

#endif
