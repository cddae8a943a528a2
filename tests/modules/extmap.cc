// Test module using Switchyard's extended ABI (include/switchyard/map.h): several servers
// for fail-over, hold, and the query's context. Options: "SERVER1,SERVER2,...".
//   key "held"    -> hold
//   key "missing" -> not found
//   key "who"     -> user "<protocol>-<client_address>", the servers
//   key "broken"  -> database error
//   other keys    -> the servers, no user
#include <switchyard/map.h>

#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {

const int switchyard_map_abi_version = SWITCHYARD_MAP_ABI_VERSION;
const int switchyard_map_thread_safe = 1;

int switchyard_map_lookup(const struct switchyard_map_query* q, struct switchyard_map_answer* a) {
  std::string key = q->key;
  if (key == "missing") return SWITCHYARD_MAP_NOT_FOUND;
  if (key == "broken") return SWITCHYARD_MAP_DB_ERROR;
  if (key == "held") {
    a->hold = 1;
    return SWITCHYARD_MAP_FOUND;
  }
  if (key == "who")
    a->user = ::strdup((std::string(q->protocol) + "-" + q->client_address).c_str());
  std::string opts = q->options ? q->options : "";
  int n = 0;
  std::size_t start = 0;
  while (start <= opts.size() && n < SWITCHYARD_MAP_MAX_SERVERS) {
    std::size_t comma = opts.find(',', start);
    std::string s = opts.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!s.empty()) a->servers[n++] = ::strdup(s.c_str());
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return SWITCHYARD_MAP_FOUND;
}

}  // extern "C"
