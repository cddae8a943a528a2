// Tests for the ldap map module (maps/ldap): the pure parts (ldap_options.h: the options
// URL, RFC 4515 escaping, the answer) directly, and the module as the host loads it
// (dlopen(MAPS_BUILDDIR "/ldap.so")) where no directory server is needed: bad options,
// an unreachable or silent server. Lookups against a real slapd are in
// tests/integration/test_ldap_map.py.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../common/module_test.h"
#include "ldap_options.h"

namespace {

using sy::ldap_map::escape_filter_value;
using sy::ldap_map::expand_filter;
using sy::ldap_map::LdapOptions;
using sy::ldap_map::make_answer;
using sy::ldap_map::parse_options;
using sy::ldap_map::Scope;
using sy::ldap_map::uri_list;

LdapOptions parse_ok(const char* text) {
  std::string error;
  auto o = parse_options(text, &error);
  EXPECT_TRUE(o) << text << ": " << error;
  return o ? *o : LdapOptions{};
}

std::string parse_error(const char* text) {
  std::string error;
  auto o = parse_options(text, &error);
  EXPECT_FALSE(o) << text;
  EXPECT_FALSE(error.empty()) << text;
  return error;
}

const char* const kBase = "ldap://127.0.0.1:3389/ou=mailbox,dc=example,dc=com";

std::string with(const std::string& tail) { return std::string(kBase) + tail; }

// -- options ------------------------------------------------------------------------

TEST(LdapOptions, NullAndEmptyMeanPerditionsDefault) {
  for (const char* text : {static_cast<const char*>(nullptr), ""}) {
    LdapOptions o = parse_ok(text);
    EXPECT_EQ(o.version, 3);
    EXPECT_EQ(o.scheme, "ldap");
    EXPECT_EQ(o.hosts, std::vector<std::string>{"localhost"});
    EXPECT_EQ(o.base, "ou=mailbox,dc=nodomain");
    EXPECT_EQ(o.attributes, (std::vector<std::string>{"username", "mailhost", "port"}));
    EXPECT_EQ(o.scope, Scope::OneLevel);
    EXPECT_EQ(expand_filter(o, "jane"), "(uid=jane)");
    EXPECT_TRUE(o.bind_dn.empty());
    EXPECT_FALSE(o.bind_password);
    EXPECT_FALSE(o.tls());
    EXPECT_EQ(o.timeout_seconds, 5);
  }
}

TEST(LdapOptions, TheBriefsExample) {
  LdapOptions o = parse_ok(
      "ldap://127.0.0.1:3389/ou=mailbox,dc=example,dc=com?username,mailhost,port?one?(uid=%s)");
  EXPECT_EQ(uri_list(o), "ldap://127.0.0.1:3389");
  EXPECT_EQ(o.base, "ou=mailbox,dc=example,dc=com");
  EXPECT_EQ(o.scope, Scope::OneLevel);
  EXPECT_EQ(expand_filter(o, "jane"), "(uid=jane)");
}

TEST(LdapOptions, VersionPrefix) {
  EXPECT_EQ(parse_ok(("2:" + with("??one?(uid=%s)")).c_str()).version, 2);
  EXPECT_EQ(parse_ok(("3:" + with("")).c_str()).version, 3);
  EXPECT_EQ(parse_ok(with("").c_str()).version, 3);
  for (const char* v : {"1:", "4:", "0:", "03:", "22:"})
    parse_error((v + with("")).c_str());
}

TEST(LdapOptions, Schemes) {
  EXPECT_EQ(parse_ok("ldaps://ldap.example.com/dc=x").scheme, "ldaps");
  EXPECT_TRUE(parse_ok("ldaps://ldap.example.com/dc=x").tls());
  EXPECT_EQ(parse_ok("LDAP://ldap.example.com/dc=x").scheme, "ldap");
  LdapOptions i = parse_ok("ldapi://%2Frun%2Fslapd%2Fldapi/dc=x");
  EXPECT_EQ(uri_list(i), "ldapi://%2Frun%2Fslapd%2Fldapi");
  EXPECT_EQ(uri_list(parse_ok("ldapi:///dc=x")), "ldapi://");
  parse_error("ldapi://relative%2Fpath/dc=x");
  parse_error("http://example.com/dc=x");
  parse_error("ldap:/example.com/dc=x");
  parse_error("example.com/dc=x");
  parse_error("3:");
}

TEST(LdapOptions, SeveralHostsAreTriedInOrder) {
  EXPECT_EQ(uri_list(parse_ok("ldap://a.example:389,b.example:3389/dc=x")),
            "ldap://a.example:389 ldap://b.example:3389");
  EXPECT_EQ(uri_list(parse_ok("ldap://a.example b.example/dc=x")),
            "ldap://a.example ldap://b.example");
  EXPECT_EQ(uri_list(parse_ok("ldaps://a, b ,c/dc=x")), "ldaps://a ldaps://b ldaps://c");
  EXPECT_EQ(uri_list(parse_ok("ldap://[::1]:3389,[2001:db8::5]/dc=x")),
            "ldap://[::1]:3389 ldap://[2001:db8::5]");
}

TEST(LdapOptions, EmptyHostIsLocalhost) {
  EXPECT_EQ(uri_list(parse_ok("ldap:///dc=x")), "ldap://localhost");
  EXPECT_EQ(uri_list(parse_ok("ldap://")), "ldap://localhost");
}

TEST(LdapOptions, BadHostsAreRefused) {
  for (const char* text :
       {"ldap://host:0/dc=x", "ldap://host:65536/dc=x", "ldap://host:/dc=x",
        "ldap://host:12a/dc=x", "ldap://ho$t/dc=x", "ldap://::1/dc=x", "ldap://[::1/dc=x",
        "ldap://[]/dc=x", "ldap://[::1]x/dc=x", "ldap://user@host/dc=x", "ldap://host?x/dc=x",
        "ldap://host:389:1/dc=x"})
    parse_error(text);
}

TEST(LdapOptions, UrlWithoutPathHasDefaults) {
  LdapOptions o = parse_ok("ldap://ldap.example.com");
  EXPECT_EQ(o.base, "");
  EXPECT_EQ(o.scope, Scope::Base);
  EXPECT_EQ(expand_filter(o, "k"), "(objectClass=*)");
  EXPECT_EQ(o.attributes.size(), 3u);
}

TEST(LdapOptions, FieldsArePercentDecoded) {
  LdapOptions o = parse_ok(
      "ldap://h/ou=a%2Cb,dc=x%20y?user%6eame?SUB?(%26(uid=%s)(objectClass=perditionPopmap))");
  EXPECT_EQ(o.base, "ou=a,b,dc=x y");
  EXPECT_EQ(o.attributes, std::vector<std::string>{"username"});
  EXPECT_EQ(o.scope, Scope::Subtree);
  EXPECT_EQ(expand_filter(o, "j"), "(&(uid=j)(objectClass=perditionPopmap))");
  parse_error("ldap://h/ou=a%2?username");
  parse_error("ldap://h/ou=a%zz");
  parse_error("ldap://h/ou=a%");
}

TEST(LdapOptions, Attributes) {
  EXPECT_EQ(parse_ok(with("?mailRoutingAddress").c_str()).attributes,
            std::vector<std::string>{"mailRoutingAddress"});
  EXPECT_EQ(parse_ok(with("?a,b").c_str()).attributes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(parse_ok(with("?1.3.6.1.4.1.12856.10.10,mailhost;x-tag").c_str()).attributes,
            (std::vector<std::string>{"1.3.6.1.4.1.12856.10.10", "mailhost;x-tag"}));
  parse_error(with("?a,b,c,d").c_str());
  parse_error(with("?a,,c").c_str());
  parse_error(with("?a,").c_str());
  parse_error(with("?a b").c_str());
  parse_error(with("?a*").c_str());
}

TEST(LdapOptions, Scopes) {
  EXPECT_EQ(parse_ok(with("??base").c_str()).scope, Scope::Base);
  EXPECT_EQ(parse_ok(with("??").c_str()).scope, Scope::Base);
  EXPECT_EQ(parse_ok(with("??one").c_str()).scope, Scope::OneLevel);
  EXPECT_EQ(parse_ok(with("??onelevel").c_str()).scope, Scope::OneLevel);
  EXPECT_EQ(parse_ok(with("??sub").c_str()).scope, Scope::Subtree);
  EXPECT_EQ(parse_ok(with("??subtree").c_str()).scope, Scope::Subtree);
  EXPECT_EQ(parse_ok(with("??children").c_str()).scope, Scope::Children);
  EXPECT_EQ(parse_ok(with("??Subordinate").c_str()).scope, Scope::Children);
  parse_error(with("??two").c_str());
}

TEST(LdapOptions, TooManyQuestionMarks) {
  parse_error(with("?a?one?(uid=%s)?x-starttls?more").c_str());
  // ...but an encoded one is part of its field.
  EXPECT_EQ(expand_filter(parse_ok(with("??one?(cn=what%3F)").c_str()), ""), "(cn=what?)");
}

TEST(LdapOptions, FilterPlaceholders) {
  LdapOptions o = parse_ok(with("??sub?(|(uid=%s)(mail=%s))").c_str());
  EXPECT_EQ(expand_filter(o, "jane"), "(|(uid=jane)(mail=jane))");
  EXPECT_EQ(expand_filter(o, "*"), "(|(uid=\\2a)(mail=\\2a))");
  // Without %s the filter is used as it is, whatever the key.
  LdapOptions fixed = parse_ok(with("??base?(objectClass=perditionPopmap)").c_str());
  EXPECT_EQ(expand_filter(fixed, "jane"), "(objectClass=perditionPopmap)");
  // %25s is a literal "%s", not a placeholder.
  EXPECT_EQ(expand_filter(parse_ok(with("??one?(cn=%25s%s)").c_str()), "k"), "(cn=%sk)");
  // The placeholder may be all there is (a filter without parentheses).
  EXPECT_EQ(expand_filter(parse_ok(with("??one?uid=%s").c_str()), "k"), "uid=k");
  parse_error(with("??one?(uid=%d)").c_str());
  parse_error(with("??one?(uid=%)").c_str());
  parse_error(with("??one?(uid=%S)").c_str());
}

TEST(LdapOptions, BindExtensions) {
  LdapOptions o = parse_ok(
      with("??one?(uid=%s)?bindname=cn=reader%2Cdc=example%2Cdc=com,x-bindpw=reader-pw").c_str());
  EXPECT_EQ(o.bind_dn, "cn=reader,dc=example,dc=com");
  ASSERT_TRUE(o.bind_password);
  EXPECT_EQ(*o.bind_password, "reader-pw");
  // Critical marks are accepted; names are case-insensitive; values are %-decoded.
  LdapOptions c = parse_ok(
      with("??one?(uid=%s)?!bindname=cn=r%2Cdc=x,!X-BindPW=p%2Cw%3Fd%25%21").c_str());
  EXPECT_EQ(c.bind_dn, "cn=r,dc=x");
  EXPECT_EQ(*c.bind_password, "p,w?d%!");
  // An empty password is an empty password (an unauthenticated bind, which slapd refuses).
  EXPECT_EQ(*parse_ok(with("??one??bindname=cn=r,x-bindpw=").c_str()).bind_password, "");
}

TEST(LdapOptions, PasswordNeverAppearsInErrors) {
  for (const char* tail :
       {"??one??bindname=cn=r,x-bindpw=Sekr1t%zz", "??one??x-bindpw=Sekr1t",
        "??one??bindname=cn=r,x-bindpw=Sekr1t,x-bindpw=Sekr1t",
        "??one??bindname=cn=r,x-bindpw=Sekr1t,dc=example", "??one??bindname=cn=r,x-bindpw=Sekr1t,",
        "??one??bindname=cn=r,x-bindpw=Sekr1t,x-timeout=0"}) {
    std::string error = parse_error(with(tail).c_str());
    EXPECT_EQ(error.find("Sekr1t"), std::string::npos) << error;
  }
  // A ',' in a password ends it: what follows is not echoed either.
  std::string error = parse_error(with("??one??bindname=cn=r,x-bindpw=Sek,r1t=x").c_str());
  EXPECT_EQ(error.find("r1t"), std::string::npos) << error;
}

TEST(LdapOptions, UnknownExtensionsAreRefusedEvenIfNotCritical) {
  std::string error = parse_error(with("??one??x-bindpwd=secret,bindname=cn=r").c_str());
  EXPECT_NE(error.find("x-bindpwd"), std::string::npos) << error;
  // The usual mistake: a DN with plain commas in bindname=.
  error = parse_error(with("??one??bindname=cn=reader,dc=example,dc=com").c_str());
  EXPECT_NE(error.find("%2C"), std::string::npos) << error;
  parse_error(with("??one?" "?!e-bindname=cn=r").c_str());  // (no trigraph)
  parse_error(with("??one??,x-starttls").c_str());
}

TEST(LdapOptions, ExtensionRules) {
  parse_error(with("??one??x-bindpw=pw").c_str());                   // no bindname
  parse_error(with("??one??bindname=").c_str());                     // empty DN
  parse_error(with("??one??bindname=cn=a,bindname=cn=b").c_str());   // twice
  parse_error(with("??one??x-starttls=yes").c_str());
  parse_error(with("??one??x-starttls,x-starttls").c_str());
  EXPECT_TRUE(parse_ok(with("??one??x-starttls").c_str()).starttls);
  EXPECT_TRUE(parse_ok(with("??one?" "?!x-starttls").c_str()).tls());
  EXPECT_TRUE(parse_ok(with("??one??x-starttls=").c_str()).starttls);
  parse_error("ldaps://h/dc=x??one??x-starttls");                    // TLS twice
  parse_error(("2:" + with("??one??x-starttls")).c_str());           // StartTLS is LDAPv3
  EXPECT_EQ(parse_ok(("2:ldaps://h/dc=x")).version, 2);
}

TEST(LdapOptions, TimeoutAndCaFile) {
  EXPECT_EQ(parse_ok(with("??one??x-timeout=1").c_str()).timeout_seconds, 1);
  EXPECT_EQ(parse_ok(with("??one??x-timeout=600").c_str()).timeout_seconds, 600);
  for (const char* t : {"0", "601", "-1", "1.5", "", "5s", "99999999999"})
    parse_error(with(std::string("??one??x-timeout=") + t).c_str());
  LdapOptions o = parse_ok(with("??one??x-starttls,x-cacert=%2Fetc%2Fssl%2Fca.pem").c_str());
  EXPECT_EQ(o.ca_file, "/etc/ssl/ca.pem");
  EXPECT_EQ(parse_ok("ldaps://h/dc=x????x-cacert=/etc/ca.pem").ca_file, "/etc/ca.pem");
  parse_error(with("??one??x-cacert=/etc/ca.pem").c_str());  // no TLS to verify
  parse_error(with("??one??x-starttls,x-cacert=").c_str());
}

// -- RFC 4515 escaping ---------------------------------------------------------------

TEST(LdapEscape, FilterSpecials) {
  EXPECT_EQ(escape_filter_value("*"), "\\2a");
  EXPECT_EQ(escape_filter_value("("), "\\28");
  EXPECT_EQ(escape_filter_value(")"), "\\29");
  EXPECT_EQ(escape_filter_value("\\"), "\\5c");
  EXPECT_EQ(escape_filter_value(std::string_view("a\0b", 3)), "a\\00b");
  EXPECT_EQ(escape_filter_value(")(uid=*"), "\\29\\28uid=\\2a");
  EXPECT_EQ(escape_filter_value("*)(|(objectClass=*"), "\\2a\\29\\28|\\28objectClass=\\2a");
}

TEST(LdapEscape, PrintableAsciiPassesUnchanged) {
  std::string printable;
  for (int c = 0x20; c < 0x7f; ++c)
    if (!std::strchr("*()\\", c)) printable += static_cast<char>(c);
  EXPECT_EQ(escape_filter_value(printable), printable);
  EXPECT_EQ(escape_filter_value("jane.doe+tag@example.com"), "jane.doe+tag@example.com");
  EXPECT_EQ(escape_filter_value("'; DROP TABLE x; --\""), "'; DROP TABLE x; --\"");
}

TEST(LdapEscape, ControlsDelAndHighBytesAreHexEscaped) {
  EXPECT_EQ(escape_filter_value("a\r\nb"), "a\\0d\\0ab");
  EXPECT_EQ(escape_filter_value("\t\x1f\x7f"), "\\09\\1f\\7f");
  EXPECT_EQ(escape_filter_value("j\xc3\xb6rg"), "j\\c3\\b6rg");  // UTF-8 "jörg"
  EXPECT_EQ(escape_filter_value("\xff\xfe"), "\\ff\\fe");        // not UTF-8 at all
  EXPECT_EQ(escape_filter_value(""), "");
}

TEST(LdapEscape, EveryByteRoundTrips) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  std::string escaped = escape_filter_value(all);
  // Decode the RFC 4515 way: "\xx" is one byte, anything else stands for itself.
  std::string decoded;
  for (std::size_t i = 0; i < escaped.size(); ++i) {
    char c = escaped[i];
    ASSERT_TRUE(c != '*' && c != '(' && c != ')' && c != '\0') << i;
    if (c == '\\') {
      decoded += static_cast<char>(std::stoi(escaped.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      decoded += c;
    }
  }
  EXPECT_EQ(decoded, all);
}

// -- the answer ------------------------------------------------------------------------

TEST(LdapAnswer, FromTheThreeAttributes) {
  EXPECT_EQ(make_answer("", "store1", ""), "store1");
  EXPECT_EQ(make_answer("", "store1", "143"), "store1:143");
  EXPECT_EQ(make_answer("jd", "store1", "143"), "jd@store1:143");
  EXPECT_EQ(make_answer("jd", "store1", ""), "jd@store1");
  EXPECT_EQ(make_answer("jane@example.com", "store1", ""), "jane@example.com@store1");
}

TEST(LdapAnswer, Ipv6HostGetsBrackets) {
  EXPECT_EQ(make_answer("", "::1", "143"), "[::1]:143");
  EXPECT_EQ(make_answer("", "[::1]", "143"), "[::1]:143");
  EXPECT_EQ(make_answer("", "127.0.0.1:10143", ""), "127.0.0.1:10143");  // host:port as is
}

TEST(LdapAnswer, UserAttributeAloneIsReturnedAsIs) {
  EXPECT_EQ(make_answer("jd@store1:143", "", ""), "jd@store1:143");
  EXPECT_EQ(make_answer("store1", "", ""), "store1");
  EXPECT_EQ(make_answer("store1", "", "993"), "store1");  // a port needs a host
}

TEST(LdapAnswer, BlanksAreTrimmedAndNothingIsNoAnswer) {
  EXPECT_EQ(make_answer(" jd ", "\tstore1 ", " 143\r\n"), "jd@store1:143");
  EXPECT_FALSE(make_answer("", "", ""));
  EXPECT_FALSE(make_answer("  ", " ", "143"));
}

// -- the module, loaded as the host loads it --------------------------------------------

class LdapModuleTest : public sy::maps::test::ModuleTest {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(load("ldap.so")); }

  void TearDown() override {
    ModuleTest::TearDown();
    if (listener_ >= 0) ::close(listener_);
  }

  int get(const char* key, const char* options) { return fetch(key, options).rc; }

  // A port on 127.0.0.1 nothing listens on.
  static int closed_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }

  // A server that completes TCP handshakes (the kernel's backlog) and never says a word.
  int silent_port() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }

