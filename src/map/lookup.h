// The outcome of asking a map: Found, NotFound, TempFail (never cached, never taken as
// "unknown user") or Hold (the user is being moved: a temporary failure everywhere).
#ifndef SWITCHYARD_MAP_LOOKUP_H
#define SWITCHYARD_MAP_LOOKUP_H

#include <atomic>
#include <string>
#include <vector>

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
  MapAnswer answer;               // valid when Found
  std::vector<MapAnswer> more;    // further servers, in fail-over order (extended ABI)
  std::string detail;             // why, for TempFail (to the log, never to the client)
};

// What a lookup asks: the key, and for maps that care, who is asking and how.
struct LookupRequest {
  std::string key;
  const char* protocol = "cli";  // imap, pop3, lmtp, socketmap, cli
  std::string client_address;    // "" when unknown
  std::string local_address;
  // Set by the event loop when everybody waiting for the answer has given up: a map not
  // asked yet is then not asked at all (nullptr: always wanted).
  const std::atomic<bool>* abandoned = nullptr;
  bool wanted() const { return abandoned == nullptr || !abandoned->load(std::memory_order_relaxed); }
};

// One map in the chain. lookup() may block (it runs on a lookup thread, never on the
// event loop); it is called from one thread at a time unless thread_safe().
class Map {
 public:
  virtual ~Map() = default;
  virtual MapReply lookup(const LookupRequest& request) = 0;
  virtual const std::string& name() const = 0;
  virtual bool thread_safe() const { return false; }
  MapReply lookup(const std::string& key) {  // the key alone, as the command line asks
    LookupRequest r;
    r.key = key;
    return lookup(r);
  }
};

}  // namespace sy

#endif
