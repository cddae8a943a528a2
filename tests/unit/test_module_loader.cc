// The map module loader against real shared objects built in the tree: Perdition's
// dbserver_get and dbserver_get2 forms, and deliberately broken modules.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "config/config.h"
#include "map/chain.h"
#include "map/module.h"
#include "backend/target.h"

namespace {

std::string mod(const char* name) { return std::string(TEST_MODULES_DIR) + "/" + name + ".so"; }

std::unique_ptr<sy::MapModule> open_ok(const std::string& path,
                                       std::optional<std::string> options = std::nullopt) {
  std::string error;
  auto m = sy::MapModule::open(path, std::move(options), "t", "@", &error);
  EXPECT_TRUE(m) << error;
  if (m) {
    EXPECT_TRUE(m->init(&error)) << error;
  }
  return m;
}

// A temporary directory (under /tmp, sticky and root's) holding a copy of get2map.so,
// for giving the file or the directory bad modes or owners.
struct ModuleCopy {
  std::string dir;
  std::string path;
  ModuleCopy() {
    char tmpl[] = "/tmp/sy-loader-XXXXXX";
    EXPECT_TRUE(::mkdtemp(tmpl));
    dir = tmpl;
    path = dir + "/get2map.so";
    std::ifstream in(mod("get2map"), std::ios::binary);
    std::ofstream out(path, std::ios::binary);
    out << in.rdbuf();
  }
  ~ModuleCopy() {
    std::remove(path.c_str());
    ::rmdir(dir.c_str());
  }
  std::string refusal() const {
    std::string error;
    EXPECT_FALSE(sy::MapModule::open(path, std::nullopt, "t", "@", &error)) << path;
    return error;
  }
};

constexpr uid_t kNobody = 65534;

// Giving files away takes root; the suite runs as root in CI.
void give_to_nobody(const std::string& path) {
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root (chown)";
  ASSERT_EQ(::chown(path.c_str(), kNobody, kNobody), 0) << path;
}

}  // namespace

TEST(ModuleLoader, Get2OnlyModuleWorks) {
  auto m = open_ok(mod("get2map"), std::string("jdoe,127.0.0.1,10143"));
  ASSERT_TRUE(m);
  auto r = m->lookup("anyone");
  EXPECT_EQ(r.status, sy::LookupStatus::Found);
  EXPECT_EQ(r.answer, (sy::MapAnswer{"jdoe", "127.0.0.1", "10143"}));
  EXPECT_EQ(m->lookup("missing").status, sy::LookupStatus::NotFound);
}

TEST(ModuleLoader, Get2WithIpv6ServerAndNoUser) {
  auto m = open_ok(mod("get2map"), std::string(",::1,"));
  ASSERT_TRUE(m);
  auto r = m->lookup("x");
  EXPECT_EQ(r.answer, (sy::MapAnswer{"", "::1", ""}));
}

TEST(ModuleLoader, IntWrittenLengthIsAccepted) {
  auto m = open_ok(mod("sleepmap"), std::string("0"));
  ASSERT_TRUE(m);
  auto r = m->lookup("intlen");
  EXPECT_EQ(r.status, sy::LookupStatus::Found);
  EXPECT_EQ(r.answer, (sy::MapAnswer{"", "127.0.0.1", "143"}));
}

TEST(ModuleLoader, DatabaseErrorIsTempFail) {
  auto m = open_ok(mod("sleepmap"), std::string("0"));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->lookup("tempfail").status, sy::LookupStatus::TempFail);
}

TEST(ModuleLoader, GarbageAnswerIsTempFail) {
  auto m = open_ok(mod("sleepmap"), std::string("0"));
  ASSERT_TRUE(m);
  auto r = m->lookup("garbage");
  EXPECT_EQ(r.status, sy::LookupStatus::TempFail);
  EXPECT_FALSE(r.detail.empty());
}

TEST(ModuleLoader, MissingSymbolIsRefused) {
  std::string error;
  auto m = sy::MapModule::open(mod("broken_nosym"), std::nullopt, "t", "@", &error);
  EXPECT_FALSE(m);
  EXPECT_NE(error.find("neither dbserver_get nor dbserver_get2"), std::string::npos) << error;
}

