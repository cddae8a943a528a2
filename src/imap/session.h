// One IMAP client connection: the pre-login dialogue (greeting, CAPABILITY, NOOP, ID,
// LOGOUT, LOGIN, AUTHENTICATE PLAIN), the lookup, the login to the store, then the relay.
// The session owns both sockets; it is a coroutine that keeps itself alive until it ends.
#ifndef SWITCHYARD_IMAP_SESSION_H
#define SWITCHYARD_IMAP_SESSION_H

#include <memory>

#include "config/config.h"
#include "worker/context.h"
#include "tls/tls.h"

namespace sy {

// `tls` is the listener's server context: implicit TLS on "imaps", STARTTLS on "imap";
// nullptr when no certificate is configured.
void start_imap_session(WorkerContext& rt, Socket client, const ListenConfig& listen,
                        std::shared_ptr<TlsContext> tls);

}  // namespace sy

#endif
