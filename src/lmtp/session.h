// The LMTP router (RFC 2033): a client (Postfix) delivers to Switchyard, which looks up
// each recipient through the same username policy, maps and cache as logins, and after
// DATA delivers the message once to each store with all of that store's recipients, over
// LMTP, stores in parallel. The client then gets one reply per accepted recipient, in RCPT
// order, each the store's own verdict: nobody gets 250 before their store said 250, and a
// store that cannot be reached gives 451 4.4.1 for its recipients only.
#ifndef SWITCHYARD_LMTP_SESSION_H
#define SWITCHYARD_LMTP_SESSION_H

#include "config/config.h"
#include "worker/context.h"

namespace sy {

// The router's side towards Postfix: the RFC 2033 dialogue. Each RCPT is routed by the
// maps; after DATA the message goes to lmtp::deliver() (lmtp/delivery.h) with the worker's
// store pool.
void start_lmtp_session(WorkerContext& rt, Socket client, const ListenConfig& listen);

// Our name in the greeting and in LHLO to the stores: [lmtp] hostname, or the host's.
std::string lmtp_hostname(const Config& c);

}  // namespace sy

#endif
