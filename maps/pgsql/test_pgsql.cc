// Tests for the pgsql map module: its option parsing (maps/pgsql/pgsql_options.cc, pure),
// and the module itself loaded as the host loads it, dlopen(MAPS_BUILDDIR "/pgsql.so"),
// against a real PostgreSQL started for this suite: initdb into a fresh mkdtemp directory,
// postgres in the foreground (as the "postgres" user when we are root) on a free loopback
// port, stopped by its PID.
//
// The server binaries are found in $PG_BINDIR, then the PG_BINDIR macro, then
// `pg_config --bindir`, then /usr/lib/postgresql/<newest>/bin (Debian: package postgresql).
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../common/module_test.h"
#include "pgsql_options.h"
#ifndef TEST_SRCDIR
#define TEST_SRCDIR "."
#endif

namespace {

namespace pg = sy::pgsql;
using Clock = std::chrono::steady_clock;

// ===========================================================================================
// Options: pure.

pg::Options parse_ok(const char* text) {
  std::string error;
  auto o = pg::parse_options(text, &error);
  EXPECT_TRUE(o.has_value()) << text << ": " << error;
  return o.value_or(pg::Options{});
}

std::string parse_error(const char* text) {
  std::string error;
  auto o = pg::parse_options(text, &error);
  EXPECT_FALSE(o.has_value()) << text;
  return error;
}

void expect_perdition_defaults(const pg::Options& o) {
  EXPECT_EQ(o.form, pg::Options::Form::Fields);
  EXPECT_EQ(o.host, "localhost");
  EXPECT_EQ(o.port, "5432");
  EXPECT_EQ(o.dbname, "dbperdition");
  EXPECT_EQ(o.table, "tblPerdition");
  EXPECT_EQ(o.user, "perdition");
  EXPECT_EQ(o.password, "perdition");
  EXPECT_EQ(o.server_column, "servername");
  EXPECT_EQ(o.user_column, "user");
  EXPECT_EQ(o.port_column, "port");
  EXPECT_EQ(o.statement_timeout_ms, 5000);
  EXPECT_TRUE(o.query.empty());
}

TEST(PgsqlOptionsTest, NullAndEmptyMeanPerditionDefaults) {
  expect_perdition_defaults(parse_ok(nullptr));
  expect_perdition_defaults(parse_ok(""));
  expect_perdition_defaults(parse_ok("::::::::"));  // nine empty fields
}

TEST(PgsqlOptionsTest, AllNineFieldsInPerditionsOrder) {
  auto o = parse_ok("db.example.net:6432:maps:users:reader:pw:host:login:imapport");
  EXPECT_EQ(o.host, "db.example.net");
  EXPECT_EQ(o.port, "6432");
  EXPECT_EQ(o.dbname, "maps");
  EXPECT_EQ(o.table, "users");
  EXPECT_EQ(o.user, "reader");
  EXPECT_EQ(o.password, "pw");
  EXPECT_EQ(o.server_column, "host");  // the server column comes before the user column
  EXPECT_EQ(o.user_column, "login");
  EXPECT_EQ(o.port_column, "imapport");
}

TEST(PgsqlOptionsTest, ShortFormsKeepTheDefaultsOfMissingFields) {
  auto o = parse_ok("db.example.net");
  EXPECT_EQ(o.host, "db.example.net");
  EXPECT_EQ(o.port, "5432");
  EXPECT_EQ(o.table, "tblPerdition");
  o = parse_ok("db:6432:maps");
  EXPECT_EQ(o.port, "6432");
  EXPECT_EQ(o.dbname, "maps");
  EXPECT_EQ(o.user, "perdition");
  EXPECT_EQ(o.password, "perdition");
}

TEST(PgsqlOptionsTest, EmptyFieldsTakeTheirDefaults) {
  auto o = parse_ok(":::users::secret");
  EXPECT_EQ(o.host, "localhost");
  EXPECT_EQ(o.port, "5432");
  EXPECT_EQ(o.dbname, "dbperdition");
  EXPECT_EQ(o.table, "users");
  EXPECT_EQ(o.user, "perdition");
  EXPECT_EQ(o.password, "secret");
  EXPECT_EQ(o.server_column, "servername");
}

TEST(PgsqlOptionsTest, UnixSocketDirectoryAsHost) {
  EXPECT_EQ(parse_ok("/run/postgresql").host, "/run/postgresql");
}

TEST(PgsqlOptionsTest, MoreThanNineFieldsAreRefusedWithAHint) {
  std::string error = parse_error("h:5432:db:t:u:Se:Xyzzy:s:u:p");
  EXPECT_NE(error.find("10"), std::string::npos) << error;
  EXPECT_NE(error.find("URI"), std::string::npos) << error;
  EXPECT_EQ(error.find("Xyzzy"), std::string::npos) << "the password leaks: " << error;
}

TEST(PgsqlOptionsTest, PortMustBeANumber) {
  parse_error("h:abc");
  parse_error("h:0");
  parse_error("h:65536");
  parse_error("h:-1");
  parse_error("h:123456");
  EXPECT_EQ(parse_ok("h:65535").port, "65535");
}

TEST(PgsqlOptionsTest, TableWithAnEmptyPartIsRefused) {
  parse_error("h:5432:db:mail.");
  parse_error("h:5432:db:.users");
  parse_error("h:5432:db:a..b");
}

TEST(PgsqlOptionsTest, QuoteIdentifierDoublesEmbeddedQuotes) {
  EXPECT_EQ(pg::quote_identifier("user"), "\"user\"");
  EXPECT_EQ(pg::quote_identifier("tblPerdition"), "\"tblPerdition\"");
  EXPECT_EQ(pg::quote_identifier("we\"ird"), "\"we\"\"ird\"");
  EXPECT_EQ(pg::quote_identifier("\""), "\"\"\"\"");
  EXPECT_EQ(pg::quote_identifier("x\"; DROP TABLE t; --"), "\"x\"\"; DROP TABLE t; --\"");
}

TEST(PgsqlOptionsTest, TableIsSplitIntoSchemaAndName) {
  EXPECT_EQ(pg::quote_table("users"), "\"users\"");
  EXPECT_EQ(pg::quote_table("mail.users"), "\"mail\".\"users\"");
  EXPECT_EQ(pg::quote_table("a\"b.c"), "\"a\"\"b\".\"c\"");
}

TEST(PgsqlOptionsTest, FoldingLowersAsciiLettersOnly) {
  EXPECT_EQ(pg::fold_identifier("tblPerdition"), "tblperdition");
  EXPECT_EQ(pg::fold_identifier("MAIL.Users_1"), "mail.users_1");
  EXPECT_EQ(pg::fold_identifier("\xC3\x84rger"), "\xC3\x84rger");
}

TEST(PgsqlOptionsTest, TableQueryQuotesEveryIdentifierAndBindsTheKey) {
  pg::Options o;
  EXPECT_EQ(pg::table_query(o, false),
            "SELECT \"servername\", \"port\" FROM \"tblPerdition\" WHERE \"user\" = $1 LIMIT 1");
  EXPECT_EQ(pg::table_query(o, true),
            "SELECT \"servername\", \"port\" FROM \"tblperdition\" WHERE \"user\" = $1 LIMIT 1");
  o = parse_ok("h:1:d:Mail.Users:u:p:Se\"rv:Lo gin:Port");
  EXPECT_EQ(pg::table_query(o, false),
            "SELECT \"Se\"\"rv\", \"Port\" FROM \"Mail\".\"Users\" WHERE \"Lo gin\" = $1 LIMIT 1");
  EXPECT_EQ(pg::table_query(o, true),
            "SELECT \"se\"\"rv\", \"port\" FROM \"mail\".\"users\" WHERE \"lo gin\" = $1 LIMIT 1");
  EXPECT_EQ(pg::lookup_query(o, false), pg::table_query(o, false));
}

TEST(PgsqlOptionsTest, UriFormWithQuery) {
  auto o = parse_ok(
      "postgresql://reader:pw@db.example.net:6432/maps?connect_timeout=10;"
      "query=SELECT host, port, login FROM m WHERE alias = $1");
  EXPECT_EQ(o.form, pg::Options::Form::Uri);
  EXPECT_EQ(o.uri, "postgresql://reader:pw@db.example.net:6432/maps?connect_timeout=10");
  EXPECT_EQ(o.query, "SELECT host, port, login FROM m WHERE alias = $1");
  EXPECT_EQ(pg::lookup_query(o, false), o.query);
  EXPECT_EQ(o.statement_timeout_ms, 5000);
}

TEST(PgsqlOptionsTest, UriQueryRunsToTheEndSemicolonsIncluded) {
  auto o = parse_ok("postgres://h/d;query=SELECT 'a;b' WHERE $1 = ';x';");
  EXPECT_EQ(o.uri, "postgres://h/d");
  EXPECT_EQ(o.query, "SELECT 'a;b' WHERE $1 = ';x';");
}

TEST(PgsqlOptionsTest, UriWithoutQueryUsesPerditionsTable) {
  auto o = parse_ok("postgresql://u@h/d");
  EXPECT_TRUE(o.query.empty());
  EXPECT_EQ(pg::lookup_query(o, false), pg::table_query(pg::Options{}, false));
  EXPECT_EQ(parse_ok("postgresql://u@h/d;").uri, "postgresql://u@h/d");
}

TEST(PgsqlOptionsTest, StatementTimeoutUnits) {
  EXPECT_EQ(parse_ok("postgresql://h;statement_timeout=250").statement_timeout_ms, 250);
  EXPECT_EQ(parse_ok("postgresql://h;statement_timeout=250ms").statement_timeout_ms, 250);
  EXPECT_EQ(parse_ok("postgresql://h;statement_timeout=3s").statement_timeout_ms, 3000);
  EXPECT_EQ(parse_ok("postgresql://h;statement_timeout=2min").statement_timeout_ms, 120000);
  EXPECT_EQ(parse_ok("postgresql://h;statement_timeout=0").statement_timeout_ms, 0);
  auto o = parse_ok("postgresql://h;statement_timeout=1s;query=SELECT $1");
  EXPECT_EQ(o.statement_timeout_ms, 1000);
  EXPECT_EQ(o.query, "SELECT $1");
  parse_error("postgresql://h;statement_timeout=");
  parse_error("postgresql://h;statement_timeout=5h");
  parse_error("postgresql://h;statement_timeout=-5");
  parse_error("postgresql://h;statement_timeout=99999999999");
  parse_error("postgresql://h;statement_timeout=99999999min");
}

TEST(PgsqlOptionsTest, UnknownSettingAfterTheUriIsRefused) {
  std::string error = parse_error("postgresql://h;table=x");
  EXPECT_NE(error.find("table"), std::string::npos) << error;
  parse_error("postgresql://h;query=   ;");
}

TEST(PgsqlOptionsTest, FieldsFormConnectsWithFixedKeywords) {
  auto p = pg::connect_params(parse_ok("dbhost:6432:host=evil:t:u:pw"));
  EXPECT_FALSE(p.expand_dbname) << "a dbname must never be read as a connection string";
  std::vector<std::pair<std::string, std::string>> want = {
      {"connect_timeout", "5"}, {"fallback_application_name", "switchyard"},
      {"host", "dbhost"},       {"port", "6432"},
      {"dbname", "host=evil"},  {"user", "u"},
      {"password", "pw"}};
  EXPECT_EQ(p.keywords, want);
}

TEST(PgsqlOptionsTest, UriFormLetsTheUrisOwnSettingsWin) {
  auto p = pg::connect_params(parse_ok("postgresql://u@h/d?connect_timeout=9;query=SELECT $1"));
  EXPECT_TRUE(p.expand_dbname);
  ASSERT_EQ(p.keywords.size(), 3u);
  EXPECT_EQ(p.keywords[0], (std::pair<std::string, std::string>{"connect_timeout", "5"}));
  // dbname (the URI) comes last: libpq lets later settings override earlier ones.
  EXPECT_EQ(p.keywords[2], (std::pair<std::string, std::string>{
                               "dbname", "postgresql://u@h/d?connect_timeout=9"}));
}

TEST(PgsqlOptionsTest, DescriptionsNeverShowThePassword) {
  EXPECT_EQ(pg::describe(parse_ok("db:6432:maps:t:reader:Secret-1")), "reader@db:6432/maps");
  EXPECT_EQ(pg::describe(parse_ok("postgresql://reader:Secret-1@db:6432/maps?password=Secret-2")),
            "postgresql://reader@db:6432/maps");
  EXPECT_EQ(pg::describe(parse_ok("postgresql://db/maps")), "postgresql://db/maps");
  EXPECT_EQ(pg::describe(parse_ok("postgres://:Secret-1@db")), "postgres://db");
}

TEST(PgsqlOptionsTest, UriSecretsRawAndDecoded) {
  auto s = pg::uri_secrets("postgresql://u:p%40ss%zz@h/d?sslmode=require&password=two%21");
  std::vector<std::string> want = {"p%40ss%zz", "p@ss%zz", "two%21", "two!"};
  EXPECT_EQ(s, want);
  EXPECT_TRUE(pg::uri_secrets("postgresql://u@h/d").empty());
  EXPECT_TRUE(pg::uri_secrets("postgresql://h/d?x=1").empty());
}

TEST(PgsqlOptionsTest, ScrubReplacesEverySecret) {
  EXPECT_EQ(pg::scrub("bad token \"ab%zz\" in ab%zz", {"ab%zz", ""}), "bad token \"****\" in ****");
  EXPECT_EQ(pg::scrub("nothing here", {"secret"}), "nothing here");
}

TEST(PgsqlOptionsTest, ValuesAreReadLikePerditionReadsCharColumns) {
  EXPECT_EQ(pg::first_word("store1        "), "store1");
  EXPECT_EQ(pg::first_word("  store1"), "store1");
  EXPECT_EQ(pg::first_word("store1 extra"), "store1");
  EXPECT_EQ(pg::first_word("143\t"), "143");
  EXPECT_EQ(pg::first_word("   "), "");
  EXPECT_EQ(pg::first_word(""), "");
  EXPECT_EQ(pg::trim("  s0042  "), "s0042");
  EXPECT_EQ(pg::trim("first last  "), "first last");
  EXPECT_EQ(pg::trim(" \t "), "");
}

TEST(PgsqlOptionsTest, AnswerSyntax) {
  EXPECT_EQ(pg::make_answer("", "store1", ""), "store1");
  EXPECT_EQ(pg::make_answer("", "store1", "143"), "store1:143");
  EXPECT_EQ(pg::make_answer("s0042", "store1", "993"), "s0042@store1:993");
  EXPECT_EQ(pg::make_answer("", "2001:db8::25", "143"), "[2001:db8::25]:143");
  EXPECT_EQ(pg::make_answer("", "[::1]", ""), "[::1]");
  EXPECT_EQ(pg::make_answer("", "127.0.0.1:10143", ""), "127.0.0.1:10143");
}

// ===========================================================================================
// A real PostgreSQL.

std::string bindir() {
  namespace fs = std::filesystem;
  auto usable = [](const std::string& d) { return !d.empty() && fs::exists(d + "/initdb"); };
  if (const char* env = std::getenv("PG_BINDIR"); env && usable(env)) return env;
#ifdef PG_BINDIR
  if (usable(PG_BINDIR)) return PG_BINDIR;
#endif
  if (FILE* p = ::popen("pg_config --bindir 2>/dev/null", "r")) {
    char line[4096] = {0};
    bool got = std::fgets(line, sizeof line, p) != nullptr;
    ::pclose(p);
    std::string d = got ? line : "";
    while (!d.empty() && (d.back() == '\n' || d.back() == '\r')) d.pop_back();
    if (usable(d)) return d;
  }
  std::string best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    std::string d = e.path().string() + "/bin";
    // Newest major version: compare numerically ("9.6" < "15").
    auto major = [](const std::string& p) {
      return std::atof(fs::path(p).parent_path().filename().c_str());
    };
    if (usable(d) && (best.empty() || major(d) > major(best))) best = d;
  }
  return best;
}