TEST(ModuleLoader, FailingInitIsReported) {
  std::string error;
  auto m = sy::MapModule::open(mod("broken_init"), std::nullopt, "t", "@", &error);
  ASSERT_TRUE(m) << error;
  EXPECT_FALSE(m->init(&error));
  EXPECT_NE(error.find("dbserver_init failed"), std::string::npos) << error;
}

TEST(ModuleLoader, MissingFileIsReported) {
  std::string error;
  EXPECT_FALSE(sy::MapModule::open("/nonexistent/x.so", std::nullopt, "t", "@", &error));
  EXPECT_NE(error.find("/nonexistent/x.so"), std::string::npos);
}

TEST(ModuleLoader, NotASharedObjectIsReported) {
  char dir[] = "/tmp/sy-loader-XXXXXX";
  ASSERT_TRUE(::mkdtemp(dir));
  std::string path = std::string(dir) + "/fake.so";
  std::ofstream(path) << "not an ELF file\n";
  std::string error;
  EXPECT_FALSE(sy::MapModule::open(path, std::nullopt, "t", "@", &error));
  EXPECT_FALSE(error.empty());
  std::remove(path.c_str());
  ::rmdir(dir);
}

TEST(ModuleLoader, CopyInPrivateDirectoryUnderStickyTmpLoads) {
  ModuleCopy c;
  open_ok(c.path, std::string("u,h,1"));
}

TEST(ModuleLoader, WorldWritableModuleIsRefused) {
  ModuleCopy c;
  ::chmod(c.path.c_str(), 0666);
  std::string error = c.refusal();
  EXPECT_NE(error.find("the file is writable by others (mode 0666)"), std::string::npos)
      << error;
}

TEST(ModuleLoader, GroupWritableModuleIsRefused) {
  ModuleCopy c;
  ::chmod(c.path.c_str(), 0664);
  std::string error = c.refusal();
  EXPECT_EQ(error.rfind(c.path + ": refusing a map module others could change: ", 0), 0u)
      << error;
  EXPECT_NE(error.find("the file is writable by its group (mode 0664)"), std::string::npos)
      << error;
}

TEST(ModuleLoader, ModuleOfAnotherUserIsRefused) {
  ModuleCopy c;
  ::chmod(c.path.c_str(), 0644);
  give_to_nobody(c.path);
  std::string error = c.refusal();
  EXPECT_NE(error.find("the file belongs to nobody (uid 65534), not to root"),
            std::string::npos)
      << error;
}

TEST(ModuleLoader, ModuleInGroupWritableDirectoryIsRefused) {
  ModuleCopy c;
  ::chmod(c.dir.c_str(), 0770);
  std::string error = c.refusal();
  EXPECT_NE(error.find("directory " + c.dir + " is writable by its group (mode 0770)"),
            std::string::npos)
      << error;
}

TEST(ModuleLoader, ModuleInWorldWritableDirectoryWithoutStickyBitIsRefused) {
  ModuleCopy c;
  ::chmod(c.dir.c_str(), 0777);
  std::string error = c.refusal();
  EXPECT_NE(error.find("directory " + c.dir + " is writable by others (mode 0777)"),
            std::string::npos)
      << error;
}

TEST(ModuleLoader, ModuleInDirectoryOfAnotherUserIsRefused) {
  ModuleCopy c;
  ::chmod(c.dir.c_str(), 0755);
  give_to_nobody(c.dir);
  std::string error = c.refusal();
  EXPECT_NE(error.find("directory " + c.dir + " belongs to nobody (uid 65534)"),
            std::string::npos)
      << error;
}

TEST(ModuleLoader, StickyDirectoryPassesOnlyWhenRootOwnsIt) {
  ModuleCopy c;
  ::chmod(c.dir.c_str(), 01777);
  open_ok(c.path, std::string("u,h,1"));  // root's, as /tmp itself
  give_to_nobody(c.dir);
  std::string error = c.refusal();
  EXPECT_NE(error.find("directory " + c.dir + " belongs to nobody"), std::string::npos)
      << error;
}

TEST(ModuleLoader, SymlinkIsJudgedByWhatItPointsTo) {
  ModuleCopy target, link_dir;
  std::string link = link_dir.dir + "/link.so";
  ASSERT_EQ(::symlink(target.path.c_str(), link.c_str()), 0);
  open_ok(link, std::string("u,h,1"));
  ::chmod(target.dir.c_str(), 0775);
  std::string error;
  EXPECT_FALSE(sy::MapModule::open(link, std::nullopt, "t", "@", &error));
  EXPECT_EQ(error.rfind(link + ": ", 0), 0u) << error;
  EXPECT_NE(error.find("directory " + target.dir + " is writable by its group"),
            std::string::npos)
      << error;
  std::remove(link.c_str());
}

