// The per-address client table and the failed-login penalty: the keyed hash, exact slots
// (two addresses never share one, whatever their hashes), a full neighbourhood that
// counts nobody rather than the wrong address, slots taken over once forgotten, and the
// table shared across fork() as the workers share it.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "proxy/admission.h"

using sy::ClientPin;
using sy::ClientTable;
using sy::HashKey;

namespace {

HashKey key_of(std::uint8_t first) {
  HashKey k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(first + i);
  return k;
}

// The table's slot choice before the fix: unkeyed FNV-1a of the text, mod the size.
std::size_t old_slot(std::uint32_t scope, const std::string& address, std::size_t slots) {
  std::uint64_t h = 1469598103934665603ull ^ scope;
  for (unsigned char c : address) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h % slots;
}

std::string v4(std::uint32_t n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", n >> 24, (n >> 16) & 255, (n >> 8) & 255,
                n & 255);
  return buf;
}

sy::PenaltyPolicy blocking_after(std::uint32_t n) {
  sy::PenaltyPolicy p;
  p.block_after = n;
  p.window = std::chrono::milliseconds(60000);
  return p;
}

}  // namespace

TEST(SipHash, ReferenceVectors) {
  // The SipHash paper's key 00..0f; messages 00 01 .. (len-1).
  const HashKey key = key_of(0);
  std::uint8_t msg[64];
  for (int i = 0; i < 64; ++i) msg[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(sy::siphash24(key, msg, 0), 0x726fdb47dd0e0e31ull);
  EXPECT_EQ(sy::siphash24(key, msg, 15), 0xa129ca6149be45e5ull);
  EXPECT_EQ(sy::siphash24(key, msg, 8), 0x93f5f5799a932462ull);
}

TEST(ClientTable, KeyedHashDiffersBetweenSecrets) {
  const HashKey a = key_of(1), b = key_of(2);
  int same_home = 0;
  for (std::uint32_t i = 0; i < 1000; ++i) {
    const std::string addr = v4(0xc0000200u + i);
    EXPECT_EQ(ClientTable::hash(a, 0, addr), ClientTable::hash(a, 0, addr));
    EXPECT_NE(ClientTable::hash(a, 0, addr), ClientTable::hash(b, 0, addr)) << addr;
    EXPECT_NE(ClientTable::hash(a, 0, addr), ClientTable::hash(a, 1, addr)) << addr;
    if (ClientTable::hash(a, 0, addr) % 65536 == ClientTable::hash(b, 0, addr) % 65536)
      ++same_home;
  }
  EXPECT_LT(same_home, 5);  // about 1000/65536 expected
  auto t1 = ClientTable::create(a), t2 = ClientTable::create(b);
  ASSERT_TRUE(t1 && t2);
  EXPECT_NE(t1->home(0, "192.0.2.1"), t2->home(0, "192.0.2.1"));
}

TEST(ClientTable, SlotsAreStablePerScopeAndAddress) {
  auto t = ClientTable::create(key_of(3), 1024);
  ASSERT_TRUE(t);
  ClientPin a = t->acquire(1, "192.0.2.1", 0);
  ClientPin b = t->acquire(1, "192.0.2.1", 0);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a.get(), b.get());
  a->connections++;
  EXPECT_EQ(b->connections.load(), 1u);
  // One address however it is written; another scope is another slot.
  EXPECT_EQ(t->acquire(1, "::ffff:192.0.2.1", 0).get(), a.get());
  EXPECT_NE(t->acquire(2, "192.0.2.1", 0).get(), a.get());
  EXPECT_NE(t->acquire(1, "2001:db8::1", 0).get(), a.get());
  EXPECT_FALSE(t->acquire(1, "example.org", 0));
  EXPECT_FALSE(t->acquire(1, "", 0));
}