// Runs `argv` as the server's OS user (when we are root), output appended to `log`.
// Returns the child's PID. The child gets SIGQUIT (immediate shutdown) if we die.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  struct passwd* pw = ::geteuid() == 0 ? ::getpwnam("postgres") : nullptr;
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int null = ::open("/dev/null", O_RDONLY);
  if (fd < 0 || null < 0) ::_exit(126);
  ::dup2(null, 0);
  ::dup2(fd, 1);
  ::dup2(fd, 2);
  ::setsid();  // our terminal's Ctrl-C is for us
  if (::geteuid() == 0) {
    if (pw == nullptr || ::setgroups(0, nullptr) != 0 || ::setgid(pw->pw_gid) != 0 ||
        ::setuid(pw->pw_uid) != 0)
      ::_exit(125);
  }
  ::prctl(PR_SET_PDEATHSIG, SIGQUIT);  // after setuid, which clears it
  ::execv(args[0], args.data());
  ::_exit(127);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// A TCP listener that never accepts nor answers: connects succeed, logins hang.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

constexpr const char* kPassword = "Pw-s3cret-7x";

class PgServer {
 public:
  ~PgServer() {
    stop();
    if (!dir_.empty() && !std::getenv("SWITCHYARD_KEEP_TMP")) std::filesystem::remove_all(dir_);
  }

