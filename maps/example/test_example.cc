// Tests for the example map module (maps/example/example.cc) and, through it, the C++ helper
// <switchyard/map.hpp>: the module is loaded as a host loads it, dlopen(MAPS_BUILDDIR
// "/example.so"), and driven only through its C symbols. A few cases the example cannot
// produce (a non-standard exception, Found without a server) drive the helper's adapter
// directly, without defining any C symbol in this binary.
#include <dlfcn.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <switchyard/map.h>
#include <switchyard/map.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "../common/module_test.h"

namespace {

using LookupFn = int (*)(const switchyard_map_query*, switchyard_map_answer*);

// A switchyard_map_answer copied into C++ strings (and freed, as the host does).
struct Reply {
  int rc = 99;
  std::string user;
  std::vector<std::string> servers;
  bool hold = false;
};

Reply take(int rc, switchyard_map_answer& a) {
  Reply r;
  r.rc = rc;
  if (a.user) r.user = a.user;
  for (char* s : a.servers) {
    if (s) r.servers.emplace_back(s);
    std::free(s);
  }
  std::free(a.user);
  r.hold = a.hold != 0;
  return r;
}

class ExampleMapTest : public sy::maps::test::ModuleTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(load("example.so"));
    lookup_ = reinterpret_cast<LookupFn>(dlsym(handle_, "switchyard_map_lookup"));
    ASSERT_NE(lookup_, nullptr);
  }

  void TearDown() override {
    ModuleTest::TearDown();
    if (!file_.empty()) std::remove(file_.c_str());
  }

  Reply lookup(const char* key, const char* protocol = "imap") {
    switchyard_map_query q{};
    q.abi_version = SWITCHYARD_MAP_ABI_VERSION;
    q.key = key;
    q.options = nullptr;
    q.protocol = protocol;
    q.client_address = "192.0.2.7";
    q.local_address = "";
    switchyard_map_answer a{};
    return take(lookup_(&q, &a), a);
  }

  // dbserver_get's string, or "rc=N" when it returns N != 0.
  std::string get(const char* key) {
    GetReply r = fetch(key, nullptr);
    return r.rc == 0 ? r.value : "rc=" + std::to_string(r.rc);
  }

  LookupFn lookup_ = nullptr;
  std::string file_;
};

constexpr const char* kTable =
    "jane=store1; joe=joe.smith@store2:10143,store3:10143 ;"
    "jane/pop3=pop.example.org:110; moving=hold; broken=tempfail";

TEST_F(ExampleMapTest, ExportsTheExtensionsAsThreadSafeCurrentAbi) {
  auto* version = static_cast<const int*>(dlsym(handle_, "switchyard_map_abi_version"));
  auto* thread_safe = static_cast<const int*>(dlsym(handle_, "switchyard_map_thread_safe"));
  ASSERT_NE(version, nullptr);
  ASSERT_NE(thread_safe, nullptr);
  EXPECT_EQ(*version, SWITCHYARD_MAP_ABI_VERSION);
  EXPECT_EQ(*thread_safe, 1);
  EXPECT_EQ(dlsym(handle_, "dbserver_get2"), nullptr);
}

TEST_F(ExampleMapTest, FoundWithOneServer) {
  ASSERT_EQ(init(kTable), 0);
  Reply r = lookup("jane");
  EXPECT_EQ(r.rc, SWITCHYARD_MAP_FOUND);
  EXPECT_EQ(r.user, "");
  EXPECT_EQ(r.servers, std::vector<std::string>{"store1"});
  EXPECT_FALSE(r.hold);
}

TEST_F(ExampleMapTest, FoundWithUserAndServersInOrder) {
  ASSERT_EQ(init(kTable), 0);
  Reply r = lookup("joe");
  EXPECT_EQ(r.rc, SWITCHYARD_MAP_FOUND);
  EXPECT_EQ(r.user, "joe.smith");
  EXPECT_EQ(r.servers, (std::vector<std::string>{"store2:10143", "store3:10143"}));
}

TEST_F(ExampleMapTest, ProtocolEntryWinsForThatProtocolOnly) {
  ASSERT_EQ(init(kTable), 0);
  EXPECT_EQ(lookup("jane", "pop3").servers, std::vector<std::string>{"pop.example.org:110"});
  EXPECT_EQ(lookup("jane", "imap").servers, std::vector<std::string>{"store1"});
  EXPECT_EQ(lookup("jane", "").servers, std::vector<std::string>{"store1"});
}

TEST_F(ExampleMapTest, HoldIsFoundWithHoldAndNoServer) {
  ASSERT_EQ(init(kTable), 0);
  Reply r = lookup("moving");
  EXPECT_EQ(r.rc, SWITCHYARD_MAP_FOUND);
  EXPECT_TRUE(r.hold);
  EXPECT_TRUE(r.servers.empty());
  EXPECT_EQ(r.user, "");
}