TEST(ClientTable, AddressesThatCollidedUnderTheOldHashNoLongerShare) {
  // Find what an attacker found: an address of theirs that shared the victim's slot.
  const std::string victim = "192.0.2.1";
  std::string attacker;
  for (std::uint32_t n = 0x0a000000u; attacker.empty(); ++n)
    if (old_slot(0, v4(n), 65536) == old_slot(0, victim, 65536)) attacker = v4(n);
  ASSERT_NE(attacker, victim);

  auto t = ClientTable::create(key_of(4));
  ASSERT_TRUE(t);
  const auto policy = blocking_after(20);
  ClientPin bad = t->acquire(0, attacker, 1000);
  ClientPin good = t->acquire(0, victim, 1000);
  ASSERT_TRUE(bad && good);
  EXPECT_NE(bad.get(), good.get());
  for (int i = 0; i < 21; ++i) policy.record_failure(*bad, 1000 + i);
  EXPECT_TRUE(policy.blocked(*bad, 1100));
  EXPECT_EQ(good->failures.load(), 0u);
  EXPECT_FALSE(policy.blocked(*good, 1100));
}

TEST(ClientTable, AddressesWithTheSameHomeGetSlotsOfTheirOwn) {
  auto t = ClientTable::create(key_of(5), 64);
  ASSERT_TRUE(t);
  // Many addresses in a small table: homes collide, slots never do.
  std::vector<ClientPin> pins;
  std::set<std::size_t> homes;
  std::set<sy::ClientSlot*> slots;
  for (std::uint32_t i = 0; i < 40; ++i) {
    const std::string addr = v4(0xc6336400u + i);
    homes.insert(t->home(0, addr));
    pins.push_back(t->acquire(0, addr, 0));
    ASSERT_TRUE(pins.back()) << addr;
    pins.back()->failures = i + 1;
    slots.insert(pins.back().get());
  }
  EXPECT_LT(homes.size(), 40u);  // some homes are shared...
  EXPECT_EQ(slots.size(), 40u);  // ...but every address has its own slot
  for (std::uint32_t i = 0; i < 40; ++i) {
    ClientPin again = t->acquire(0, v4(0xc6336400u + i), 0);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->failures.load(), i + 1);
  }
}

TEST(ClientTable, AFullNeighbourhoodCountsNobodyRatherThanTheWrongAddress) {
  auto t = ClientTable::create(key_of(6), 8);  // every address may use all 8 slots
  ASSERT_TRUE(t);
  const auto policy = blocking_after(3);
  std::vector<ClientPin> pins;
  for (std::uint32_t i = 0; i < 8; ++i) {
    pins.push_back(t->acquire(0, v4(0xcb007100u + i), 1000));
    ASSERT_TRUE(pins.back());
    for (int f = 0; f < 3; ++f) policy.record_failure(*pins.back(), 1000);
  }
  // All held: a ninth address is not counted (and so not blocked by anyone's failures).
  EXPECT_FALSE(t->acquire(0, "198.51.100.9", 1000));
  // Released, but their failures are remembered for the window: still no room.
  pins.clear();
  EXPECT_FALSE(t->acquire(0, "198.51.100.9", 2000));
  ClientPin blocked = t->acquire(0, v4(0xcb007100u), 2000);
  ASSERT_TRUE(blocked);
  EXPECT_TRUE(policy.blocked(*blocked, 2000));
  blocked.reset();
  // Once the window has passed, a slot is taken over, with nothing of its past.
  ClientPin fresh = t->acquire(0, "198.51.100.9", 1000 + 60000);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->failures.load(), 0u);
  EXPECT_FALSE(policy.blocked(*fresh, 1000 + 60000));
}

TEST(ClientTable, APinnedSlotIsNeverTakenOver) {
  auto t = ClientTable::create(key_of(7), 1);
  ASSERT_TRUE(t);
  ClientPin x = t->acquire(0, "192.0.2.10", 0);
  ASSERT_TRUE(x);
  EXPECT_FALSE(t->acquire(0, "192.0.2.11", 0));  // held, though it remembers nothing
  x.reset();
  ClientPin y = t->acquire(0, "192.0.2.11", 0);  // free now: nothing to remember
  ASSERT_TRUE(y);
  EXPECT_FALSE(t->acquire(0, "192.0.2.10", 0));
  ClientPin moved = std::move(y);  // the pin moves with its holder
  EXPECT_FALSE(y);
  EXPECT_FALSE(t->acquire(0, "192.0.2.10", 0));
}