  // initdb, start, role perdition, database dbperdition with schema/pgsql.sql.
  bool create(std::string* error) {
    bin_ = bindir();
    if (bin_.empty()) {
      *error =
          "no PostgreSQL server binaries (initdb, postgres): install the Debian package "
          "postgresql, or set PG_BINDIR";
      return false;
    }
    char dir_template[] = "/tmp/switchyard-pgsql-test-XXXXXX";
    if (!::mkdtemp(dir_template)) {
      *error = std::string("mkdtemp: ") + std::strerror(errno);
      return false;
    }
    dir_ = dir_template;
    ::chmod(dir_.c_str(), 0755);
    data_ = dir_ + "/data";
    log_ = dir_ + "/postgres.log";
    if (::geteuid() == 0) {
      struct passwd* pw = ::getpwnam("postgres");
      if (!pw) {
        *error = "running as root needs the OS user \"postgres\" to run the server";
        return false;
      }
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        *error = "chown " + dir_ + ": " + std::strerror(errno);
        return false;
      }
    }
    pid_t initdb = spawn({bin_ + "/initdb", "-D", data_, "-N", "-U", "postgres", "-E", "UTF8",
                          "--locale=C", "-A", "trust", "--no-instructions"},
                         log_);
    int status = 0;
    ::waitpid(initdb, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      *error = "initdb failed:\n" + read_file(log_);
      return false;
    }
    std::ofstream(data_ + "/pg_hba.conf")
        << "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
    port_ = free_port();
    if (!start(error)) return false;
    std::string schema = read_file(TEST_SRCDIR "/schema/pgsql.sql");
    if (schema.empty()) {
      *error = TEST_SRCDIR "/schema/pgsql.sql is missing or empty";
      return false;
    }
    *error =
        exec("CREATE ROLE perdition LOGIN PASSWORD '" + std::string(kPassword) + "'", "postgres");
    if (error->empty()) *error = exec("CREATE DATABASE dbperdition", "postgres");
    if (error->empty()) *error = exec(schema);
    if (error->empty())
      *error = exec(
          "GRANT SELECT ON ALL TABLES IN SCHEMA public TO perdition;"
          "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
          "GRANT SELECT ON TABLES TO perdition");
    return error->empty();
  }

  bool start(std::string* error) {
    pid_ = spawn({bin_ + "/postgres", "-D", data_, "-p", std::to_string(port_), "-k", dir_, "-c",
                  "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
                  "-c", "synchronous_commit=off"},
                 log_);
    const std::string conninfo = "host=" + dir_ + " port=" + std::to_string(port_) +
                                 " user=postgres dbname=postgres connect_timeout=2";
    auto deadline = Clock::now() + std::chrono::seconds(30);
    while (PQping(conninfo.c_str()) != PQPING_OK) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        *error = "postgres exited before it accepted connections:\n" + read_file(log_);
        return false;
      }
      if (Clock::now() > deadline) {
        *error = "postgres did not accept connections within 30s:\n" + read_file(log_);
        stop();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  // Fast shutdown (SIGINT) by PID, bounded; SIGKILL if it hangs.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    auto deadline = Clock::now() + std::chrono::seconds(20);
    int status;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = 0;
  }

  // Runs SQL as the superuser over the Unix socket; "" or the error.
  std::string exec(const std::string& sql, const std::string& db = "dbperdition") {
    PGconn* c = admin(db);
    PGresult* r = PQexec(c, sql.c_str());
    auto st = PQresultStatus(r);
    std::string error = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
                            ? ""
                            : std::string(PQresultErrorMessage(r)) + PQerrorMessage(c);
    PQclear(r);
    PQfinish(c);
    return error;
  }

  // The first value of the first row (or "<error ...>").
  std::string value(const std::string& sql) {
    PGconn* c = admin("dbperdition");
    PGresult* r = PQexec(c, sql.c_str());
    std::string out = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0
                          ? PQgetvalue(r, 0, 0)
                          : "<error " + std::string(PQresultErrorMessage(r)) + ">";
    PQclear(r);
    PQfinish(c);
    return out;
  }

  int port() const { return port_; }
  const std::string& log() const { return log_; }

  // Nine-field options for the table `table` (empty: the default, tblPerdition).
  std::string fields(const std::string& table = "tblperdition",
                     const std::string& columns = "") const {
    return "127.0.0.1:" + std::to_string(port_) + ":dbperdition:" + table +
           ":perdition:" + kPassword + (columns.empty() ? "" : ":" + columns);
  }
  std::string uri(const std::string& settings) const {
    return "postgresql://perdition:" + std::string(kPassword) +
           "@127.0.0.1:" + std::to_string(port_) + "/dbperdition" + settings;
  }

 private:
  PGconn* admin(const std::string& db) {
    std::string conninfo =
        "host=" + dir_ + " port=" + std::to_string(port_) + " user=postgres dbname=" + db;
    return PQconnectdb(conninfo.c_str());
  }

  std::string bin_, dir_, data_, log_;
  int port_ = 0;
  pid_t pid_ = 0;
};

