// The sqlite map module: looks a user up in an SQLite file, with Perdition's C ABI
// (dbserver_init / dbserver_get / dbserver_fini).
//
// Options (NULL or "" = all defaults), ';'-separated:
//   PATH | path=PATH        the database file (default /var/lib/switchyard/users.db)
//   table=NAME              the table (default tblPerdition), columns "user", servername,
//                           port and, optionally, store_user
//   query=SQL               instead of table=: one SELECT taking the key as its only
//                           parameter (?1) and returning servername[, port[, store_user]];
//                           it runs to the end of the options, ';' included
// e.g. "/srv/users.db;table=mailboxes" or "path=/srv/users.db;query=SELECT ...".
//
// The answer is "[store_user@]servername[:port]": a NULL or empty port or store_user is
// left out; a bare IPv6 servername (two or more ':') is put in brackets. The key is always
// bound as a parameter, never pasted into SQL.
//
// Connections: dbserver_init checks the options, opens the database read-only and prepares
// the query, and keeps that connection (Switchyard runs init in each worker before it drops
// privileges, so the file may be readable by root only). dbserver_get opens the database
// on first use if init did not, and keeps it; it reopens when the
// options change, when the file at PATH is replaced (another inode), after a database
// error, and in a forked child (a connection is never used across fork()). The host calls a
// module from one thread at a time, but not always the same thread.
//
// Returns: 0 found (*str_return malloc'd and NUL-terminated, *len_return its strlen),
// -1 database error (cannot open, not a database, locked past the busy timeout, ...),
// -2 not found, -3 bad options / bad arguments / a row without a servername.
#include <sqlite3.h>
#include <switchyard/map.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "../common/support.h"

namespace {

constexpr const char* kDefaultPath = "/var/lib/switchyard/users.db";
constexpr const char* kDefaultTable = "tblPerdition";
constexpr int kBusyTimeoutMs = 2000;

constexpr sy::maps::Reporter report("sqlite");

struct Options {
  std::string path = kDefaultPath;
  std::string table = kDefaultTable;
  std::string query;  // a custom query; empty = built from the table
};

bool valid_identifier(std::string_view s) {
  if (s.empty()) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(s[0])) return false;
  for (char c : s)
    if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
  return true;
}

std::optional<Options> parse_options(const char* text, std::string* error) {
  Options out;
  if (text == nullptr) return out;
  std::string_view rest(text);
  bool first = true, have_table = false;
  while (!rest.empty()) {
    std::string_view part;
    if (rest.starts_with("query=")) {
      part = rest;  // the query runs to the end
      rest = {};
    } else {
      auto semi = rest.find(';');
      part = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    }
    bool was_first = first;
    first = false;
    if (part.empty()) continue;
    if (part.starts_with("path=")) {
      out.path = part.substr(5);
    } else if (part.starts_with("table=")) {
      out.table = part.substr(6);
      have_table = true;
      if (!valid_identifier(out.table)) {
        *error = "table=" + out.table + ": not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)";
        return std::nullopt;
      }
    } else if (part.starts_with("query=")) {
      out.query = part.substr(6);
      if (out.query.find_first_not_of(" \t\r\n;") == std::string::npos) {
        *error = "query= is empty";
        return std::nullopt;
      }
    } else if (was_first) {
      out.path = part;
    } else {
      *error = "unknown option \"" + std::string(part) + "\" (expected path=, table= or query=)";
      return std::nullopt;
    }
  }
  if (have_table && !out.query.empty()) {
    *error = "table= and query= are exclusive";
    return std::nullopt;
  }
  if (out.path.empty()) out.path = kDefaultPath;
  return out;
}

// One open database and its prepared lookup, in the process that opened it.
struct Connection : sy::maps::ForkGuard {
  sqlite3* db = nullptr;
  sqlite3_stmt* stmt = nullptr;
  std::string options;  // the options string it was opened for
  dev_t dev = 0;        // the file it opened
  ino_t ino = 0;
  int store_user_column = -1;  // -1: none
  int port_column = -1;

