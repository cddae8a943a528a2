// The ldap map module: looks a user up in an LDAP directory, with Perdition's C ABI
// (dbserver_init / dbserver_get / dbserver_fini).
//
// Options: Perdition's "[ldap_version:]ldap_url", documented in ldap_options.h, e.g.
//   ldap://127.0.0.1:3389/ou=mailbox,dc=example,dc=com?username,mailhost,port?one?(uid=%s)
// plus the extensions bindname=, x-bindpw=, x-starttls, x-timeout=, x-cacert=. The key
// replaces %s in the filter escaped per RFC 4515, so no key can change the filter's shape.
// The first entry found answers (see make_answer): attribute 1 is the store user, 2 the
// store host, 3 the port.
//
// Connections: per options string (a host may configure the module twice, e.g. for two
// directories), kept between lookups, one for each lookup running at the same time: the
// module is thread-safe, each lookup works on a connection no other thread uses (a pool in
// maps/common/support.h). dbserver_init checks the options (bad options: -3) and connects and
// binds, before the host drops privileges; a server that cannot be reached or refuses the
// bind then is reported on stderr but is not fatal (init returns 0): lookups connect again,
// and answer -1 while it lasts, so a directory outage never stops the proxy from starting
// and a reload never fails for it. A connection is dropped after a connection-level error
// (server down, connect error, timeout, unavailable) and the lookup is retried once on a
// fresh connection when the failed one was an old one (the server may have closed it while
// idle, or restarted). A connection opened before fork() belongs to the parent: the child
// closes its copy of the descriptor without a word on it (no unbind, no TLS close) and
// opens its own. SIGPIPE is blocked in the calling thread while libldap runs (it writes a
// TLS goodbye to connections the server has closed).
// With TLS (ldaps://, x-starttls) the server's certificate is always verified, against
// x-cacert or the system's CAs; the CA file is read at every connect, so it must stay
// readable after the privilege drop.
//
// Returns: 0 found (*str_return malloc'd and NUL-terminated, *len_return its strlen),
// -1 directory error (cannot connect, StartTLS or bind refused, timeout, search base
// missing, any search failure), -2 no entry matches, -3 bad options / bad arguments / an
// entry without a usable value. Errors go to stderr as "switchyard ldap map: ...", never
// with the bind password.
#include <ldap.h>
#include <pthread.h>
#include <signal.h>
#include <switchyard/map.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../common/support.h"
#include "ldap_options.h"

namespace {

using sy::ldap_map::LdapOptions;

constexpr sy::maps::Reporter report("ldap");

// Writing to a connection the server closed raises SIGPIPE, which kills a host that does
// not ignore it. Blocks it in this thread around libldap calls and discards one raised
// meanwhile.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    active_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0 && !sigismember(&old_, SIGPIPE);
    if (active_) {
      sigset_t pending;
      sigpending(&pending);
      active_ = !sigismember(&pending, SIGPIPE);  // someone else's: leave it alone
    }
  }
  ~SigpipeGuard() {
    if (active_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE)) {
        timespec zero{0, 0};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_, old_;
  bool active_ = false;
};

std::string ldap_error_text(LDAP* ld, int rc) {
  std::string out = ldap_err2string(rc);
  char* diagnostic = nullptr;
  if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diagnostic) == LDAP_OPT_SUCCESS &&
      diagnostic) {
    if (*diagnostic) out += std::string(" (") + diagnostic + ")";
    ldap_memfree(diagnostic);
  }
  return out;
}

// Errors after which the connection is of no more use.
bool connection_level(int rc) {
  return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_TIMEOUT ||
         rc == LDAP_UNAVAILABLE || rc == LDAP_LOCAL_ERROR || rc == LDAP_ENCODING_ERROR ||
         rc == LDAP_DECODING_ERROR;
}