TEST_F(ExampleMapTest, UnknownKeyIsNotFound) {
  ASSERT_EQ(init(kTable), 0);
  Reply r = lookup("nobody");
  EXPECT_EQ(r.rc, SWITCHYARD_MAP_NOT_FOUND);
  EXPECT_TRUE(r.servers.empty());
  EXPECT_EQ(get("nobody"), "rc=-2");
}

TEST_F(ExampleMapTest, WildcardAnswersUnknownKeysAndPerProtocolWildcardFirst) {
  ASSERT_EQ(init("jane=store1;*=default1;*/lmtp=lmtp.example.org:24"), 0);
  EXPECT_EQ(lookup("nobody", "imap").servers, std::vector<std::string>{"default1"});
  EXPECT_EQ(lookup("nobody", "lmtp").servers, std::vector<std::string>{"lmtp.example.org:24"});
  EXPECT_EQ(lookup("jane", "lmtp").servers, std::vector<std::string>{"store1"});
}

TEST_F(ExampleMapTest, ExceptionInLookupIsTempFailNotACrash) {
  ASSERT_EQ(init(kTable), 0);
  EXPECT_EQ(lookup("broken").rc, SWITCHYARD_MAP_DB_ERROR);
  EXPECT_EQ(get("broken"), "rc=-1");
  EXPECT_EQ(lookup("jane").rc, SWITCHYARD_MAP_FOUND);  // and the module still works
}

TEST_F(ExampleMapTest, DbserverGetJoinsUserAndFirstServer) {
  ASSERT_EQ(init(kTable), 0);
  EXPECT_EQ(get("jane"), "store1");
  EXPECT_EQ(get("joe"), "joe.smith@store2:10143");
  EXPECT_EQ(get("moving"), "hold");
}

TEST_F(ExampleMapTest, DbserverGetStringIsNulTerminated) {
  ASSERT_EQ(init(kTable), 0);
  char* str = nullptr;
  std::size_t len = 0;
  ASSERT_EQ(get_("joe", nullptr, &str, &len), 0);
  ASSERT_NE(str, nullptr);
  EXPECT_EQ(std::strlen(str), len);
  std::free(str);
}

TEST_F(ExampleMapTest, DbserverGetAsksWithoutProtocol) {
  ASSERT_EQ(init("jane/imap=imaponly;*=default1"), 0);
  EXPECT_EQ(get("jane"), "default1");
}

TEST_F(ExampleMapTest, BadOptionsFailInit) {
  EXPECT_NE(init(nullptr), 0);
  EXPECT_NE(init(""), 0);
  EXPECT_NE(init("jane"), 0);                 // no '='
  EXPECT_NE(init("jane="), 0);                // no value
  EXPECT_NE(init("=store1"), 0);              // no key
  EXPECT_NE(init("jane=store1;jane=store2"), 0);
  EXPECT_NE(init("jane=a,,b"), 0);            // an empty server
  EXPECT_NE(init("jane=user@"), 0);           // a user but no server
  EXPECT_NE(init("/nonexistent/switchyard-example-map"), 0);
}

TEST_F(ExampleMapTest, LookupBeforeInitIsAnErrorNotACrash) {
  EXPECT_EQ(lookup("jane").rc, SWITCHYARD_MAP_OTHER_ERROR);
  EXPECT_EQ(get("jane"), "rc=-3");
}

TEST_F(ExampleMapTest, SecondInitReplacesTheTableAndFiniDropsIt) {
  ASSERT_EQ(init("jane=store1"), 0);
  ASSERT_EQ(init("jane=store9"), 0);  // a second init replaces the table
  EXPECT_EQ(lookup("jane").servers, std::vector<std::string>{"store9"});
  ASSERT_EQ(fini_(), 0);
  EXPECT_EQ(lookup("jane").rc, SWITCHYARD_MAP_OTHER_ERROR);
}

TEST_F(ExampleMapTest, ReadsATableFromAFile) {
  char path[] = "/tmp/switchyard-example-map-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  file_ = path;
  std::ofstream(file_) << "# users\n"
                          "jane = store1:143\n"
                          "\n"
                          "  joe=j@[2001:db8::25]:143,store2  \n"
                          "*=hold\n";
  ASSERT_EQ(init(file_.c_str()), 0);
  EXPECT_EQ(lookup("jane").servers, std::vector<std::string>{"store1:143"});
  Reply joe = lookup("joe");
  EXPECT_EQ(joe.user, "j");
  EXPECT_EQ(joe.servers, (std::vector<std::string>{"[2001:db8::25]:143", "store2"}));
  EXPECT_TRUE(lookup("anyone").hold);
}

