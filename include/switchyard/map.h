/*
 * switchyard/map.h - the map module ABI of Switchyard.
 *
 * A map module is a shared object that answers "where does this user live?". Switchyard
 * loads it with dlopen and looks up, with dlsym, the symbols below. The first four are
 * Perdition's ABI, unchanged, so Perdition's modules load as they are and a module written
 * for Switchyard that uses only them loads in Perdition too. The rest are optional
 * Switchyard extensions.
 *
 * Ownership: strings a module returns are malloc'd by the module and freed by the host.
 * Threads: the host calls a module from one thread at a time unless the module exports
 * switchyard_map_thread_safe = 1. dbserver_init runs once in each worker process, as root,
 * before the worker drops its privileges (and once more in the master to check the
 * configuration); open files and connections there.
 *
 * See switchyard-map-plugin(3). For C++, <switchyard/map.hpp> turns a class with one
 * lookup() method into these symbols.
 */
#ifndef SWITCHYARD_MAP_H
#define SWITCHYARD_MAP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SWITCHYARD_MAP_ABI_VERSION 1

/* Return codes of every lookup function (Perdition's). */
#define SWITCHYARD_MAP_FOUND 0          /* an answer is returned */
#define SWITCHYARD_MAP_DB_ERROR (-1)    /* the directory failed: temporary, try later */
#define SWITCHYARD_MAP_NOT_FOUND (-2)   /* no such user: the next map is asked */
#define SWITCHYARD_MAP_OTHER_ERROR (-3) /* anything else: temporary, try later */

/* --- Perdition's ABI ----------------------------------------------------------------- */

/* Optional. Called once before any lookup with the configured options (or NULL).
 * Non-zero refuses to start. */
int dbserver_init(char *options);

/* One of dbserver_get and dbserver_get2 is required (or switchyard_map_lookup).
 * On SWITCHYARD_MAP_FOUND, *str_return is a malloc'd "[user@]host[:port]" of
 * *len_return bytes (NUL termination not required). "host" may name a [backend.NAME];
 * "hold" (or "reject") puts the user on hold. */
int dbserver_get(const char *key, const char *options, char **str_return, size_t *len_return);

/* The same, in parts: each malloc'd or NULL. */
int dbserver_get2(const char *key, const char *options, char **user, char **server,
                  char **port);

/* Optional. Called once at shutdown or reload. */
int dbserver_fini(void);

/* --- Switchyard extensions (all optional) ------------------------------------------- */

/* The ABI the module was built for; a module newer than the host is refused. */
extern const int switchyard_map_abi_version;

/* Non-zero: the module may be called from several threads at once. */
extern const int switchyard_map_thread_safe;

/* What is asked. Strings are the host's, valid during the call. */
struct switchyard_map_query {
  int abi_version;            /* SWITCHYARD_MAP_ABI_VERSION of the host */
  const char *key;            /* the user name after the [username] policy */
  const char *options;        /* the configured options, or NULL */
  const char *protocol;       /* "imap", "pop3", "lmtp", "socketmap" or "cli" */
  const char *client_address; /* "192.0.2.7", "2001:db8::7", or "" (unknown, Unix socket) */
  const char *local_address;  /* the address the client reached, or "" */
};

#define SWITCHYARD_MAP_MAX_SERVERS 8

/* The answer. The module fills it with malloc'd strings; the host frees them. */
struct switchyard_map_answer {
  char *user;                                /* the login for the store, or NULL */
  char *servers[SWITCHYARD_MAP_MAX_SERVERS]; /* "host[:port]" or back-end names, in
                                                fail-over order; unused slots NULL */
  int hold;                                  /* non-zero: the user is on hold */
};

/* Preferred over dbserver_get when exported. The answer arrives zeroed. */
int switchyard_map_lookup(const struct switchyard_map_query *query,
                          struct switchyard_map_answer *answer);

#ifdef __cplusplus
}
#endif

#endif /* SWITCHYARD_MAP_H */
