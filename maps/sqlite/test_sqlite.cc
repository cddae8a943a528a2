// Tests for the sqlite map module (maps/sqlite/sqlite.cc), loaded as the host loads it:
// dlopen(MAPS_BUILDDIR "/sqlite.so") and Perdition's three symbols. Every test database
// lives in a fresh mkdtemp directory.
#include <dlfcn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "../common/module_test.h"

namespace {

class SqliteMapTest : public sy::maps::test::ModuleTest {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/switchyard-sqlite-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr) << std::strerror(errno);
    dir_ = dir_template;
    db_ = dir_ + "/users.db";
    ASSERT_NO_FATAL_FAILURE(load("sqlite.so"));
    EXPECT_EQ(dlsym(handle_, "dbserver_get2"), nullptr);
  }

  void TearDown() override {
    ModuleTest::TearDown();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Runs `sql` on the database at `path` (created when missing).
  static void exec(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* message = nullptr;
    sqlite3_exec(db, "PRAGMA synchronous=OFF", nullptr, nullptr, nullptr);  // no fsync: faster
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
    std::string text = message ? message : "";
    sqlite3_free(message);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << text;
  }

  // The schema of schema/sqlite.sql with a few users.
  void make_standard_db(const std::string& path) {
    exec(path,
         "CREATE TABLE tblPerdition (\"user\" TEXT PRIMARY KEY NOT NULL,"
         " servername TEXT NOT NULL, port TEXT, store_user TEXT);"
         "INSERT INTO tblPerdition VALUES ('jane', 'store1.example.net', '143', NULL);"
         "INSERT INTO tblPerdition VALUES ('joe', 'store2.example.net', NULL, NULL);"
         "INSERT INTO tblPerdition VALUES ('ann', 'store2.example.net', '', '');"
         "INSERT INTO tblPerdition VALUES ('bob', 'store3', '993', 's0042');"
         "INSERT INTO tblPerdition VALUES ('v6', '::1', '143', NULL);"
         "INSERT INTO tblPerdition VALUES ('padded', 'store4   ', ' 110 ', NULL);"
         "INSERT INTO tblPerdition VALUES ('blank', '  ', '143', NULL);");
  }

  GetReply get(const std::string& key, const char* options) {
    return fetch(key.c_str(), options);
  }
  GetReply get(const std::string& key) { return get(key, db_.c_str()); }

  std::string dir_, db_;
};

TEST_F(SqliteMapTest, FoundWithPort) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  auto r = get("jane");
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.value, "store1.example.net:143");
}

TEST_F(SqliteMapTest, NullOrEmptyPortIsLeftOut) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  EXPECT_EQ(get("joe").value, "store2.example.net");
  EXPECT_EQ(get("ann").value, "store2.example.net");
  EXPECT_EQ(get("ann").rc, 0);
}

TEST_F(SqliteMapTest, StoreUserIsPrefixed) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  EXPECT_EQ(get("bob").value, "s0042@store3:993");
}

TEST_F(SqliteMapTest, Ipv6ServernameIsBracketed) {
  make_standard_db(db_);
  EXPECT_EQ(get("v6").value, "[::1]:143");
}

TEST_F(SqliteMapTest, HostAndPortInServernamePassUnchanged) {
  make_standard_db(db_);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO tblPerdition (\"user\", servername) "
                         "VALUES ('hp', '127.0.0.1:10143')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(get("hp").value, "127.0.0.1:10143");
}

TEST_F(SqliteMapTest, ValuesAreTrimmed) {
  make_standard_db(db_);
  EXPECT_EQ(get("padded").value, "store4:110");
}

TEST_F(SqliteMapTest, BlankServernameIsOtherError) {
  make_standard_db(db_);
  EXPECT_EQ(get("blank").rc, -3);
}

TEST_F(SqliteMapTest, IntegerPortColumn) {
  exec(db_,
       "CREATE TABLE tblPerdition (\"user\" TEXT, servername TEXT, port INTEGER);"
       "INSERT INTO tblPerdition VALUES ('jane', 'store1', 993);");
  EXPECT_EQ(get("jane").value, "store1:993");
}

// Perdition's own table (no store_user column) is used as it is.
TEST_F(SqliteMapTest, PerditionTableWithoutStoreUser) {
  exec(db_,
       "CREATE TABLE tblPerdition (\"user\" VARCHAR(128) NOT NULL PRIMARY KEY,"
       " servername VARCHAR(255) NOT NULL, port VARCHAR(8));"
       "INSERT INTO tblPerdition VALUES ('jane', 'store1', '143');");
  ASSERT_EQ(init(db_.c_str()), 0);
  EXPECT_EQ(get("jane").value, "store1:143");
}

TEST_F(SqliteMapTest, NotFound) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  EXPECT_EQ(get("nobody").rc, -2);
  EXPECT_EQ(get("").rc, -2);
  EXPECT_EQ(get("JANE").rc, -2);  // = is exact
}

