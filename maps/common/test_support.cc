// Tests for the support layer of the shipped map modules (maps/common/support.h).
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support.h"

namespace {

using sy::maps::format_answer;

// --- the answer ---------------------------------------------------------------------------

struct AnswerCase {
  const char* user;
  const char* host;
  const char* port;
  const char* want;
};

TEST(MapSupportAnswer, Syntax) {
  const AnswerCase cases[] = {
      // an empty user or port is left out
      {"", "store1", "", "store1"},
      {"", "store1", "143", "store1:143"},
      {"s0042", "store1", "", "s0042@store1"},
      {"s0042", "store1.example.net", "993", "s0042@store1.example.net:993"},
      {"jane@example.com", "store1", "143", "jane@example.com@store1:143"},
      // a bare IPv6 address gets brackets
      {"", "::1", "143", "[::1]:143"},
      {"", "2001:db8::25", "", "[2001:db8::25]"},
      {"jd", "2001:db8::25", "10143", "jd@[2001:db8::25]:10143"},
      {"", "::", "", "[::]"},
      {"", "::ffff:192.0.2.7", "143", "[::ffff:192.0.2.7]:143"},
      // ... once
      {"", "[::1]", "143", "[::1]:143"},
      {"", "[2001:db8::25]:143", "", "[2001:db8::25]:143"},
      // one ':' is host:port, passed as it is
      {"", "127.0.0.1:10143", "", "127.0.0.1:10143"},
      {"jd", "store1:143", "", "jd@store1:143"},
      // no host: no crash
      {"", "", "", ""},
      {"", "", "143", ":143"},
  };
  for (const AnswerCase& c : cases)
    EXPECT_EQ(format_answer(c.user, c.host, c.port), c.want)
        << "user \"" << c.user << "\" host \"" << c.host << "\" port \"" << c.port << "\"";
}

TEST(MapSupportTrim, BlanksAroundGoBlanksInsideStay) {
  EXPECT_EQ(sy::maps::trim("  store1 \t\r\n"), "store1");
  EXPECT_EQ(sy::maps::trim("first last"), "first last");
  EXPECT_EQ(sy::maps::trim(" \t\r\n "), "");
  EXPECT_EQ(sy::maps::trim(""), "");
  EXPECT_EQ(sy::maps::trim("\vx\v"), "\vx\v");  // only space, tab, CR and LF are blanks
}

// --- the malloc'd answer ------------------------------------------------------------------

TEST(MapSupportReturnAnswer, MallocdNulTerminatedWithItsLength) {
  char* str = nullptr;
  std::size_t len = 12345;
  std::string answer = "jd@[2001:db8::25]:143";
  ASSERT_EQ(sy::maps::return_answer(answer, &str, &len), SWITCHYARD_MAP_FOUND);
  ASSERT_NE(str, nullptr);
  EXPECT_EQ(len, answer.size());
  EXPECT_EQ(std::strlen(str), len);
  EXPECT_EQ(std::string(str, len), answer);
  EXPECT_NE(static_cast<const void*>(str), static_cast<const void*>(answer.data()));
  std::free(str);  // the host frees it with free()
}

TEST(MapSupportReturnAnswer, CopiesOnlyTheViewNotWhatFollows) {
  char* str = nullptr;
  std::size_t len = 0;
  std::string_view whole = "store1:143 and more";
  ASSERT_EQ(sy::maps::return_answer(whole.substr(0, 10), &str, &len), SWITCHYARD_MAP_FOUND);
  EXPECT_EQ(len, 10u);
  EXPECT_STREQ(str, "store1:143");
  std::free(str);
}

TEST(MapSupportReturnAnswer, EmptyAnswerIsAnEmptyString) {
  char* str = nullptr;
  std::size_t len = 7;
  ASSERT_EQ(sy::maps::return_answer("", &str, &len), SWITCHYARD_MAP_FOUND);
  ASSERT_NE(str, nullptr);
  EXPECT_EQ(len, 0u);
  EXPECT_EQ(str[0], '\0');
  std::free(str);
}

// --- the report line ----------------------------------------------------------------------

// What `write` puts on stderr.
template <class Write>
std::string stderr_of(Write write) {
  std::fflush(stderr);
  char path[] = "/tmp/switchyard-map-support-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) return "mkstemp failed";
  ::unlink(path);
  int saved = ::dup(2);
  ::dup2(fd, 2);
  write();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::string text;
  char buffer[512];
  ::lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, n);
  ::close(fd);
  return text;
}

