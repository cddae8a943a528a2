// Lookup cache: TTLs, negative TTL, LRU bound, stale answers, TempFail never stored.
#include <gtest/gtest.h>

#include "map/cache.h"

using namespace std::chrono_literals;
using Clock = sy::LookupCache::Clock;

namespace {

sy::ChainReply reply(sy::LookupStatus s, const std::string& host = "store1") {
  sy::ChainReply r;
  r.reply.status = s;
  r.reply.answer.host = host;
  r.map_name = "m";
  return r;
}

sy::LookupCache::Settings settings() {
  sy::LookupCache::Settings s;
  s.ttl = 60s;
  s.negative_ttl = 10s;
  s.stale_ttl = 1h;
  s.capacity = 3;
  return s;
}

}  // namespace

TEST(LookupCache, FoundIsKeptForTheTtl) {
  sy::LookupCache c(settings());
  auto t0 = Clock::time_point(1000s);
  c.store("jane", reply(sy::LookupStatus::Found), t0);
  ASSERT_TRUE(c.fresh("jane", t0 + 59s));
  EXPECT_EQ(c.fresh("jane", t0 + 59s)->reply.answer.host, "store1");
  EXPECT_FALSE(c.fresh("jane", t0 + 60s));
}

TEST(LookupCache, NotFoundUsesTheNegativeTtl) {
  sy::LookupCache c(settings());
  auto t0 = Clock::time_point(1000s);
  c.store("ghost", reply(sy::LookupStatus::NotFound), t0);
  EXPECT_TRUE(c.fresh("ghost", t0 + 9s));
  EXPECT_FALSE(c.fresh("ghost", t0 + 10s));
}

TEST(LookupCache, TempFailIsNeverStored) {
  sy::LookupCache c(settings());
  auto t0 = Clock::time_point(1000s);
  c.store("jane", reply(sy::LookupStatus::TempFail), t0);
  EXPECT_FALSE(c.fresh("jane", t0));
  EXPECT_FALSE(c.stale("jane", t0));
  EXPECT_EQ(c.size(), 0u);
}

TEST(LookupCache, StaleAnswerServedWithinStaleTtlOnly) {
  sy::LookupCache c(settings());
  auto t0 = Clock::time_point(1000s);
  c.store("jane", reply(sy::LookupStatus::Found), t0);
  EXPECT_FALSE(c.fresh("jane", t0 + 30min));
  ASSERT_TRUE(c.stale("jane", t0 + 30min));
  EXPECT_FALSE(c.stale("jane", t0 + 60s + 1h));
}

TEST(LookupCache, LeastRecentlyUsedIsDroppedFirst) {
  sy::LookupCache c(settings());
  auto t0 = Clock::time_point(1000s);
  c.store("a", reply(sy::LookupStatus::Found), t0);
  c.store("b", reply(sy::LookupStatus::Found), t0);
  c.store("c", reply(sy::LookupStatus::Found), t0);
  EXPECT_TRUE(c.fresh("a", t0));  // a is now the most recent
  c.store("d", reply(sy::LookupStatus::Found), t0);
  EXPECT_EQ(c.size(), 3u);
  EXPECT_TRUE(c.fresh("a", t0));
  EXPECT_FALSE(c.fresh("b", t0));
}

TEST(LookupCache, StoringAgainReplacesTheAnswer) {
  sy::LookupCache c(settings());
  auto t0 = Clock::time_point(1000s);
  c.store("jane", reply(sy::LookupStatus::Found, "store1"), t0);
  c.store("jane", reply(sy::LookupStatus::Found, "store2"), t0 + 1s);
  EXPECT_EQ(c.fresh("jane", t0 + 1s)->reply.answer.host, "store2");
  EXPECT_EQ(c.size(), 1u);
}

TEST(LookupCache, ZeroCapacityDisables) {
  auto s = settings();
  s.capacity = 0;
  sy::LookupCache c(s);
  c.store("jane", reply(sy::LookupStatus::Found), Clock::time_point(1000s));
  EXPECT_FALSE(c.fresh("jane", Clock::time_point(1000s)));
}

TEST(LookupCache, ForgetDropsOneUsersEntriesOnly) {
  sy::LookupCache c(settings());
  auto now = Clock::now();
  c.store("ann\nimap", reply(sy::LookupStatus::Found), now);
  c.store("ann\nlmtp", reply(sy::LookupStatus::Found), now);
  c.store("anne\nimap", reply(sy::LookupStatus::Found), now);
  EXPECT_EQ(c.forget("ann\n"), 2u);
  EXPECT_FALSE(c.fresh("ann\nimap", now));
  EXPECT_FALSE(c.stale("ann\nlmtp", now));
  EXPECT_TRUE(c.fresh("anne\nimap", now));
  EXPECT_EQ(c.size(), 1u);
}