// The same, when a fresh connection may well succeed.
bool worth_a_retry(int rc) {
  return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_TIMEOUT ||
         rc == LDAP_UNAVAILABLE;
}

// A bound session, in the process that opened it.
struct Connection : sy::maps::ForkGuard {
  LDAP* ld = nullptr;

  bool is_open() const { return ld != nullptr; }

  void close() {
    if (ld) ldap_unbind_ext_s(ld, nullptr, nullptr);
    ld = nullptr;
  }

  // Forgets a connection inherited over fork(): closes this process's copy of the socket
  // only, so the parent's session is untouched. The handle's memory is left behind.
  void abandon() {
    int fd = -1;
    if (ld && ldap_get_option(ld, LDAP_OPT_DESC, &fd) == LDAP_OPT_SUCCESS && fd >= 0)
      ::close(fd);
    ld = nullptr;
  }
};

// Connections per options string (a host may configure the module twice, e.g. two
// directories or two bind identities, each call passing its own options), one for each
// lookup running at the same time.
sy::maps::Pool<Connection> g_pool;

bool valid_dn(const std::string& dn) {
  LDAPDN parsed = nullptr;
  int rc = ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAPV3);
  if (parsed) ldap_dnfree(parsed);
  return rc == LDAP_SUCCESS;
}

// Options parsed and checked the way dbserver_init and dbserver_get both need.
std::optional<LdapOptions> read_options(const char* text, std::string* error) {
  auto opts = sy::ldap_map::parse_options(text, error);
  if (!opts) return std::nullopt;
  if (!valid_dn(opts->base)) {
    *error = "base DN \"" + opts->base + "\" is not a DN";
    return std::nullopt;
  }
  if (!opts->bind_dn.empty() && !valid_dn(opts->bind_dn)) {
    *error = "bindname \"" + opts->bind_dn + "\" is not a DN";
    return std::nullopt;
  }
  return opts;
}

// Connects `c` per `opts`: StartTLS when asked, then a simple bind (anonymous without
// bindname). Returns SWITCHYARD_MAP_FOUND (0) or an error code with *error set.
int open_connection(const LdapOptions& opts, Connection* c, std::string* error) {
  const std::string uris = sy::ldap_map::uri_list(opts);
  LDAP* ld = nullptr;
  int rc = ldap_initialize(&ld, uris.c_str());
  if (rc != LDAP_SUCCESS) {
    *error = uris + ": " + ldap_err2string(rc);
    return SWITCHYARD_MAP_OTHER_ERROR;
  }
  auto fail = [&](const std::string& why, int result) {
    *error = uris + ": " + why;
    ldap_unbind_ext_s(ld, nullptr, nullptr);
    return result;
  };

  timeval timeout{opts.timeout_seconds, 0};
  int version = opts.version;
  int require_cert = LDAP_OPT_X_TLS_DEMAND;
  int tls_min = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
  int new_client_context = 0;
  if ((rc = ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version)) != LDAP_OPT_SUCCESS ||
      (rc = ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &timeout)) != LDAP_OPT_SUCCESS ||
      (rc = ldap_set_option(ld, LDAP_OPT_TIMEOUT, &timeout)) != LDAP_OPT_SUCCESS ||
      (rc = ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON)) != LDAP_OPT_SUCCESS ||
      (rc = ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF)) != LDAP_OPT_SUCCESS)
    return fail("libldap refused a connection option", SWITCHYARD_MAP_OTHER_ERROR);
  if (opts.tls()) {
    // A context of this connection's own, so that ldap.conf's TLS_REQCERT cannot
    // lower what we ask for.
    if ((rc = ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &require_cert)) !=
            LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &tls_min)) != LDAP_OPT_SUCCESS ||
        (!opts.ca_file.empty() &&
         (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, opts.ca_file.c_str())) !=
             LDAP_OPT_SUCCESS))
      return fail("libldap refused a TLS option", SWITCHYARD_MAP_OTHER_ERROR);
    if (!opts.ca_file.empty() && ::access(opts.ca_file.c_str(), R_OK) != 0)
      return fail("x-cacert " + opts.ca_file + ": " + std::strerror(errno),
                  SWITCHYARD_MAP_DB_ERROR);
    if ((rc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &new_client_context)) !=
        LDAP_OPT_SUCCESS)
      return fail("cannot set up TLS" +
                      (opts.ca_file.empty() ? std::string(" with the system's CAs")
                                            : " with the CA file " + opts.ca_file),
                  SWITCHYARD_MAP_DB_ERROR);
  }
  if (opts.starttls) {
    rc = ldap_start_tls_s(ld, nullptr, nullptr);
    if (rc != LDAP_SUCCESS)
      return fail("StartTLS: " + ldap_error_text(ld, rc), SWITCHYARD_MAP_DB_ERROR);
  }
  berval password{};
  if (opts.bind_password) {
    password.bv_val = const_cast<char*>(opts.bind_password->c_str());
    password.bv_len = opts.bind_password->size();
  }
  rc = ldap_sasl_bind_s(ld, opts.bind_dn.c_str(), LDAP_SASL_SIMPLE, &password, nullptr, nullptr,
                        nullptr);
  if (rc != LDAP_SUCCESS) {
    return fail((opts.bind_dn.empty() ? std::string("anonymous bind")
                                      : "bind as \"" + opts.bind_dn + "\"") +
                    ": " + ldap_error_text(ld, rc),
                SWITCHYARD_MAP_DB_ERROR);
  }
  c->ld = ld;
  c->claim();
  return SWITCHYARD_MAP_FOUND;
}

