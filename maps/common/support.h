// The support layer of the shipped map modules (maps/*): what every module needs the same
// way. A convenience library linked into each module with hidden visibility, so nothing
// here is exported (maps/module.ver lets only the ABI of <switchyard/map.h> out) and each
// module has a copy of its own.
//
//   Reporter          a line on stderr, "switchyard NAME map: message"
//   parse_or_report   options parsed, or the reason they do not parse reported
//   trim              a value without the blanks around it
//   format_answer     "[user@]host[:port]", a bare IPv6 host in brackets
//   return_answer     the malloc'd string dbserver_get hands to the host
//   ForkGuard         a connection belongs to the process that opened it: drop() closes it
//                     there and forgets it in a forked child; forget_if_inherited() only
//                     the latter
//   InitOptions       what dbserver_init was given, used when dbserver_get's options are NULL
//   Calls, SY_MAP_PERDITION_FUNCTIONS
//                     dbserver_init, dbserver_get and dbserver_fini around a module's own
//                     three functions: one call at a time, NULL arguments refused, the
//                     options of dbserver_init the fallback for dbserver_get's
//   SY_MAP_EXPORT     marks an ABI function (the modules are built with -fvisibility=hidden)
#ifndef SWITCHYARD_MAPS_COMMON_SUPPORT_H
#define SWITCHYARD_MAPS_COMMON_SUPPORT_H

#include <switchyard/map.h>

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>

#define SY_MAP_EXPORT __attribute__((visibility("default")))

#pragma GCC visibility push(hidden)

namespace sy::maps {

// Writes "switchyard NAME map: message" on stderr, where the host's log picks it up. A
// module keeps one, `constexpr Reporter report("sqlite");`, and calls report(message).
// Messages must never hold a password.
class Reporter {
 public:
  explicit constexpr Reporter(const char* module) noexcept : module_(module) {}
  void operator()(std::string_view message) const noexcept;

 private:
  const char* module_;
};

// `parse(text, &error)`: the parsed options, or nothing after `report` has said why. Bad
// options make every module answer SWITCHYARD_MAP_OTHER_ERROR, at init and at lookup.
template <class Parse>
auto parse_or_report(Parse parse, const char* text, const Reporter& report) {
  std::string error;
  auto parsed = parse(text, &error);
  if (!parsed) report(error);
  return parsed;
}

// `value` without the blanks (space, tab, CR, LF) before and after it.
std::string_view trim(std::string_view value) noexcept;

// The answer of dbserver_get, "[user@]host[:port]": an empty user or port is left out. A
// host with two or more ':' and no '[' in front is a bare IPv6 address and gets brackets;
// "host:port" in the host itself passes as it is (as with Perdition's SQL maps).
std::string format_answer(std::string_view user, std::string_view host, std::string_view port);

// Hands `answer` to the host as dbserver_get does: *str_return a malloc'd, NUL-terminated
// copy, *len_return its length. SWITCHYARD_MAP_FOUND, or SWITCHYARD_MAP_OTHER_ERROR (and
// the outputs untouched) when memory is short.
int return_answer(std::string_view answer, char** str_return, std::size_t* len_return) noexcept;

// The process that opened a connection. A connection inherited over fork() is the
// parent's: the child must not close it (an orderly close talks to the server on the
// socket the parent still uses) but forget it, and open its own. A module's connection
// derives from ForkGuard, calls claim() when it opens, and has is_open(), close() (an
// orderly close) and abandon() (forget, leaving the server alone).
class ForkGuard {
 public:
  void claim() noexcept { owner_ = ::getpid(); }
  bool inherited() const noexcept { return owner_ != ::getpid(); }

 private:
  pid_t owner_ = 0;
};

// Closes `c` when this process opened it, abandons it when a parent did.
template <class Connection>
void drop(Connection& c) {
  if (!c.is_open()) return;
  if (c.inherited())
    c.abandon();
  else
    c.close();
}

// Abandons `c` when a parent process opened it; leaves this process's own alone.
template <class Connection>
void forget_if_inherited(Connection& c) {
  if (c.is_open() && c.inherited()) c.abandon();
}

// The options dbserver_init was given (NULL too): dbserver_get's own win, and NULL ones
// fall back to these.
class InitOptions {
 public:
  void set(const char* options) {
    given_ = options != nullptr;
    value_ = given_ ? options : "";
  }
  void reset() noexcept {
    given_ = false;
    value_.clear();
  }
  const char* effective(const char* get_options) const noexcept {
    if (get_options != nullptr) return get_options;
    return given_ ? value_.c_str() : nullptr;
  }

 private:
  // Not std::optional<std::string>: g++ 12 warns of it as maybe uninitialized.
  bool given_ = false;
  std::string value_;
};

// What Perdition's three functions do in every module before and after the module's own
// code. Calls run one at a time: the host calls a module from one thread at a time but
// not always the same one, and a host that does not promise that is still safe.
class Calls {
 public:
  // dbserver_init: remembers `options`, then init(options), whose code it returns.
  template <class Init>
  int init(const char* options, Init init) {
    std::lock_guard lock(mutex_);
    options_.set(options);
    return init(options);
  }

  // dbserver_get: NULL key or outputs are SWITCHYARD_MAP_OTHER_ERROR; otherwise
  // lookup(key, options, str_return, len_return) with dbserver_get's options, or when
  // those are NULL dbserver_init's (NULL when both are).
  template <class Lookup>
  int get(const char* key, const char* options, char** str_return, std::size_t* len_return,
          Lookup lookup) {
    if (key == nullptr || str_return == nullptr || len_return == nullptr)
      return SWITCHYARD_MAP_OTHER_ERROR;
    std::lock_guard lock(mutex_);
    return lookup(key, options_.effective(options), str_return, len_return);
  }

  // dbserver_fini: fini(), and dbserver_init's options forgotten; 0.
  template <class Fini>
  int fini(Fini fini) {
    std::lock_guard lock(mutex_);
    fini();
    options_.reset();
    return 0;
  }

 private:
  std::mutex mutex_;
  InitOptions options_;
};

}  // namespace sy::maps

#pragma GCC visibility pop

// Defines dbserver_init, dbserver_get and dbserver_fini (Perdition's ABI, see
// <switchyard/map.h>) on a Calls object around the module's own functions:
//   int INIT(const char* options)     check the options and connect; 0 or an error code
//   int LOOKUP(const char* key, const char* options, char** str_return,
//              std::size_t* len_return)
//                                     one lookup, with the options as Calls::get says
//   void FINI()                       drop what is open
// Use once, at global scope, followed by ';'.
#define SY_MAP_PERDITION_FUNCTIONS(INIT, LOOKUP, FINI)                                    \
  namespace {                                                                             \
  ::sy::maps::Calls sy_map_calls;                                                         \
  }                                                                                       \
  extern "C" {                                                                            \
  SY_MAP_EXPORT int dbserver_init(char* options) {                                        \
    return sy_map_calls.init(options, INIT);                                              \
  }                                                                                       \
  SY_MAP_EXPORT int dbserver_get(const char* key, const char* options, char** str_return, \
                                 size_t* len_return) {                                    \
    return sy_map_calls.get(key, options, str_return, len_return, LOOKUP);                \
  }                                                                                       \
  SY_MAP_EXPORT int dbserver_fini(void) { return sy_map_calls.fini(FINI); }               \
  }                                                                                       \
  static_assert(true, "SY_MAP_PERDITION_FUNCTIONS is followed by a semicolon")

#endif