  bool is_open() const { return db != nullptr; }

  void close() {
    sqlite3_finalize(stmt);
    sqlite3_close_v2(db);
    stmt = nullptr;
    db = nullptr;
  }

  // A connection opened before fork() belongs to the parent: forget it without touching
  // SQLite's state (a few KB and one descriptor, once per child).
  void abandon() {
    stmt = nullptr;
    db = nullptr;
  }
};

Connection g_connection;

bool only_separators(const char* tail) {
  for (; tail != nullptr && *tail != '\0'; ++tail)
    if (!std::strchr(" \t\r\n;", *tail)) return false;
  return true;
}

// Opens `opts` into `c`. Returns SWITCHYARD_MAP_FOUND (0) or an error code with *error set.
int open_connection(const Options& opts, const std::string& options_text, Connection* c,
                    std::string* error) {
  struct stat st;
  if (::stat(opts.path.c_str(), &st) != 0) {
    *error = opts.path + ": " + std::strerror(errno);
    return SWITCHYARD_MAP_DB_ERROR;
  }
  Connection fresh;
  fresh.options = options_text;
  fresh.claim();
  fresh.dev = st.st_dev;
  fresh.ino = st.st_ino;
  int rc = sqlite3_open_v2(opts.path.c_str(), &fresh.db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    *error = opts.path + ": " + (fresh.db ? sqlite3_errmsg(fresh.db) : sqlite3_errstr(rc));
    fresh.close();
    return SWITCHYARD_MAP_DB_ERROR;
  }
  sqlite3_busy_timeout(fresh.db, kBusyTimeoutMs);

  auto prepare = [&](const std::string& sql, const char** tail) {
    return sqlite3_prepare_v2(fresh.db, sql.c_str(), -1, &fresh.stmt, tail);
  };
  const char* tail = nullptr;
  if (opts.query.empty()) {
    const std::string from = " FROM \"" + opts.table + "\" WHERE \"user\" = ?1 LIMIT 1";
    rc = prepare("SELECT servername, port, store_user" + from, &tail);
    if (rc == SQLITE_OK) {
      fresh.store_user_column = 2;
    } else if (sqlite3_errcode(fresh.db) == SQLITE_ERROR) {  // not BUSY, NOTADB, IOERR...
      rc = prepare("SELECT servername, port" + from, &tail);  // no store_user column
    }
    fresh.port_column = 1;
  } else {
    rc = prepare(opts.query, &tail);
  }
  if (rc != SQLITE_OK || fresh.stmt == nullptr) {
    *error = opts.path + ": " + (rc != SQLITE_OK ? sqlite3_errmsg(fresh.db) : "query= is empty");
    fresh.close();
    return rc != SQLITE_OK ? SWITCHYARD_MAP_DB_ERROR : SWITCHYARD_MAP_OTHER_ERROR;
  }
  if (!opts.query.empty()) {
    int columns = sqlite3_column_count(fresh.stmt);
    const char* problem = nullptr;
    if (!only_separators(tail))
      problem = "query= must be a single statement";
    else if (sqlite3_bind_parameter_count(fresh.stmt) != 1)
      problem = "query= must take exactly one parameter, the key (?1)";
    else if (columns < 1 || columns > 3)
      problem = "query= must return 1 to 3 columns: servername[, port[, store_user]]";
    else if (!sqlite3_stmt_readonly(fresh.stmt))
      problem = "query= must not write";
    if (problem) {
      *error = problem;
      fresh.close();
      return SWITCHYARD_MAP_OTHER_ERROR;
    }
    fresh.port_column = columns >= 2 ? 1 : -1;
    fresh.store_user_column = columns >= 3 ? 2 : -1;
  }
  *c = fresh;
  return SWITCHYARD_MAP_FOUND;
}

