// One POP3 client connection (RFC 1939, CAPA RFC 2449, AUTH RFC 5034, STLS RFC 2595): the
// pre-login dialogue (CAPA, USER/PASS, AUTH PLAIN, STLS, NOOP, QUIT), then the login to
// the store (STLS, XCLIENT, USER/PASS) and the relay. APOP is not offered: a proxy cannot
// verify it without the cleartext password.
#ifndef SWITCHYARD_POP3_SESSION_H
#define SWITCHYARD_POP3_SESSION_H

#include <memory>

#include "config/config.h"
#include "worker/context.h"
#include "tls/tls.h"

namespace sy {

// `tls`: the listener's server context (implicit TLS on "pop3s", STLS on "pop3"), or null.
void start_pop3_session(WorkerContext& rt, Socket client, const ListenConfig& listen,
                        std::shared_ptr<TlsContext> tls);

}  // namespace sy

#endif
