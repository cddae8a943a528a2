/*
 * switchyard/map.hpp - write a Switchyard map module as a C++ class.
 *
 * Header only, C++17, no library to link. A module is a class with a constructor taking
 * the configured options and one lookup() method; SWITCHYARD_MAP_PLUGIN turns it into the
 * C symbols of <switchyard/map.h>, so the same shared object loads in Switchyard (through
 * switchyard_map_lookup) and in Perdition (through dbserver_get):
 *
 *   #include <switchyard/map.hpp>
 *
 *   namespace {
 *   class MyMap {
 *    public:
 *     explicit MyMap(const char* options);       // options may be NULL
 *     switchyard::Result lookup(const switchyard::Query& query,
 *                               switchyard::Answer& answer) const;
 *   };
 *   }  // namespace
 *
 *   SWITCHYARD_MAP_PLUGIN(MyMap, true);          // true: lookup() is thread-safe
 *
 * Build: g++ -std=c++17 -shared -fPIC $(pkg-config --cflags switchyard-map) my.cc -o my.so
 * See switchyard-map-plugin(3) and the example module (maps/example/example.cc).
 *
 * What the macro defines, all extern "C" with default visibility:
 *
 *   switchyard_map_abi_version  SWITCHYARD_MAP_ABI_VERSION of this header.
 *   switchyard_map_thread_safe  1 when the macro's second argument is true.
 *   dbserver_init(options)      constructs the one instance, ClassName(options). An
 *                               exception is printed on stderr and returns -1, which stops
 *                               the host from starting. A second init without fini replaces
 *                               the instance (the new one is built before the old goes).
 *   dbserver_fini()             destroys the instance; returns 0.
 *   switchyard_map_lookup(q, a) calls lookup() and copies the Answer into *a with malloc'd
 *                               strings (the host frees them).
 *   dbserver_get(key, options, str, len)
 *                               calls lookup() with an empty protocol and addresses (Perdition
 *                               does not pass them) and returns "[user@]server" built from the
 *                               first server, or "hold". The user is joined with '@',
 *                               Perdition's default domain delimiter.
 *
 * How Result and exceptions map onto the return codes:
 *
 *   Result::Found               0; with answer.hold the user is on hold, otherwise at least
 *                               one non-empty server is required (none: -3 and a message)
 *   Result::NotFound            -2, the next map is asked; anything put in the answer is
 *                               ignored
 *   Result::TempFail            -1, the client is told to try later
 *   throw MapError / any std::exception
 *                               -1, and what() is printed on stderr
 *   throw anything else         -3
 *   lookup before dbserver_init -3
 *   malloc failure              -1
 * No exception crosses the C boundary. Temporary failures are never cached by the host and
 * never taken as "unknown user", so throw (or return TempFail) whenever the directory cannot
 * be asked, rather than answering NotFound.
 *
 * The answer:
 *   user     the login for the store; empty: the client's login is used
 *   servers  in fail-over order, each "host[:port]" ("[2001:db8::1]:143" for IPv6) or the
 *            name of a [backend.NAME] section, never with a "user@" part; empty strings are
 *            skipped and at most SWITCHYARD_MAP_MAX_SERVERS are passed on, the rest dropped
 *            (Perdition, through dbserver_get, gets only the first)
 *   hold     true: the user's mailbox is being moved, every login fails temporarily; user
 *            and servers are then ignored
 *
 * Lifetime and threads:
 *   - The constructor runs in dbserver_init: in Switchyard once in the master to check the
 *     configuration (then destroyed) and once in each worker, as root before the worker
 *     drops its privileges, so open root-only files and connections there. Lookups run later
 *     with the worker's privileges.
 *   - lookup() may be const or not. With thread_safe false the host calls it from one thread
 *     at a time (not always the same thread); with true, concurrently, so it must not change
 *     shared state without its own locking. init, fini and lookups never overlap.
 *   - The Query's strings are the host's and valid only during the call: copy what you keep.
 *   - The instance lives in this module (one per loaded module). If the process exits
 *     without dbserver_fini, the instance is destroyed by the usual static destructors,
 *     except in a forked child of the process that built it: there it is left alone, so a
 *     child does not close a connection its parent still uses (Perdition may fork one child
 *     per client after dbserver_init).
 *   - Destructors must not throw. Exceptions must be enabled (no -fno-exceptions).
 *
 * Use the macro once per module, at global scope. Declaring the class in an anonymous
 * namespace keeps its symbols out of the host's and other modules' way.
 */
#ifndef SWITCHYARD_MAP_HPP
#define SWITCHYARD_MAP_HPP

#include <switchyard/map.h>

#include <sys/types.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace switchyard {