TEST_F(ExampleMapTest, AtMostMaxServersArePassedOn) {
  std::string servers;
  for (int i = 0; i < SWITCHYARD_MAP_MAX_SERVERS + 3; ++i)
    servers += (i ? ",s" : "s") + std::to_string(i);
  ASSERT_EQ(init(("many=" + servers).c_str()), 0);
  Reply r = lookup("many");
  ASSERT_EQ(r.servers.size(), std::size_t{SWITCHYARD_MAP_MAX_SERVERS});
  EXPECT_EQ(r.servers.front(), "s0");
  EXPECT_EQ(r.servers.back(), "s" + std::to_string(SWITCHYARD_MAP_MAX_SERVERS - 1));
}

// --- The helper's adapter on its own ----------------------------------------------------

// A map whose behaviour the options choose: throw 42, answer Found without a server, or
// answer with empty server strings around a real one.
class Misbehaving {
 public:
  explicit Misbehaving(const char* options) : mode_(options ? options : "") {
    if (mode_ == "ctor-throws-int") throw 42;
  }
  switchyard::Result lookup(const switchyard::Query&, switchyard::Answer& answer) {
    if (mode_ == "throw-int") throw 42;
    if (mode_ == "empty") return switchyard::Result::Found;
    if (mode_ == "bad-result") return static_cast<switchyard::Result>(17);
    answer.servers = {"", "real", ""};
    return switchyard::Result::Found;
  }

 private:
  std::string mode_;
};

int adapter_lookup(switchyard::detail::Adapter<Misbehaving>& adapter, Reply* out) {
  switchyard_map_query q{};
  q.key = "k";  // the other strings NULL: the adapter must cope
  switchyard_map_answer a{};
  *out = take(adapter.lookup(&q, &a), a);
  return out->rc;
}

TEST(MapHelper, NonStandardExceptionIsOtherError) {
  switchyard::detail::Adapter<Misbehaving> adapter("Misbehaving");
  ASSERT_EQ(adapter.init("throw-int"), 0);
  Reply r;
  EXPECT_EQ(adapter_lookup(adapter, &r), SWITCHYARD_MAP_OTHER_ERROR);
  EXPECT_EQ(adapter.fini(), 0);
}

TEST(MapHelper, NonStandardExceptionInConstructorFailsInit) {
  switchyard::detail::Adapter<Misbehaving> adapter("Misbehaving");
  EXPECT_NE(adapter.init("ctor-throws-int"), 0);
}

TEST(MapHelper, FoundWithoutServerIsAnError) {
  switchyard::detail::Adapter<Misbehaving> adapter("Misbehaving");
  ASSERT_EQ(adapter.init("empty"), 0);
  Reply r;
  EXPECT_EQ(adapter_lookup(adapter, &r), SWITCHYARD_MAP_OTHER_ERROR);
  EXPECT_TRUE(r.servers.empty());
  char* str = nullptr;
  std::size_t len = 0;
  EXPECT_EQ(adapter.get("k", nullptr, &str, &len), SWITCHYARD_MAP_OTHER_ERROR);
  EXPECT_EQ(str, nullptr);
}

TEST(MapHelper, ResultOutsideTheEnumIsAnError) {
  switchyard::detail::Adapter<Misbehaving> adapter("Misbehaving");
  ASSERT_EQ(adapter.init("bad-result"), 0);
  Reply r;
  EXPECT_EQ(adapter_lookup(adapter, &r), SWITCHYARD_MAP_OTHER_ERROR);
}

TEST(MapHelper, EmptyServerStringsAreSkipped) {
  switchyard::detail::Adapter<Misbehaving> adapter("Misbehaving");
  ASSERT_EQ(adapter.init(nullptr), 0);
  Reply r;
  EXPECT_EQ(adapter_lookup(adapter, &r), SWITCHYARD_MAP_FOUND);
  EXPECT_EQ(r.servers, std::vector<std::string>{"real"});
  char* str = nullptr;
  std::size_t len = 0;
  ASSERT_EQ(adapter.get("k", nullptr, &str, &len), SWITCHYARD_MAP_FOUND);
  EXPECT_EQ(std::string(str, len), "real");
  std::free(str);
}

TEST(MapHelper, NullArgumentsAreRejected) {
  switchyard::detail::Adapter<Misbehaving> adapter("Misbehaving");
  ASSERT_EQ(adapter.init(nullptr), 0);
  switchyard_map_answer a{};
  EXPECT_EQ(adapter.lookup(nullptr, &a), SWITCHYARD_MAP_OTHER_ERROR);
  std::size_t len = 0;
  EXPECT_EQ(adapter.get(nullptr, nullptr, nullptr, &len), SWITCHYARD_MAP_OTHER_ERROR);
}

}  // namespace
