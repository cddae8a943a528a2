// The worker's session registry: registration lifetime, stages, kick by key, and what a
// stop or a drain does to each stage.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "worker/holds.h"
#include "worker/session_registry.h"

#include <unistd.h>

#include <cstdlib>

using sy::SessionKind;
using sy::SessionRegistry;
using sy::SessionStage;

namespace {

struct FakeSession : sy::SessionHandle {
  int shut_downs = 0;
  int kicks = 0;
  void shut_down() override { ++shut_downs; }
  void kick() override { ++kicks; }
  std::string describe() const override { return "fake"; }
};

}  // namespace

TEST(SessionRegistry, RegistrationLeavesWhenDestroyedOrReset) {
  SessionRegistry reg;
  FakeSession a, b;
  {
    auto ra = reg.enter(a, reg.next_id(), SessionKind::Imap, SessionStage::PreLogin);
    auto rb = reg.enter(b, reg.next_id(), SessionKind::Lmtp, SessionStage::LmtpIdle);
    EXPECT_EQ(reg.size(), 2u);
    rb.reset();
    rb.reset();  // idempotent
    EXPECT_EQ(reg.size(), 1u);
  }
  EXPECT_EQ(reg.size(), 0u);
}

TEST(SessionRegistry, MovedRegistrationStillLeavesOnce) {
  SessionRegistry reg;
  FakeSession a;
  SessionRegistry::Registration outer;
  {
    auto r = reg.enter(a, reg.next_id(), SessionKind::Pop3, SessionStage::PreLogin);
    outer = std::move(r);
  }
  EXPECT_EQ(reg.size(), 1u);
  outer.set_stage(SessionStage::LoggedIn);
  EXPECT_EQ(reg.count(SessionStage::LoggedIn), 1u);
  outer.reset();
  EXPECT_EQ(reg.size(), 0u);
}

TEST(SessionRegistry, RegistrationOutlivingTheRegistryIsHarmless) {
  FakeSession a;
  SessionRegistry::Registration r;
  {
    SessionRegistry reg;
    r = reg.enter(a, reg.next_id(), SessionKind::Imap, SessionStage::PreLogin);
  }
  EXPECT_FALSE(static_cast<bool>(r));
  r.reset();  // must not touch the dead registry
}

TEST(SessionRegistry, IdsAreUniqueInAWorker) {
  SessionRegistry reg;
  auto first = reg.next_id();
  EXPECT_NE(first, reg.next_id());
}

TEST(SessionRegistry, KickMatchesTheMapKeyOnly) {
  SessionRegistry reg;
  FakeSession ann1, ann2, bob, unknown;
  auto r1 = reg.enter(ann1, reg.next_id(), SessionKind::Imap, SessionStage::LoggedIn);
  auto r2 = reg.enter(ann2, reg.next_id(), SessionKind::Pop3, SessionStage::PreLogin);
  auto r3 = reg.enter(bob, reg.next_id(), SessionKind::Imap, SessionStage::LoggedIn);
  auto r4 = reg.enter(unknown, reg.next_id(), SessionKind::Imap, SessionStage::PreLogin);
  r1.set_key("ann@example.org");
  r2.set_key("ann@example.org");
  r3.set_key("bob@example.org");
  EXPECT_EQ(reg.kick("ann@example.org"), 2u);
  EXPECT_EQ(ann1.kicks + ann2.kicks, 2);
  EXPECT_EQ(bob.kicks, 0);
  EXPECT_EQ(reg.kick(""), 0u);  // sessions without a key are nobody's
  EXPECT_EQ(unknown.kicks, 0);
}

TEST(SessionRegistry, KickLeavesLmtpTransactionsToFinish) {
  SessionRegistry reg;
  FakeSession imap, lmtp;
  auto a = reg.enter(imap, reg.next_id(), SessionKind::Imap, SessionStage::LoggedIn);
  auto b = reg.enter(lmtp, reg.next_id(), SessionKind::Lmtp, SessionStage::LmtpTransaction);
  a.set_key("ann");
  b.add_key("bob");
  b.add_key("ann");
  b.add_key("ann");
  EXPECT_EQ(reg.entries().at(2).keys.size(), 2u);
  EXPECT_EQ(reg.with_key("ann").size(), 2u);  // both in flight
  EXPECT_EQ(reg.kick("ann"), 1u);
  EXPECT_EQ(lmtp.kicks, 0);
  b.set_key("");
  EXPECT_EQ(reg.with_key("ann").size(), 1u);
}

TEST(SessionRegistry, StopEndsEverySessionButAnLmtpTransactionNow) {
  SessionRegistry reg;
  FakeSession pre, relay, lmtp_idle, lmtp_tx, smap;
  auto a = reg.enter(pre, reg.next_id(), SessionKind::Imap, SessionStage::PreLogin);
  auto b = reg.enter(relay, reg.next_id(), SessionKind::Imap, SessionStage::LoggedIn);
  auto c = reg.enter(lmtp_idle, reg.next_id(), SessionKind::Lmtp, SessionStage::LmtpIdle);
  auto d = reg.enter(lmtp_tx, reg.next_id(), SessionKind::Lmtp, SessionStage::LmtpTransaction);
  auto e = reg.enter(smap, reg.next_id(), SessionKind::Socketmap, SessionStage::Socketmap);
  EXPECT_EQ(reg.stop(false), 4u);
  EXPECT_EQ(pre.shut_downs, 1);
  EXPECT_EQ(relay.shut_downs, 1);  // logged in: BYE now
  EXPECT_EQ(lmtp_idle.shut_downs, 1);
  EXPECT_EQ(lmtp_tx.shut_downs, 0);  // never cut in DATA
  EXPECT_EQ(smap.shut_downs, 1);
  // The transaction ends: the LMTP session is told then.
  d.set_stage(SessionStage::LmtpIdle);
  EXPECT_EQ(lmtp_tx.shut_downs, 1);
}

