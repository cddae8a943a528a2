// Config parsing: defaults, every section, and errors reported as file:line: message.
#include <gtest/gtest.h>

#include "config/config.h"
#include "config/duration.h"

namespace {

std::string error_of(const std::string& text) {
  sy::Config c;
  std::string error;
  EXPECT_FALSE(sy::parse_config(text, "t.conf", &c, &error)) << text;
  return error;
}

sy::Config parse_ok(const std::string& text) {
  sy::Config c;
  std::string error;
  EXPECT_TRUE(sy::parse_config(text, "t.conf", &c, &error)) << error;
  return c;
}

}  // namespace

TEST(Duration, UnitsAndIntegers) {
  EXPECT_EQ(sy::parse_duration("500ms"), sy::Millis(500));
  EXPECT_EQ(sy::parse_duration("60s"), sy::Millis(60000));
  EXPECT_EQ(sy::parse_duration("5m"), sy::Millis(300000));
  EXPECT_EQ(sy::parse_duration("1h"), sy::Millis(3600000));
  EXPECT_EQ(sy::parse_duration("7"), sy::Millis(7000));
  EXPECT_FALSE(sy::parse_duration("5 s"));
  EXPECT_FALSE(sy::parse_duration("-5s"));
  EXPECT_FALSE(sy::parse_duration("s"));
  EXPECT_FALSE(sy::parse_duration("5y"));
  EXPECT_EQ(sy::format_duration(sy::Millis(1500)), "1500ms");
  EXPECT_EQ(sy::format_duration(sy::Millis(300000)), "5m");
}

TEST(Config, EmptyFileGivesDefaults) {
  sy::Config c = parse_ok("");
  EXPECT_GE(c.workers, 1);
  EXPECT_TRUE(c.username.lowercase);
  EXPECT_FALSE(c.username.strip_domain);
  EXPECT_EQ(c.username.domain_delimiter, "@");
  EXPECT_TRUE(c.username.use_map_user);
  EXPECT_EQ(c.limits.login_timeout, sy::Millis(60000));
  EXPECT_EQ(c.limits.idle_timeout, sy::Millis(30 * 60000));
  EXPECT_EQ(c.limits.max_bad_commands, 10);
  EXPECT_EQ(c.limits.max_login_attempts, 3);
  EXPECT_EQ(c.limits.max_line_length, 65536u);  // fits the largest RFC 2971 ID
  EXPECT_EQ(c.limits.max_literal_size, 8192u);
  EXPECT_EQ(c.log.target, "syslog");
  EXPECT_TRUE(c.lookup.fallback.empty());
}

