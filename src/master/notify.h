// The service manager's readiness protocol (systemd's sd_notify(3), Type=notify): one
// datagram of "KEY=value" lines to the Unix socket named by $NOTIFY_SOCKET (a path, or
// "@name" for the abstract namespace). Written here rather than linked from libsystemd:
// the protocol is documented as stable and is twenty lines, and a build without
// libsystemd (or a container without systemd) keeps the same behaviour.
// Without $NOTIFY_SOCKET every call does nothing.
#ifndef SWITCHYARD_MASTER_NOTIFY_H
#define SWITCHYARD_MASTER_NOTIFY_H

#include <string>

namespace sy {

// Sends `state` ("READY=1\nSTATUS=...") once; false when it could not be sent.
bool service_notify(const std::string& state);

// "MONOTONIC_USEC=<now>", for RELOADING=1.
std::string monotonic_usec_field();

}  // namespace sy

#endif
