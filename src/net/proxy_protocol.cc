// PROXY protocol header parser (HAProxy's proxy-protocol.txt, versions 1 and 2).
//
// The parser looks at one byte at a time and keeps the header bytes it has accepted, so
// the same stream gives the same result at the same offset however it is split.
//
// Deciding early
// --------------
// Byte 0 picks the version: 'P' for v1, CR for v2, anything else is NotProxy. The
// signatures ("PROXY " and the 12 bytes "\r\n\r\n\0\r\nQUIT\n") are compared byte by byte.
// v1 fields are checked as they arrive: the protocol token must stay a prefix of TCP4,
// TCP6 or UNKNOWN; address characters must fit the family and the address must parse
// (inet_pton) at the space after it; port digits are checked one by one; a line that has
// not reached its CR by byte 106 is too long. v2's version, command, family and length
// are checked at the byte that carries them, and each TLV header as soon as its three
// bytes are in (a TLV, or a 1-2 byte remnant, that cannot fit the announced length is an
// error before its value arrives).
//
// Version 1
// ---------
//   "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF, single spaces;
//   "PROXY UNKNOWN" [SP <any bytes but CR and LF>] CRLF  (the socket's addresses stay).
// Addresses: numeric, of the announced family, as inet_pton reads them (IPv4 without
// leading zeros; IPv6 hex groups, "::", and an embedded dotted quad). Ports: decimal
// 0..65535, no sign, no leading zero (except "0" itself). At most 107 bytes with CRLF.
//
// Version 2
// ---------
// Version nibble 2. LOCAL (0): the family byte and the whole body are ignored, as the
// specification says. PROXY (1): family AF_INET, AF_INET6 or AF_UNIX with STREAM, or
// AF_UNSPEC (with UNSPEC or STREAM transport: accepted, body skipped, no addresses).
// DGRAM is refused; so is any unknown family or transport. The length field may not
// exceed the configured limit nor be shorter than the family's address block (12, 36,
// 216 bytes). After the addresses, TLVs (type, 16-bit big-endian length, value) must
// tile the rest of the body exactly. PP2_TYPE_SSL needs its 5 fixed bytes and
// well-formed sub-TLVs; its client flag and the version and cipher sub-TLVs are kept, as
// is PP2_TYPE_AUTHORITY. Unix paths are 108 bytes, NUL padded.
#include "net/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>

namespace sy {
namespace {

constexpr std::string_view kV1Signature = "PROXY ";
constexpr std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);
constexpr std::size_t kV1MaxV4 = 15;  // "255.255.255.255"
constexpr std::size_t kV1MaxV6 = 45;  // "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
constexpr std::size_t kUnixPathLength = 108;

constexpr std::uint8_t kTlvAuthority = 0x02;
constexpr std::uint8_t kTlvSsl = 0x20;
constexpr std::uint8_t kSubTlvSslVersion = 0x21;
constexpr std::uint8_t kSubTlvSslCipher = 0x23;
constexpr std::uint8_t kClientSsl = 0x01;

static_assert(sizeof(sockaddr_un::sun_path) == kUnixPathLength);

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

unsigned byte_at(std::string_view s, std::size_t i) { return static_cast<unsigned char>(s[i]); }
unsigned be16(std::string_view s, std::size_t i) { return byte_at(s, i) << 8 | byte_at(s, i + 1); }

void set_inet(ProxyEndpoint* e, int family, const void* addr, std::uint16_t port) {
  e->addr = sockaddr_storage{};
  char text[INET6_ADDRSTRLEN] = "";
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&e->addr);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, addr, sizeof sin->sin_addr);
    sin->sin_port = htons(port);
    e->addr_len = sizeof(sockaddr_in);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    e->ip = text;
    e->text = e->ip + ":" + std::to_string(port);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&e->addr);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, addr, sizeof sin6->sin6_addr);
    sin6->sin6_port = htons(port);
    e->addr_len = sizeof(sockaddr_in6);
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    e->ip = text;
    e->text = "[" + e->ip + "]:" + std::to_string(port);
  }
  e->port = port;
}

void set_unix(ProxyEndpoint* e, std::string_view path) {
  e->addr = sockaddr_storage{};
  auto* sun = reinterpret_cast<sockaddr_un*>(&e->addr);
  sun->sun_family = AF_UNIX;
  std::memcpy(sun->sun_path, path.data(), kUnixPathLength);
  e->addr_len = sizeof(sockaddr_un);
  if (path[0] == '\0') {  // abstract namespace: the name follows the NUL
    const std::string_view name = path.substr(1);
    e->ip = "@" + std::string(name.substr(0, name.find('\0')));
  } else {
    e->ip = std::string(path.substr(0, path.find('\0')));
  }
  e->port = 0;
  e->text = "unix:" + e->ip;
}

