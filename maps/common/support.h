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
//   Pool              connections shared by the threads that look up at once: a lookup
//                     takes an idle one (or opens its own) and gives it back
//   Calls, SY_MAP_PERDITION_FUNCTIONS, SY_MAP_PERDITION_FUNCTIONS_CONCURRENT
//                     dbserver_init, dbserver_get and dbserver_fini around a module's own
//                     three functions: NULL arguments refused, the options of
//                     dbserver_init the fallback for dbserver_get's; lookups one at a time,
//                     or (CONCURRENT, exporting switchyard_map_thread_safe) several at once
//                     but never beside init or fini
//   SY_MAP_EXPORT     marks an ABI function (the modules are built with -fvisibility=hidden)
#ifndef SWITCHYARD_MAPS_COMMON_SUPPORT_H
#define SWITCHYARD_MAPS_COMMON_SUPPORT_H

#include <switchyard/map.h>

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

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

// Connections of a module, shared by the lookup threads of a host that calls the module
// from several threads at once. Connections are kept per options string (a host may
// configure a module twice). A lookup take()s a connection: an idle open one, or a closed
// one it opens itself (and then tells opened()); it gives it back when done, open or not.
// Idle connections a parent process opened are forgotten (ForkGuard), never lent.
// Connection: as drop() wants (is_open, inherited, close, abandon).
template <class Connection>
class Pool {
 public:
  explicit Pool(std::size_t max_idle = 64) : max_idle_(max_idle) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // An idle connection for `options` when there is one, else a new closed one.
  std::unique_ptr<Connection> take(const std::string& options) {
    std::lock_guard lock(mutex_);
    Slot& slot = slots_[options];
    while (!slot.idle.empty()) {
      std::unique_ptr<Connection> c = std::move(slot.idle.back());
      slot.idle.pop_back();
      if (c->is_open() && c->inherited()) {
        c->abandon();
        continue;
      }
      if (!c->is_open()) continue;
      counted_.insert(c.get());
      ++slot.lent_open;
      return c;
    }
    return std::make_unique<Connection>();
  }

  // `c`, taken closed, is open now: a lookup waiting in wait_for_idle() may get it later.
  void opened(const std::string& options, Connection* c) {
    std::lock_guard lock(mutex_);
    if (counted_.insert(c).second) ++slots_[options].lent_open;
  }

  // Done with `c`: kept for the next lookup when open (up to max_idle), closed otherwise.
  void give_back(const std::string& options, std::unique_ptr<Connection> c) {
    std::unique_ptr<Connection> excess;
    {
      std::lock_guard lock(mutex_);
      Slot& slot = slots_[options];
      if (counted_.erase(c.get()) != 0) --slot.lent_open;
      if (c->is_open() && slot.idle.size() < max_idle_)
        slot.idle.push_back(std::move(c));
      else
        excess = std::move(c);
    }
    cv_.notify_all();
    if (excess) drop(*excess);
  }

  // Waits, at most `limit`, for another lookup to give an open connection back: for a
  // lookup that could not open one of its own. nullptr when none comes (or no other
  // lookup holds an open one).
  std::unique_ptr<Connection> wait_for_idle(const std::string& options,
                                            std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    Slot& slot = slots_[options];
    cv_.wait_for(lock, limit, [&] { return !slot.idle.empty() || slot.lent_open == 0; });
    lock.unlock();
    std::unique_ptr<Connection> c = take(options);
    if (!c->is_open()) return nullptr;
    return c;
  }

  // Closes (or forgets, when inherited) every idle connection. For fini: nothing is lent.
  void clear() {
    std::map<std::string, Slot> slots;
    {
      std::lock_guard lock(mutex_);
      slots.swap(slots_);
      counted_.clear();
    }
    for (auto& [options, slot] : slots)
      for (auto& c : slot.idle) drop(*c);
  }

 private:
  struct Slot {
    std::vector<std::unique_ptr<Connection>> idle;
    std::size_t lent_open = 0;  // open connections lookups hold now
  };
  std::size_t max_idle_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, Slot> slots_;
  std::unordered_set<const Connection*> counted_;  // lent and counted in lent_open
};

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
// code. Lookups run one at a time (a host calls a module that is not thread-safe from one
// thread at a time, but not always the same one, and a host that does not promise that is
// still safe), or, when `concurrent`, several at once; never beside init or fini.
class Calls {
 public:
  explicit Calls(bool concurrent = false) : concurrent_(concurrent) {}

  // dbserver_init: remembers `options`, then init(options), whose code it returns.
  template <class Init>
  int init(const char* options, Init init) {
    std::unique_lock lock(mutex_);
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
    if (concurrent_) {
      std::shared_lock lock(mutex_);
      return lookup(key, options_.effective(options), str_return, len_return);
    }
    std::unique_lock lock(mutex_);
    return lookup(key, options_.effective(options), str_return, len_return);
  }

  // dbserver_fini: fini(), and dbserver_init's options forgotten; 0.
  template <class Fini>
  int fini(Fini fini) {
    std::unique_lock lock(mutex_);
    fini();
    options_.reset();
    return 0;
  }

 private:
  bool concurrent_;
  std::shared_mutex mutex_;
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
#define SY_MAP_PERDITION_FUNCTIONS(INIT, LOOKUP, FINI) \
  SY_MAP_PERDITION_FUNCTIONS_WITH(false, INIT, LOOKUP, FINI)

// The same for a module whose LOOKUP may run in several threads at once: exports
// switchyard_map_thread_safe = 1, and runs lookups side by side (never beside INIT or FINI).
#define SY_MAP_PERDITION_FUNCTIONS_CONCURRENT(INIT, LOOKUP, FINI) \
  extern "C" SY_MAP_EXPORT const int switchyard_map_thread_safe = 1; \
  SY_MAP_PERDITION_FUNCTIONS_WITH(true, INIT, LOOKUP, FINI)

#define SY_MAP_PERDITION_FUNCTIONS_WITH(CONCURRENT, INIT, LOOKUP, FINI)                   \
  namespace {                                                                             \
  ::sy::maps::Calls sy_map_calls(CONCURRENT);                                             \
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
