// A map module: a shared object with Perdition's C ABI, loaded with dlopen.
//
//   int dbserver_init(char *options);                        optional
//   int dbserver_get(const char *key, const char *options,
//                    char **str_return, size_t *len_return);  or dbserver_get2
//   int dbserver_get2(const char *key, const char *options,
//                     char **user, char **server, char **port);
//   int dbserver_fini(void);                                  optional
// Return codes 0 found, -1 database error, -2 not found, -3 other error; -1 and -3 are
// TempFail. Switchyard's optional extensions (include/switchyard/map.h) are used when
// exported: switchyard_map_lookup (preferred), the ABI version, the thread-safety flag.
// The MapModule owns the dlopen handle; values returned by the module are freed here.
// lookup() takes a lock unless the module declares itself thread-safe.
#ifndef SWITCHYARD_MAP_MODULE_H
#define SWITCHYARD_MAP_MODULE_H

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "map/lookup.h"

namespace sy {

class MapModule final : public Map {
 public:
  // Opens `path` and resolves the ABI's symbols. Refuses, like OpenSSH's StrictModes, a
  // file that is not regular, or when the file or a directory above it belongs to someone
  // other than root or the user running Switchyard, or is writable by its group or by
  // others (a directory others may write passes when it has the sticky bit and belongs to
  // root, as /tmp does). What is loaded is the file's real path, as checked.
  // `options` is handed to dbserver_init and dbserver_get (nullopt = NULL).
  static std::unique_ptr<MapModule> open(const std::string& path,
                                         std::optional<std::string> options,
                                         std::string name, std::string delimiter,
                                         std::string* error);
  ~MapModule() override;
  MapModule(const MapModule&) = delete;
  MapModule& operator=(const MapModule&) = delete;

  // Calls dbserver_init when the module has one. False (and *error) when it fails.
  [[nodiscard]] bool init(std::string* error);

  using Map::lookup;  // the key-only form
  MapReply lookup(const LookupRequest& request) override;
  const std::string& name() const override { return name_; }
  bool thread_safe() const override { return thread_safe_; }
  const std::string& path() const { return path_; }

 private:
  MapModule() = default;
  using InitFn = int (*)(char*);
  using GetFn = int (*)(const char*, const char*, char**, std::size_t*);
  using Get2Fn = int (*)(const char*, const char*, char**, char**, char**);
  using FiniFn = int (*)();
  struct Query;
  struct Answer;
  using LookupFn = int (*)(const Query*, Answer*);
  MapReply classic_lookup(const std::string& key);
  MapReply extended_lookup(const LookupRequest& request);

  void* handle_ = nullptr;
  InitFn init_ = nullptr;
  GetFn get_ = nullptr;
  Get2Fn get2_ = nullptr;
  FiniFn fini_ = nullptr;
  LookupFn ext_ = nullptr;
  bool thread_safe_ = false;
  std::mutex mu_;
  bool initialised_ = false;
  std::optional<std::string> options_;
  std::string name_, path_, delimiter_;
};

}  // namespace sy

#endif
