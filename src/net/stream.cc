// Plain-or-TLS stream (see stream.h).
#include "net/stream.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>

#include "metrics/metrics.h"

namespace sy {
namespace {

std::string describe_error(const std::error_code& ec) {
  if (ec.category() == asio::error::get_ssl_category()) {
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
    return buf;
  }
  if (ec == asio::error::eof) return "connection closed by the peer";
  return ec.message();
}

int clamp(std::size_t n) { return n > INT_MAX ? INT_MAX : static_cast<int>(n); }

// What an SSL_* call that returned r <= 0 means, as an error code (would_block + *want for
// the retry cases). `saved_errno` is errno right after the call.
std::error_code classify(SSL* ssl, int r, int saved_errno, Socket::wait_type* want) {
  const int err = SSL_get_error(ssl, r);
  if (err == SSL_ERROR_WANT_READ) {
    *want = Socket::wait_read;
    return asio::error::would_block;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    *want = Socket::wait_write;
    return asio::error::would_block;
  }
  if (err == SSL_ERROR_ZERO_RETURN) return asio::error::eof;  // close_notify
  const unsigned long queued = ERR_peek_error();
  if (err == SSL_ERROR_SSL && queued != 0) {
    // A TCP close without close_notify ends the stream like any other close.
    if (ERR_GET_LIB(queued) == ERR_LIB_SSL &&
        ERR_GET_REASON(queued) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      return asio::error::eof;
    return std::error_code(static_cast<int>(queued), asio::error::get_ssl_category());
  }
  if (err == SSL_ERROR_SYSCALL && saved_errno != 0 && queued == 0)
    return std::error_code(saved_errno, asio::error::get_system_category());
  if (err == SSL_ERROR_SYSCALL && queued == 0) return asio::error::eof;
  if (queued != 0) return std::error_code(static_cast<int>(queued), asio::error::get_ssl_category());
  return asio::error::fault;
}

// The same, leaving OpenSSL's error queue empty for whoever calls it next on this thread.
std::error_code ssl_failure(SSL* ssl, int r, int saved_errno, Socket::wait_type* want) {
  std::error_code ec = classify(ssl, r, saved_errno, want);
  ERR_clear_error();
  return ec;
}

}  // namespace

void Stream::SslFree::operator()(ssl_st* s) const { SSL_free(s); }

Stream::Stream(Socket s) : sock_(std::move(s)) {}
Stream::Stream(asio::io_context& io) : sock_(io) {}
Stream::~Stream() = default;

bool Stream::tls_pending() const { return ssl_ && SSL_has_pending(ssl_.get()) == 1; }

std::size_t Stream::try_read(asio::mutable_buffer b, std::error_code& ec,
                             Socket::wait_type* want) {
  ec.clear();
  *want = Socket::wait_read;
  // Closed under us (the other direction ended): the descriptor number may already
  // belong to someone else, so touch nothing.
  if (!sock_.is_open()) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  if (b.size() == 0) return 0;
  if (!ssl_) {
    ssize_t n = ::recv(sock_.native_handle(), b.data(), b.size(), MSG_DONTWAIT);
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0) ec = asio::error::eof;
    else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ec = asio::error::would_block;
    else ec = std::error_code(errno, asio::error::get_system_category());
    return 0;
  }
  ERR_clear_error();  // SSL_get_error reads the thread's queue: start it empty
  errno = 0;
  int r = SSL_read(ssl_.get(), b.data(), clamp(b.size()));
  if (r > 0) return static_cast<std::size_t>(r);
  ec = ssl_failure(ssl_.get(), r, errno, want);
  return 0;
}

std::size_t Stream::try_write(asio::const_buffer b, std::error_code& ec,
                              Socket::wait_type* want) {
  ec.clear();
  *want = Socket::wait_write;
  if (!sock_.is_open()) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  if (b.size() == 0) return 0;
  if (!ssl_) {
    ssize_t n = ::send(sock_.native_handle(), b.data(), b.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ec = asio::error::would_block;
    else ec = std::error_code(errno, asio::error::get_system_category());
    return 0;
  }
  ERR_clear_error();
  errno = 0;
  int r = SSL_write(ssl_.get(), b.data(), clamp(b.size()));
  if (r > 0) return static_cast<std::size_t>(r);
  ec = ssl_failure(ssl_.get(), r, errno, want);
  if (ec == asio::error::eof) ec = asio::error::broken_pipe;  // cannot write after a close
  return 0;
}

asio::awaitable<void> Stream::wait(Socket::wait_type w, std::error_code& ec) {
  ec.clear();
  co_await sock_.async_wait(w, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == asio::error::bad_descriptor) ec = asio::error::operation_aborted;
}

asio::awaitable<std::size_t> Stream::read_some(asio::mutable_buffer b, std::error_code& ec) {
  for (;;) {
    Socket::wait_type want;
    std::size_t n = try_read(b, ec, &want);
    if (n > 0 || b.size() == 0) co_return n;
    if (ec != asio::error::would_block) co_return 0;
    co_await wait(want, ec);
    if (ec) co_return 0;
  }
}

asio::awaitable<void> Stream::write_all(asio::const_buffer b, std::error_code& ec) {
  ec.clear();
  while (b.size() > 0) {
    Socket::wait_type want;
    std::size_t n = try_write(b, ec, &want);
    if (n > 0) {
      b += n;
      continue;
    }
    if (ec != asio::error::would_block) co_return;
    co_await wait(want, ec);
    if (ec) co_return;
  }
}

bool Stream::start_tls(TlsContext& ctx, std::string* why) {
  // OpenSSL reads and writes the descriptor itself: it must never block the loop. (Asio
  // makes a socket non-blocking only once one of its own operations would block.)
  std::error_code ec;
  sock_.native_non_blocking(true, ec);
  if (ec) {
    *why = "TLS setup: " + ec.message();
    return false;
  }
  ssl_.reset(SSL_new(ctx.native_handle()));
  if (!ssl_ || SSL_set_fd(ssl_.get(), sock_.native_handle()) != 1) {
    ssl_.reset();
    *why = "TLS setup failed";
    return false;
  }
  // A write that would block keeps its record: the retry passes the same bytes, maybe
  // from another address; partial writes let the relay count what went out.
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return true;
}

asio::awaitable<bool> Stream::handshake(std::error_code& ec) {
  for (;;) {
    if (!sock_.is_open()) {
      ec = asio::error::operation_aborted;
      co_return false;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl_.get());
    if (r == 1) {
      ec.clear();
      co_return true;
    }
    Socket::wait_type want = Socket::wait_read;
    ec = ssl_failure(ssl_.get(), r, errno, &want);
    if (ec != asio::error::would_block) co_return false;
    co_await wait(want, ec);
    if (ec) co_return false;
  }
}

asio::awaitable<bool> Stream::accept_tls(TlsContext& ctx, std::string* why) {
  if (!start_tls(ctx, why)) co_return false;
  SSL_set_accept_state(ssl_.get());
  std::error_code ec;
  bool done = co_await handshake(ec);
  metrics::tls_handshake(metrics::TlsSide::Client, done);
  if (!done) *why = "TLS handshake: " + describe_error(ec);
  co_return done;
}

asio::awaitable<bool> Stream::connect_tls(TlsContext& ctx, const std::string& host, bool verify,
                                          std::string* why) {
  if (!start_tls(ctx, why)) co_return false;
  SSL* ssl = ssl_.get();
  SSL_set_connect_state(ssl);
  std::error_code not_address;
  asio::ip::make_address(host, not_address);
  const bool is_address = !not_address;
  if (!is_address) SSL_set_tlsext_host_name(ssl, host.c_str());  // SNI
  if (verify) {
    SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_address) X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    else X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  } else {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
  }
  std::error_code ec;
  bool done = co_await handshake(ec);
  metrics::tls_handshake(metrics::TlsSide::Store, done);
  if (!done) {
    long v = verify && ssl_ ? SSL_get_verify_result(ssl_.get()) : X509_V_OK;
    *why = v != X509_V_OK ? std::string("certificate verification failed: ") +
                                X509_verify_cert_error_string(v)
                          : "TLS handshake: " + describe_error(ec);
  }
  co_return done;
}

void Stream::cancel() {
  std::error_code ignored;
  sock_.cancel(ignored);
}

void Stream::close() {
  std::error_code ignored;
  sock_.close(ignored);
}

void Stream::reset() {
  ssl_.reset();
  close();
}

}  // namespace sy
