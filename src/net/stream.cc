// Plain-or-TLS stream (see stream.h).
#include "net/stream.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace sy {
namespace {

std::string tls_error(const std::error_code& ec) {
  std::string s = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
    s = buf;
  }
  return s;
}

}  // namespace

std::size_t Stream::tls_pending() const {
  return tls_ ? static_cast<std::size_t>(SSL_pending(tls_->native_handle())) : 0;
}

asio::awaitable<std::size_t> Stream::read_some(asio::mutable_buffer b, std::error_code& ec) {
  if (tls_)
    co_return co_await tls_->async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
  co_return co_await sock_.async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> Stream::write_all(asio::const_buffer b, std::error_code& ec) {
  if (tls_)
    co_await asio::async_write(*tls_, b, asio::redirect_error(asio::use_awaitable, ec));
  else
    co_await asio::async_write(sock_, b, asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<bool> Stream::accept_tls(TlsContext& ctx, std::string* why) {
  tls_ = std::make_unique<asio::ssl::stream<Socket&>>(sock_, ctx);
  std::error_code ec;
  co_await tls_->async_handshake(asio::ssl::stream_base::server,
                                 asio::redirect_error(asio::use_awaitable, ec));
  if (ec) *why = "TLS handshake: " + tls_error(ec);
  co_return !ec;
}

asio::awaitable<bool> Stream::connect_tls(TlsContext& ctx, const std::string& host, bool verify,
                                          std::string* why) {
  tls_ = std::make_unique<asio::ssl::stream<Socket&>>(sock_, ctx);
  SSL* ssl = tls_->native_handle();
  std::error_code ignored;
  asio::ip::make_address(host, ignored);
  const bool is_address = !ignored;
  if (!is_address) SSL_set_tlsext_host_name(ssl, host.c_str());  // SNI
  if (verify) {
    tls_->set_verify_mode(asio::ssl::verify_peer);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_address) X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    else X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  } else {
    tls_->set_verify_mode(asio::ssl::verify_none);
  }
  std::error_code ec;
  co_await tls_->async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    long v = SSL_get_verify_result(ssl);
    *why = v != X509_V_OK ? std::string("certificate verification failed: ") +
                                X509_verify_cert_error_string(v)
                          : "TLS handshake: " + tls_error(ec);
  }
  co_return !ec;
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
  tls_.reset();
  close();
}

}  // namespace sy