// Whether `token` is a prefix of one of v1's protocol names (or the whole name).
bool is_protocol_prefix(std::string_view token) {
  for (std::string_view name : {"TCP4", "TCP6", "UNKNOWN"}) {
    if (token.size() <= name.size() && name.substr(0, token.size()) == token) return true;
  }
  return false;
}

}  // namespace

const char* proxy_error_name(ProxyError e) {
  switch (e) {
    case ProxyError::None: return "no error";
    case ProxyError::NotProxy: return "not a PROXY protocol header";
    case ProxyError::V1TooLong: return "PROXY v1 line too long";
    case ProxyError::V1BadSyntax: return "PROXY v1 syntax error";
    case ProxyError::V1BadAddress: return "PROXY v1 invalid address";
    case ProxyError::V1BadPort: return "PROXY v1 invalid port";
    case ProxyError::V2BadVersion: return "PROXY v2 unsupported version";
    case ProxyError::V2BadCommand: return "PROXY v2 unknown command";
    case ProxyError::V2BadFamily: return "PROXY v2 unsupported address family";
    case ProxyError::V2Datagram: return "PROXY v2 datagram transport";
    case ProxyError::V2TooLong: return "PROXY v2 header too long";
    case ProxyError::V2ShortAddress: return "PROXY v2 address block too short";
    case ProxyError::V2BadTlv: return "PROXY v2 malformed TLV";
  }
  return "unknown error";
}

const char* proxy_command_name(ProxyHeader::Command c) {
  switch (c) {
    case ProxyHeader::Command::Local: return "LOCAL";
    case ProxyHeader::Command::Proxy: return "PROXY";
  }
  return "?";
}

const char* proxy_family_name(ProxyHeader::Family f) {
  switch (f) {
    case ProxyHeader::Family::Unspec: return "UNSPEC";
    case ProxyHeader::Family::Tcp4: return "TCP4";
    case ProxyHeader::Family::Tcp6: return "TCP6";
    case ProxyHeader::Family::Unix: return "UNIX";
  }
  return "?";
}

ProxyParser::ProxyParser(std::size_t max_v2_body) : max_v2_body_(max_v2_body) {}

ProxyResult ProxyParser::feed(std::string_view in) {
  ProxyResult r;
  if (state_ == State::Done) {
    r.status = ProxyResult::Done;
    return r;
  }
  if (state_ == State::Failed) {
    r.status = ProxyResult::Error;
    r.error = error_;
    return r;
  }
  for (std::size_t i = 0; i < in.size();) {
    const Step s = step(in[i++]);
    if (s == Step::More) continue;
    r.consumed = i;
    if (s == Step::Done) {
      state_ = State::Done;
      header_.length = buf_.size();
      buf_.clear();
      buf_.shrink_to_fit();
      r.status = ProxyResult::Done;
    } else {
      r.status = ProxyResult::Error;
      r.error = error_;
    }
    return r;
  }
  r.consumed = in.size();
  return r;
}

ProxyParser::Step ProxyParser::fail(ProxyError e) {
  error_ = e;
  state_ = State::Failed;
  header_ = ProxyHeader{};
  buf_.clear();
  return Step::Error;
}

ProxyParser::Step ProxyParser::step(char c) {
  const std::size_t pos = buf_.size();
  buf_.push_back(c);
  if (state_ == State::Start) {
    if (c == kV1Signature[0]) {
      header_.version = 1;
      state_ = State::V1Signature;
      return Step::More;
    }
    if (c == kV2Signature[0]) {
      header_.version = 2;
      state_ = State::V2Signature;
      return Step::More;
    }
    return fail(ProxyError::NotProxy);
  }
  return header_.version == 1 ? step_v1(c, pos) : step_v2(c, pos);
}

// ---------------------------------------------------------------------------------------
// Version 1