TEST_F(SqliteMapTest, InjectionAttemptsJustDoNotMatch) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  for (const char* key : {"' OR '1'='1", "jane' --", "jane'; DROP TABLE tblPerdition; --",
                          "\" OR \"user\" = \"jane", "%", "jane%", "_ane", "j%", "*", "jane\\",
                          "jane;", "?1", "jane\r\n"}) {
    EXPECT_EQ(get(key).rc, -2) << key;
  }
  EXPECT_EQ(get("jane").value, "store1.example.net:143");  // the table is intact
}

TEST_F(SqliteMapTest, MissingFile) {
  std::string missing = dir_ + "/missing.db";
  EXPECT_EQ(init(missing.c_str()), -1);
  EXPECT_EQ(get("jane", missing.c_str()).rc, -1);
  EXPECT_FALSE(std::filesystem::exists(missing)) << "a read-only open must not create it";
}

TEST_F(SqliteMapTest, NullOptionsMeanTheDefaultPath) {
  // The default path is used: it fails unless this machine really has that database.
  if (std::filesystem::exists("/var/lib/switchyard/users.db")) {
    EXPECT_EQ(init(nullptr), 0);
    return;
  }
  EXPECT_EQ(init(nullptr), -1);
  EXPECT_EQ(get("jane", nullptr).rc, -1);
}

TEST_F(SqliteMapTest, CorruptedFile) {
  {
    std::ofstream out(db_, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(i * 7 + 3));
  }
  EXPECT_EQ(init(db_.c_str()), -1);
  EXPECT_EQ(get("jane").rc, -1);
}

TEST_F(SqliteMapTest, TruncatedDatabase) {
  make_standard_db(db_);
  std::filesystem::resize_file(db_, 1000);  // the header says more pages than there are
  EXPECT_EQ(init(db_.c_str()), -1);
  EXPECT_EQ(get("jane").rc, -1);
}

TEST_F(SqliteMapTest, EmptyFileHasNoTable) {
  { std::ofstream out(db_); }
  EXPECT_EQ(init(db_.c_str()), -1);
  EXPECT_EQ(get("jane").rc, -1);
}

TEST_F(SqliteMapTest, DirectoryInsteadOfFile) {
  EXPECT_EQ(init(dir_.c_str()), -1);
  EXPECT_EQ(get("jane", dir_.c_str()).rc, -1);
}