// Captures what the module writes to stderr.
class StderrCapture {
 public:
  StderrCapture() {
    char path[] = "/tmp/switchyard-pgsql-stderr-XXXXXX";
    int fd = ::mkstemp(path);
    path_ = path;
    std::fflush(stderr);
    saved_ = ::dup(2);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~StderrCapture() {
    text();
    ::unlink(path_.c_str());
  }
  std::string text() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      ::dup2(saved_, 2);
      ::close(saved_);
      saved_ = -1;
      captured_ = read_file(path_);
    }
    return captured_;
  }

 private:
  std::string path_, captured_;
  int saved_ = -1;
};

class PgsqlMapTest : public sy::maps::test::ModuleTest {
 protected:
  static void SetUpTestSuite() {
    server_ = new PgServer();
    std::string error;
    if (!server_->create(&error)) {
      setup_error_ = new std::string(error);
      return;
    }
    error = server_->exec(R"sql(
      INSERT INTO tblperdition ("user", servername, port) VALUES
        ('jane', 'store1.example.net', '143'),
        ('joe', 'store2.example.net', NULL),
        ('ann', 'store2.example.net', ''),
        ('v6', '::1', '143'),
        ('padded', '  store4  ', ' 110 '),
        ('blank', '   ', '143'),
        ('empty', '', NULL);
      CREATE TABLE chars ("user" char(16) PRIMARY KEY, servername char(32), port char(6));
      INSERT INTO chars VALUES ('jane', 'store1', '143'), ('cut', 'store5 extra words', '10 11');
      CREATE TABLE intport ("user" text, servername text, port integer);
      INSERT INTO intport VALUES ('jane', 'store1', 993);
      CREATE TABLE mapped (alias text PRIMARY KEY, host text, port text, login text);
      INSERT INTO mapped VALUES ('alias@example.org', 'store3', '993', ' s0042 '),
        ('spaced', 'store3', NULL, 'first last'), ('nouser', 'store3', '', NULL);
      CREATE TABLE "CaseTest" ("user" text, servername text, port text);
      CREATE TABLE casetest ("user" text, servername text, port text);
      INSERT INTO "CaseTest" VALUES ('jane', 'exact', NULL);
      INSERT INTO casetest VALUES ('jane', 'folded', NULL);
      CREATE TABLE "we""ird" ("us""er" text, "se""rv" text, "po""rt" text);
      INSERT INTO "we""ird" VALUES ('jane', 'quoted', '1143');
      CREATE SCHEMA mail;
      CREATE TABLE mail.users ("user" text, servername text, port text);
      INSERT INTO mail.users VALUES ('jane', 'schema-store', NULL);
      CREATE VIEW settings AS SELECT 'jane'::text AS "user",
        current_setting('statement_timeout') AS servername,
        NULL::text AS port;
      CREATE FUNCTION noisy(k text) RETURNS text LANGUAGE plpgsql AS
        $$ BEGIN RAISE NOTICE 'looking up %', k; RETURN 'store1'; END $$;
      GRANT USAGE ON SCHEMA mail TO perdition;
      GRANT SELECT ON ALL TABLES IN SCHEMA mail TO perdition;
      GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO perdition;
    )sql");
    if (!error.empty()) setup_error_ = new std::string("setting up the tables: " + error);
  }

  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
    ASSERT_NO_FATAL_FAILURE(load("pgsql.so"));
  }

  GetReply get(const std::string& key, const char* options) {
    return fetch(key.c_str(), options);
  }
  GetReply get(const std::string& key, const std::string& options) {
    return get(key, options.c_str());
  }

  // The backend serving the module's session: a query= answering pg_backend_pid().
  std::string pid_options() const {
    return server_->uri(";query=SELECT pg_backend_pid()::text WHERE $1::text = 'pid'");
  }

  static PgServer* server_;
  static std::string* setup_error_;
};

