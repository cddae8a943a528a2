// Host functions that Perdition's own LDAP map module (libperditiondb_ldap.so.0, Debian
// package perdition-ldap) calls back into the program that loaded it. Perdition exports
// them with -rdynamic; so do switchyard and switchyard-map, with the meaning Perdition
// gives them (see ../shared/FACTS.md): an opaque object holding the three parts of a
// "[user@]host[:port]" string, whose strings the module may take over.
//
// Linked directly into the programs (not from a static library, which would drop this
// unreferenced object).
#include <cstdlib>
#include <cstring>

#include "map/answer.h"

extern "C" {

struct user_server_port_t {
  char* user;
  char* server;
  char* port;
};

namespace {

char* dup_or_null(const std::string& s) { return s.empty() ? nullptr : ::strdup(s.c_str()); }

void free_parts(user_server_port_t* usp) {
  std::free(usp->user);
  std::free(usp->server);
  std::free(usp->port);
  usp->user = usp->server = usp->port = nullptr;
}

}  // namespace

__attribute__((visibility("default"))) int user_server_port_str_assign(user_server_port_t** usp,
                                                                        const char* str) {
  if (!usp || !str) return -1;
  auto parsed = sy::parse_map_answer(str);
  if (!parsed) return -1;
  if (!*usp) {
    *usp = static_cast<user_server_port_t*>(std::calloc(1, sizeof(user_server_port_t)));
    if (!*usp) return -1;
  } else {
    free_parts(*usp);
  }
  (*usp)->user = dup_or_null(parsed->user);
  (*usp)->server = dup_or_null(parsed->host);
  (*usp)->port = dup_or_null(parsed->port);
  return 0;
}

__attribute__((visibility("default"))) char* user_server_port_get_user(
    const user_server_port_t* usp) {
  return usp ? usp->user : nullptr;
}

__attribute__((visibility("default"))) char* user_server_port_get_server(
    const user_server_port_t* usp) {
  return usp ? usp->server : nullptr;
}

__attribute__((visibility("default"))) char* user_server_port_get_port(
    const user_server_port_t* usp) {
  return usp ? usp->port : nullptr;
}

// The caller took the strings: forget them without freeing.
__attribute__((visibility("default"))) void user_server_port_unassign(user_server_port_t* usp) {
  if (usp) usp->user = usp->server = usp->port = nullptr;
}

__attribute__((visibility("default"))) void user_server_port_destroy(user_server_port_t* usp) {
  if (!usp) return;
  free_parts(usp);
  std::free(usp);
}

}  // extern "C"
