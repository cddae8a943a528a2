// Loader and caller of Perdition-ABI map modules (see module.h).
#include "map/module.h"

#include <switchyard/map.h>

#include <dlfcn.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sy {

// The extension's structs, named in module.h without the C header.
struct MapModule::Query : switchyard_map_query {};
struct MapModule::Answer : switchyard_map_answer {};

namespace {

const char* rc_text(int rc) {
  switch (rc) {
    case -1: return "database error";
    case -2: return "not found";
    case -3: return "other error";
    default: return "unexpected return code";
  }
}

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::string owner_name(uid_t uid) {
  std::string out = "uid " + std::to_string(uid);
  if (const passwd* pw = ::getpwuid(uid)) out = std::string(pw->pw_name) + " (" + out + ")";
  return out;
}

// Why `st` (of `what`, the module or a directory above it) may not be trusted, or "".
// Trusted: owned by root or by the user running Switchyard, writable by nobody else. A
// directory others may write passes only with the sticky bit and owned by root (/tmp):
// then nobody else can rename or remove what root or we own inside it.
std::string untrusted(const std::string& what, const struct stat& st) {
  const uid_t self = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != self)
    return what + " belongs to " + owner_name(st.st_uid) + ", not to root" +
           (self != 0 ? " or " + owner_name(self) : std::string());
  if (S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) && st.st_uid == 0) return {};
  if (st.st_mode & S_IWOTH)
    return what + " is writable by others (mode " + octal_mode(st.st_mode) + ")";
  if (st.st_mode & S_IWGRP)
    return what + " is writable by its group (mode " + octal_mode(st.st_mode) + ")";
  return {};
}

// Like OpenSSH's StrictModes: the module's real path, and every directory on it up to /,
// must be trusted, or someone else could change what runs as root. On success returns
// the real path (load that, not a name a symlink could redirect since); else "" and *why.
std::string trusted_real_path(const std::string& path, std::string* why) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (!resolved) {
    *why = path + ": " + std::strerror(errno);
    return {};
  }
  std::string real = resolved;
  std::free(resolved);
  struct stat st;
  if (::stat(real.c_str(), &st) != 0) {
    *why = path + ": " + std::strerror(errno);
    return {};
  }
  if (!S_ISREG(st.st_mode)) {
    *why = path + ": refusing a map module that is not a regular file";
    return {};
  }
  const std::string shown = real == path ? std::string("the file") : real;
  std::string reason = untrusted(shown, st);
  for (std::string dir = real; reason.empty() && dir != "/";) {
    auto slash = dir.rfind('/');
    dir = slash == 0 ? std::string("/") : dir.substr(0, slash);
    if (::stat(dir.c_str(), &st) != 0) {
      *why = path + ": " + dir + ": " + std::strerror(errno);
      return {};
    }
    reason = untrusted("directory " + dir, st);
  }
  if (!reason.empty()) {
    *why = path + ": refusing a map module others could change: " + reason;
    return {};
  }
  return real;
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
  const std::string real = trusted_real_path(path, error);
  if (real.empty()) return nullptr;
  void* handle = ::dlopen(real.c_str(), RTLD_NOW | RTLD_LOCAL);
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
  m->ext_ = reinterpret_cast<LookupFn>(::dlsym(handle, "switchyard_map_lookup"));
  if (auto* v = static_cast<const int*>(::dlsym(handle, "switchyard_map_abi_version"));
      v && *v > SWITCHYARD_MAP_ABI_VERSION) {
    *error = path + ": built for map ABI " + std::to_string(*v) + ", this Switchyard has " +
             std::to_string(SWITCHYARD_MAP_ABI_VERSION);
    ::dlclose(handle);
    m->handle_ = nullptr;
    return nullptr;
  }
  if (auto* ts = static_cast<const int*>(::dlsym(handle, "switchyard_map_thread_safe")))
    m->thread_safe_ = *ts != 0;
  m->options_ = std::move(options);
  m->name_ = std::move(name);
  m->path_ = path;
  m->delimiter_ = std::move(delimiter);
  if (!m->get_ && !m->get2_ && !m->ext_) {
    *error = path + ": exports neither dbserver_get nor dbserver_get2 nor switchyard_map_lookup";
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

MapReply MapModule::lookup(const LookupRequest& request) {
  // A C module would see the key cut at a NUL: such a key matches nobody.
  if (request.key.find('\0') != std::string::npos || request.key.empty()) return MapReply{};
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  if (!thread_safe_) lock.lock();
  if (!request.wanted()) {  // given up on while it waited for its turn
    MapReply r;
    r.status = LookupStatus::TempFail;
    r.detail = "nobody waits for this lookup";
    return r;
  }
  return ext_ ? extended_lookup(request) : classic_lookup(request.key);
}

MapReply MapModule::extended_lookup(const LookupRequest& request) {
  Query q{};
  q.abi_version = SWITCHYARD_MAP_ABI_VERSION;
  q.key = request.key.c_str();
  q.options = options_ ? options_->c_str() : nullptr;
  q.protocol = request.protocol;
  q.client_address = request.client_address.c_str();
  q.local_address = request.local_address.c_str();
  Answer a{};
  int rc = ext_(&q, &a);
  std::string user = a.user ? a.user : "";
  std::vector<std::string> servers;
  for (char*& s : a.servers) {
    if (s && *s) servers.emplace_back(s);
    std::free(s);
  }
  std::free(a.user);
  if (rc == -2) return MapReply{};
  if (rc != 0) return temp_fail(std::string("switchyard_map_lookup: ") + rc_text(rc));
  MapReply r;
  if (a.hold) {
    r.status = LookupStatus::Hold;
    return r;
  }
  if (servers.empty()) return temp_fail("switchyard_map_lookup returned no server");
  for (std::size_t i = 0; i < servers.size(); ++i) {
    auto parsed = parse_map_answer(servers[i], delimiter_);
    if (!parsed || !parsed->user.empty()) return temp_fail("malformed server from map");
    parsed->user = user;
    if (i == 0) r.answer = std::move(*parsed);
    else r.more.push_back(std::move(*parsed));
  }
  r.status = LookupStatus::Found;
  return r;
}

MapReply MapModule::classic_lookup(const std::string& key) {
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
