// The LMTP router (RFC 2033): a client (Postfix) delivers to Switchyard, which looks up
// each recipient through the same username policy, maps and cache as logins, and after
// DATA delivers the message once to each store with all of that store's recipients, over
// LMTP, stores in parallel. The client then gets one reply per accepted recipient, in RCPT
// order, each the store's own verdict: nobody gets 250 before their store said 250, and a
// store that cannot be reached gives 451 4.4.1 for its recipients only.
#ifndef SWITCHYARD_LMTP_SESSION_H
#define SWITCHYARD_LMTP_SESSION_H

#include "config/config.h"
#include "master/runtime.h"

namespace sy {

void start_lmtp_session(Runtime& rt, Socket client, const ListenConfig& listen);

}  // namespace sy

#endif