TEST(SessionRegistry, DrainLetsLoginsFinishButMovesPostfixConnections) {
  SessionRegistry reg;
  FakeSession pre, lmtp_idle, smap, relay;
  auto a = reg.enter(pre, reg.next_id(), SessionKind::Pop3, SessionStage::PreLogin);
  auto b = reg.enter(lmtp_idle, reg.next_id(), SessionKind::Lmtp, SessionStage::LmtpIdle);
  auto c = reg.enter(smap, reg.next_id(), SessionKind::Socketmap, SessionStage::Socketmap);
  auto d = reg.enter(relay, reg.next_id(), SessionKind::Imap, SessionStage::LoggedIn);
  EXPECT_EQ(reg.stop(true), 2u);
  EXPECT_EQ(pre.shut_downs, 0);
  EXPECT_EQ(relay.shut_downs, 0);  // logged in: until drain_timeout
  // A stop after the drain is a real stop.
  reg.stop(false);
  EXPECT_EQ(pre.shut_downs, 1);
}

TEST(SessionRegistry, OnEmptyRunsWhenTheLastLeavesWhileStopping) {
  SessionRegistry reg;
  int calls = 0;
  reg.on_empty = [&calls] { ++calls; };
  FakeSession a;
  {
    auto r = reg.enter(a, reg.next_id(), SessionKind::Imap, SessionStage::LoggedIn);
  }
  EXPECT_EQ(calls, 0);  // not stopping: nothing to do
  auto r = reg.enter(a, reg.next_id(), SessionKind::Imap, SessionStage::LoggedIn);
  reg.stop(false);
  r.reset();
  EXPECT_EQ(calls, 1);
}

TEST(SessionRegistry, NamesCoverEveryValue) {
  EXPECT_STREQ(sy::kind_name(SessionKind::Socketmap), "socketmap");
  EXPECT_STREQ(sy::stage_name(SessionStage::LmtpTransaction), "lmtp-transaction");
  EXPECT_STREQ(sy::stage_name(SessionStage::PreLogin), "pre-login");
}

TEST(HoldSet, MissingFileIsEmptyAndSaveLoadRoundTrips) {
  char dir[] = "/tmp/sy-holds-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string file = sy::HoldSet::file_in(dir);
  sy::HoldSet h;
  std::string error;
  ASSERT_TRUE(h.load(file, &error)) << error;
  EXPECT_TRUE(h.empty());
  EXPECT_TRUE(h.add("ann@example.org"));
  EXPECT_FALSE(h.add("ann@example.org"));
  EXPECT_TRUE(h.add("bob"));
  ASSERT_TRUE(h.save(file, &error)) << error;
  sy::HoldSet again;
  ASSERT_TRUE(again.load(file, &error)) << error;
  EXPECT_TRUE(again.contains("ann@example.org"));
  EXPECT_TRUE(again.contains("bob"));
  EXPECT_FALSE(again.contains("ann"));
  EXPECT_TRUE(again.remove("bob"));
  EXPECT_FALSE(again.remove("bob"));
  ASSERT_TRUE(again.save(file, &error));
  ASSERT_TRUE(h.load(file, &error));
  EXPECT_EQ(h.keys().size(), 1u);
  ::unlink(file.c_str());
  ::rmdir(dir);
}

TEST(SessionRegistry, CountsByStageAndPreLoginByClient) {
  SessionRegistry reg;
  FakeSession a, b, c;
  auto ra = reg.enter(a, reg.next_id(), SessionKind::Imap, SessionStage::PreLogin);
  auto rb = reg.enter(b, reg.next_id(), SessionKind::Pop3, SessionStage::PreLogin);
  auto rc = reg.enter(c, reg.next_id(), SessionKind::Imap, SessionStage::PreLogin);
  ra.set_client("192.0.2.1");
  rb.set_client("192.0.2.1");
  rc.set_client("192.0.2.9");
  EXPECT_EQ(reg.count(SessionStage::PreLogin), 3u);
  EXPECT_EQ(reg.prelogin_from("192.0.2.1"), 2u);
  ra.set_stage(SessionStage::LoggedIn);  // logged in: no longer counted against the address
  EXPECT_EQ(reg.prelogin_from("192.0.2.1"), 1u);
  EXPECT_EQ(reg.count(SessionStage::LoggedIn), 1u);
  rb.reset();
  EXPECT_EQ(reg.prelogin_from("192.0.2.1"), 0u);
  EXPECT_EQ(reg.count(SessionStage::PreLogin), 1u);
  rc.set_client("192.0.2.10");
  EXPECT_EQ(reg.prelogin_from("192.0.2.9"), 0u);
  EXPECT_EQ(reg.prelogin_from("192.0.2.10"), 1u);
}
