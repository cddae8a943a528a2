// The pure parts of the LDAP map module (maps/ldap/ldap.cc): reading its options string,
// RFC 4515 escaping of the key, and building the answer from an entry's values. No libldap,
// no I/O: compiled into the module and into the unit tests.
//
// Options, Perdition's form: [ldap_version:]ldap_url, with ldap_url per RFC 4516
//   scheme://hosts/base?attributes?scope?filter?extensions
// e.g. 3:ldap://127.0.0.1:3389/ou=mailbox,dc=example,dc=com?username,mailhost,port?one?(uid=%s)
//   ldap_version  2 or 3 (default 3)
//   scheme        ldap, ldaps (TLS from the first byte) or ldapi (host = %-encoded socket path)
//   hosts         host[:port], several separated by ',' or ' ', tried in that order
//                 ([v6]:port for IPv6); empty = localhost; ports default to 389 / 636
//   base          the search base DN (%-decoded)
//   attributes    1 to 3 names: the store user, the store host, the store port
//                 (empty = username,mailhost,port)
//   scope         base, one (onelevel), sub (subtree) or children (subordinate); empty = base
//   filter        every %s is the key, escaped per RFC 4515; other '%' must be %XX escapes;
//                 empty = (objectClass=*)
//   extensions    ','-separated, values %-decoded (write a ',' inside a value as %2C),
//                 each may be marked critical with a leading '!':
//                   bindname=DN     simple bind as DN (default: anonymous)
//                   x-bindpw=PW     its password (needs bindname)
//                   x-starttls      StartTLS before binding; the lookup fails without it
//                   x-timeout=N     seconds for connect, TLS, bind and search (1..600, default 5)
//                   x-cacert=FILE   CA certificates to verify the server's with (ldaps,
//                                   x-starttls; default: the system's)
//                 any other extension is refused (a typo must not mean an anonymous bind).
// NULL or "" options = the default URL, Perdition's:
//   ldap://localhost/ou=mailbox,dc=nodomain?username,mailhost,port?one?(uid=%s)
#ifndef SWITCHYARD_MAPS_LDAP_LDAP_OPTIONS_H
#define SWITCHYARD_MAPS_LDAP_LDAP_OPTIONS_H

#include <optional>
#include <string>
#include <string_view>
#include <vector>

// Internal to the module: nothing here is exported from ldap.so.
#pragma GCC visibility push(hidden)

namespace sy::ldap_map {

inline constexpr const char* kDefaultUrl =
    "ldap://localhost/ou=mailbox,dc=nodomain?username,mailhost,port?one?(uid=%s)";
inline constexpr int kDefaultTimeoutSeconds = 5;

enum class Scope { Base, OneLevel, Subtree, Children };

struct LdapOptions {
  int version = 3;
  std::string scheme = "ldap";          // ldap | ldaps | ldapi
  std::vector<std::string> hosts;       // "host", "host:port", "[v6]:port"; ldapi: the encoded path
  std::string base;
  std::vector<std::string> attributes;  // 1..3: user, host, port
  Scope scope = Scope::Base;
  // The filter split at its %s placeholders: filter_parts.size() - 1 placeholders.
  std::vector<std::string> filter_parts;
  std::string bind_dn;                  // empty: anonymous
  std::optional<std::string> bind_password;
  bool starttls = false;
  int timeout_seconds = kDefaultTimeoutSeconds;
  std::string ca_file;

  bool tls() const { return scheme == "ldaps" || starttls; }
};

// Parses `text` (NULL or "" = kDefaultUrl). On failure returns nullopt with *error set; the
// error never contains the bind password.
std::optional<LdapOptions> parse_options(const char* text, std::string* error);

// The URIs for ldap_initialize, space-separated, in the configured order.
std::string uri_list(const LdapOptions& options);

// `value` as an RFC 4515 assertion value: '*', '(', ')', '\', and every byte outside
// printable ASCII (controls, DEL, and bytes >= 0x80, UTF-8 or not) become \xx. Escaping
// UTF-8 bytes is lossless: the server matches the same octets.
std::string escape_filter_value(std::string_view value);

// The filter for `key`: the placeholders replaced by the escaped key.
std::string expand_filter(const LdapOptions& options, std::string_view key);

// The map answer from the first values of the (up to three) attributes, each trimmed of
// blanks: "[user@]host[:port]" when there is a host (an IPv6 address gets brackets);
// without a host, the user value as it is (the host parses it as [user@]host[:port]);
// nullopt when neither has a value. The port is used only with a host.
std::optional<std::string> make_answer(std::string_view user, std::string_view host,
                                       std::string_view port);

}  // namespace sy::ldap_map

#pragma GCC visibility pop

#endif