PgServer* PgsqlMapTest::server_ = nullptr;
std::string* PgsqlMapTest::setup_error_ = nullptr;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// --- answers ---------------------------------------------------------------------------------

TEST_F(PgsqlMapTest, FoundWithPort) {
  auto o = server_->fields();
  ASSERT_EQ(init(o), 0);
  auto r = get("jane", o);
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.value, "store1.example.net:143");
}

TEST_F(PgsqlMapTest, NullOrEmptyPortIsLeftOut) {
  auto o = server_->fields();
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("joe", o).value, "store2.example.net");
  EXPECT_EQ(get("ann", o).value, "store2.example.net");
}

TEST_F(PgsqlMapTest, NotFound) {
  auto o = server_->fields();
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("nobody", o).rc, -2);
  EXPECT_EQ(get("", o).rc, -2);
  EXPECT_EQ(get("JANE", o).rc, -2) << "the match is exact";
}

TEST_F(PgsqlMapTest, BlankOrEmptyServernameIsOtherError) {
  auto o = server_->fields();
  ASSERT_EQ(init(o), 0);
  StderrCapture err;
  EXPECT_EQ(get("blank", o).rc, -3);
  EXPECT_EQ(get("empty", o).rc, -3);
  EXPECT_NE(err.text().find("switchyard pgsql map: "), std::string::npos) << err.text();
  EXPECT_NE(err.text().find("no servername"), std::string::npos) << err.text();
}

TEST_F(PgsqlMapTest, NullServernameIsOtherError) {
  auto o = server_->uri(";query=SELECT NULL::text WHERE $1::text = 'x'");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("x", o).rc, -3);
}

TEST_F(PgsqlMapTest, TextValuesAreCutAtTheFirstBlank) {
  auto o = server_->fields();
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("padded", o).value, "store4:110");
}

TEST_F(PgsqlMapTest, CharColumnsAreReadLikePerdition) {
  auto o = server_->fields("chars");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).value, "store1:143");
  EXPECT_EQ(get("cut", o).value, "store5:10");
  EXPECT_EQ(get("jane   ", o).value, "store1:143") << "char(n) ignores trailing blanks";
}

TEST_F(PgsqlMapTest, IntegerPortColumn) {
  auto o = server_->fields("intport");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).value, "store1:993");
}

TEST_F(PgsqlMapTest, Ipv6ServernameIsBracketed) {
  auto o = server_->fields();
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("v6", o).value, "[::1]:143");
}

TEST_F(PgsqlMapTest, InjectionAttemptsJustDoNotMatch) {
  auto o = server_->fields();
  ASSERT_EQ(init(o), 0);
  const std::string before = server_->value("SELECT count(*) FROM tblperdition");
  for (std::string key :
       {std::string("*"), std::string("%"), std::string("_"), std::string("jane' --"),
        std::string("' OR '1'='1"), std::string("'; DROP TABLE tblperdition; --"),
        std::string("\"; DROP TABLE tblperdition; --"), std::string("jane\\"), std::string("\\'"),
        std::string("$1"), std::string("jane\r\nx"), std::string(2000, 'a'),
        std::string(2000, '\'')}) {
    EXPECT_EQ(get(key, o).rc, -2) << key.substr(0, 60);
  }
  EXPECT_EQ(server_->value("SELECT count(*) FROM tblperdition"), before);
  EXPECT_EQ(get("jane", o).value, "store1.example.net:143");
  EXPECT_EQ(read_file(server_->log()).find("syntax error"), std::string::npos);
}

