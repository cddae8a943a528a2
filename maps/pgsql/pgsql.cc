// The pgsql map module: looks a user up in PostgreSQL through libpq, with Perdition's C ABI
// (dbserver_init / dbserver_get / dbserver_fini).
//
// Options: Perdition's nine fields or a postgresql:// URI with an optional query=; see
// pgsql_options.h. The key is always bound as the statement's parameter $1, never pasted
// into SQL; its type is inferred from the query (write $1::text where PostgreSQL cannot).
//
// The answer is "[user@]servername[:port]" from the first row: servername and port are cut
// at the first blank (Perdition's reading of char(n) columns), a NULL or empty port or user
// is left out, a bare IPv6 servername gets brackets.
//
// Connections: kept between lookups, one for each lookup running at the same time (the
// module is thread-safe: each lookup works on a session no other thread uses, from a pool
// in maps/common/support.h). The first is opened by dbserver_init, as root; more are
// opened as concurrent lookups need them, with the worker's privileges: when one cannot
// be (credentials only root may read), the lookup waits for a session another lookup
// holds, so lookups go one at a time instead of failing. Each session gets statement_timeout
// (default 5 s) and default_transaction_read_only = on: a lookup never writes.
// dbserver_init checks the options and connects; when the server cannot be reached it
// says so on stderr and still returns 0, since an outage must not stop the proxy from
// starting or its workers from respawning: lookups answer -1 until the server is back.
// A lookup reconnects when the connection is broken, and when a query fails because the
// connection was lost it reconnects and runs the query once more. A connection opened
// before fork() belongs to the parent: the child leaves it untouched (closing it would send
// the server a Terminate on the socket they share) and opens its own.
//
// Returns: 0 found (*str_return malloc'd and NUL-terminated, *len_return its strlen),
// -1 database error (server down, connection lost, timeout, the table missing, ...),
// -2 not found (also for a key the database cannot even hold: bytes invalid in its
// encoding), -3 bad options / bad arguments / a query of the wrong shape / a row without a
// servername. Messages go to stderr as "switchyard pgsql map: ..." and never show the
// password.
#include <libpq-fe.h>
#include <switchyard/map.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../common/support.h"
#include "pgsql_options.h"

