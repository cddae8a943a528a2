// The regex map module: Perdition's popmap.re rules (see popmap.h) behind Perdition's C ABI
// (dbserver_init / dbserver_get / dbserver_fini).
//
// options = the rules file (NULL or "" = /etc/switchyard/popmap.re). dbserver_init loads and
// checks it (-1, with "switchyard regex map: file:line: message" on stderr, when it does not
// load); the rules stay in memory, which is safe across fork(). dbserver_get uses them, or
// loads the file first when nothing is loaded yet or its options name another file; the
// file is read again only after dbserver_fini / dbserver_init (the host does that on
// SIGHUP). Thread-safe: lookups take turns under a lock (a match is microseconds).
// Returns 0 with a malloc'd NUL-terminated answer, -2 when no rule matches, -1
// when the file does not load or a match fails (PCRE2 limits), -3 on bad arguments.
#include <switchyard/map.h>

#include <mutex>
#include <optional>
#include <string>

#include "../common/support.h"
#include "popmap.h"

namespace {

constexpr const char* kDefaultPath = "/etc/switchyard/popmap.re";

std::mutex g_mutex;
std::optional<sy::PopMap> g_map;
std::string g_path;  // the file g_map came from

std::string path_from(const char* options) {
  return options != nullptr && *options != '\0' ? options : kDefaultPath;
}

constexpr sy::maps::Reporter report("regex");

// Makes g_map the rules of `path`. False (reported) when the file does not load.
bool ensure_loaded(const std::string& path) {
  if (g_map && g_path == path) return true;
  std::string error;
  auto map = sy::PopMap::load(path, &error);
  if (!map) {
    report(error);
    return false;
  }
  g_map = std::move(map);
  g_path = path;
  return true;
}

}  // namespace

extern "C" {

SY_MAP_EXPORT extern const int switchyard_map_thread_safe = 1;

SY_MAP_EXPORT int dbserver_init(char* options) {
  std::lock_guard lock(g_mutex);
  g_map.reset();
  return ensure_loaded(path_from(options)) ? 0 : SWITCHYARD_MAP_DB_ERROR;
}

SY_MAP_EXPORT int dbserver_get(const char* key, const char* options, char** str_return,
                               size_t* len_return) {
  if (key == nullptr || str_return == nullptr || len_return == nullptr)
    return SWITCHYARD_MAP_OTHER_ERROR;
  std::lock_guard lock(g_mutex);
  if (!ensure_loaded(path_from(options))) return SWITCHYARD_MAP_DB_ERROR;
  sy::PopMap::Result r = g_map->find(key);
  switch (r.status) {
    case sy::PopMap::Status::kNotFound:
      return SWITCHYARD_MAP_NOT_FOUND;
    case sy::PopMap::Status::kError:
      report(g_path + ": key \"" + key + "\": " + r.text);
      return SWITCHYARD_MAP_DB_ERROR;
    case sy::PopMap::Status::kFound:
      break;
  }
  return sy::maps::return_answer(r.text, str_return, len_return);
}

SY_MAP_EXPORT int dbserver_fini(void) {
  std::lock_guard lock(g_mutex);
  g_map.reset();
  g_path.clear();
  return 0;
}

}  // extern "C"
