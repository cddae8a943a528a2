// Reading a HAProxy PROXY header off a fresh connection without taking a byte more than
// the header: the bytes are peeked, parsed, and only the header's are consumed, so what
// follows (an IMAP command or a TLS ClientHello) is still in the socket for the session.
#ifndef SWITCHYARD_NET_PROXY_READER_H
#define SWITCHYARD_NET_PROXY_READER_H

#include <optional>
#include <string>

#include "net/socket.h"
#include "net/address.h"
#include "net/proxy_protocol.h"

namespace sy {

// Reads the header. It ends at once when the peer closes, even mid-header; its only wait
// is for the socket to be readable, so the caller bounds it in time by cancelling the
// socket (or shutting down its read side). On success returns the header; otherwise
// nullopt and *why.
asio::awaitable<std::optional<ProxyHeader>> read_proxy_header(Socket& sock, std::string* why);

// The client and local endpoints a header stands for (a Unix path: no address, not loopback).
Endpoint endpoint_of(const ProxyEndpoint& e);

}  // namespace sy

#endif