TEST_F(PgsqlMapTest, KeyTheDatabaseCannotHoldIsNotFound) {
  auto o = server_->fields();
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane\xff\xfe", o).rc, -2) << "invalid UTF-8";
  EXPECT_EQ(get("jane", o).rc, 0) << "the session is still usable";
}

// --- names -----------------------------------------------------------------------------------

TEST_F(PgsqlMapTest, PerditionsDefaultTableNameFindsTheFoldedTable) {
  // Perdition's SQL names tblPerdition unquoted: PostgreSQL made it tblperdition.
  auto o = "127.0.0.1:" + std::to_string(server_->port()) + ":dbperdition::perdition:" + kPassword;
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).value, "store1.example.net:143");
}

TEST_F(PgsqlMapTest, ExactNameWinsOverTheFoldedOne) {
  auto exact = server_->fields("CaseTest");
  ASSERT_EQ(init(exact), 0);
  EXPECT_EQ(get("jane", exact).value, "exact");
  auto upper = server_->fields("CASETEST");  // no such table: folded, casetest
  EXPECT_EQ(get("jane", upper).value, "folded");
}

TEST_F(PgsqlMapTest, FoldedColumnNames) {
  auto o = server_->fields("tblperdition", "ServerName:USER:Port");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).value, "store1.example.net:143");
}

TEST_F(PgsqlMapTest, IdentifiersWithEmbeddedQuotes) {
  auto o = server_->fields("we\"ird", "se\"rv:us\"er:po\"rt");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).value, "quoted:1143");
}

TEST_F(PgsqlMapTest, SchemaQualifiedTable) {
  auto o = server_->fields("mail.users");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).value, "schema-store");
}

TEST_F(PgsqlMapTest, MissingTableIsADatabaseError) {
  auto o = server_->fields("NoSuchTable");
  StderrCapture err;
  EXPECT_EQ(init(o), -1) << "connected, but the database refuses the lookup: a config error";
  EXPECT_EQ(get("jane", o).rc, -1);
  std::string text = err.text();
  EXPECT_NE(text.find("relation \"NoSuchTable\" does not exist"), std::string::npos) << text;
  EXPECT_NE(text.find("folded to lower case"), std::string::npos) << text;
  EXPECT_NE(text.find("relation \"nosuchtable\" does not exist"), std::string::npos) << text;
}

// --- the URI form ----------------------------------------------------------------------------

TEST_F(PgsqlMapTest, UriQueryWithUserColumn) {
  auto o = server_->uri(";query=SELECT host, port, login FROM mapped WHERE alias = $1");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("alias@example.org", o).value, "s0042@store3:993");
  EXPECT_EQ(get("spaced", o).value, "first last@store3") << "a user keeps inner blanks";
  EXPECT_EQ(get("nouser", o).value, "store3");
  EXPECT_EQ(get("nobody", o).rc, -2);
}

TEST_F(PgsqlMapTest, UriQueryWithOneOrTwoColumns) {
  auto one = server_->uri(";query=SELECT host FROM mapped WHERE alias = $1");
  ASSERT_EQ(init(one), 0);
  EXPECT_EQ(get("alias@example.org", one).value, "store3");
  auto two = server_->uri(";query=SELECT host, port FROM mapped WHERE alias = $1");
  EXPECT_EQ(get("alias@example.org", two).value, "store3:993");
}

TEST_F(PgsqlMapTest, UriWithoutQueryReadsPerditionsTable) {
  auto o = server_->uri("");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).value, "store1.example.net:143");
}

TEST_F(PgsqlMapTest, FirstRowWins) {
  auto o = server_->uri(
      ";query=SELECT s FROM (VALUES ('first', 1), ('second', 2)) v(s, o) "
      "WHERE $1::text = 'multi' ORDER BY o");
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("multi", o).value, "first");
}

TEST_F(PgsqlMapTest, QueryShapeIsChecked) {
  struct Case {
    const char* query;
    int rc;
  };
  for (auto c : {Case{"SELECT 'h'", -3},                                      // no parameter
                 Case{"SELECT 'h' WHERE $1::text = $2::text", -3},            // two
                 Case{"SELECT 'a', 'b', 'c', 'd' WHERE $1::text = 'x'", -3},  // four columns
                 Case{"SELEKT $1", -1},                            // refused by the server
                 Case{"SELECT $1::text; SELECT $1::text", -1}}) {  // two statements
    auto o = server_->uri(";query=" + std::string(c.query));
    StderrCapture err;
    EXPECT_EQ(init(o), c.rc) << c.query;
    EXPECT_EQ(get("x", o).rc, c.rc) << c.query;
    EXPECT_NE(err.text().find("switchyard pgsql map: "), std::string::npos);
  }
}

TEST_F(PgsqlMapTest, QueryMustNotWrite) {
  auto o = server_->uri(
      ";query=UPDATE tblperdition SET servername = 'pwned' WHERE \"user\" = $1 "
      "RETURNING servername");
  StderrCapture err;
  EXPECT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).rc, -1);
  EXPECT_NE(err.text().find("read-only"), std::string::npos) << err.text();
  EXPECT_EQ(server_->value("SELECT servername FROM tblperdition WHERE \"user\" = 'jane'"),
            "store1.example.net");
}

TEST_F(PgsqlMapTest, ServerNoticesAreLoggedWithThePrefix) {
  auto o = server_->uri(";query=SELECT noisy($1)");
  ASSERT_EQ(init(o), 0);
  StderrCapture err;
  EXPECT_EQ(get("k1", o).value, "store1");
  EXPECT_NE(err.text().find("switchyard pgsql map: server notice: NOTICE:  looking up k1"),
            std::string::npos)
      << err.text();
}