TEST(MapSupportReporter, OneLineWithTheModulesName) {
  constexpr sy::maps::Reporter report("demo");
  EXPECT_EQ(stderr_of([&] { report("users.db: no such table"); }),
            "switchyard demo map: users.db: no such table\n");
}

TEST(MapSupportReporter, PrintsTheViewOnly) {
  constexpr sy::maps::Reporter report("demo");
  std::string_view whole = "first part|not this";
  EXPECT_EQ(stderr_of([&] { report(whole.substr(0, 10)); }), "switchyard demo map: first part\n");
  EXPECT_EQ(stderr_of([&] { report(std::string("from a string")); }),
            "switchyard demo map: from a string\n");
}

// --- the fork guard -----------------------------------------------------------------------

// A connection as the modules keep one, counting what was done to it.
struct FakeConnection : sy::maps::ForkGuard {
  bool open = false;
  int closes = 0, abandons = 0;

  bool is_open() const { return open; }
  void close() {
    ++closes;
    open = false;
  }
  void abandon() {
    ++abandons;
    open = false;
  }
  void connect() {
    open = true;
    claim();
  }
};

// Runs `child` in a forked child; its return value is the exit code, 0 = passed.
template <class Child>
int in_child(Child child) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(child());
  if (pid < 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -2;
  return WEXITSTATUS(status);
}

TEST(MapSupportForkGuard, TheOpeningProcessOwnsTheConnection) {
  FakeConnection c;
  c.connect();
  EXPECT_FALSE(c.inherited());
  sy::maps::forget_if_inherited(c);
  EXPECT_TRUE(c.open);
  EXPECT_EQ(c.abandons, 0);
  sy::maps::drop(c);
  EXPECT_FALSE(c.open);
  EXPECT_EQ(c.closes, 1);
  EXPECT_EQ(c.abandons, 0);
}

TEST(MapSupportForkGuard, DroppingAClosedConnectionDoesNothing) {
  FakeConnection c;
  sy::maps::drop(c);
  sy::maps::forget_if_inherited(c);
  EXPECT_EQ(c.closes, 0);
  EXPECT_EQ(c.abandons, 0);
}

TEST(MapSupportForkGuard, AForkedChildAbandonsWhatItsParentOpened) {
  FakeConnection c;
  c.connect();
  EXPECT_EQ(in_child([&] {
              if (!c.inherited()) return 1;
              FakeConnection copy = c;
              sy::maps::drop(copy);
              if (copy.closes != 0 || copy.abandons != 1 || copy.open) return 2;
              copy = c;
              sy::maps::forget_if_inherited(copy);
              if (copy.closes != 0 || copy.abandons != 1 || copy.open) return 3;
              return 0;
            }),
            0);
  EXPECT_FALSE(c.inherited());  // still the parent's
  EXPECT_TRUE(c.open);
}

TEST(MapSupportForkGuard, WhatTheChildOpensItselfIsItsOwn) {
  FakeConnection c;
  c.connect();
  EXPECT_EQ(in_child([&] {
              sy::maps::forget_if_inherited(c);
              c.connect();  // the child's own connection
              if (c.inherited()) return 1;
              sy::maps::drop(c);
              return c.closes == 1 && c.abandons == 1 ? 0 : 2;
            }),
            0);
}

// --- the options of dbserver_init ---------------------------------------------------------

TEST(MapSupportInitOptions, GetOptionsWinNullFallsBackToInits) {
  sy::maps::InitOptions init;
  EXPECT_EQ(init.effective(nullptr), nullptr);  // no init yet
  EXPECT_STREQ(init.effective("get"), "get");
  init.set("from init");
  EXPECT_STREQ(init.effective(nullptr), "from init");
  EXPECT_STREQ(init.effective("get"), "get");
  EXPECT_STREQ(init.effective(""), "");  // empty is not NULL
}

TEST(MapSupportInitOptions, InitOptionsAreCopiedAndNullIsKept) {
  sy::maps::InitOptions init;
  std::string text = "path=/srv/users.db";
  init.set(text.data());
  text = "changed";
  EXPECT_STREQ(init.effective(nullptr), "path=/srv/users.db");
  init.set(nullptr);
  EXPECT_EQ(init.effective(nullptr), nullptr);
  init.set("");
  EXPECT_STREQ(init.effective(nullptr), "");
  init.reset();
  EXPECT_EQ(init.effective(nullptr), nullptr);
}