ProxyParser::Step ProxyParser::step_v1(char c, std::size_t pos) {
  // The CR must come by byte 106 so that the LF is at most byte 107.
  if (pos + 2 >= kProxyV1MaxLength && state_ != State::V1LF && c != '\r') {
    return fail(ProxyError::V1TooLong);
  }
  switch (state_) {
    case State::V1Signature:
      if (c != kV1Signature[pos]) return fail(ProxyError::NotProxy);
      if (pos + 1 == kV1Signature.size()) {
        state_ = State::V1Protocol;
        field_start_ = buf_.size();
      }
      return Step::More;

    case State::V1Protocol: {
      const std::string_view token = std::string_view(buf_).substr(field_start_, pos - field_start_);
      if (c != ' ' && c != '\r') {
        if (!is_protocol_prefix(std::string_view(buf_).substr(field_start_))) {
          return fail(ProxyError::V1BadSyntax);
        }
        return Step::More;
      }
      header_.command = ProxyHeader::Command::Proxy;
      if (token == "UNKNOWN") {
        header_.family = ProxyHeader::Family::Unspec;
        state_ = c == ' ' ? State::V1Unknown : State::V1LF;
        return Step::More;
      }
      if (c != ' ' || (token != "TCP4" && token != "TCP6")) return fail(ProxyError::V1BadSyntax);
      header_.family = token == "TCP4" ? ProxyHeader::Family::Tcp4 : ProxyHeader::Family::Tcp6;
      state_ = State::V1Field;
      field_ = 0;
      field_start_ = buf_.size();
      port_ = 0;
      return Step::More;
    }

    case State::V1Unknown:
      if (c == '\r') state_ = State::V1LF;
      else if (c == '\n') return fail(ProxyError::V1BadSyntax);
      return Step::More;

    case State::V1Field: {
      if (c == ' ' || c == '\r') return end_v1_field(c, pos);
      if (c == '\n') return fail(ProxyError::V1BadSyntax);
      const std::size_t len = pos - field_start_;  // characters before this one
      if (field_ < 2) {
        const bool v4 = header_.family == ProxyHeader::Family::Tcp4;
        const bool ok = v4 ? (is_digit(c) || c == '.') : (is_hex(c) || c == ':' || c == '.');
        if (!ok || len >= (v4 ? kV1MaxV4 : kV1MaxV6)) return fail(ProxyError::V1BadAddress);
        return Step::More;
      }
      if (!is_digit(c) || (len == 1 && buf_[field_start_] == '0')) {
        return fail(ProxyError::V1BadPort);
      }
      port_ = port_ * 10 + static_cast<std::uint32_t>(c - '0');
      if (port_ > 65535) return fail(ProxyError::V1BadPort);
      return Step::More;
    }

    case State::V1LF:
      if (c != '\n') return fail(ProxyError::V1BadSyntax);
      return Step::Done;

    default:
      break;
  }
  return fail(ProxyError::V1BadSyntax);  // not reached
}

ProxyParser::Step ProxyParser::end_v1_field(char c, std::size_t pos) {
  const std::string_view text = std::string_view(buf_).substr(field_start_, pos - field_start_);
  if (text.empty()) return fail(ProxyError::V1BadSyntax);  // doubled space, missing field
  if ((c == '\r') != (field_ == 3)) return fail(ProxyError::V1BadSyntax);  // too few / many
  ProxyEndpoint* e = (field_ == 0 || field_ == 2) ? &header_.source : &header_.destination;
  const bool v4 = header_.family == ProxyHeader::Family::Tcp4;
  if (field_ < 2) {
    const std::string z(text);  // inet_pton needs a terminated string
    unsigned char addr[sizeof(in6_addr)];
    if (inet_pton(v4 ? AF_INET : AF_INET6, z.c_str(), addr) != 1) {
      return fail(ProxyError::V1BadAddress);
    }
    set_inet(e, v4 ? AF_INET : AF_INET6, addr, 0);
  } else {
    // Ports follow both addresses; rebuild the endpoint with its port.
    const auto port = static_cast<std::uint16_t>(port_);
    unsigned char addr[sizeof(in6_addr)];
    if (v4) {
      std::memcpy(addr, &reinterpret_cast<const sockaddr_in*>(&e->addr)->sin_addr, sizeof(in_addr));
    } else {
      std::memcpy(addr, &reinterpret_cast<const sockaddr_in6*>(&e->addr)->sin6_addr, sizeof(in6_addr));
    }
    set_inet(e, v4 ? AF_INET : AF_INET6, addr, port);
  }
  if (c == '\r') {
    state_ = State::V1LF;
  } else {
    ++field_;
    field_start_ = buf_.size();
    port_ = 0;
  }
  return Step::More;
}

// ---------------------------------------------------------------------------------------
// Version 2