// What is asked. Views of the host's strings, valid during the lookup() call only; absent
// values (a NULL pointer from the host) are empty.
struct Query {
  std::string_view key;             // the user name after the host's [username] policy
  std::string_view options;         // the configured options string
  std::string_view protocol;        // "imap", "pop3", "lmtp", "socketmap", "cli"; "" from
                                    // dbserver_get (Perdition)
  std::string_view client_address;  // "192.0.2.7", "2001:db8::7", or "" when unknown
  std::string_view local_address;   // the address the client reached, or ""
};

// The answer lookup() fills for Result::Found (see the header comment).
struct Answer {
  std::string user;                  // login for the store, or empty
  std::vector<std::string> servers;  // "host[:port]" or back-end names, fail-over order
  bool hold = false;                 // the user is on hold
};

// The three outcomes of a lookup.
enum class Result {
  Found,     // the answer is filled
  NotFound,  // no such user here: the next map is asked
  TempFail,  // the directory could not be asked: try later
};

// Throw from the constructor to refuse to start, from lookup() for a temporary failure.
class MapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

inline std::string_view view(const char* s) noexcept {
  return s != nullptr ? std::string_view(s) : std::string_view();
}

// A malloc'd, NUL-terminated copy; nullptr when memory is short.
inline char* malloc_copy(std::string_view s) noexcept {
  auto* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) return nullptr;
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

// The state and logic behind the macro's C functions, for one class. The macro makes one
// object of it with internal linkage; its constructor is constexpr, so it exists before
// dlopen returns. Every member function is noexcept: this is where exceptions stop.
template <class Map>
class Adapter {
  static_assert(std::is_constructible_v<Map, const char*>,
                "a map class needs a constructor Map(const char* options)");
  static_assert(std::is_same_v<decltype(std::declval<Map&>().lookup(
                                   std::declval<const Query&>(), std::declval<Answer&>())),
                               Result>,
                "a map class needs Result lookup(const Query&, Answer&) [const]");

 public:
  explicit constexpr Adapter(const char* name) noexcept : name_(name) {}
  Adapter(const Adapter&) = delete;
  Adapter& operator=(const Adapter&) = delete;
  ~Adapter() { abandon_if_inherited(); }

  int init(const char* options) noexcept {
    try {
      auto fresh = std::make_unique<Map>(options);
      abandon_if_inherited();
      map_ = std::move(fresh);
      owner_ = ::getpid();
      return SWITCHYARD_MAP_FOUND;
    } catch (const std::exception& e) {
      report("dbserver_init", e.what());
    } catch (...) {
      report("dbserver_init", "unknown exception");
    }
    return SWITCHYARD_MAP_DB_ERROR;
  }

  int fini() noexcept {
    map_.reset();
    return 0;
  }

  int lookup(const switchyard_map_query* q, switchyard_map_answer* out) noexcept {
    if (q == nullptr || out == nullptr) return SWITCHYARD_MAP_OTHER_ERROR;
    return call("switchyard_map_lookup",
                Query{view(q->key), view(q->options), view(q->protocol),
                      view(q->client_address), view(q->local_address)},
                [&](const Answer& a) { return to_struct(a, out); });
  }

  int get(const char* key, const char* options, char** str_return,
          std::size_t* len_return) noexcept {
    if (key == nullptr || str_return == nullptr) return SWITCHYARD_MAP_OTHER_ERROR;
    return call("dbserver_get", Query{view(key), view(options), {}, {}, {}},
                [&](const Answer& a) { return to_string(a, str_return, len_return); });
  }

 private:
  // Runs lookup() and, when found, `emit` on its answer; maps everything else to a code.
  template <class Emit>
  int call(const char* where, const Query& query, Emit emit) noexcept {
    if (!map_) {
      report(where, "called before dbserver_init");
      return SWITCHYARD_MAP_OTHER_ERROR;
    }
    try {
      Answer answer;
      switch (map_->lookup(query, answer)) {
        case Result::Found: return emit(answer);
        case Result::NotFound: return SWITCHYARD_MAP_NOT_FOUND;
        case Result::TempFail: return SWITCHYARD_MAP_DB_ERROR;
      }
      report(where, "lookup() returned a value that is not a Result");
      return SWITCHYARD_MAP_OTHER_ERROR;
    } catch (const std::exception& e) {
      report(where, e.what());
      return SWITCHYARD_MAP_DB_ERROR;
    } catch (...) {
      report(where, "unknown exception");
      return SWITCHYARD_MAP_OTHER_ERROR;
    }
  }