TEST(ModuleLoader, DirectoryIsNotAModule) {
  ModuleCopy c;
  std::string error;
  EXPECT_FALSE(sy::MapModule::open(c.dir, std::nullopt, "t", "@", &error));
  EXPECT_NE(error.find("not a regular file"), std::string::npos) << error;
}

TEST(ModuleLoader, ChainNamesTheLineOfAnUntrustedModule) {
  ModuleCopy c;
  ::chmod(c.dir.c_str(), 0770);
  sy::Config conf;
  std::string error;
  ASSERT_TRUE(sy::parse_config("map_dir = \"" + c.dir + "\"\n\n[[map]]\nmodule = \"get2map\"\n",
                               "t.conf", &conf, &error))
      << error;
  EXPECT_FALSE(sy::load_chain(conf, &error));
  EXPECT_EQ(error.rfind("t.conf:3: map 'get2map': " + c.path + ": refusing", 0), 0u) << error;
  EXPECT_NE(error.find("is writable by its group"), std::string::npos) << error;
}

TEST(ModuleLoader, ChainFromConfigNamesTheLineOfABrokenMap) {
  sy::Config c;
  std::string error;
  ASSERT_TRUE(sy::parse_config(std::string("map_dir = \"") + TEST_MODULES_DIR +
                                   "\"\n[[map]]\nmodule = \"get2map\"\noptions = \",h,1\"\n"
                                   "\n[[map]]\nmodule = \"broken_init\"\n",
                               "t.conf", &c, &error))
      << error;
  EXPECT_FALSE(sy::load_chain(c, &error));
  EXPECT_EQ(error.rfind("t.conf:6: map 'broken_init': ", 0), 0u) << error;
}

TEST(ModuleLoader, ExtendedLookupGivesServersUserAndHold) {
  auto m = open_ok(mod("extmap"), std::string("store1,10.0.0.2:1143"));
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->thread_safe());
  sy::LookupRequest q;
  q.key = "who";
  q.protocol = "pop3";
  q.client_address = "192.0.2.7";
  auto r = m->lookup(q);
  ASSERT_EQ(r.status, sy::LookupStatus::Found);
  EXPECT_EQ(r.answer, (sy::MapAnswer{"pop3-192.0.2.7", "store1", ""}));
  ASSERT_EQ(r.more.size(), 1u);
  EXPECT_EQ(r.more[0], (sy::MapAnswer{"pop3-192.0.2.7", "10.0.0.2", "1143"}));
  EXPECT_EQ(m->lookup("held").status, sy::LookupStatus::Hold);
  EXPECT_EQ(m->lookup("missing").status, sy::LookupStatus::NotFound);
  EXPECT_EQ(m->lookup("broken").status, sy::LookupStatus::TempFail);
}

TEST(ModuleLoader, ExtendedLookupWithoutServersIsTempFail) {
  auto m = open_ok(mod("extmap"), std::string(""));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->lookup("anyone").status, sy::LookupStatus::TempFail);
}

TEST(ModuleLoader, NewerAbiIsRefused) {
  std::string error;
  EXPECT_FALSE(sy::MapModule::open(mod("future_abi"), std::nullopt, "t", "@", &error));
  EXPECT_NE(error.find("built for map ABI 999"), std::string::npos) << error;
}

TEST(ModuleLoader, ClassicModulesAreNotThreadSafe) {
  auto m = open_ok(mod("get2map"), std::string("u,h,1"));
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->thread_safe());
}

TEST(Target, ExtendedServersFailOverInOrder) {
  sy::Config c;
  auto t = sy::resolve_target(c, sy::MapAnswer{"", "10.0.0.1", ""}, sy::Service::Imap,
                              {sy::MapAnswer{"", "10.0.0.2", "1143"}});
  EXPECT_EQ(t.hosts, (std::vector<std::string>{"10.0.0.1", "10.0.0.2"}));
  EXPECT_EQ(sy::port_of(t, 0), "143");
  EXPECT_EQ(sy::port_of(t, 1), "1143");
}
