// The configuration: a plain struct filled from the TOML file by load_config().
//
// Every key has a default; load_config() rejects unknown keys and bad values with
// "file:line: message". Documented in man/switchyard.conf.5 and etc/switchyard.conf.
// This header is kept free of toml++ so that only config.cc pays for it.
#ifndef SWITCHYARD_CONFIG_CONFIG_H
#define SWITCHYARD_CONFIG_CONFIG_H

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/duration.h"
#include "config/address.h"
#include "config/protocol.h"

namespace sy {

struct ListenConfig {
  Protocol protocol = Protocol::Imap;
  std::string address;  // "127.0.0.1:1143", "[::1]:1143", "unix:/path"
  std::optional<bool> allow_plaintext_auth;   // unset: loopback clients or after TLS only
  std::string tls_cert;                       // overrides [tls] cert/key for this listener
  std::string tls_key;
  int max_connections_per_ip = 0;             // 0: no limit
  bool proxy_protocol = false;                // expect a HAProxy PROXY v1/v2 header
  // TCP: one listening socket per worker (SO_REUSEPORT), so that a new connection wakes
  // only the worker that serves it. false: one socket all workers accept on.
  bool reuseport = true;
  std::vector<Cidr> trusted_proxies;          // who may send one
  // Who may connect at all (TCP; Unix sockets go by file permissions). Unset: everyone,
  // except on lmtp and socketmap listeners, which take loopback clients only.
  std::optional<std::vector<Cidr>> allow_from;
  // POP3 CAPA before login: what the store offers after login, as a Dovecot store
  // does. USER and SASL are announced only where clear-text login is allowed (SASL as
  // the mechanisms Switchyard takes), STLS only where STLS is available.
  std::vector<std::string> pop3_capabilities = {
      "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "USER", "SASL", "STLS"};
  int line = 0;

  const ProtocolInfo& info() const { return protocol_info(protocol); }
  bool implicit_tls() const { return info().implicit_tls; }
};

struct TlsConfig {
  std::string cert;                   // PEM, chain allowed
  std::string key;                    // PEM
  std::string ca;                     // CA file for verifying stores (empty: system store)
  std::string min_version = "TLSv1.2";
  std::string ciphers;                // OpenSSL cipher list for TLS <= 1.2 (empty: default)
  int line = 0;
};

struct MapConfig {
  std::string module;                  // NAME (map_dir/NAME.so) or an absolute path
  std::optional<std::string> options;  // handed to dbserver_init/dbserver_get; unset = NULL
  int line = 0;
};

struct BackendConfig {
  std::string name;
  std::vector<std::string> hosts;  // tried in order
  std::string imap = "143";        // port or "unix:/path"
  std::string pop3 = "110";
  std::string lmtp = "24";
  std::string tls = "none";        // none | starttls | implicit
  bool tls_verify = true;          // verify the store's certificate against [tls] ca
  bool forward_client_ip = false;  // tell the store who the client is (IMAP ID, POP3 XCLIENT)
  Millis connect_timeout{5000};
  Millis login_timeout{15000};   // connect + TLS + greeting + login, for IMAP/POP3
  Millis down_time{10000};       // skip an address this long after it failed
  Millis check_interval{0};      // probe the addresses this often (0: only passively)
  int line = 0;
};

struct LookupConfig {
  std::string fallback;      // back end (name or host[:port]) for users no map knows
  Millis cache_ttl{60'000};
  Millis negative_ttl{10'000};
  Millis stale_ttl{0};
  std::size_t cache_size = 10000;  // entries per worker; 0 turns the cache off
  Millis timeout{10'000};    // a lookup not answered by then is TempFail
  std::size_t queue_limit = 128;   // lookups waiting for the maps per worker; more: TempFail
  std::size_t per_client_limit = 8;  // of those, from one client address
  std::size_t concurrency = 16;  // lookups asked at once per worker (lookup threads)
};

struct LimitsConfig {
  Millis login_timeout{60'000};
  Millis idle_timeout{30 * 60'000};
  int max_bad_commands = 10;
  int max_prelogin_sessions = 2000;  // per worker: IMAP/POP3 sessions not logged in yet
  int max_prelogin_per_ip = 50;      // of those, from one client address
  int max_login_attempts = 3;
  // Before login. A line fits the largest RFC 2971 ID (30 pairs of 30-octet fields and
  // 1024-octet values, about 32 KB, twice that if every byte is escaped).
  std::size_t max_line_length = 65536;
  std::size_t max_literal_size = 8192;
  std::size_t max_literal_total = 65536;  // all the literals of one IMAP command
  // Failed logins per client address: a doubling delay, then a temporary block.
  Millis drain_timeout{3600000};  // after a reload, old workers' sessions may last this long
  Millis shutdown_grace{10000};   // on SIGTERM, LMTP transactions may finish for this long
  Millis auth_failure_delay{1000};
  Millis auth_failure_delay_max{15000};
  int auth_failure_block_after = 20;  // 0: never block
  Millis auth_failure_window{600000};
  std::vector<Cidr> auth_failure_exempt = {*Cidr::parse("127.0.0.0/8"), *Cidr::parse("::1")};
};

struct LmtpConfig {
  std::uint64_t max_message_size = 50 * 1024 * 1024;  // bytes; SIZE advertised
  int max_recipients = 1000;                           // per transaction
  std::string spool_dir = "/tmp";                      // for messages over spool_memory
  std::size_t spool_memory = 1024 * 1024;              // bytes kept in memory per message
  Millis store_timeout{120000};                        // a store's answer, each step
  std::string hostname;                                // in greetings ("" = gethostname)
};

// [username]: how a login becomes a map key (map/username.h applies it).
struct UsernamePolicy {
  bool lowercase = true;            // fold ASCII upper case in the key
  bool strip_domain = false;        // cut the key at the last delimiter
  std::string domain_delimiter = "@";
  std::string default_domain;       // appended (with the delimiter) when the login has none
  bool use_map_user = true;         // a user part in the map's answer is the store login
};

struct LogConfig {
  std::string target = "syslog";  // syslog | stderr
  std::string level = "info";     // debug | info | notice | warning | error
  std::string facility = "mail";
};

struct Config {
  std::string path;  // the file it was read from
  std::string user;  // workers run as this account (when started as root)
  int workers = 1;   // 0 = serve from the master, no fork
  std::string pid_file;
  std::string map_dir;
  std::string control_dir;  // where workers' control sockets live ("" = none)
  std::string control_group;  // may use the control sockets besides root ("" = root only)
  std::vector<ListenConfig> listen;
  std::vector<MapConfig> maps;
  UsernamePolicy username;
  LookupConfig lookup;
  LimitsConfig limits;
  std::map<std::string, BackendConfig> backends;
  TlsConfig tls;
  LmtpConfig lmtp;
  LogConfig log;
};

// Reads and checks `path`. On error returns false and sets *error to "file:line: message".
[[nodiscard]] bool load_config(const std::string& path, Config* out, std::string* error);

// Same, from text (for tests); `path` is used in messages only.
[[nodiscard]] bool parse_config(const std::string& text, const std::string& path, Config* out,
                                std::string* error);

std::string default_config_path();

}  // namespace sy

#endif