ProxyParser::Step ProxyParser::step_v2(char c, std::size_t pos) {
  const auto u = static_cast<unsigned char>(c);
  switch (state_) {
    case State::V2Signature:
      if (c != kV2Signature[pos]) return fail(ProxyError::NotProxy);
      if (pos + 1 == kV2Signature.size()) state_ = State::V2Fixed;
      return Step::More;

    case State::V2Fixed:
      if (pos == 12) {
        if ((u >> 4) != 2) return fail(ProxyError::V2BadVersion);
        const unsigned command = u & 0x0f;
        if (command > 1) return fail(ProxyError::V2BadCommand);
        header_.command = command == 0 ? ProxyHeader::Command::Local : ProxyHeader::Command::Proxy;
        return Step::More;
      }
      if (pos == 13) {
        if (header_.command == ProxyHeader::Command::Local) return Step::More;  // ignored
        const unsigned family = u >> 4;
        const unsigned transport = u & 0x0f;
        if (family > 3 || transport > 2) return fail(ProxyError::V2BadFamily);
        if (transport == 2) return fail(ProxyError::V2Datagram);
        if (family == 0) return Step::More;  // AF_UNSPEC: no addresses
        if (transport != 1) return fail(ProxyError::V2BadFamily);
        static constexpr ProxyHeader::Family kFamilies[] = {
            ProxyHeader::Family::Unspec, ProxyHeader::Family::Tcp4, ProxyHeader::Family::Tcp6,
            ProxyHeader::Family::Unix};
        static constexpr std::size_t kAddressLengths[] = {0, 12, 36, 216};
        header_.family = kFamilies[family];
        address_length_ = kAddressLengths[family];
        return Step::More;
      }
      if (pos == 14) return Step::More;
      body_length_ = be16(buf_, 14);
      if (body_length_ > max_v2_body_) return fail(ProxyError::V2TooLong);
      if (body_length_ < address_length_) return fail(ProxyError::V2ShortAddress);
      skip_body_ = header_.command == ProxyHeader::Command::Local ||
                   header_.family == ProxyHeader::Family::Unspec;
      tlv_pos_ = address_length_;
      state_ = State::V2Body;
      break;

    case State::V2Body:
      break;

    default:
      return fail(ProxyError::NotProxy);  // not reached
  }
  // In the body (or right after the length): check what can be checked already.
  if (!skip_body_ && scan_tlvs() == Step::Error) return Step::Error;
  if (buf_.size() < kProxyV2FixedLength + body_length_) return Step::More;
  finish_v2();
  return Step::Done;
}

ProxyParser::Step ProxyParser::scan_tlvs() {
  const std::string_view body = std::string_view(buf_).substr(kProxyV2FixedLength);
  while (tlv_pos_ < body_length_) {
    const std::size_t remaining = body_length_ - tlv_pos_;
    if (remaining < 3) return fail(ProxyError::V2BadTlv);
    if (body.size() < tlv_pos_ + 3) return Step::More;
    const std::size_t length = be16(body, tlv_pos_ + 1);
    if (length > remaining - 3) return fail(ProxyError::V2BadTlv);
    if (body.size() < tlv_pos_ + 3 + length) return Step::More;
    if (!take_tlv(static_cast<std::uint8_t>(body[tlv_pos_]), body.substr(tlv_pos_ + 3, length))) {
      return fail(ProxyError::V2BadTlv);
    }
    tlv_pos_ += 3 + length;
  }
  return Step::More;
}

bool ProxyParser::take_tlv(std::uint8_t type, std::string_view value) {
  if (type == kTlvSsl) {
    // uint8 client flags, uint32 verify result, then sub-TLVs filling the rest.
    if (value.size() < 5) return false;
    bool client_ssl = (byte_at(value, 0) & kClientSsl) != 0;
    std::string version, cipher;
    for (std::size_t i = 5; i < value.size();) {
      if (value.size() - i < 3) return false;
      const std::size_t length = be16(value, i + 1);
      if (length > value.size() - i - 3) return false;
      const std::string_view sub = value.substr(i + 3, length);
      if (byte_at(value, i) == kSubTlvSslVersion) version = sub;
      if (byte_at(value, i) == kSubTlvSslCipher) cipher = sub;
      i += 3 + length;
    }
    header_.ssl = client_ssl;
    header_.ssl_version = std::move(version);
    header_.ssl_cipher = std::move(cipher);
  } else if (type == kTlvAuthority) {
    header_.authority = value;
  }
  header_.tlvs.push_back(ProxyTlv{type, std::string(value)});
  return true;
}

void ProxyParser::finish_v2() {
  if (skip_body_) {
    header_.family = ProxyHeader::Family::Unspec;
    return;
  }
  const std::string_view a = std::string_view(buf_).substr(kProxyV2FixedLength);
  switch (header_.family) {
    case ProxyHeader::Family::Tcp4:
      set_inet(&header_.source, AF_INET, a.data(), static_cast<std::uint16_t>(be16(a, 8)));
      set_inet(&header_.destination, AF_INET, a.data() + 4,
               static_cast<std::uint16_t>(be16(a, 10)));
      break;
    case ProxyHeader::Family::Tcp6:
      set_inet(&header_.source, AF_INET6, a.data(), static_cast<std::uint16_t>(be16(a, 32)));
      set_inet(&header_.destination, AF_INET6, a.data() + 16,
               static_cast<std::uint16_t>(be16(a, 34)));
      break;
    case ProxyHeader::Family::Unix:
      set_unix(&header_.source, a.substr(0, kUnixPathLength));
      set_unix(&header_.destination, a.substr(kUnixPathLength, kUnixPathLength));
      break;
    case ProxyHeader::Family::Unspec:
      break;
  }
}

}  // namespace sy