TEST_F(PgsqlMapTest, BadOptionsFailInitAndLookups) {
  for (const char* bad : {"h:notaport", "h:5432:db:t:u:pw:a:b:c:d", "postgresql://h;bogus=1",
                          "postgresql://h/db?bogus=1"}) {
    StderrCapture err;
    EXPECT_EQ(init(bad), -3) << bad;
    EXPECT_EQ(get("jane", bad).rc, -3) << bad;
    EXPECT_NE(err.text().find("switchyard pgsql map: "), std::string::npos) << bad;
  }
}

TEST_F(PgsqlMapTest, NullKeyOrOutputIsOtherError) {
  auto o = server_->fields();
  char* str = nullptr;
  std::size_t len = 0;
  EXPECT_EQ(get_(nullptr, o.c_str(), &str, &len), -3);
  EXPECT_EQ(get_("jane", o.c_str(), nullptr, &len), -3);
  EXPECT_EQ(get_("jane", o.c_str(), &str, nullptr), -3);
}

TEST_F(PgsqlMapTest, GetOptionsWinOverInitOptions) {
  ASSERT_EQ(init(server_->fields()), 0);
  EXPECT_EQ(get("jane", server_->fields("mail.users")).value, "schema-store");
  EXPECT_EQ(get("jane", server_->fields()).value, "store1.example.net:143");
}

TEST_F(PgsqlMapTest, NullGetOptionsFallBackToInitOptions) {
  ASSERT_EQ(init(server_->fields("mail.users")), 0);
  EXPECT_EQ(get("jane", nullptr).value, "schema-store");
}

// --- secrets ---------------------------------------------------------------------------------

