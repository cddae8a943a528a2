// Listen addresses as the config writes them, and SASL PLAIN decoding.
#include <gtest/gtest.h>

#include "proxy/sasl.h"
#include "net/address.h"
#include "backend/target.h"

using sy::SocketAddress;

TEST(Address, Ipv4HostPort) {
  std::string e;
  auto a = sy::parse_socket_address("127.0.0.1:1143", &e);
  ASSERT_TRUE(a) << e;
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 1143);
}

TEST(Address, BracketedIpv6) {
  std::string e;
  auto a = sy::parse_socket_address("[::1]:1143", &e);
  ASSERT_TRUE(a) << e;
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 1143);
}

TEST(Address, WildcardForms) {
  std::string e;
  EXPECT_EQ(sy::parse_socket_address("*:143", &e)->host, "");
  EXPECT_EQ(sy::parse_socket_address(":143", &e)->host, "");
}

TEST(Address, UnixPath) {
  std::string e;
  auto a = sy::parse_socket_address("unix:/run/switchyard/imap", &e);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind, SocketAddress::Kind::Unix);
  EXPECT_EQ(a->path, "/run/switchyard/imap");
}

TEST(Address, Rejects) {
  std::string e;
  EXPECT_FALSE(sy::parse_socket_address("127.0.0.1", &e));
  EXPECT_FALSE(sy::parse_socket_address("127.0.0.1:0", &e));
  EXPECT_FALSE(sy::parse_socket_address("127.0.0.1:65536", &e));
  EXPECT_FALSE(sy::parse_socket_address("::1:143", &e));
  EXPECT_FALSE(sy::parse_socket_address("[::1]143", &e));
  EXPECT_FALSE(sy::parse_socket_address("unix:relative", &e));
}

TEST(Target, BackendNameGivesItsHostsAndPort) {
  sy::Config c;
  sy::BackendConfig b;
  b.name = "store1";
  b.hosts = {"a", "b"};
  b.imap = "10143";
  b.lmtp = "unix:/run/lmtp";
  c.backends["store1"] = b;
  auto t = sy::resolve_target(c, sy::MapAnswer{"", "store1", ""}, sy::Service::Imap);
  EXPECT_EQ(t.backend, "store1");
  EXPECT_EQ(t.hosts, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(t.port, "10143");
  EXPECT_EQ(sy::resolve_target(c, sy::MapAnswer{"", "store1", ""}, sy::Service::Lmtp).port,
            "unix:/run/lmtp");
  // A port in the answer overrides the back end's.
  EXPECT_EQ(sy::resolve_target(c, sy::MapAnswer{"", "store1", "993"}, sy::Service::Imap).port, "993");
}

TEST(Target, PlainHostGetsTheProtocolDefault) {
  sy::Config c;
  auto t = sy::resolve_target(c, sy::MapAnswer{"", "mail.example", ""}, sy::Service::Imap);
  EXPECT_EQ(t.backend, "");
  EXPECT_EQ(t.hosts, std::vector<std::string>{"mail.example"});
  EXPECT_EQ(t.port, "143");
  EXPECT_EQ(sy::host_port("::1", "143"), "[::1]:143");
}

TEST(Sasl, Base64RoundTrip) {
  for (std::string s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0x\xff", 3)})
    EXPECT_EQ(sy::base64_decode(sy::base64_encode(s)), s);
  EXPECT_FALSE(sy::base64_decode("abc"));
  EXPECT_FALSE(sy::base64_decode("ab=c"));
  EXPECT_FALSE(sy::base64_decode("a!bc"));
}

TEST(Sasl, PlainWithAndWithoutAuthzid) {
  auto c = sy::decode_sasl_plain(sy::base64_encode(std::string("\0jane\0s3cret pw", 15)));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->authzid, "");
  EXPECT_EQ(c->authcid, "jane");
  EXPECT_EQ(c->password, "s3cret pw");
  c = sy::decode_sasl_plain(sy::base64_encode(std::string("admin\0jane\0pw", 13)));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->authzid, "admin");
}

TEST(Sasl, PlainMalformed) {
  EXPECT_FALSE(sy::decode_sasl_plain("="));
  EXPECT_FALSE(sy::decode_sasl_plain(sy::base64_encode("janepw")));
  EXPECT_FALSE(sy::decode_sasl_plain(sy::base64_encode(std::string("\0jane", 5))));
  EXPECT_FALSE(sy::decode_sasl_plain(sy::base64_encode(std::string("a\0b\0c\0d", 7))));
  EXPECT_FALSE(sy::decode_sasl_plain(sy::base64_encode(std::string("\0\0pw", 4))));
}

TEST(Cidr, Ipv4AndIpv6Blocks) {
  auto lo = sy::Cidr::parse("127.0.0.0/8");
  ASSERT_TRUE(lo);
  EXPECT_TRUE(lo->contains("127.1.2.3"));
  EXPECT_FALSE(lo->contains("128.0.0.1"));
  EXPECT_TRUE(lo->contains("::ffff:127.0.0.1"));  // v4-mapped
  EXPECT_FALSE(lo->contains("::1"));
  EXPECT_FALSE(lo->contains(""));
  auto net = sy::Cidr::parse("2001:db8::/33");
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->contains("2001:db8:7fff::1"));
  EXPECT_FALSE(net->contains("2001:db8:8000::1"));
  auto one = sy::Cidr::parse("::1");
  ASSERT_TRUE(one);
  EXPECT_TRUE(one->contains("::1"));
  EXPECT_FALSE(one->contains("::2"));
  EXPECT_TRUE(sy::Cidr::parse("0.0.0.0/0")->contains("8.8.8.8"));
  EXPECT_FALSE(sy::Cidr::parse("10.0.0.0/33"));
  EXPECT_FALSE(sy::Cidr::parse("10.0.0.0/"));
  EXPECT_FALSE(sy::Cidr::parse("example.org/24"));
}
