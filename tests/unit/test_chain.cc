// Map chain outcomes: first Found/TempFail/Hold decides, NotFound moves on, fallback
// catches the rest, TempFail never falls through to "unknown user".
#include <gtest/gtest.h>

#include <memory>

#include "map/chain.h"

namespace {

class FakeMap : public sy::Map {
 public:
  FakeMap(std::string name, sy::LookupStatus s, std::string host = "")
      : name_(std::move(name)), status_(s), host_(std::move(host)) {}
  sy::MapReply lookup(const sy::LookupRequest& request) override {
    ++calls;
    last_key = request.key;
    sy::MapReply r;
    r.status = status_;
    r.answer.host = host_;
    return r;
  }
  const std::string& name() const override { return name_; }
  int calls = 0;
  std::string last_key;

 private:
  std::string name_;
  sy::LookupStatus status_;
  std::string host_;
};

struct Chain {
  sy::MapChain chain;
  std::vector<FakeMap*> maps;
  FakeMap* add(std::string name, sy::LookupStatus s, std::string host = "") {
    auto m = std::make_unique<FakeMap>(std::move(name), s, std::move(host));
    maps.push_back(m.get());
    chain.add(std::move(m));
    return maps.back();
  }
};

}  // namespace

TEST(MapChain, FirstFoundWins) {
  Chain c;
  auto* a = c.add("a", sy::LookupStatus::Found, "store1");
  auto* b = c.add("b", sy::LookupStatus::Found, "store2");
  auto r = c.chain.lookup("jane");
  EXPECT_EQ(r.reply.status, sy::LookupStatus::Found);
  EXPECT_EQ(r.reply.answer.host, "store1");
  EXPECT_EQ(r.map_name, "a");
  EXPECT_EQ(a->last_key, "jane");
  EXPECT_EQ(b->calls, 0);
}

TEST(MapChain, NotFoundMovesOn) {
  Chain c;
  c.add("a", sy::LookupStatus::NotFound);
  c.add("b", sy::LookupStatus::Found, "store2");
  auto r = c.chain.lookup("jane");
  EXPECT_EQ(r.reply.answer.host, "store2");
  EXPECT_EQ(r.map_name, "b");
}

TEST(MapChain, TempFailStopsTheChainAndIsNotUnknownUser) {
  Chain c;
  c.add("a", sy::LookupStatus::TempFail);
  auto* b = c.add("b", sy::LookupStatus::Found, "store2");
  c.chain.set_fallback(sy::MapAnswer{"", "store9", ""});
  auto r = c.chain.lookup("jane");
  EXPECT_EQ(r.reply.status, sy::LookupStatus::TempFail);
  EXPECT_EQ(r.map_name, "a");
  EXPECT_EQ(b->calls, 0);
}

TEST(MapChain, HoldStopsTheChain) {
  Chain c;
  c.add("a", sy::LookupStatus::Hold);
  c.chain.set_fallback(sy::MapAnswer{"", "store9", ""});
  EXPECT_EQ(c.chain.lookup("jane").reply.status, sy::LookupStatus::Hold);
}

TEST(MapChain, AllNotFoundWithoutFallbackIsNotFound) {
  Chain c;
  c.add("a", sy::LookupStatus::NotFound);
  c.add("b", sy::LookupStatus::NotFound);
  auto r = c.chain.lookup("jane");
  EXPECT_EQ(r.reply.status, sy::LookupStatus::NotFound);
  EXPECT_EQ(r.map_name, "");
}

TEST(MapChain, AllNotFoundWithFallback) {
  Chain c;
  c.add("a", sy::LookupStatus::NotFound);
  c.chain.set_fallback(sy::MapAnswer{"", "store9", ""});
  auto r = c.chain.lookup("jane");
  EXPECT_EQ(r.reply.status, sy::LookupStatus::Found);
  EXPECT_EQ(r.reply.answer.host, "store9");
  EXPECT_EQ(r.map_name, "fallback");
}

TEST(MapChain, EmptyChainUsesFallback) {
  sy::MapChain chain;
  EXPECT_EQ(chain.lookup("x").reply.status, sy::LookupStatus::NotFound);
  chain.set_fallback(sy::MapAnswer{"", "store1", ""});
  EXPECT_EQ(chain.lookup("x").reply.answer.host, "store1");
}

TEST(MapChain, FallbackWithPortAndHold) {
  sy::MapChain chain;
  chain.set_fallback(sy::MapAnswer{"", "10.0.0.1", "10143"});
  auto r = chain.lookup("x");
  EXPECT_EQ(r.reply.answer, (sy::MapAnswer{"", "10.0.0.1", "10143"}));
  chain.set_fallback(sy::MapAnswer{"", "hold", ""});
  EXPECT_EQ(chain.lookup("x").reply.status, sy::LookupStatus::Hold);
}