TEST_F(SqliteMapTest, UnreadableFile) {
  make_standard_db(db_);
  std::filesystem::permissions(db_, std::filesystem::perms::none);
  if (geteuid() != 0) {
    EXPECT_EQ(init(db_.c_str()), -1);
    EXPECT_EQ(get("jane").rc, -1);
    return;
  }
  // As root (how the daemon starts): init opens the file, then the process drops to
  // nobody and must still answer from the connection init opened.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (init(db_.c_str()) != 0) _exit(10);
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(11);
    char* str = nullptr;
    size_t len = 0;
    int rc = get_("jane", nullptr, &str, &len);
    _exit(rc == 0 && std::string(str, len) == "store1.example.net:143" ? 0 : 12);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(SqliteMapTest, LockedDatabaseIsADatabaseErrorNotNotFound) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  sqlite3* writer = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &writer), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(writer, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(get("jane").rc, -1);  // after the 2 s busy timeout
  ASSERT_EQ(sqlite3_exec(writer, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(writer);
  EXPECT_EQ(get("jane").value, "store1.example.net:143");
}

TEST_F(SqliteMapTest, BrokenDatabaseIsReopenedOnceFixed) {
  { std::ofstream out(db_); }
  EXPECT_EQ(get("jane").rc, -1);
  std::filesystem::remove(db_);
  make_standard_db(db_);
  EXPECT_EQ(get("jane").rc, 0);
}

TEST_F(SqliteMapTest, ReplacedFileIsReopened) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  EXPECT_EQ(get("jane").value, "store1.example.net:143");
  std::string next = dir_ + "/users.db.new";
  exec(next,
       "CREATE TABLE tblPerdition (\"user\" TEXT, servername TEXT, port TEXT);"
       "INSERT INTO tblPerdition VALUES ('jane', 'store9', '1143');");
  std::filesystem::rename(next, db_);  // how admins regenerate a map file
  EXPECT_EQ(get("jane").value, "store9:1143");
  EXPECT_EQ(get("bob").rc, -2);
}

TEST_F(SqliteMapTest, ChangesInPlaceAreSeen) {
  make_standard_db(db_);
  EXPECT_EQ(get("carol").rc, -2);
  exec(db_, "INSERT INTO tblPerdition VALUES ('carol', 'store5', NULL, NULL)");
  EXPECT_EQ(get("carol").value, "store5");
}

TEST_F(SqliteMapTest, GetOptionsWinOverInitOptions) {
  make_standard_db(db_);
  std::string other = dir_ + "/other.db";
  exec(other,
       "CREATE TABLE tblPerdition (\"user\" TEXT, servername TEXT, port TEXT);"
       "INSERT INTO tblPerdition VALUES ('jane', 'elsewhere', NULL);");
  ASSERT_EQ(init(db_.c_str()), 0);
  EXPECT_EQ(get("jane", other.c_str()).value, "elsewhere");
  EXPECT_EQ(get("jane", db_.c_str()).value, "store1.example.net:143");
}

TEST_F(SqliteMapTest, NullGetOptionsFallBackToInitOptions) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  EXPECT_EQ(get("jane", nullptr).value, "store1.example.net:143");
}

TEST_F(SqliteMapTest, PathEqualsForm) {
  make_standard_db(db_);
  std::string options = "path=" + db_;
  ASSERT_EQ(init(options.c_str()), 0);
  EXPECT_EQ(get("jane", options.c_str()).value, "store1.example.net:143");
}

TEST_F(SqliteMapTest, TableOption) {
  exec(db_,
       "CREATE TABLE mail_boxes (\"user\" TEXT, servername TEXT, port TEXT, store_user TEXT);"
       "INSERT INTO mail_boxes VALUES ('jane', 'store7', '143', 'jd');");
  std::string options = db_ + ";table=mail_boxes";
  ASSERT_EQ(init(options.c_str()), 0);
  EXPECT_EQ(get("jane", options.c_str()).value, "jd@store7:143");
  EXPECT_EQ(get("joe", options.c_str()).rc, -2);
}

TEST_F(SqliteMapTest, MissingTableIsADatabaseError) {
  make_standard_db(db_);
  std::string options = db_ + ";table=nosuchtable";
  EXPECT_EQ(init(options.c_str()), -1);
  EXPECT_EQ(get("jane", options.c_str()).rc, -1);
}

TEST_F(SqliteMapTest, TableNameMustBeAnIdentifier) {
  make_standard_db(db_);
  for (const char* table : {"", "1abc", "tbl-perdition", "tblPerdition\"", "a b",
                            "tblPerdition WHERE 1", "\"tblPerdition\""}) {
    std::string options = db_ + ";table=" + table;
    EXPECT_EQ(init(options.c_str()), -3) << table;
    EXPECT_EQ(get("jane", options.c_str()).rc, -3) << table;
  }
}

