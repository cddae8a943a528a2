// The outcome of asking a map: Found, NotFound, TempFail (never cached, never taken as
// "unknown user") or Hold (the user is being moved: a temporary failure everywhere).
#ifndef SWITCHYARD_MAP_LOOKUP_H
#define SWITCHYARD_MAP_LOOKUP_H

#include <string>

#include "map/answer.h"

namespace sy {

enum class LookupStatus { Found, NotFound, TempFail, Hold };

inline const char* lookup_status_name(LookupStatus s) {
  switch (s) {
    case LookupStatus::Found: return "found";
    case LookupStatus::NotFound: return "not-found";
    case LookupStatus::TempFail: return "tempfail";
    case LookupStatus::Hold: return "hold";
  }
  return "?";
}

// "hold" (or lmtp_proxy's "reject") as the whole answer: the user is being moved.
inline bool is_hold_answer(const MapAnswer& a) {
  return a.port.empty() && a.user.empty() && (a.host == "hold" || a.host == "reject");
}

struct MapReply {
  LookupStatus status = LookupStatus::NotFound;
  MapAnswer answer;    // valid when Found
  std::string detail;  // why, for TempFail (goes to the log, never to the client)
};

// One map in the chain. lookup() may block (it runs on a lookup thread, never on the
// event loop) and is called from one thread at a time.
class Map {
 public:
  virtual ~Map() = default;
  virtual MapReply lookup(const std::string& key) = 0;
  virtual const std::string& name() const = 0;
};

}  // namespace sy

#endif