// --- the frame of Perdition's three functions -----------------------------------------

struct Seen {
  int calls = 0;
  std::string key;
  const char* options = "unset";
};

int fake_lookup(Seen* seen, const char* key, const char* options, char** str_return,
                std::size_t* len_return) {
  ++seen->calls;
  seen->key = key;
  seen->options = options;
  return sy::maps::return_answer("store1", str_return, len_return);
}

TEST(MapSupportCalls, NullArgumentsAreOtherErrorAndNeverReachTheModule) {
  sy::maps::Calls calls;
  Seen seen;
  auto lookup = [&](const char* k, const char* o, char** s, std::size_t* l) {
    return fake_lookup(&seen, k, o, s, l);
  };
  char* str = nullptr;
  std::size_t len = 0;
  EXPECT_EQ(calls.get(nullptr, "o", &str, &len, lookup), SWITCHYARD_MAP_OTHER_ERROR);
  EXPECT_EQ(calls.get("k", "o", nullptr, &len, lookup), SWITCHYARD_MAP_OTHER_ERROR);
  EXPECT_EQ(calls.get("k", "o", &str, nullptr, lookup), SWITCHYARD_MAP_OTHER_ERROR);
  EXPECT_EQ(seen.calls, 0);
  EXPECT_EQ(str, nullptr);
  ASSERT_EQ(calls.get("k", "o", &str, &len, lookup), SWITCHYARD_MAP_FOUND);
  EXPECT_EQ(seen.calls, 1);
  EXPECT_EQ(seen.key, "k");
  EXPECT_EQ(std::string(str, len), "store1");
  std::free(str);
}

TEST(MapSupportCalls, LookupsGetInitsOptionsUntilFini) {
  sy::maps::Calls calls;
  Seen seen;
  auto lookup = [&](const char* k, const char* o, char** s, std::size_t* l) {
    return fake_lookup(&seen, k, o, s, l);
  };
  auto get = [&](const char* options) {
    char* str = nullptr;
    std::size_t len = 0;
    int rc = calls.get("k", options, &str, &len, lookup);
    std::free(str);
    return rc;
  };
  std::string given;
  EXPECT_EQ(calls.init("path=/a", [&](const char* o) {
    given = o;
    return SWITCHYARD_MAP_DB_ERROR;
  }),
            SWITCHYARD_MAP_DB_ERROR);  // init's own code, and its options are kept all the same
  EXPECT_EQ(given, "path=/a");
  ASSERT_EQ(get(nullptr), SWITCHYARD_MAP_FOUND);
  EXPECT_STREQ(seen.options, "path=/a");
  ASSERT_EQ(get("path=/b"), SWITCHYARD_MAP_FOUND);
  EXPECT_STREQ(seen.options, "path=/b");
  bool finished = false;
  EXPECT_EQ(calls.fini([&] { finished = true; }), 0);
  EXPECT_TRUE(finished);
  ASSERT_EQ(get(nullptr), SWITCHYARD_MAP_FOUND);
  EXPECT_EQ(seen.options, nullptr);
  EXPECT_EQ(calls.init(nullptr, [](const char* o) { return o == nullptr ? 0 : 1; }), 0);
  ASSERT_EQ(get(nullptr), SWITCHYARD_MAP_FOUND);
  EXPECT_EQ(seen.options, nullptr);
}

// Four threads each make `rounds` lookups through `calls`, then each calls fini.
template <class Lookup, class Fini>
void from_four_threads(sy::maps::Calls& calls, int rounds, Lookup lookup, Fini fini) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      char* str = nullptr;
      std::size_t len = 0;
      for (int i = 0; i < rounds; ++i) calls.get("k", nullptr, &str, &len, lookup);
      calls.fini(fini);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(MapSupportCalls, OneCallAtATime) {
  sy::maps::Calls calls;
  std::atomic<int> inside{0}, overlaps{0};
  auto enter_and_leave = [&] {
    if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
    std::this_thread::yield();
    inside.fetch_sub(1);
  };
  from_four_threads(
      calls, 2000,
      [&](const char*, const char*, char**, std::size_t*) {
        enter_and_leave();
        return SWITCHYARD_MAP_NOT_FOUND;
      },
      enter_and_leave);
  EXPECT_EQ(overlaps.load(), 0);
}