std::string first_value(LDAP* ld, LDAPMessage* entry, const std::vector<std::string>& attrs,
                        std::size_t index) {
  if (index >= attrs.size()) return {};
  berval** values = ldap_get_values_len(ld, entry, attrs[index].c_str());
  if (values == nullptr) return {};
  std::string out;
  if (values[0] != nullptr) out.assign(values[0]->bv_val, values[0]->bv_len);
  ldap_value_free_len(values);
  return out;
}

// One search on the open connection. *level_rc is the libldap result code (0 = fine).
int search(Connection& c, const LdapOptions& opts, const char* key, char** str_return,
           size_t* len_return, int* level_rc, std::string* error) {
  *level_rc = LDAP_SUCCESS;
  const std::string filter = sy::ldap_map::expand_filter(opts, key);
  std::vector<char*> attrs;
  for (const auto& a : opts.attributes) attrs.push_back(const_cast<char*>(a.c_str()));
  attrs.push_back(nullptr);
  int scope = opts.scope == sy::ldap_map::Scope::Base       ? LDAP_SCOPE_BASE
              : opts.scope == sy::ldap_map::Scope::OneLevel ? LDAP_SCOPE_ONELEVEL
              : opts.scope == sy::ldap_map::Scope::Subtree  ? LDAP_SCOPE_SUBTREE
                                                            : LDAP_SCOPE_CHILDREN;
  timeval timeout{opts.timeout_seconds, 0};
  LDAPMessage* result = nullptr;
  // The size limit of 1 makes "more than one entry" a LDAP_SIZELIMIT_EXCEEDED that still
  // carries the first one.
  int rc = ldap_search_ext_s(c.ld, opts.base.c_str(), scope, filter.c_str(), attrs.data(), 0,
                             nullptr, nullptr, &timeout, 1, &result);
  LDAPMessage* entry =
      (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED) && result
          ? ldap_first_entry(c.ld, result)
          : nullptr;
  if (entry == nullptr) {
    int answer = SWITCHYARD_MAP_NOT_FOUND;
    if (rc != LDAP_SUCCESS) {
      *level_rc = rc;
      *error = sy::ldap_map::uri_list(opts) + ": search " + filter + " under \"" + opts.base +
               "\": " + ldap_error_text(c.ld, rc);
      answer = rc == LDAP_FILTER_ERROR ? SWITCHYARD_MAP_OTHER_ERROR : SWITCHYARD_MAP_DB_ERROR;
    }
    ldap_msgfree(result);
    return answer;
  }
  std::string user = first_value(c.ld, entry, opts.attributes, 0);
  std::string host = first_value(c.ld, entry, opts.attributes, 1);
  std::string port = first_value(c.ld, entry, opts.attributes, 2);
  auto answer = sy::ldap_map::make_answer(user, host, port);
  if (!answer) {
    char* dn = ldap_get_dn(c.ld, entry);
    *error = "entry \"" + std::string(dn ? dn : "?") + "\" has no value for " +
             (opts.attributes.size() > 1 ? opts.attributes[1] + " or " : "") +
             opts.attributes[0];
    ldap_memfree(dn);
    ldap_msgfree(result);
    return SWITCHYARD_MAP_OTHER_ERROR;
  }
  ldap_msgfree(result);
  return sy::maps::return_answer(*answer, str_return, len_return);
}

