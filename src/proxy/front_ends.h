// The two front ends of the proxy, as the protocol table starts them (worker/worker.cc):
// one client connection each, served by a session that owns both sockets and keeps itself
// alive until it ends.
//
//   imap/session.cc  IMAP4rev1 (RFC 3501): greeting, CAPABILITY, NOOP, ID (RFC 2971),
//                    LOGOUT, STARTTLS, LOGIN, AUTHENTICATE PLAIN and LOGIN (SASL-IR); the
//                    store login (STARTTLS, ID with the client's address, LOGIN).
//   pop3/session.cc  POP3 (RFC 1939, CAPA RFC 2449, AUTH RFC 5034, STLS RFC 2595): CAPA,
//                    USER/PASS, AUTH PLAIN and LOGIN, STLS, NOOP, QUIT; the store login
//                    (STLS, XCLIENT, USER/PASS or AUTH PLAIN). APOP is not offered: a proxy
//                    cannot verify it without the clear-text password.
//
// What both share (the dialogue loop, SASL, lookup, store connection, relay hand-over) is
// ProxySession's (proxy/session.h).
#ifndef SWITCHYARD_PROXY_FRONT_ENDS_H
#define SWITCHYARD_PROXY_FRONT_ENDS_H

#include <memory>

#include "config/config.h"
#include "tls/tls.h"
#include "worker/context.h"

namespace sy {

// `tls` is the listener's server context (implicit TLS on imaps/pop3s, STARTTLS/STLS on
// imap/pop3), or nullptr when no certificate is configured.
void start_imap_session(WorkerContext& rt, Socket client, const ListenConfig& listen,
                        std::shared_ptr<TlsContext> tls);
void start_pop3_session(WorkerContext& rt, Socket client, const ListenConfig& listen,
                        std::shared_ptr<TlsContext> tls);

}  // namespace sy

#endif
