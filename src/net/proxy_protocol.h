// HAProxy PROXY protocol header parser (version 1 text, version 2 binary): pure and
// resumable, no sockets, no logging.
//
// A listener configured for the PROXY protocol feeds the first bytes of each connection
// to a ProxyParser until it reports Done or Error. On Done the header is in header() and
// the result says how many of the bytes of that last feed() belonged to it: the bytes
// after them are the client's first protocol bytes and are left untouched. The parser
// never consumes a byte past the header and reports an error at the first byte that
// proves it, so it needs no more bytes than the header itself. The parser owns the header
// it builds; callers copy what they need.
#ifndef SWITCHYARD_NET_PROXY_PROTOCOL_H
#define SWITCHYARD_NET_PROXY_PROTOCOL_H

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

inline constexpr std::size_t kProxyV1MaxLength = 107;      // the longest v1 line, CRLF included
inline constexpr std::size_t kProxyV2FixedLength = 16;     // signature, ver/cmd, family, length
inline constexpr std::size_t kProxyV2DefaultMaxBody = 4096;  // default limit on v2's length field

enum class ProxyError {
  None,
  NotProxy,        // the bytes are neither "PROXY " nor the v2 signature
  V1TooLong,       // no CRLF within 107 bytes
  V1BadSyntax,     // unknown protocol, missing/extra fields or spaces, CR without LF, bare LF
  V1BadAddress,    // an address that is not a numeric address of the announced family
  V1BadPort,       // a port that is not 0..65535 in decimal without leading zeros or signs
  V2BadVersion,    // version nibble other than 2
  V2BadCommand,    // command nibble other than LOCAL (0) or PROXY (1)
  V2BadFamily,     // unknown address family or transport, or a family without STREAM
  V2Datagram,      // DGRAM transport: a proxied UDP flow is no mail session
  V2TooLong,       // length field above the parser's limit
  V2ShortAddress,  // length field too small for the addresses of the family
  V2BadTlv,        // a TLV that does not fit, or a malformed PP2_TYPE_SSL
};

const char* proxy_error_name(ProxyError e);  // "not a PROXY protocol header", ...

struct ProxyEndpoint {
  sockaddr_storage addr{};  // AF_INET, AF_INET6 or AF_UNIX; AF_UNSPEC without an address
  socklen_t addr_len = 0;   // 0 without an address
  std::string ip;           // "192.0.2.7", "2001:db8::7" (no brackets); Unix: the path,
                            // "@name" for an abstract socket
  std::uint16_t port = 0;   // host byte order; 0 for Unix
  std::string text;         // "192.0.2.7:1234", "[2001:db8::7]:1234", "unix:/path"
};

struct ProxyTlv {
  std::uint8_t type = 0;
  std::string value;
  bool operator==(const ProxyTlv&) const = default;
};

struct ProxyHeader {
  // LOCAL (v2 only): the proxy's own connection, e.g. a health check; keep the socket's
  // addresses. PROXY: a relayed connection.
  enum class Command { Local, Proxy };
  // Unspec: no usable address (v1 UNKNOWN, v2 AF_UNSPEC, or LOCAL): keep the socket's.
  enum class Family { Unspec, Tcp4, Tcp6, Unix };

  int version = 0;  // 1 or 2
  Command command = Command::Local;
  Family family = Family::Unspec;
  ProxyEndpoint source;       // the client
  ProxyEndpoint destination;  // the address the client connected to, on the proxy
  std::size_t length = 0;     // bytes of the header on the wire

  // Version 2 only. Every top-level TLV in order (for skipping, logging or later use),
  // and the ones the session may care about, decoded. Values are raw bytes: escape them
  // before logging. PP2_TYPE_CRC32C is kept but not verified.
  std::vector<ProxyTlv> tlvs;
  std::string authority;    // PP2_TYPE_AUTHORITY: host name the client asked for (SNI)
  bool ssl = false;         // PP2_TYPE_SSL with PP2_CLIENT_SSL: the client spoke TLS
  std::string ssl_version;  // PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"
  std::string ssl_cipher;   // PP2_SUBTYPE_SSL_CIPHER

  // True when source and destination hold addresses to use instead of the socket's.
  bool has_addresses() const { return command == Command::Proxy && family != Family::Unspec; }
};

const char* proxy_command_name(ProxyHeader::Command c);  // "LOCAL", "PROXY"
const char* proxy_family_name(ProxyHeader::Family f);    // "UNSPEC", "TCP4", "TCP6", "UNIX"

struct ProxyResult {
  enum Status {
    NeedMore,  // every byte given belongs to the header so far; feed more
    Done,      // header() is complete; `consumed` bytes of this feed() were its last ones
    Error,     // `error` says why; `consumed` runs through the byte that proved it
  };
  Status status = NeedMore;
  std::size_t consumed = 0;  // bytes of this feed() call used by the header
  ProxyError error = ProxyError::None;
};

class ProxyParser {
 public:
  // max_v2_body limits v2's length field (the bytes after the 16 fixed ones).
  explicit ProxyParser(std::size_t max_v2_body = kProxyV2DefaultMaxBody);

  // Parses the next bytes of the connection. Done and Error are final: later calls return
  // the same status and consume nothing.
  ProxyResult feed(std::string_view in);

  // Complete after Done; empty (a default ProxyHeader) after Error.
  const ProxyHeader& header() const { return header_; }

 private:
  enum class State : unsigned char {
    Start, V1Signature, V1Protocol, V1Unknown, V1Field, V1LF,
    V2Signature, V2Fixed, V2Body, Done, Failed,
  };
  enum class Step : unsigned char { More, Done, Error };

  Step step(char c);
  Step step_v1(char c, std::size_t pos);
  Step step_v2(char c, std::size_t pos);
  Step end_v1_field(char c, std::size_t pos);
  Step scan_tlvs();
  bool take_tlv(std::uint8_t type, std::string_view value);
  void finish_v2();
  Step fail(ProxyError e);

  std::size_t max_v2_body_;
  State state_ = State::Start;
  ProxyError error_ = ProxyError::None;
  ProxyHeader header_;
  std::string buf_;                // the header bytes seen so far
  std::size_t field_start_ = 0;    // v1: offset in buf_ of the token being read
  unsigned field_ = 0;             // v1: 0 source, 1 destination, 2 source port, 3 dest port
  std::uint32_t port_ = 0;         // v1: value of the port being read
  std::size_t body_length_ = 0;    // v2: the length field
  std::size_t address_length_ = 0; // v2: bytes of the address block for the family
  std::size_t tlv_pos_ = 0;        // v2: offset in the body of the next TLV to check
  bool skip_body_ = false;         // v2: LOCAL or UNSPEC: the body is not interpreted
};

}  // namespace sy

#endif
