// The map chain: maps asked in order; the first that answers Found, TempFail or Hold
// decides, NotFound moves on, and a configured fallback back end catches the rest.
#ifndef SWITCHYARD_MAP_CHAIN_H
#define SWITCHYARD_MAP_CHAIN_H

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "map/lookup.h"

namespace sy {

struct Config;

struct ChainReply {
  MapReply reply;
  std::string map_name;  // which map answered ("fallback", or "" when none did)
  std::chrono::microseconds took{0};
  bool cached = false;  // from the worker's cache, not the maps
  bool stale = false;   // an expired cached answer, served because the maps failed
};

class MapChain {
 public:
  void add(std::unique_ptr<Map> map) { maps_.push_back(std::move(map)); }
  // Answer for keys no map knows (a back-end name or host[:port], or "hold").
  void set_fallback(MapAnswer answer) { fallback_ = std::move(answer); }
  bool empty() const { return maps_.empty(); }

  // Blocking: call from a lookup thread only.
  ChainReply lookup(const LookupRequest& request) const;
  ChainReply lookup(const std::string& key) const {
    LookupRequest r;
    r.key = key;
    return lookup(r);
  }

 private:
  std::vector<std::unique_ptr<Map>> maps_;
  std::optional<MapAnswer> fallback_;
};

// Opens every [[map]] of the config (NAME -> map_dir/NAME.so, or an absolute path) and
// runs its dbserver_init. nullptr and *error ("file:line: ...") on failure.
std::unique_ptr<MapChain> load_chain(const Config& config, std::string* error);

}  // namespace sy

#endif
