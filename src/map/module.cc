// Loader and caller of Perdition-ABI map modules (see module.h).
#include "map/module.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <cstring>

namespace sy {
namespace {

const char* rc_text(int rc) {
  switch (rc) {
    case -1: return "database error";
    case -2: return "not found";
    case -3: return "other error";
    default: return "unexpected return code";
  }
}

MapReply temp_fail(std::string why) {
  MapReply r;
  r.status = LookupStatus::TempFail;
  r.detail = std::move(why);
  return r;
}

}  // namespace

std::unique_ptr<MapModule> MapModule::open(const std::string& path,
                                           std::optional<std::string> options,
                                           std::string name, std::string delimiter,
                                           std::string* error) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    *error = path + ": " + std::strerror(errno);
    return nullptr;
  }
  if (st.st_mode & S_IWOTH) {
    *error = path + ": refusing a map module that others may write";
    return nullptr;
  }
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = ::dlerror();
    *error = e ? e : (path + ": dlopen failed");
    return nullptr;
  }
  std::unique_ptr<MapModule> m(new MapModule());
  m->handle_ = handle;
  m->init_ = reinterpret_cast<InitFn>(::dlsym(handle, "dbserver_init"));
  m->get_ = reinterpret_cast<GetFn>(::dlsym(handle, "dbserver_get"));
  m->get2_ = reinterpret_cast<Get2Fn>(::dlsym(handle, "dbserver_get2"));
  m->fini_ = reinterpret_cast<FiniFn>(::dlsym(handle, "dbserver_fini"));
  m->options_ = std::move(options);
  m->name_ = std::move(name);
  m->path_ = path;
  m->delimiter_ = std::move(delimiter);
  if (!m->get_ && !m->get2_) {
    *error = path + ": exports neither dbserver_get nor dbserver_get2";
    return nullptr;
  }
  return m;
}

MapModule::~MapModule() {
  if (initialised_ && fini_) fini_();
  if (handle_) ::dlclose(handle_);
}

bool MapModule::init(std::string* error) {
  if (!init_) {
    initialised_ = true;
    return true;
  }
  std::string copy = options_.value_or("");
  int rc = init_(options_ ? copy.data() : nullptr);
  if (rc != 0) {
    *error = path_ + ": dbserver_init failed (" + std::to_string(rc) + ")";
    return false;
  }
  initialised_ = true;
  return true;
}

MapReply MapModule::lookup(const std::string& key) {
  const char* opts = options_ ? options_->c_str() : nullptr;
  std::optional<MapAnswer> parsed;
  if (get_) {
    char* str = nullptr;
    std::size_t len = 0;  // zeroed: old modules write only an int through it
    int rc = get_(key.c_str(), opts, &str, &len);
    if (rc != 0) {
      if (str) std::free(str);
      if (rc == -2) return MapReply{};
      return temp_fail(std::string("dbserver_get: ") + rc_text(rc));
    }
    if (!str) return temp_fail("dbserver_get returned no value");
    if (len > INT_MAX) {  // an int-writing module leaves the high half zero
      std::free(str);
      return temp_fail("dbserver_get returned a bad length");
    }
    if (len == 0) len = std::strlen(str);
    parsed = parse_map_answer(std::string_view(str, len), delimiter_);
    std::free(str);
  } else {
    char *user = nullptr, *server = nullptr, *port = nullptr;
    int rc = get2_(key.c_str(), opts, &user, &server, &port);
    std::string u = user ? user : "", s = server ? server : "", p = port ? port : "";
    std::free(user);
    std::free(server);
    std::free(port);
    if (rc != 0) {
      if (rc == -2) return MapReply{};
      return temp_fail(std::string("dbserver_get2: ") + rc_text(rc));
    }
    if (s.empty()) return temp_fail("dbserver_get2 returned no server");
    std::string joined = s.find(':') != std::string::npos ? "[" + s + "]" : s;
    if (!p.empty()) joined += ":" + p;
    parsed = parse_map_answer(joined, delimiter_);
    if (parsed) parsed->user = u;
  }
  if (!parsed) return temp_fail("malformed answer from map");
  MapReply r;
  r.status = is_hold_answer(*parsed) ? LookupStatus::Hold : LookupStatus::Found;
  r.answer = std::move(*parsed);
  return r;
}

}  // namespace sy