  int to_struct(const Answer& a, switchyard_map_answer* out) noexcept {
    if (a.hold) {
      out->hold = 1;
      return SWITCHYARD_MAP_FOUND;
    }
    char* servers[SWITCHYARD_MAP_MAX_SERVERS] = {};
    std::size_t n = 0;
    bool short_of_memory = false;
    for (const std::string& s : a.servers) {
      if (s.empty()) continue;
      if (n == SWITCHYARD_MAP_MAX_SERVERS) break;
      if ((servers[n++] = malloc_copy(s)) == nullptr) short_of_memory = true;
    }
    char* user = nullptr;
    if (!a.user.empty() && (user = malloc_copy(a.user)) == nullptr) short_of_memory = true;
    if (n == 0 || short_of_memory) {
      for (char* s : servers) std::free(s);
      std::free(user);
      if (short_of_memory) return SWITCHYARD_MAP_DB_ERROR;
      report("switchyard_map_lookup", "lookup() answered Found without a server");
      return SWITCHYARD_MAP_OTHER_ERROR;
    }
    out->user = user;
    for (std::size_t i = 0; i < n; ++i) out->servers[i] = servers[i];
    return SWITCHYARD_MAP_FOUND;
  }

  int to_string(const Answer& a, char** str_return, std::size_t* len_return) noexcept {
    std::string_view server = "hold";
    if (!a.hold) {
      server = {};
      for (const std::string& s : a.servers) {
        if (!s.empty()) {
          server = s;
          break;
        }
      }
      if (server.empty()) {
        report("dbserver_get", "lookup() answered Found without a server");
        return SWITCHYARD_MAP_OTHER_ERROR;
      }
    }
    std::string_view user = a.hold ? std::string_view() : std::string_view(a.user);
    std::size_t len = user.empty() ? server.size() : user.size() + 1 + server.size();
    auto* p = static_cast<char*>(std::malloc(len + 1));
    if (p == nullptr) return SWITCHYARD_MAP_DB_ERROR;
    char* end = p;
    if (!user.empty()) {
      std::memcpy(end, user.data(), user.size());
      end += user.size();
      *end++ = '@';
    }
    std::memcpy(end, server.data(), server.size());
    p[len] = '\0';
    *str_return = p;
    if (len_return != nullptr) *len_return = len;
    return SWITCHYARD_MAP_FOUND;
  }

  // An instance built by the parent of this (forked) process is the parent's: forget it
  // without running its destructor, which might close connections the parent still uses.
  void abandon_if_inherited() noexcept {
    if (map_ && owner_ != ::getpid()) static_cast<void>(map_.release());
  }

  void report(const char* where, const char* what) const noexcept {
    std::fprintf(stderr, "switchyard map %s: %s: %s\n", name_, where, what);
  }

  const char* name_;
  std::unique_ptr<Map> map_;
  pid_t owner_ = 0;  // the process that built map_
};

}  // namespace detail
}  // namespace switchyard

#if defined(__GNUC__) || defined(__clang__)
#define SWITCHYARD_MAP_EXPORT __attribute__((visibility("default")))
#else
#define SWITCHYARD_MAP_EXPORT
#endif

/*
 * SWITCHYARD_MAP_PLUGIN(ClassName, thread_safe): defines the module's C symbols for
 * ClassName (see the top of this file). Use once, at global scope, followed by ';'.
 * thread_safe: true when ClassName::lookup may run in several threads at once.
 */
#define SWITCHYARD_MAP_PLUGIN(ClassName, thread_safe)                                        \
  namespace {                                                                                \
  ::switchyard::detail::Adapter<ClassName> switchyard_map_adapter(#ClassName);               \
  }                                                                                          \
  extern "C" {                                                                               \
  SWITCHYARD_MAP_EXPORT extern const int switchyard_map_abi_version =                        \
      SWITCHYARD_MAP_ABI_VERSION;                                                            \
  SWITCHYARD_MAP_EXPORT extern const int switchyard_map_thread_safe = (thread_safe) ? 1 : 0; \
  SWITCHYARD_MAP_EXPORT int dbserver_init(char* options) {                                   \
    return switchyard_map_adapter.init(options);                                             \
  }                                                                                          \
  SWITCHYARD_MAP_EXPORT int dbserver_fini(void) { return switchyard_map_adapter.fini(); }    \
  SWITCHYARD_MAP_EXPORT int switchyard_map_lookup(const struct switchyard_map_query* query,  \
                                                  struct switchyard_map_answer* answer) {    \
    return switchyard_map_adapter.lookup(query, answer);                                     \
  }                                                                                          \
  SWITCHYARD_MAP_EXPORT int dbserver_get(const char* key, const char* options,               \
                                         char** str_return, size_t* len_return) {            \
    return switchyard_map_adapter.get(key, options, str_return, len_return);                 \
  }                                                                                          \
  }                                                                                          \
  static_assert(true, "SWITCHYARD_MAP_PLUGIN is followed by a semicolon")

#endif /* SWITCHYARD_MAP_HPP */
