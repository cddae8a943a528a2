// One IMAP client connection: the pre-login dialogue (greeting, CAPABILITY, NOOP, ID,
// LOGOUT, LOGIN, AUTHENTICATE PLAIN), the lookup, the login to the store, then the relay.
// The session owns both sockets; it is a coroutine that keeps itself alive until it ends.
#ifndef SWITCHYARD_IMAP_SESSION_H
#define SWITCHYARD_IMAP_SESSION_H

#include "config/config.h"
#include "master/runtime.h"

namespace sy {

void start_imap_session(Runtime& rt, Socket client, const ListenConfig& listen);

}  // namespace sy

#endif