// One lookup on `c`, which is opened first when closed.
int lookup_on(Connection& c, const LdapOptions& opts, const std::string& options_text,
              const char* key, char** str_return, size_t* len_return) {
  std::string error;
  for (int attempt = 0;; ++attempt) {
    bool reused = c.is_open();
    if (!reused) {
      int rc = open_connection(opts, &c, &error);
      if (rc != SWITCHYARD_MAP_FOUND) {
        report(error);
        return rc;
      }
      g_pool.opened(options_text, &c);
    }
    int level_rc = LDAP_SUCCESS;
    int rc = search(c, opts, key, str_return, len_return, &level_rc, &error);
    if (level_rc != LDAP_SUCCESS && connection_level(level_rc)) {
      c.close();
      if (reused && attempt == 0 && worth_a_retry(level_rc)) continue;  // a stale connection
    }
    if (rc == SWITCHYARD_MAP_DB_ERROR || rc == SWITCHYARD_MAP_OTHER_ERROR) report(error);
    return rc;
  }
}

// Options: dbserver_get's, or dbserver_init's when NULL (sy::maps::Calls). Runs in several
// threads at once, each on a connection of its own from the pool.
int lookup(const char* key, const char* options, char** str_return, size_t* len_return) {
  SigpipeGuard guard;
  auto opts = sy::maps::parse_or_report(read_options, options, report);
  if (!opts) return SWITCHYARD_MAP_OTHER_ERROR;
  const std::string options_text = options ? options : "";
  std::unique_ptr<Connection> c = g_pool.take(options_text);
  int rc = lookup_on(*c, *opts, options_text, key, str_return, len_return);
  g_pool.give_back(options_text, std::move(c));
  return rc;
}

int init(const char* options) {
  SigpipeGuard guard;
  auto opts = sy::maps::parse_or_report(read_options, options, report);
  if (!opts) return SWITCHYARD_MAP_OTHER_ERROR;
  const std::string options_text = options ? options : "";
  std::unique_ptr<Connection> c = g_pool.take(options_text);
  c->close();
  // Connect now, while the host still runs as root; an unreachable directory is not fatal.
  std::string error;
  int rc = open_connection(*opts, c.get(), &error);
  g_pool.give_back(options_text, std::move(c));
  if (rc == SWITCHYARD_MAP_OTHER_ERROR) {  // libldap refused the URL or an option
    report(error);
    return SWITCHYARD_MAP_OTHER_ERROR;
  }
  if (rc != SWITCHYARD_MAP_FOUND) report(error + "; lookups will try again");
  return 0;
}

void fini() {
  SigpipeGuard guard;
  g_pool.clear();
}

}  // namespace

SY_MAP_PERDITION_FUNCTIONS_CONCURRENT(init, lookup, fini);