TEST_F(SqliteMapTest, UnknownOptionIsRefused) {
  make_standard_db(db_);
  std::string options = db_ + ";tabel=x";
  EXPECT_EQ(init(options.c_str()), -3);
  options = db_ + ";table=tblPerdition;query=SELECT servername FROM tblPerdition WHERE 1=?1";
  EXPECT_EQ(init(options.c_str()), -3);  // table= and query= together
}

TEST_F(SqliteMapTest, CustomQuery) {
  exec(db_,
       "CREATE TABLE accounts (mail TEXT, host TEXT, imap_port INTEGER, login TEXT);"
       "INSERT INTO accounts VALUES ('jane@example.org', 'store1', 1143, 'jane');"
       "INSERT INTO accounts VALUES ('joe@example.org', 'store2', NULL, NULL);");
  std::string options =
      db_ + ";query=SELECT host, imap_port, login FROM accounts WHERE mail = ?1;";
  ASSERT_EQ(init(options.c_str()), 0);
  EXPECT_EQ(get("jane@example.org", options.c_str()).value, "jane@store1:1143");
  EXPECT_EQ(get("joe@example.org", options.c_str()).value, "store2");
  EXPECT_EQ(get("' OR 1=1 --", options.c_str()).rc, -2);
  EXPECT_EQ(get("nobody", options.c_str()).rc, -2);
}

TEST_F(SqliteMapTest, CustomQueryWithOneOrTwoColumns) {
  exec(db_,
       "CREATE TABLE a (k TEXT, h TEXT, p TEXT);"
       "INSERT INTO a VALUES ('jane', 'store1', '143');");
  std::string one = db_ + ";query=SELECT h FROM a WHERE k = ?1";
  std::string two = db_ + ";query=SELECT h, p FROM a WHERE k = ?1";
  EXPECT_EQ(get("jane", one.c_str()).value, "store1");
  EXPECT_EQ(get("jane", two.c_str()).value, "store1:143");
}

TEST_F(SqliteMapTest, CustomQueryShapeIsChecked) {
  exec(db_, "CREATE TABLE a (k TEXT, h TEXT, p TEXT);");
  for (std::string q : {"SELECT h FROM a", "SELECT h FROM a WHERE k = ?1 OR k = ?2",
                        "SELECT h, p, k, k FROM a WHERE k = ?1",
                        "SELECT h FROM a WHERE k = ?1; SELECT 1",
                        "DELETE FROM a WHERE k = ?1", "   ;"}) {
    std::string options = db_ + ";query=" + q;
    EXPECT_EQ(init(options.c_str()), -3) << q;
  }
  std::string bad_sql = db_ + ";query=SELEKT h FROM a WHERE k = ?1";
  EXPECT_EQ(init(bad_sql.c_str()), -1);
}

TEST_F(SqliteMapTest, ForkedChildLooksUpOnItsOwnConnection) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  ASSERT_EQ(get("jane").rc, 0);  // the parent now holds an open connection
  pid_t pid = fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    char* str = nullptr;
    std::size_t len = 0;
    int rc = get_("bob", db_.c_str(), &str, &len);
    bool ok = rc == 0 && std::string(str, len) == "s0042@store3:993";
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(get("jane").value, "store1.example.net:143");  // the parent's still works
}

TEST_F(SqliteMapTest, FiniThenGetReopens) {
  make_standard_db(db_);
  ASSERT_EQ(init(db_.c_str()), 0);
  EXPECT_EQ(get("jane").rc, 0);
  EXPECT_EQ(fini_(), 0);
  EXPECT_EQ(get("jane").rc, 0);
  EXPECT_EQ(fini_(), 0);
  EXPECT_EQ(fini_(), 0);  // harmless twice
}

TEST_F(SqliteMapTest, NullArgumentsAreOtherError) {
  make_standard_db(db_);
  char* str = nullptr;
  std::size_t len = 0;
  EXPECT_EQ(get_(nullptr, db_.c_str(), &str, &len), -3);
  EXPECT_EQ(get_("jane", db_.c_str(), nullptr, &len), -3);
  EXPECT_EQ(get_("jane", db_.c_str(), &str, nullptr), -3);
}

}  // namespace