namespace {

using sy::pgsql::Options;

// Session settings, the timeout bound as a parameter.
constexpr const char* kSessionSetup =
    "SELECT set_config('statement_timeout', $1, false), "
    "set_config('default_transaction_read_only', 'on', false)";

constexpr sy::maps::Reporter report("pgsql");

// libpq's messages end in a newline and may span lines: one line for the log.
std::string one_line(const char* text) {
  std::string out;
  for (const char* p = text ? text : ""; *p; ++p) {
    if (*p == '\n' || *p == '\r') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += *p;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.empty() ? "unknown error" : out;
}

// A key as it may appear in a log line: control bytes escaped, at most 200 bytes.
std::string printable(std::string_view key) {
  std::string out;
  for (unsigned char ch : key.substr(0, 200)) {
    if (ch < 0x20 || ch == 0x7f || ch == '\\' || ch == '"') {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", ch);
      out += hex;
    } else {
      out += static_cast<char>(ch);
    }
  }
  if (key.size() > 200) out += "...";
  return out;
}

void notice_processor(void*, const char* message) { report("server notice: " + one_line(message)); }

std::string sqlstate_of(const PGresult* r) {
  const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return s ? s : "";
}

// The server or the network went away (rather than the query failing on a live session).
bool connection_lost(PGconn* conn, const std::string& sqlstate) {
  return PQstatus(conn) != CONNECTION_OK || sqlstate.empty() || sqlstate.starts_with("08") ||
         sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03";
}

// The key itself cannot be held by the database (invalid byte sequence, untranslatable
// character): no row can match it.
bool key_not_representable(const std::string& sqlstate) {
  return sqlstate == "22021" || sqlstate == "22P05";
}

// A table, schema or column that does not exist: the names may need PostgreSQL's folding.
bool undefined_name(const std::string& sqlstate) {
  return sqlstate == "42P01" || sqlstate == "42703" || sqlstate == "3F000";
}

// The options checked as libpq will read them; the URI's password never reaches the
// message.
std::optional<Options> parse_and_check(const char* text, std::string* error) {
  auto opts = sy::pgsql::parse_options(text, error);
  if (!opts || opts->form != Options::Form::Uri) return opts;
  char* message = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(opts->uri.c_str(), &message);
  if (parsed == nullptr) {
    *error = "bad URI: " + sy::pgsql::scrub(one_line(message ? message : "out of memory"),
                                            sy::pgsql::uri_secrets(opts->uri));
    PQfreemem(message);
    return std::nullopt;
  }
  PQconninfoFree(parsed);
  return opts;
}

// One open session and the statement a lookup runs on it, in the process that opened it.
struct Connection : sy::maps::ForkGuard {
  PGconn* conn = nullptr;
  std::string options;  // the options string it was opened for
  std::string sql;      // the lookup statement, returning servername[, port[, user]]

  bool is_open() const { return conn != nullptr; }

  void close() {
    if (conn) PQfinish(conn);
    conn = nullptr;
  }

  // A connection opened before fork() belongs to the parent: forget it without a word to
  // the server (a few KB and one descriptor, once per child).
  void abandon() { conn = nullptr; }
};

// Sessions per options string, one for each lookup running at the same time.
sy::maps::Pool<Connection> g_pool;

struct OpenResult {
  int rc = SWITCHYARD_MAP_FOUND;
  bool connected = false;  // false: the server could not be reached or refused the login
  std::string error;
};

// Checks a prepared statement's result; the message when it failed.
std::optional<std::string> failure(PGresult* r, ExecStatusType want, PGconn* conn) {
  if (r != nullptr && PQresultStatus(r) == want) return std::nullopt;
  return one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
}

// Opens a session for `opts` into `c`.
OpenResult open_connection(const Options& opts, const std::string& options_text, Connection* c) {
  OpenResult out;
  const std::string where = sy::pgsql::describe(opts);
  auto params = sy::pgsql::connect_params(opts);
  std::vector<const char*> keywords, values;
  for (const auto& [k, v] : params.keywords) {
    keywords.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);

  Connection fresh;
  fresh.options = options_text;
  fresh.claim();
  fresh.conn = PQconnectdbParams(keywords.data(), values.data(), params.expand_dbname ? 1 : 0);
  if (fresh.conn == nullptr || PQstatus(fresh.conn) != CONNECTION_OK) {
    std::string why = fresh.conn ? one_line(PQerrorMessage(fresh.conn)) : "out of memory";
    if (opts.form == Options::Form::Uri)
      why = sy::pgsql::scrub(why, sy::pgsql::uri_secrets(opts.uri));
    fresh.close();
    out.rc = SWITCHYARD_MAP_DB_ERROR;
    out.error = "cannot connect to " + where + ": " + why;
    return out;
  }
  out.connected = true;
  PQsetNoticeProcessor(fresh.conn, notice_processor, nullptr);

  auto fail = [&](int rc, std::string why) {
    out.connected = PQstatus(fresh.conn) == CONNECTION_OK;  // else it went away meanwhile
    fresh.close();
    out.rc = rc;
    out.error = where + ": " + why;
    return out;
  };

  const std::string timeout = std::to_string(opts.statement_timeout_ms);
  const char* setup_values[] = {timeout.c_str()};
  PGresult* r =
      PQexecParams(fresh.conn, kSessionSetup, 1, nullptr, setup_values, nullptr, nullptr, 0);
  auto setup_error = failure(r, PGRES_TUPLES_OK, fresh.conn);
  PQclear(r);
  if (setup_error) return fail(SWITCHYARD_MAP_DB_ERROR, "setting up the session: " + *setup_error);

  // Prepared once here to find the names (and check a query=); lookups send it again with
  // PQexecParams, which needs no server-side state and so also works through poolers.
  std::string sql = sy::pgsql::lookup_query(opts, false);
  r = PQprepare(fresh.conn, "", sql.c_str(), 0, nullptr);
  auto prepare_error = failure(r, PGRES_COMMAND_OK, fresh.conn);
  if (prepare_error && opts.query.empty() && undefined_name(sqlstate_of(r)) &&
      sy::pgsql::lookup_query(opts, true) != sql) {
    PQclear(r);
    const std::string exact_error = sql + ": " + *prepare_error;
    sql = sy::pgsql::lookup_query(opts, true);  // Perdition's unquoted names, as folded
    r = PQprepare(fresh.conn, "", sql.c_str(), 0, nullptr);
    prepare_error = failure(r, PGRES_COMMAND_OK, fresh.conn);
    if (prepare_error) *prepare_error = exact_error + "; folded to lower case: " + *prepare_error;
  } else if (prepare_error) {
    *prepare_error = sql + ": " + *prepare_error;
  }
  PQclear(r);
  if (prepare_error) return fail(SWITCHYARD_MAP_DB_ERROR, *prepare_error);

  r = PQdescribePrepared(fresh.conn, "");
  auto describe_error = failure(r, PGRES_COMMAND_OK, fresh.conn);
  int parameters = r ? PQnparams(r) : 0;
  int columns = r ? PQnfields(r) : 0;
  PQclear(r);
  if (describe_error) return fail(SWITCHYARD_MAP_DB_ERROR, sql + ": " + *describe_error);
  if (parameters != 1)
    return fail(SWITCHYARD_MAP_OTHER_ERROR,
                "query= must take exactly one parameter, the key ($1): " + sql);
  if (columns < 1 || columns > 3)
    return fail(SWITCHYARD_MAP_OTHER_ERROR,
                "query= must return 1 to 3 columns, servername[, port[, user]]: " + sql);
  fresh.sql = sql;
  *c = fresh;
  return out;
}

struct Attempt {
  int rc = SWITCHYARD_MAP_FOUND;
  bool lost = false;  // the connection went away: worth one more try on a new one
  std::string answer, error;
};

std::string text_of(const PGresult* r, int column) {
  if (PQgetisnull(r, 0, column)) return {};
  return std::string(PQgetvalue(r, 0, column), static_cast<std::size_t>(PQgetlength(r, 0, column)));
}

Attempt run_lookup(Connection& c, const char* key) {
  Attempt out;
  const char* values[] = {key};
  PGresult* r = PQexecParams(c.conn, c.sql.c_str(), 1, nullptr, values, nullptr, nullptr, 0);
  if (r == nullptr || PQresultStatus(r) != PGRES_TUPLES_OK) {
    std::string sqlstate = sqlstate_of(r);
    if (r != nullptr && key_not_representable(sqlstate)) {
      PQclear(r);
      out.rc = SWITCHYARD_MAP_NOT_FOUND;
      return out;
    }
    out.rc = SWITCHYARD_MAP_DB_ERROR;
    out.lost = connection_lost(c.conn, sqlstate);
    out.error = one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(c.conn));
    if (r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK) {
      out.rc = SWITCHYARD_MAP_OTHER_ERROR;  // cannot happen after the describe check
      out.error = "the query returned no rows set";
    }
    PQclear(r);
    return out;
  }
  if (PQntuples(r) == 0) {
    PQclear(r);
    out.rc = SWITCHYARD_MAP_NOT_FOUND;
    return out;
  }
  int columns = PQnfields(r);
  std::string server = sy::pgsql::first_word(text_of(r, 0));
  std::string port = columns >= 2 ? sy::pgsql::first_word(text_of(r, 1)) : "";
  std::string user = columns >= 3 ? sy::pgsql::trim(text_of(r, 2)) : "";
  PQclear(r);
  if (server.empty()) {
    out.rc = SWITCHYARD_MAP_OTHER_ERROR;
    out.error = "the row for \"" + printable(key) + "\" has no servername";
    return out;
  }
  out.answer = sy::pgsql::make_answer(user, server, port);
  return out;
}

// One lookup on `c`, which is opened first when closed. When a second session cannot be
// opened while another lookup holds one (credentials only root could read, used at init;
// a server at its connection limit), waits for that one, as long as a statement may take.
int lookup_on(std::unique_ptr<Connection>& c, const Options& opts, const std::string& options_text,
              const char* key, char** str_return, size_t* len_return) {
  const std::string where = sy::pgsql::describe(opts);
  if (c->is_open() && PQstatus(c->conn) != CONNECTION_OK) c->close();
  bool reused = c->is_open();
  for (;;) {
    if (!c->is_open()) {
      OpenResult opened = open_connection(opts, options_text, c.get());
      if (opened.rc != SWITCHYARD_MAP_FOUND && opened.rc != SWITCHYARD_MAP_OTHER_ERROR) {
        auto wait = std::chrono::milliseconds(opts.statement_timeout_ms);
        if (auto other = g_pool.wait_for_idle(options_text, wait)) {
          c = std::move(other);
          reused = true;
          opened.rc = SWITCHYARD_MAP_FOUND;
        }
      } else if (opened.rc == SWITCHYARD_MAP_FOUND) {
        g_pool.opened(options_text, c.get());
      }
      if (opened.rc != SWITCHYARD_MAP_FOUND) {
        report(opened.error);
        return opened.rc;
      }
    }
    Attempt a = run_lookup(*c, key);
    if (a.rc == SWITCHYARD_MAP_FOUND)
      return sy::maps::return_answer(a.answer, str_return, len_return);
    if (a.rc == SWITCHYARD_MAP_NOT_FOUND) return SWITCHYARD_MAP_NOT_FOUND;
    // Any failure closes the session: the next lookup starts afresh (and finds the names
    // again, should the table have been renamed).
    c->close();
    if (a.lost && reused) {
      report(where + ": connection lost (" + a.error + "): reconnecting");
      reused = false;
      continue;
    }
    report(where + ": " + a.error);
    return a.rc;
  }
}

// Options: dbserver_get's, or dbserver_init's when NULL (sy::maps::Calls). Runs in several
// threads at once, each on a session of its own from the pool.
int lookup(const char* key, const char* options, char** str_return, size_t* len_return) {
  auto opts = sy::maps::parse_or_report(parse_and_check, options, report);
  if (!opts) return SWITCHYARD_MAP_OTHER_ERROR;
  const std::string options_text = options ? options : "";
  std::unique_ptr<Connection> c = g_pool.take(options_text);
  int rc = lookup_on(c, *opts, options_text, key, str_return, len_return);
  g_pool.give_back(options_text, std::move(c));
  return rc;
}

int init(const char* options) {
  auto opts = sy::maps::parse_or_report(parse_and_check, options, report);
  if (!opts) return SWITCHYARD_MAP_OTHER_ERROR;
  const std::string options_text = options ? options : "";
  std::unique_ptr<Connection> c = g_pool.take(options_text);
  c->close();
  // The session stays open for the lookups. Switchyard runs init before it drops
  // privileges, so credentials only root may read (a client key, a .pgpass) work here.
  OpenResult opened = open_connection(*opts, options_text, c.get());
  g_pool.give_back(options_text, std::move(c));
  if (opened.rc == SWITCHYARD_MAP_FOUND) return 0;
  if (!opened.connected) {
    report(opened.error + " (lookups fail temporarily until it answers)");
    return 0;
  }
  report(opened.error);
  return opened.rc;
}

void fini() { g_pool.clear(); }

}  // namespace

SY_MAP_PERDITION_FUNCTIONS_CONCURRENT(init, lookup, fini);
