// TLS contexts (OpenSSL through Asio): one server context per certificate/key pair for
// the client side, one client context for connections to the stores. Built by the master
// before workers fork and drop privileges, so keys readable by root only are fine.
#ifndef SWITCHYARD_TLS_TLS_H
#define SWITCHYARD_TLS_TLS_H

#include <memory>
#include <string>

#include "config/config.h"
#include "net/socket.h"  // Asio, included the one way

#include <asio/ssl/context.hpp>

namespace sy {

using TlsContext = asio::ssl::context;

// TLS >= [tls] min_version, [tls] ciphers, `cert` (PEM chain) and `key`. nullptr + *error.
std::shared_ptr<TlsContext> make_server_tls(const TlsConfig& tls, const std::string& cert,
                                            const std::string& key, std::string* error);

// For stores: [tls] ca (or the system store) for verification, same protocol floor.
std::shared_ptr<TlsContext> make_client_tls(const TlsConfig& tls, std::string* error);

}  // namespace sy

#endif
