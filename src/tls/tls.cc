// TLS contexts (see tls.h).
#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace sy {
namespace {

bool apply_common(TlsContext& ctx, const TlsConfig& tls, std::string* error) {
  SSL_CTX* native = ctx.native_handle();
  int floor = tls.min_version == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (SSL_CTX_set_min_proto_version(native, floor) != 1) {
    *error = "cannot set the minimum TLS version";
    return false;
  }
  // Idle sessions give their record buffers back to the allocator.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (!tls.ciphers.empty() && SSL_CTX_set_cipher_list(native, tls.ciphers.c_str()) != 1) {
    *error = "[tls] ciphers: no usable cipher in \"" + tls.ciphers + "\"";
    return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<TlsContext> make_server_tls(const TlsConfig& tls, const std::string& cert,
                                            const std::string& key, std::string* error) {
  auto ctx = std::make_shared<TlsContext>(TlsContext::tls_server);
  if (!apply_common(*ctx, tls, error)) return nullptr;
  std::error_code ec;
  ctx->use_certificate_chain_file(cert, ec);
  if (ec) {
    *error = cert + ": " + ec.message();
    return nullptr;
  }
  ctx->use_private_key_file(key, TlsContext::pem, ec);
  if (ec) {
    *error = key + ": " + ec.message();
    return nullptr;
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    *error = key + ": the key does not match " + cert;
    return nullptr;
  }
  return ctx;
}

std::shared_ptr<TlsContext> make_client_tls(const TlsConfig& tls, std::string* error) {
  auto ctx = std::make_shared<TlsContext>(TlsContext::tls_client);
  if (!apply_common(*ctx, tls, error)) return nullptr;
  std::error_code ec;
  if (!tls.ca.empty()) ctx->load_verify_file(tls.ca, ec);
  else ctx->set_default_verify_paths(ec);
  if (ec) {
    *error = (tls.ca.empty() ? std::string("system CA store") : tls.ca) + ": " + ec.message();
    return nullptr;
  }
  return ctx;
}

}  // namespace sy
