// Username policy: login name -> map key -> store login.
#include <gtest/gtest.h>

#include "map/username.h"

using sy::MapAnswer;
using sy::UsernamePolicy;

TEST(Username, DefaultLowercasesAndKeepsDomain) {
  UsernamePolicy p;
  EXPECT_EQ(sy::map_key(p, "Jane@Example.ORG"), "jane@example.org");
}

TEST(Username, LowercaseOffKeepsCase) {
  UsernamePolicy p;
  p.lowercase = false;
  EXPECT_EQ(sy::map_key(p, "Jane@Example.ORG"), "Jane@Example.ORG");
}

TEST(Username, LowercaseLeavesNonAsciiAlone) {
  UsernamePolicy p;
  EXPECT_EQ(sy::map_key(p, "J\xc3\x84NE"), "j\xc3\x84ne");
}

TEST(Username, StripDomainCutsAtLastDelimiter) {
  UsernamePolicy p;
  p.strip_domain = true;
  EXPECT_EQ(sy::map_key(p, "a@b@example.org"), "a@b");
  EXPECT_EQ(sy::map_key(p, "plain"), "plain");
}

TEST(Username, DefaultDomainAddedOnlyWhenMissing) {
  UsernamePolicy p;
  p.default_domain = "example.org";
  EXPECT_EQ(sy::map_key(p, "jane"), "jane@example.org");
  EXPECT_EQ(sy::map_key(p, "jane@other.net"), "jane@other.net");
}

TEST(Username, MultiCharacterDelimiter) {
  UsernamePolicy p;
  p.domain_delimiter = "%%";
  p.strip_domain = true;
  EXPECT_EQ(sy::map_key(p, "jane%%example.org"), "jane");
  p.strip_domain = false;
  p.default_domain = "example.org";
  EXPECT_EQ(sy::map_key(p, "jane"), "jane%%example.org");
}

TEST(Username, StoreLoginPrefersMapUser) {
  UsernamePolicy p;
  MapAnswer a{"s009", "store2", "143"};
  EXPECT_EQ(sy::store_login(p, "jane@example.org", a), "s009");
  p.use_map_user = false;
  EXPECT_EQ(sy::store_login(p, "jane@example.org", a), "jane@example.org");
}

TEST(Username, StoreLoginFallsBackToKeyWithoutMapUser) {
  UsernamePolicy p;
  MapAnswer a{"", "store2", ""};
  EXPECT_EQ(sy::store_login(p, "jane", a), "jane");
}

TEST(Username, StoreRecipientKeepsAddressWithoutRename) {
  UsernamePolicy p;
  MapAnswer a{"", "store2", ""};
  EXPECT_EQ(sy::store_recipient(p, "Jane@Example.ORG", a), "Jane@Example.ORG");
  MapAnswer renamed{"s009", "store2", ""};
  p.use_map_user = false;
  EXPECT_EQ(sy::store_recipient(p, "jane@example.org", renamed), "jane@example.org");
}

TEST(Username, StoreRecipientRenamesInTheAddressDomain) {
  UsernamePolicy p;
  MapAnswer a{"s009", "store2", ""};
  EXPECT_EQ(sy::store_recipient(p, "jane@example.org", a), "s009@example.org");
  EXPECT_EQ(sy::store_recipient(p, "\"j@ne\"@example.org", a), "s009@example.org");
  EXPECT_EQ(sy::store_recipient(p, "postmaster", a), "s009");
  MapAnswer full{"s009@store.example", "store2", ""};
  EXPECT_EQ(sy::store_recipient(p, "jane@example.org", full), "s009@store.example");
}