  int listener_ = -1;
};

// (That nothing else is exported is checked with nm in tests/integration/test_ldap_map.py.)
TEST_F(LdapModuleTest, HasDbserverGetAndNoGet2) {
  EXPECT_EQ(dlsym(handle_, "dbserver_get2"), nullptr);
}

TEST_F(LdapModuleTest, BadOptionsAreOtherError) {
  for (const char* options :
       {"http://x/", "4:ldap://127.0.0.1/dc=x", "ldap://127.0.0.1/dc=x??one??x-bindpwd=x",
        "ldap://127.0.0.1/not a dn??one", "ldap://127.0.0.1/dc=x??one??bindname=nodn,x-bindpw=x",
        "ldap://127.0.0.1/dc=x??one?(uid=%d)"}) {
    EXPECT_EQ(init(options), -3) << options;
    EXPECT_EQ(get("jane", options), -3) << options;
  }
}

TEST_F(LdapModuleTest, UnreachableServerIsNotFatalAtInitAndADirectoryErrorOnLookup) {
  std::string options = "ldap://127.0.0.1:" + std::to_string(closed_port()) +
                        "/dc=example,dc=com??one?(uid=%s)?x-timeout=2";
  EXPECT_EQ(init(options), 0);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(get("jane", options.c_str()), -1);
  EXPECT_EQ(get("jane", nullptr), -1);  // NULL: init's options
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(LdapModuleTest, SilentServerTimesOut) {
  std::string options = "ldap://127.0.0.1:" + std::to_string(silent_port()) +
                        "/dc=example,dc=com??one?(uid=%s)?x-timeout=1";
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(init(options), 0);
  EXPECT_EQ(get("jane", options.c_str()), -1);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(1900));  // init's bind and the lookup's, 1 s each
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(LdapModuleTest, NullArgumentsAreOtherError) {
  char* str = nullptr;
  std::size_t len = 0;
  const char* options = "ldap://127.0.0.1:1/dc=x";
  EXPECT_EQ(get_(nullptr, options, &str, &len), -3);
  EXPECT_EQ(get_("jane", options, nullptr, &len), -3);
  EXPECT_EQ(get_("jane", options, &str, nullptr), -3);
}

TEST_F(LdapModuleTest, FiniIsHarmlessTwiceAndLoadingAgainWorks) {
  std::string options = "ldap://127.0.0.1:" + std::to_string(closed_port()) + "/dc=x";
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(init(options), 0);
    EXPECT_EQ(get("jane", options.c_str()), -1);
    EXPECT_EQ(fini_(), 0);
    EXPECT_EQ(fini_(), 0);
    ASSERT_EQ(dlclose(handle_), 0);
    handle_ = nullptr;
    fini_ = nullptr;
    ASSERT_NO_FATAL_FAILURE(load("ldap.so"));
  }
}

}  // namespace