TEST(MapSupportCalls, ConcurrentLookupsRunSideBySideButNeverBesideFini) {
  sy::maps::Calls calls(true);
  std::atomic<int> inside{0}, most{0}, fini_overlaps{0};
  auto lookup = [&](const char*, const char*, char**, std::size_t*) {
    int now = inside.fetch_add(1) + 1;
    for (int seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) {
    }
    // Stay inside until another lookup joins (bounded), so an overlap is certain.
    for (int spin = 0; spin < 200000 && most.load() < 2; ++spin) std::this_thread::yield();
    inside.fetch_sub(1);
    return SWITCHYARD_MAP_NOT_FOUND;
  };
  from_four_threads(calls, 200, lookup, [&] {
    if (inside.load() != 0) fini_overlaps.fetch_add(1);
  });
  EXPECT_GE(most.load(), 2);
  EXPECT_EQ(fini_overlaps.load(), 0);
}

// --- the connection pool ------------------------------------------------------------------

TEST(MapSupportPool, AGivenBackConnectionIsLentAgainAClosedOneIsNot) {
  sy::maps::Pool<FakeConnection> pool;
  auto a = pool.take("x");
  EXPECT_FALSE(a->is_open());  // none yet: the lookup opens its own
  a->connect();
  pool.opened("x", a.get());
  FakeConnection* first = a.get();
  pool.give_back("x", std::move(a));
  auto b = pool.take("x");
  EXPECT_EQ(b.get(), first);
  EXPECT_TRUE(b->is_open());
  auto c = pool.take("x");  // the only one is lent: a new, closed one
  EXPECT_NE(c.get(), first);
  EXPECT_FALSE(c->is_open());
  auto other = pool.take("y");  // another options string never gets x's
  EXPECT_FALSE(other->is_open());
  b->close();
  pool.give_back("x", std::move(b));
  pool.give_back("x", std::move(c));
  pool.give_back("y", std::move(other));
  EXPECT_FALSE(pool.take("x")->is_open());  // closed ones were not kept
}

TEST(MapSupportPool, KeepsAtMostMaxIdleAndClosesTheRest) {
  sy::maps::Pool<FakeConnection> pool(1);
  auto a = pool.take("x"), b = pool.take("x");
  a->connect();
  b->connect();
  pool.give_back("x", std::move(a));
  pool.give_back("x", std::move(b));  // one idle already: closed and freed
  auto again = pool.take("x");
  EXPECT_TRUE(again->is_open());
  EXPECT_FALSE(pool.take("x")->is_open());
  pool.give_back("x", std::move(again));
  pool.clear();
  EXPECT_FALSE(pool.take("x")->is_open());
}

TEST(MapSupportPool, AForkedChildNeverBorrowsItsParentsConnections) {
  sy::maps::Pool<FakeConnection> pool;
  auto a = pool.take("x");
  a->connect();
  pool.give_back("x", std::move(a));
  EXPECT_EQ(in_child([&] {
              auto c = pool.take("x");
              return c->is_open() ? 1 : 0;
            }),
            0);
  EXPECT_TRUE(pool.take("x")->is_open());  // the parent still has it
}

TEST(MapSupportPool, WaitForIdleGetsWhatAnotherLookupGivesBack) {
  sy::maps::Pool<FakeConnection> pool;
  // Nobody holds an open one: no waiting at all.
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(pool.wait_for_idle("x", std::chrono::seconds(5)), nullptr);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  auto held = pool.take("x");
  held->connect();
  pool.opened("x", held.get());
  FakeConnection* raw = held.get();
  std::thread other([&] { pool.give_back("x", std::move(held)); });
  auto got = pool.wait_for_idle("x", std::chrono::seconds(5));
  other.join();
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got.get(), raw);
  pool.give_back("x", std::move(got));
}

std::optional<int> parse_number(const char* text, std::string* error) {
  if (text != nullptr && std::strcmp(text, "42") == 0) return 42;
  *error = std::string("not 42: ") + (text ? text : "NULL");
  return std::nullopt;
}

TEST(MapSupportParseOrReport, ReportsWhyNotAndPassesTheRest) {
  constexpr sy::maps::Reporter report("demo");
  std::optional<int> parsed;
  EXPECT_EQ(stderr_of([&] { parsed = sy::maps::parse_or_report(parse_number, "42", report); }),
            "");
  EXPECT_EQ(parsed, 42);
  EXPECT_EQ(stderr_of([&] { parsed = sy::maps::parse_or_report(parse_number, "x", report); }),
            "switchyard demo map: not 42: x\n");
  EXPECT_FALSE(parsed);
}

}  // namespace
