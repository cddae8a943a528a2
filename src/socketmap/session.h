// The Postfix socketmap service: Postfix asks Switchyard's maps directly, over netstrings
// ("name key" in, "OK value" / "NOTFOUND " / "TEMP reason" / "PERM reason" out, many
// requests per connection). Tables:
//   transport  the user's store as a Postfix next hop: "lmtp:inet:host:port" or
//              "lmtp:unix:/path" (the back end's lmtp port)
//   mailbox    "OK <backend or host>" for users the maps know (virtual_mailbox_maps)
//   backend    the raw answer "[user@]host[:port]"
// A user on hold and a map failure answer TEMP, so Postfix defers and retries.
#ifndef SWITCHYARD_SOCKETMAP_SESSION_H
#define SWITCHYARD_SOCKETMAP_SESSION_H

#include <string>

#include "config/config.h"
#include "map/lookup.h"
#include "worker/context.h"

namespace sy {

struct ChainReply;

void start_socketmap_session(WorkerContext& rt, Socket client, const ListenConfig& listen);

// The reply payload for `table` given the chain's answer. Pure, for tests.
std::string socketmap_reply(const Config& config, const std::string& table,
                            const ChainReply& found);

}  // namespace sy

#endif