// True when the file at the configured path is still the one `c` opened.
// False only when another file now stands at PATH. A path we may no longer stat (after
// the privilege drop) or that vanished keeps the open connection.
bool same_file(const Connection& c, const Options& opts) {
  struct stat st;
  if (::stat(opts.path.c_str(), &st) != 0) return true;
  return st.st_dev == c.dev && st.st_ino == c.ino;
}

std::string column_text(sqlite3_stmt* stmt, int column) {
  if (column < 0) return {};
  const unsigned char* text = sqlite3_column_text(stmt, column);
  if (text == nullptr) return {};
  std::string_view s(reinterpret_cast<const char*>(text),
                     static_cast<std::size_t>(sqlite3_column_bytes(stmt, column)));
  return std::string(sy::maps::trim(s));
}

// Options: dbserver_get's, or dbserver_init's when NULL (sy::maps::Calls).
int lookup(const char* key, const char* options, char** str_return, size_t* len_return) {
  auto opts = sy::maps::parse_or_report(parse_options, options, report);
  if (!opts) return SWITCHYARD_MAP_OTHER_ERROR;
  const std::string options_text = options ? options : "";
  std::string error;

  Connection& c = g_connection;
  sy::maps::forget_if_inherited(c);
  if (c.is_open() && (c.options != options_text || !same_file(c, *opts))) c.close();
  if (!c.is_open()) {
    int rc = open_connection(*opts, options_text, &c, &error);
    if (rc != SWITCHYARD_MAP_FOUND) {
      report(error);
      return rc;
    }
  }

  sqlite3_reset(c.stmt);
  sqlite3_clear_bindings(c.stmt);
  if (sqlite3_bind_text(c.stmt, 1, key, -1, SQLITE_TRANSIENT) != SQLITE_OK) {
    report(opts->path + ": binding the key: " + sqlite3_errmsg(c.db));
    c.close();
    return SWITCHYARD_MAP_DB_ERROR;
  }
  int rc = sqlite3_step(c.stmt);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(c.stmt);
    return SWITCHYARD_MAP_NOT_FOUND;
  }
  if (rc != SQLITE_ROW) {
    report(opts->path + ": " + sqlite3_errmsg(c.db));
    c.close();  // reopened on the next lookup: the file may have been fixed or replaced
    return SWITCHYARD_MAP_DB_ERROR;
  }
  std::string server = column_text(c.stmt, 0);
  std::string port = column_text(c.stmt, c.port_column);
  std::string user = column_text(c.stmt, c.store_user_column);
  sqlite3_reset(c.stmt);  // ends the read transaction: writers are not held up
  if (server.empty()) {
    report(opts->path + ": the row for \"" + key + "\" has no servername");
    return SWITCHYARD_MAP_OTHER_ERROR;
  }
  return sy::maps::return_answer(sy::maps::format_answer(user, server, port), str_return,
                                len_return);
}

int init(const char* options) {
  sy::maps::drop(g_connection);
  auto opts = sy::maps::parse_or_report(parse_options, options, report);
  if (!opts) return SWITCHYARD_MAP_OTHER_ERROR;
  // The connection stays open: the host runs init before it drops privileges, so a
  // database only root may read still answers afterwards.
  std::string error;
  int rc = open_connection(*opts, options ? options : "", &g_connection, &error);
  if (rc != SWITCHYARD_MAP_FOUND) {
    g_connection.close();
    report(error);
    return rc;
  }
  return 0;
}

void fini() { sy::maps::drop(g_connection); }

}  // namespace

// Thread-safe: lookups take turns on the one connection (sy::maps::Calls), each a few
// microseconds on a local file, so the host need not keep other maps waiting for them.
extern "C" SY_MAP_EXPORT const int switchyard_map_thread_safe = 1;
SY_MAP_PERDITION_FUNCTIONS(init, lookup, fini);
