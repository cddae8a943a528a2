// The pgsql map module's options and the text it builds from them: pure code (no libpq, no
// I/O), compiled into the module and into the unit tests.
//
// Two forms (NULL or "" = Perdition's defaults):
//
//  1. Perdition's nine colon-separated fields, any of which may be empty or missing:
//       dbhost:dbport:dbname:dbtable:dbuser:dbpwd:dbsrvcol:dbusercol:dbportcol
//     defaults localhost:5432:dbperdition:tblPerdition:perdition:perdition:servername:user:port.
//     Every ':' separates fields (as in Perdition): a password or an IPv6 address with ':'
//     needs form 2. dbhost may be a Unix socket directory ("/run/postgresql"); dbtable may
//     be schema-qualified ("mail.users"). The lookup is
//       SELECT "dbsrvcol", "dbportcol" FROM "dbtable" WHERE "dbusercol" = $1 LIMIT 1
//     with every identifier quoted as given. Perdition pasted them unquoted, and PostgreSQL
//     folds unquoted names to lower case (tblPerdition is the table tblperdition), so when
//     the server says a table, schema or column does not exist, the module tries the same
//     names folded to lower case. Connection and statement timeouts are 5 s.
//
//  2. A libpq URI, then ';'-separated settings:
//       postgresql://user:password@host:port/dbname?connect_timeout=10&sslmode=require
//         [;statement_timeout=DURATION][;query=SQL]
//     The URI ends at the first ';' (write a ';' inside it as %3B). connect_timeout comes
//     from the URI (default 5 s); statement_timeout is N, Nms, Ns or Nmin (default 5s, 0 =
//     none). query= runs to the end of the options, ';' included: one SELECT taking the key
//     as $1 and returning servername[, port[, user]]; without it, Perdition's default table
//     lookup. "postgres://" works as well.
#ifndef SWITCHYARD_MAPS_PGSQL_OPTIONS_H
#define SWITCHYARD_MAPS_PGSQL_OPTIONS_H

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sy::pgsql {

inline constexpr int kDefaultConnectTimeoutSeconds = 5;
inline constexpr int kDefaultStatementTimeoutMs = 5000;

struct Options {
  enum class Form { Fields, Uri };
  Form form = Form::Fields;

  // Form 1's connection; ignored in form 2.
  std::string host = "localhost";
  std::string port = "5432";
  std::string dbname = "dbperdition";
  std::string user = "perdition";
  std::string password = "perdition";

  // The table lookup (form 1, and form 2 without query=).
  std::string table = "tblPerdition";
  std::string server_column = "servername";
  std::string user_column = "user";
  std::string port_column = "port";

  std::string uri;    // form 2: the libpq URI, exactly as written
  std::string query;  // form 2: the custom query; empty = the table lookup

  int statement_timeout_ms = kDefaultStatementTimeoutMs;
};

// Parses the options string; nullopt (and *error) when it is malformed. Never copies the
// password into *error.
std::optional<Options> parse_options(const char* text, std::string* error);

// "name" with every '"' doubled: a PostgreSQL quoted identifier.
std::string quote_identifier(std::string_view name);
// A table name split at each '.' into quoted parts: mail.users -> "mail"."users".
std::string quote_table(std::string_view name);
// What PostgreSQL makes of an unquoted identifier: ASCII letters lowered.
std::string fold_identifier(std::string_view name);

// The table lookup's SQL, with the identifiers as given or folded to lower case.
std::string table_query(const Options& o, bool folded);
// The statement a lookup runs: query= or the table lookup.
std::string lookup_query(const Options& o, bool folded);

// The settings handed to PQconnectdbParams, in order, and whether its expand_dbname is on
// (form 2 only: dbname is the URI; connect_timeout precedes it so the URI's own wins).
struct ConnectParams {
  std::vector<std::pair<std::string, std::string>> keywords;
  bool expand_dbname = false;
};
ConnectParams connect_params(const Options& o);

// "user@host:port/dbname" (form 2: the URI without password and query string) for
// messages: never the password.
std::string describe(const Options& o);

// The passwords written in a URI (user-info and ?password=), raw and percent-decoded:
// libpq's parse errors may quote them.
std::vector<std::string> uri_secrets(std::string_view uri);
// `message` with every occurrence of each non-empty secret replaced by "****".
std::string scrub(std::string message, const std::vector<std::string>& secrets);

// A servername or port as Perdition read it: from char(n) columns too, so leading blanks
// are skipped and the value ends at the first blank.
std::string first_word(std::string_view value);
// A store user: blanks around it removed, blanks inside kept.
std::string trim(std::string_view value);
// "[user@]servername[:port]"; a bare IPv6 servername (two or more ':') gets brackets
// (sy::maps::format_answer, shared by the modules).
std::string make_answer(const std::string& user, const std::string& server,
                        const std::string& port);

}  // namespace sy::pgsql

#endif