TEST_F(PgsqlMapTest, WrongPasswordIsTempFailAndNeverPrinted) {
  const std::string wrong = "Wr0ng-Secret-Pw";
  auto o = "127.0.0.1:" + std::to_string(server_->port()) +
           ":dbperdition:tblperdition:perdition:" + wrong;
  StderrCapture err;
  EXPECT_EQ(init(o), 0) << "a refused login is reported, not fatal";
  EXPECT_EQ(get("jane", o).rc, -1);
  std::string text = err.text();
  EXPECT_NE(text.find("switchyard pgsql map: cannot connect to perdition@127.0.0.1:"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("password authentication failed"), std::string::npos) << text;
  EXPECT_EQ(text.find(wrong), std::string::npos) << text;
}

TEST_F(PgsqlMapTest, UriPasswordNeverPrinted) {
  StderrCapture err;
  // libpq quotes a malformed percent-encoding, password and all.
  std::string bad =
      "postgresql://perdition:Pw-%zz-s3cret@127.0.0.1:" + std::to_string(server_->port()) +
      "/dbperdition";
  EXPECT_EQ(init(bad), -3);
  std::string in_query = "postgresql://perdition@127.0.0.1:" + std::to_string(server_->port()) +
                         "/dbperdition?password=Other-%zz-s3cret";
  EXPECT_EQ(init(in_query), -3);
  std::string wrong =
      "postgresql://perdition:Wr0ng-Secret-Pw@127.0.0.1:" + std::to_string(server_->port()) +
      "/dbperdition";
  EXPECT_EQ(init(wrong), 0);
  EXPECT_EQ(get("jane", wrong).rc, -1);
  std::string text = err.text();
  EXPECT_NE(text.find("invalid percent-encoded token"), std::string::npos) << text;
  for (const char* secret : {"Pw-%zz-s3cret", "Other-%zz-s3cret", "Wr0ng-Secret-Pw", "s3cret"})
    EXPECT_EQ(text.find(secret), std::string::npos) << secret << " in:\n" << text;
}

// --- connections -----------------------------------------------------------------------------

TEST_F(PgsqlMapTest, ServerDownIsTempFailNeverNotFound) {
  auto o = "127.0.0.1:" + std::to_string(free_port()) +
           ":dbperdition:tblperdition:perdition:" + kPassword;
  StderrCapture err;
  EXPECT_EQ(init(o), 0) << "an outage must not stop the proxy from starting";
  EXPECT_EQ(get("jane", o).rc, -1);
  EXPECT_EQ(get("nobody", o).rc, -1);
  EXPECT_NE(err.text().find("switchyard pgsql map: cannot connect to"), std::string::npos)
      << err.text();
}

TEST_F(PgsqlMapTest, ConnectionIsKeptBetweenLookups) {
  auto o = pid_options();
  ASSERT_EQ(init(o), 0);
  auto first = get("pid", o);
  ASSERT_EQ(first.rc, 0);
  EXPECT_EQ(get("pid", o).value, first.value);
  EXPECT_EQ(get("other", o).rc, -2);
  EXPECT_EQ(get("pid", o).value, first.value);
}

TEST_F(PgsqlMapTest, SessionSettings) {
  auto o = server_->fields("settings");  // a view showing current_setting('statement_timeout')
  ASSERT_EQ(init(o), 0);
  EXPECT_EQ(get("jane", o).value, "5s");
  auto custom = server_->uri(
      ";statement_timeout=250ms;query=SELECT current_setting("
      "'statement_timeout') || '/' || current_setting("
      "'default_transaction_read_only') WHERE $1::text = 'x'");
  EXPECT_EQ(get("x", custom).value, "250ms/on");
}

TEST_F(PgsqlMapTest, StatementTimeoutIsATempFail) {
  auto o = server_->uri(
      ";statement_timeout=200ms;query=SELECT 'h' FROM pg_sleep(3) WHERE $1::text = 'x'");
  ASSERT_EQ(init(o), 0);
  StderrCapture err;
  auto start = Clock::now();
  EXPECT_EQ(get("x", o).rc, -1);
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_NE(err.text().find("statement timeout"), std::string::npos) << err.text();
}

// True once the server no longer lists backend `pid` (bounded wait).
bool backend_gone(PgServer* server, const std::string& pid) {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (server->value("SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid) != "0") {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

TEST_F(PgsqlMapTest, FiniClosesTheSession) {
  auto o = pid_options();
  ASSERT_EQ(init(o), 0);
  auto r = get("pid", o);
  ASSERT_EQ(r.rc, 0);
  EXPECT_EQ(fini_(), 0);
  EXPECT_TRUE(backend_gone(server_, r.value));
}

TEST_F(PgsqlMapTest, InitAgainReplacesTheSession) {
  auto o = pid_options();
  ASSERT_EQ(init(o), 0);
  auto first = get("pid", o);
  ASSERT_EQ(first.rc, 0);
  ASSERT_EQ(init(o), 0);
  auto second = get("pid", o);
  EXPECT_NE(second.value, first.value);
  EXPECT_TRUE(backend_gone(server_, first.value));
}

TEST_F(PgsqlMapTest, TerminatedBackendIsReplacedAndTheLookupRetried) {
  auto o = pid_options();
  ASSERT_EQ(init(o), 0);
  auto before = get("pid", o);
  ASSERT_EQ(before.rc, 0);
  ASSERT_EQ(server_->value("SELECT pg_terminate_backend(" + before.value + ", 10000)"), "t");
  StderrCapture err;
  auto after = get("pid", o);
  EXPECT_EQ(after.rc, 0) << "reconnected and retried at once";
  EXPECT_NE(after.value, before.value);
  EXPECT_NE(err.text().find("connection lost"), std::string::npos) << err.text();
}

TEST_F(PgsqlMapTest, ServerRestartIsSurvived) {
  auto o = pid_options();
  ASSERT_EQ(init(o), 0);
  auto before = get("pid", o);
  ASSERT_EQ(before.rc, 0);
  server_->stop();
  {
    StderrCapture err;
    EXPECT_EQ(get("pid", o).rc, -1) << "server down: TempFail, never not found";
    EXPECT_EQ(get("pid", o).rc, -1);
  }
  std::string error;
  ASSERT_TRUE(server_->start(&error)) << error;
  auto after = get("pid", o);
  EXPECT_EQ(after.rc, 0);
  EXPECT_NE(after.value, before.value);
}

TEST_F(PgsqlMapTest, ForkedChildOpensItsOwnConnectionAndLeavesTheParentsAlone) {
  auto o = pid_options();
  ASSERT_EQ(init(o), 0);
  auto parent = get("pid", o);
  ASSERT_EQ(parent.rc, 0);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipefd[0]);
    char* str = nullptr;
    std::size_t len = 0;
    int rc = get_("pid", o.c_str(), &str, &len);
    std::string v = rc == 0 ? std::string(str, len) : "rc=" + std::to_string(rc);
    if (::write(pipefd[1], v.data(), v.size()) < 0) ::_exit(2);
    fini_();  // closes the child's own session only
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char buf[64] = {0};
  ssize_t n = ::read(pipefd[0], buf, sizeof buf - 1);
  ::close(pipefd[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_GT(n, 0);
  std::string child_value(buf, static_cast<std::size_t>(n));
  EXPECT_EQ(child_value.find_first_not_of("0123456789"), std::string::npos) << child_value;
  EXPECT_NE(child_value, parent.value) << "the child must not use the parent's session";
  // The parent's session survived the child's lookups and exit.
  EXPECT_EQ(get("pid", o).value, parent.value);
}

TEST_F(PgsqlMapTest, ConnectTimeoutFromTheUri) {
  SilentListener silent;
  auto o = "postgresql://perdition@127.0.0.1:" + std::to_string(silent.port()) +
           "/dbperdition?connect_timeout=2";
  StderrCapture err;
  auto start = Clock::now();
  EXPECT_EQ(init(o), 0);
  double took = seconds_since(start);
  // libpq counts connect_timeout in whole seconds of the clock: 2 fires after 1 to 2 s.
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 4.5);
  EXPECT_NE(err.text().find("timeout"), std::string::npos) << err.text();
}

TEST_F(PgsqlMapTest, DefaultConnectTimeoutIsFiveSeconds) {
  SilentListener silent;
  auto o = "127.0.0.1:" + std::to_string(silent.port()) + ":dbperdition:tblperdition";
  StderrCapture err;
  auto start = Clock::now();
  EXPECT_EQ(get("jane", o).rc, -1);
  double took = seconds_since(start);
  EXPECT_GE(took, 4.5);
  EXPECT_LT(took, 9.0);
}

// Built with -fvisibility=hidden: the module exports the three ABI functions and nothing of
// its own. (Template instantiations from libstdc++'s headers keep their default visibility
// as weak symbols; they are the library's, identical everywhere.)
TEST_F(PgsqlMapTest, ExportsOnlyTheAbi) {
  std::string cmd = "nm -D --defined-only " MAPS_BUILDDIR "/pgsql.so";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[8192];
  std::vector<std::string> abi, own;
  while (std::fgets(line, sizeof line, p)) {
    std::istringstream fields(line);
    std::string address, type, name;
    fields >> address >> type >> name;
    if (name.starts_with("dbserver_")) {
      EXPECT_EQ(type, "T") << name;
      abi.push_back(name);
    } else if (name == "switchyard_map_thread_safe") {
      EXPECT_EQ(type, "R") << name;  // the module may be called from several threads
    } else if (!(type == "W" || type == "V" || type == "u") ||
               name.find("2sy") != std::string::npos) {
      own.push_back(type + " " + name);
    }
  }
  ASSERT_EQ(::pclose(p), 0) << cmd;
  std::sort(abi.begin(), abi.end());
  std::vector<std::string> want = {"dbserver_fini", "dbserver_get", "dbserver_init"};
  EXPECT_EQ(abi, want);
  EXPECT_TRUE(own.empty()) << own.size() << " other exports, e.g. " << own.front()
                           << " (build with -fvisibility=hidden)";
}

}  // namespace
