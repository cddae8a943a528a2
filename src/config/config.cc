// Config loading with toml++: every table is walked key by key, so an unknown key or a
// value of the wrong type is reported at its own line.
#include "config/config.h"


#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <toml++/toml.h>
#include <utility>

namespace sy {
namespace {

class Reader {
 public:
  Reader(std::string path, std::string* error) : path_(std::move(path)), error_(error) {}

  bool fail(int line, const std::string& msg) {
    if (error_->empty()) *error_ = path_ + ":" + std::to_string(line) + ": " + msg;
    return false;
  }
  bool fail(const toml::node& n, const std::string& msg) { return fail(line(n), msg); }
  static int line(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

  using Handler = std::function<bool(const toml::node&)>;
  // Calls the handler named by each key of `t`; an unknown key is an error.
  bool walk(const toml::table& t, const std::string& where,
            std::initializer_list<std::pair<const char*, Handler>> handlers) {
    for (auto&& [k, v] : t) {
      const Handler* h = nullptr;
      for (const auto& [name, fn] : handlers)
        if (k.str() == name) h = &fn;
      if (!h)
        return fail(static_cast<int>(k.source().begin.line),
                    "unknown key '" + std::string(k.str()) + "'" +
                        (where.empty() ? "" : " in [" + where + "]"));
      if (!(*h)(v)) return false;
    }
    return true;
  }

  Handler str(std::string* out, std::initializer_list<const char*> allowed = {}) {
    return [this, out, allowed](const toml::node& n) {
      auto s = n.value<std::string>();
      if (!n.is_string() || !s) return fail(n, "expected a string");
      if (allowed.size()) {
        bool ok = false;
        std::string list;
        for (const char* a : allowed) {
          ok = ok || *s == a;
          list += std::string(list.empty() ? "" : ", ") + a;
        }
        if (!ok) return fail(n, "'" + *s + "' is not one of: " + list);
      }
      *out = *s;
      return true;
    };
  }
  Handler protocol(Protocol* out) {
    return [this, out](const toml::node& n) {
      auto s = n.value<std::string>();
      if (!n.is_string() || !s) return fail(n, "expected a string");
      auto p = protocol_named(*s);
      if (!p) {
        std::string list;
        for (std::size_t i = 0; i < kProtocolCount; ++i)
          list += std::string(i ? ", " : "") + protocol_name(static_cast<Protocol>(i));
        return fail(n, "'" + *s + "' is not one of: " + list);
      }
      *out = *p;
      return true;
    };
  }
  Handler opt_str(std::optional<std::string>* out) {
    return [this, out](const toml::node& n) {
      if (!n.is_string()) return fail(n, "expected a string");
      *out = *n.value<std::string>();
      return true;
    };
  }
  Handler boolean(bool* out) {
    return [this, out](const toml::node& n) {
      if (!n.is_boolean()) return fail(n, "expected true or false");
      *out = *n.value<bool>();
      return true;
    };
  }
  Handler opt_boolean(std::optional<bool>* out) {
    return [this, out](const toml::node& n) {
      if (!n.is_boolean()) return fail(n, "expected true or false");
      *out = *n.value<bool>();
      return true;
    };
  }
  template <typename Int>
  Handler integer(Int* out, long long min, long long max) {
    return [this, out, min, max](const toml::node& n) {
      if (!n.is_integer()) return fail(n, "expected an integer");
      long long v = *n.value<long long>();
      if (v < min || v > max)
        return fail(n, "value " + std::to_string(v) + " out of range " + std::to_string(min) +
                           ".." + std::to_string(max));
      *out = static_cast<Int>(v);
      return true;
    };
  }
  Handler duration(Millis* out) {
    return [this, out](const toml::node& n) {
      if (n.is_integer() && *n.value<long long>() >= 0) {
        *out = Millis(*n.value<long long>() * 1000);
        return true;
      }
      std::optional<Millis> d;
      if (n.is_string()) d = parse_duration(*n.value<std::string>());
      if (!d) return fail(n, "expected a duration such as \"500ms\", \"60s\", \"5m\", \"1h\"");
      *out = *d;
      return true;
    };
  }
  // A port number or "unix:/path".
  Handler port(std::string* out) {
    return [this, out](const toml::node& n) {
      if (n.is_integer()) {
        long long v = *n.value<long long>();
        if (v < 1 || v > 65535) return fail(n, "port out of range 1..65535");
        *out = std::to_string(v);
        return true;
      }
      if (n.is_string()) {
        std::string s = *n.value<std::string>();
        if (s.rfind("unix:/", 0) == 0) {
          *out = s;
          return true;
        }
      }
      return fail(n, "expected a port number or \"unix:/path\"");
    };
  }
  Handler string_list(std::vector<std::string>* out) {
    return [this, out](const toml::node& n) {
      out->clear();
      if (n.is_string()) {
        out->push_back(*n.value<std::string>());
        return true;
      }
      const toml::array* a = n.as_array();
      if (!a || a->empty()) return fail(n, "expected a string or a list of strings");
      for (const auto& e : *a) {
        if (!e.is_string()) return fail(e, "expected a string");
        out->push_back(*e.value<std::string>());
      }
      return true;
    };
  }
  // POP3 CAPA lines (RFC 2449): a list, possibly empty, of "KEYWORD [param ...]", each
  // printable ASCII without leading, trailing or doubled spaces, at most 255 bytes.
  Handler capability_list(std::vector<std::string>* out) {
    return [this, out](const toml::node& n) {
      const toml::array* a = n.as_array();
      if (!a) return fail(n, "expected a list of capabilities such as [\"TOP\", \"UIDL\"]");
      out->clear();
      for (const auto& e : *a) {
        auto s = e.value<std::string>();
        bool ok = e.is_string() && s && !s->empty() && s->size() <= 255 && s->front() != ' ' &&
                  s->back() != ' ' && s->find("  ") == std::string::npos;
        if (ok)
          for (unsigned char c : *s) ok = ok && c >= 0x20 && c < 0x7f;
        if (!ok)
          return fail(e, "expected a capability: printable ASCII words, such as \"TOP\" or "
                         "\"EXPIRE NEVER\"");
        out->push_back(*s);
      }
      return true;
    };
  }
  Handler cidrs(std::vector<Cidr>* out) {
    return [this, out](const toml::node& n) {
      const toml::array* a = n.as_array();
      if (!a) return fail(n, "expected a list of addresses or blocks such as \"10.0.0.0/8\"");
      out->clear();
      for (const auto& e : *a) {
        auto c = e.is_string() ? Cidr::parse(*e.value<std::string>()) : std::nullopt;
        if (!c) return fail(e, "expected an address or block such as \"10.0.0.0/8\"");
        out->push_back(*c);
      }
      return true;
    };
  }
  Handler opt_cidrs(std::optional<std::vector<Cidr>>* out) {
    return [this, out](const toml::node& n) {
      std::vector<Cidr> v;
      if (!cidrs(&v)(n)) return false;
      *out = std::move(v);
      return true;
    };
  }
  // An array of tables ([[name]]), each handed to `each`.
  Handler tables(const char* name, std::function<bool(const toml::table&)> each) {
    return [this, name, each](const toml::node& n) {
      const toml::array* a = n.as_array();
      if (!a) return fail(n, std::string("'") + name + "' must be written [[" + name + "]]");
      for (const auto& e : *a) {
        const toml::table* t = e.as_table();
        if (!t) return fail(e, std::string("'") + name + "' must be written [[" + name + "]]");
        if (!each(*t)) return false;
      }
      return true;
    };
  }
  Handler table(const char* name, std::function<bool(const toml::table&)> each) {
    return [this, name, each](const toml::node& n) {
      const toml::table* t = n.as_table();
      if (!t) return fail(n, std::string("'") + name + "' must be a table [" + name + "]");
      return each(*t);
    };
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string* error_;
};

int default_workers() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// Where a TCP listener listens, for finding two that cannot both be bound: the family it
// takes ('4', '6', or 'b' for the dual-stack wildcard), whether it is a wildcard, and the
// host in canonical form (numeric addresses as inet_ntop writes them).
struct Bound {
  char family;
  bool wildcard;
  std::string host;
};

Bound bound_of(const SocketAddress& a) {
  if (a.host.empty() || a.host == "*" || a.host == "::") return {'b', true, ""};
  unsigned char bytes[16];
  char text[INET6_ADDRSTRLEN];
  if (::inet_pton(AF_INET, a.host.c_str(), bytes) == 1) {
    ::inet_ntop(AF_INET, bytes, text, sizeof text);
    return {'4', a.host == "0.0.0.0", text};
  }
  if (::inet_pton(AF_INET6, a.host.c_str(), bytes) == 1) {
    ::inet_ntop(AF_INET6, bytes, text, sizeof text);
    return {'6', false, text};
  }
  return {'?', false, a.host};  // a name: only the same name is known to clash
}

// Linux refuses a second listener on a port that an earlier one covers: the same address,
// a wildcard of the same family (the dual-stack wildcard covers both), or the same path.
bool clashes(const SocketAddress& a, const SocketAddress& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == SocketAddress::Kind::Unix) return a.path == b.path;
  if (a.port != b.port) return false;
  const Bound x = bound_of(a), y = bound_of(b);
  if (x.family == 'b' || y.family == 'b') return x.family != '?' && y.family != '?';
  if (x.family != y.family) return false;
  return x.wildcard || y.wildcard || x.host == y.host;
}

bool check(Reader& r, Config* c) {
  std::vector<std::pair<SocketAddress, const ListenConfig*>> seen;
  for (const auto& l : c->listen) {
    if (l.address.empty()) return r.fail(l.line, "[[listen]] needs an address");
    std::string why;
    auto addr = parse_socket_address(l.address, &why);
    if (!addr) return r.fail(l.line, "bad address '" + l.address + "': " + why);
    for (const auto& [other, ol] : seen)
      if (clashes(*addr, other))
        return r.fail(l.line, "address '" + l.address + "' is already taken by the [[listen]] at line " +
                                  std::to_string(ol->line) + " ('" + ol->address + "')");
    seen.emplace_back(*addr, &l);
  }
  for (const auto& l : c->listen) {
    if (l.implicit_tls() && (l.tls_cert.empty() ? c->tls.cert : l.tls_cert).empty())
      return r.fail(l.line, std::string("protocol \"") + l.info().name +
                                "\" needs a certificate: set [tls] cert and key");
    if (l.tls_cert.empty() != l.tls_key.empty())
      return r.fail(l.line, "tls_cert and tls_key go together");
    if (l.proxy_protocol && l.trusted_proxies.empty())
      return r.fail(l.line, "proxy_protocol = true needs trusted_proxies");
  }
  if (c->tls.cert.empty() != c->tls.key.empty())
    return r.fail(c->tls.line, "[tls] cert and key go together");
  for (const auto& m : c->maps) {
    if (m.module.empty()) return r.fail(m.line, "[[map]] needs a module");
  }
  for (const auto& [name, b] : c->backends) {
    if (b.hosts.empty()) return r.fail(b.line, "[backend." + name + "] needs a host");
  }
  return true;
}

}  // namespace

std::string default_config_path() { return std::string(SYSCONFDIR) + "/switchyard/switchyard.conf"; }

bool parse_config(const std::string& text, const std::string& path, Config* out,
                  std::string* error) {
  error->clear();
  Config c;
  c.path = path;
  c.workers = default_workers();
  c.map_dir = MAPSDIR;
  c.control_dir = RUNSTATEDIR "/switchyard";
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    *error = path + ":" + std::to_string(e.source().begin.line) + ": " +
             std::string(e.description());
    return false;
  }
  Reader r(path, error);
  auto listen = [&](const toml::table& t) {
    ListenConfig l;
    l.line = static_cast<int>(t.source().begin.line);
    if (!r.walk(t, "listen",
                {{"protocol", r.protocol(&l.protocol)},
                 {"address", r.str(&l.address)},
                 {"allow_plaintext_auth", r.opt_boolean(&l.allow_plaintext_auth)},
                 {"tls_cert", r.str(&l.tls_cert)},
                 {"tls_key", r.str(&l.tls_key)},
                 {"max_connections_per_ip", r.integer(&l.max_connections_per_ip, 0, 100000)},
                 {"proxy_protocol", r.boolean(&l.proxy_protocol)},
                 {"reuseport", r.boolean(&l.reuseport)},
                 {"trusted_proxies", r.cidrs(&l.trusted_proxies)},
                 {"allow_from", r.opt_cidrs(&l.allow_from)},
                 {"pop3_capabilities", r.capability_list(&l.pop3_capabilities)}}))
      return false;
    const ProtocolInfo& info = l.info();
    const toml::node* caps = t.get("pop3_capabilities");
    if (caps && info.family != Family::Pop3)
      return r.fail(*caps, "pop3_capabilities is for pop3 and pop3s listeners");
    if (!l.allow_from && info.loopback_only)
      l.allow_from = std::vector<Cidr>{*Cidr::parse("127.0.0.0/8"), *Cidr::parse("::1")};
    c.listen.push_back(std::move(l));
    return true;
  };
  auto map = [&](const toml::table& t) {
    MapConfig m;
    m.line = static_cast<int>(t.source().begin.line);
    if (!r.walk(t, "map", {{"module", r.str(&m.module)}, {"options", r.opt_str(&m.options)}}))
      return false;
    c.maps.push_back(std::move(m));
    return true;
  };
  auto username = [&](const toml::table& t) {
    UsernamePolicy& u = c.username;
    return r.walk(t, "username",
                  {{"lowercase", r.boolean(&u.lowercase)},
                   {"strip_domain", r.boolean(&u.strip_domain)},
                   {"domain_delimiter", r.str(&u.domain_delimiter)},
                   {"default_domain", r.str(&u.default_domain)},
                   {"use_map_user", r.boolean(&u.use_map_user)}});
  };
  auto lookup = [&](const toml::table& t) {
    LookupConfig& l = c.lookup;
    return r.walk(t, "lookup",
                  {{"fallback", r.str(&l.fallback)},
                   {"cache_ttl", r.duration(&l.cache_ttl)},
                   {"negative_ttl", r.duration(&l.negative_ttl)},
                   {"stale_ttl", r.duration(&l.stale_ttl)},
                   {"cache_size", r.integer(&l.cache_size, 0, 10000000)},
                   {"timeout", r.duration(&l.timeout)},
                   {"queue_limit", r.integer(&l.queue_limit, 1, 1000000)},
                   {"per_client_limit", r.integer(&l.per_client_limit, 1, 1000000)},
                   {"concurrency", r.integer(&l.concurrency, 1, 256)}});
  };
  auto limits = [&](const toml::table& t) {
    LimitsConfig& l = c.limits;
    return r.walk(t, "limits",
                  {{"login_timeout", r.duration(&l.login_timeout)},
                   {"idle_timeout", r.duration(&l.idle_timeout)},
                   {"max_bad_commands", r.integer(&l.max_bad_commands, 1, 1000)},
                   {"max_prelogin_sessions", r.integer(&l.max_prelogin_sessions, 1, 1000000)},
                   {"max_prelogin_per_ip", r.integer(&l.max_prelogin_per_ip, 1, 1000000)},
                   {"max_login_attempts", r.integer(&l.max_login_attempts, 1, 100)},
                   {"max_line_length", r.integer(&l.max_line_length, 512, 1 << 20)},
                   {"max_literal_size", r.integer(&l.max_literal_size, 64, 1 << 20)},
                   {"max_literal_total", r.integer(&l.max_literal_total, 64, 1 << 24)},
                   {"drain_timeout", r.duration(&l.drain_timeout)},
                   {"shutdown_grace", r.duration(&l.shutdown_grace)},
                   {"auth_failure_delay", r.duration(&l.auth_failure_delay)},
                   {"auth_failure_delay_max", r.duration(&l.auth_failure_delay_max)},
                   {"auth_failure_block_after", r.integer(&l.auth_failure_block_after, 0, 100000)},
                   {"auth_failure_window", r.duration(&l.auth_failure_window)},
                   {"auth_failure_exempt", r.cidrs(&l.auth_failure_exempt)}});
  };
  auto backends = [&](const toml::table& t) {
    for (auto&& [k, v] : t) {
      const toml::table* bt = v.as_table();
      if (!bt) return r.fail(v, "[backend." + std::string(k.str()) + "] must be a table");
      BackendConfig b;
      b.name = std::string(k.str());
      b.line = static_cast<int>(k.source().begin.line);
      if (!r.walk(*bt, "backend." + b.name,
                  {{"host", r.string_list(&b.hosts)},
                   {"imap", r.port(&b.imap)},
                   {"pop3", r.port(&b.pop3)},
                   {"lmtp", r.port(&b.lmtp)},
                   {"tls", r.str(&b.tls, {"none", "starttls", "implicit"})},
                   {"tls_verify", r.boolean(&b.tls_verify)},
                   {"forward_client_ip", r.boolean(&b.forward_client_ip)},
                   {"connect_timeout", r.duration(&b.connect_timeout)},
                   {"login_timeout", r.duration(&b.login_timeout)},
                   {"down_time", r.duration(&b.down_time)},
                   {"check_interval", r.duration(&b.check_interval)}}))
        return false;
      c.backends[b.name] = std::move(b);
    }
    return true;
  };
  auto tls = [&](const toml::table& t) {
    c.tls.line = static_cast<int>(t.source().begin.line);
    return r.walk(t, "tls",
                  {{"cert", r.str(&c.tls.cert)},
                   {"key", r.str(&c.tls.key)},
                   {"ca", r.str(&c.tls.ca)},
                   {"min_version", r.str(&c.tls.min_version, {"TLSv1.2", "TLSv1.3"})},
                   {"ciphers", r.str(&c.tls.ciphers)}});
  };
  auto lmtp = [&](const toml::table& t) {
    LmtpConfig& l = c.lmtp;
    return r.walk(t, "lmtp",
                  {{"max_message_size", r.integer(&l.max_message_size, 1024, 1ll << 40)},
                   {"max_recipients", r.integer(&l.max_recipients, 1, 100000)},
                   {"spool_dir", r.str(&l.spool_dir)},
                   {"spool_memory", r.integer(&l.spool_memory, 0, 1ll << 32)},
                   {"store_timeout", r.duration(&l.store_timeout)},
                   {"hostname", r.str(&l.hostname)}});
  };
  auto log = [&](const toml::table& t) {
    return r.walk(t, "log",
                  {{"target", r.str(&c.log.target, {"syslog", "stderr"})},
                   {"level", r.str(&c.log.level, {"debug", "info", "notice", "warning", "error"})},
                   {"facility", r.str(&c.log.facility, {"mail", "daemon", "local0", "local1",
                                                        "local2", "local3", "local4", "local5",
                                                        "local6", "local7"})}});
  };
  bool ok = r.walk(root, "",
                   {{"user", r.str(&c.user)},
                    {"workers", r.integer(&c.workers, 0, 256)},
                    {"pid_file", r.str(&c.pid_file)},
                    {"map_dir", r.str(&c.map_dir)},
                    {"control_dir", r.str(&c.control_dir)},
                    {"control_group", r.str(&c.control_group)},
                    {"listen", r.tables("listen", listen)},
                    {"map", r.tables("map", map)},
                    {"username", r.table("username", username)},
                    {"lookup", r.table("lookup", lookup)},
                    {"limits", r.table("limits", limits)},
                    {"backend", r.table("backend", backends)},
                    {"tls", r.table("tls", tls)},
                    {"lmtp", r.table("lmtp", lmtp)},
                    {"log", r.table("log", log)}});
  if (!ok || !check(r, &c)) return false;
  *out = std::move(c);
  return true;
}

bool load_config(const std::string& path, Config* out, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    *error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  std::string text;
  char buf[8192];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  return parse_config(text, path, out, error);
}

}  // namespace sy