TEST(ClientTable, ANewAddressMetByManyAtOnceGetsOneSlot) {
  auto t = ClientTable::create(key_of(8), 4096);
  ASSERT_TRUE(t);
  for (int round = 0; round < 50; ++round) {
    const std::string addr = v4(0xc0000000u + static_cast<std::uint32_t>(round));
    std::vector<ClientPin> pins(8);
    std::vector<std::thread> threads;
    for (auto& p : pins)
      threads.emplace_back([&t, &p, &addr] { p = t->acquire(0, addr, 0); });
    for (auto& th : threads) th.join();
    for (auto& p : pins) {
      ASSERT_TRUE(p);
      EXPECT_EQ(p.get(), pins[0].get()) << addr;
    }
  }
}

TEST(ClientTable, SharedWithForkedWorkers) {
  auto t = ClientTable::create(key_of(9), 1024);
  ASSERT_TRUE(t);
  const auto policy = blocking_after(2);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ClientPin p = t->acquire(0, "2001:db8::7", 5000);
    if (p) {
      policy.record_failure(*p, 5000);
      policy.record_failure(*p, 5001);
    }
    ::_exit(p ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ClientPin p = t->acquire(0, "2001:db8::7", 5002);
  ASSERT_TRUE(p);
  EXPECT_TRUE(policy.blocked(*p, 5002));
}

TEST(Penalty, DelayDoublesUpToTheMaximumAndBlocks) {
  sy::ClientSlot s;
  sy::PenaltyPolicy p;
  p.base = std::chrono::milliseconds(500);
  p.max = std::chrono::milliseconds(3000);
  p.block_after = 4;
  p.window = std::chrono::milliseconds(60000);
  EXPECT_EQ(p.record_failure(s, 1000).count(), 500);
  EXPECT_EQ(p.record_failure(s, 1001).count(), 1000);
  EXPECT_EQ(p.record_failure(s, 1002).count(), 2000);
  EXPECT_FALSE(p.blocked(s, 1003));
  EXPECT_EQ(p.record_failure(s, 1003).count(), 3000);
  EXPECT_TRUE(p.blocked(s, 1004));
  EXPECT_EQ(s.keep_until_ms.load(), 1003 + 60000);
  EXPECT_FALSE(p.blocked(s, 1003 + 60001));  // forgotten after the window
  EXPECT_EQ(p.record_failure(s, 1003 + 60001).count(), 500);
  sy::PenaltyPolicy::record_success(s);
  EXPECT_EQ(s.failures.load(), 0u);
}

TEST(Penalty, ZeroBaseMeansNoDelay) {
  sy::ClientSlot s;
  sy::PenaltyPolicy p;
  EXPECT_EQ(p.record_failure(s, 5).count(), 0);
  EXPECT_FALSE(p.blocked(s, 6));
}

// A worker killed while it counts connections: the master gives back what its ledger says
// it held, and nothing that a live process holds.
TEST(ClientTable, ADeadWorkersLedgerIsGivenBack) {
  auto t = ClientTable::create(key_of(9), 1024);
  ASSERT_TRUE(t);
  auto ledger = sy::ClientLedger::create(t->size());
  ASSERT_TRUE(ledger);
  ClientPin mine = t->acquire(7, "192.0.2.9", 1000);  // the master's own, not ledgered
  ASSERT_TRUE(mine);
  EXPECT_EQ(mine.add_connection(), 1u);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    t->attach(ledger.get());
    auto* a = new ClientPin(t->acquire(7, "192.0.2.9", 1000));
    auto* b = new ClientPin(t->acquire(7, "192.0.2.9", 1000));
    auto* c = new ClientPin(t->acquire(7, "198.51.100.1", 1000));
    bool ok = *a && *b && *c && a->add_connection() == 2 && b->add_connection() == 3;
    ClientPin gone = t->acquire(7, "198.51.100.2", 1000);  // released before the end
    ok = ok && gone && gone.add_connection() == 1;
    gone.reset();
    ::_exit(ok ? 0 : 1);  // killed, in effect: the pins are never released
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(mine->connections.load(), 3u);
  EXPECT_EQ(t->release(*ledger), 2u);
  EXPECT_EQ(mine->connections.load(), 1u);  // the master's own connection stays
  EXPECT_EQ(t->release(*ledger), 0u);       // given back once
  ClientPin again = t->acquire(7, "192.0.2.9", 1000);
  ASSERT_TRUE(again);
  EXPECT_EQ(again.get(), mine.get());
  EXPECT_EQ(again.add_connection(), 2u);
}