TEST(Config, FullExample) {
  sy::Config c = parse_ok(R"(
user = "mail"
workers = 0
pid_file = "/run/sy.pid"
map_dir = "/opt/maps"
[[listen]]
protocol = "imap"
address = "127.0.0.1:1143"
allow_plaintext_auth = true
[[listen]]
address = "[::1]:1143"
[[map]]
module = "sqlite"
options = "/var/lib/users.db"
[[map]]
module = "/abs/regex.so"
[username]
lowercase = false
strip_domain = true
domain_delimiter = "%"
default_domain = "example.org"
use_map_user = false
[lookup]
fallback = "store1"
cache_ttl = "2m"
negative_ttl = 5
stale_ttl = "1h"
[limits]
login_timeout = "500ms"
idle_timeout = "1h"
max_bad_commands = 4
max_login_attempts = 2
max_line_length = 1024
max_literal_size = 2048
[backend.store1]
host = ["a.example", "b.example"]
imap = 10143
pop3 = 10110
lmtp = "unix:/run/dovecot/lmtp"
tls = "none"
connect_timeout = "2s"
[log]
target = "stderr"
level = "debug"
)");
  EXPECT_EQ(c.user, "mail");
  EXPECT_EQ(c.workers, 0);
  ASSERT_EQ(c.listen.size(), 2u);
  EXPECT_EQ(c.listen[0].allow_plaintext_auth, true);
  EXPECT_FALSE(c.listen[1].allow_plaintext_auth.has_value());
  EXPECT_EQ(c.listen[1].protocol, sy::Protocol::Imap);
  ASSERT_EQ(c.maps.size(), 2u);
  EXPECT_EQ(c.maps[0].options, "/var/lib/users.db");
  EXPECT_FALSE(c.maps[1].options.has_value());
  EXPECT_EQ(c.username.domain_delimiter, "%");
  EXPECT_EQ(c.lookup.cache_ttl, sy::Millis(120000));
  EXPECT_EQ(c.lookup.negative_ttl, sy::Millis(5000));
  EXPECT_EQ(c.limits.login_timeout, sy::Millis(500));
  const sy::BackendConfig& b = c.backends.at("store1");
  EXPECT_EQ(b.hosts, (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ(b.imap, "10143");
  EXPECT_EQ(b.lmtp, "unix:/run/dovecot/lmtp");
  EXPECT_EQ(b.connect_timeout, sy::Millis(2000));
}

TEST(ConfigErrors, UnknownTopLevelKeyHasItsLine) {
  EXPECT_EQ(error_of("workers = 1\n\nwokers = 2\n"), "t.conf:3: unknown key 'wokers'");
}

TEST(ConfigErrors, UnknownKeyInSection) {
  EXPECT_EQ(error_of("[limits]\nlogin_timeout = \"5s\"\nmax_bad = 3\n"),
            "t.conf:3: unknown key 'max_bad' in [limits]");
}

TEST(ConfigErrors, UnknownKeyInBackend) {
  EXPECT_EQ(error_of("[backend.s1]\nhost = \"x\"\nimapport = 1\n"),
            "t.conf:3: unknown key 'imapport' in [backend.s1]");
}

TEST(ConfigErrors, BadDuration) {
  std::string e = error_of("[limits]\n\nlogin_timeout = \"soon\"\n");
  EXPECT_EQ(e.rfind("t.conf:3: expected a duration", 0), 0u) << e;
}

TEST(ConfigErrors, WrongType) {
  EXPECT_EQ(error_of("workers = \"two\"\n"), "t.conf:1: expected an integer");
  EXPECT_EQ(error_of("[username]\nlowercase = 1\n"), "t.conf:2: expected true or false");
}

TEST(ConfigErrors, OutOfRange) {
  EXPECT_EQ(error_of("[limits]\nmax_login_attempts = 0\n"),
            "t.conf:2: value 0 out of range 1..100");
}

TEST(ConfigErrors, BadEnum) {
  EXPECT_EQ(error_of("[[listen]]\nprotocol = \"gopher\"\naddress = \"127.0.0.1:1\"\n"),
            "t.conf:2: 'gopher' is not one of: imap, imaps, pop3, pop3s, lmtp, socketmap, metrics");
}

TEST(ConfigErrors, ListenWithoutAddress) {
  EXPECT_EQ(error_of("\n[[listen]]\nprotocol = \"imap\"\n"), "t.conf:2: [[listen]] needs an address");
}

TEST(ConfigErrors, ListenWrittenAsTable) {
  std::string e = error_of("[listen]\naddress = \"x\"\n");
  EXPECT_EQ(e, "t.conf:1: 'listen' must be written [[listen]]");
}

TEST(ConfigErrors, BackendWithoutHost) {
  EXPECT_EQ(error_of("[backend.s1]\nimap = 143\n"), "t.conf:1: [backend.s1] needs a host");
}

TEST(ConfigErrors, BadPort) {
  EXPECT_EQ(error_of("[backend.s1]\nhost = \"x\"\nimap = 70000\n"),
            "t.conf:3: port out of range 1..65535");
  EXPECT_EQ(error_of("[backend.s1]\nhost = \"x\"\nimap = \"tcp:1\"\n"),
            "t.conf:3: expected a port number or \"unix:/path\"");
}

TEST(ConfigErrors, TomlSyntaxErrorHasLine) {
  std::string e = error_of("workers = 1\n[limits\n");
  EXPECT_EQ(e.rfind("t.conf:2: ", 0), 0u) << e;
}

TEST(ConfigErrors, MissingFile) {
  sy::Config c;
  std::string error;
  EXPECT_FALSE(sy::load_config("/nonexistent/switchyard.conf", &c, &error));
  EXPECT_NE(error.find("/nonexistent/switchyard.conf"), std::string::npos);
}

TEST(ConfigErrors, BadListenAddress) {
  EXPECT_EQ(error_of("[[listen]]\naddress = \"127.0.0.1\"\n"),
            "t.conf:1: bad address '127.0.0.1': expected host:port");
}

TEST(Config, Pop3CapabilitiesDefaultToWhatDovecotAnnounces) {
  sy::Config c = parse_ok("[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:110\"\n");
  EXPECT_EQ(c.listen.at(0).pop3_capabilities,
            (std::vector<std::string>{"TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE",
                                      "USER", "SASL", "STLS"}));
}

TEST(Config, Pop3CapabilitiesPerListener) {
  sy::Config c = parse_ok(
      "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:110\"\n"
      "pop3_capabilities = [\"TOP\", \"USER\", \"UIDL\", \"EXPIRE 30\"]\n"
      "[[listen]]\nprotocol = \"pop3s\"\naddress = \"127.0.0.1:995\"\npop3_capabilities = []\n"
      "[tls]\ncert = \"/c\"\nkey = \"/k\"\n");
  EXPECT_EQ(c.listen.at(0).pop3_capabilities,
            (std::vector<std::string>{"TOP", "USER", "UIDL", "EXPIRE 30"}));
  EXPECT_TRUE(c.listen.at(1).pop3_capabilities.empty());
}

TEST(ConfigErrors, Pop3CapabilitiesOnlyOnPop3Listeners) {
  EXPECT_EQ(error_of("[[listen]]\naddress = \"127.0.0.1:143\"\npop3_capabilities = [\"TOP\"]\n"),
            "t.conf:3: pop3_capabilities is for pop3 and pop3s listeners");
}

TEST(ConfigErrors, Pop3CapabilityMustBePrintableWords) {
  const std::string head = "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:110\"\n";
  for (const char* bad : {"\"\"", "\" TOP\"", "\"TOP \"", "\"A  B\"", "\"TOP\\r\\nX\"", "1"}) {
    std::string e = error_of(head + "pop3_capabilities = [" + bad + "]\n");
    EXPECT_EQ(e.rfind("t.conf:4: expected a capability", 0), 0u) << bad << ": " << e;
  }
  EXPECT_EQ(error_of(head + "pop3_capabilities = \"TOP\"\n").rfind("t.conf:4: expected a list", 0),
            0u);
}

TEST(ConfigErrors, UnknownProtocolListsTheTable) {
  EXPECT_EQ(error_of("[[listen]]\nprotocol = \"smtp\"\naddress = \"127.0.0.1:25\"\n"),
            "t.conf:2: 'smtp' is not one of: imap, imaps, pop3, pop3s, lmtp, socketmap, metrics");
}

TEST(Config, LmtpAndSocketmapListenersTakeLoopbackOnlyByDefault) {
  sy::Config c = parse_ok(
      "[[listen]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:2424\"\n"
      "[[listen]]\nprotocol = \"socketmap\"\naddress = \"127.0.0.1:2425\"\n"
      "[[listen]]\nprotocol = \"pop3s\"\naddress = \"[::1]:995\"\ntls_cert = \"c\"\ntls_key = \"k\"\n");
  ASSERT_EQ(c.listen.size(), 3u);
  EXPECT_TRUE(c.listen[0].allow_from.has_value());
  EXPECT_TRUE(c.listen[1].allow_from.has_value());
  EXPECT_FALSE(c.listen[2].allow_from.has_value());
  EXPECT_TRUE(c.listen[2].implicit_tls());
  EXPECT_EQ(c.listen[2].info().family, sy::Family::Pop3);
}

TEST(ConfigErrors, DuplicateListenAddressNamesTheFirst) {
  const auto two = [](const char* a, const char* b) {
    sy::Config c;
    std::string error;
    (void)sy::parse_config(std::string("[[listen]]\naddress = \"") + a +
                               "\"\n[[listen]]\naddress = \"" + b + "\"\n",
                           "t.conf", &c, &error);
    return error;
  };
  EXPECT_EQ(two("127.0.0.1:143", "127.0.0.1:143"),
            "t.conf:3: address '127.0.0.1:143' is already taken by the [[listen]] at line 1 "
            "('127.0.0.1:143')");
  // The wildcards cover every address of their family on that port; "*" and "[::]" both.
  EXPECT_NE(two("*:143", "127.0.0.1:143"), "");
  EXPECT_NE(two("[::]:143", "[::1]:143"), "");
  EXPECT_NE(two("0.0.0.0:143", "192.0.2.1:143"), "");
  EXPECT_NE(two("[::1]:143", "[0:0:0:0:0:0:0:1]:143"), "");  // one address, two spellings
  EXPECT_NE(two("unix:/run/s.sock", "unix:/run/s.sock"), "");
  // Different ports, families or specific addresses do not clash.
  EXPECT_EQ(two("127.0.0.1:143", "127.0.0.1:993"), "");
  EXPECT_EQ(two("127.0.0.1:143", "[::1]:143"), "");
  EXPECT_EQ(two("0.0.0.0:143", "[::1]:143"), "");
  EXPECT_EQ(two("127.0.0.1:143", "127.0.0.2:143"), "");
  EXPECT_EQ(two("unix:/run/a.sock", "unix:/run/b.sock"), "");
}

TEST(Config, ShutdownGraceDefaultsToTenSeconds) {
  EXPECT_EQ(parse_ok("").limits.shutdown_grace, sy::Millis(10000));
  EXPECT_EQ(parse_ok("[limits]\nshutdown_grace = \"2s\"\n").limits.shutdown_grace, sy::Millis(2000));
}

TEST(Config, ReuseportIsOnUnlessTheListenerTurnsItOff) {
  sy::Config c = parse_ok(
      "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:1143\"\n"
      "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:1110\"\nreuseport = false\n");
  ASSERT_EQ(c.listen.size(), 2u);
  EXPECT_TRUE(c.listen[0].reuseport);
  EXPECT_FALSE(c.listen[1].reuseport);
  EXPECT_EQ(error_of("[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:1\"\nreuseport = 1\n"),
            "t.conf:4: expected true or false");
}
