// Fuzz target for the PROXY protocol header parser.
//
// Input layout: byte 0 selects the v2 length limit; the rest is the connection's first
// bytes (a header and whatever follows it). The stream is fed whole, one byte at a time
// and in pieces whose sizes come from the input; the invariants below are checked and any
// violation traps.
//
// Invariants:
//  1. feed() never reports more consumed bytes than it was given; NeedMore consumes all
//     of it; Done and Error consume at least one byte and are final (a later feed()
//     repeats the status and consumes nothing).
//  2. The outcome -- status, stream offset, error, and the header -- is the same for
//     every way of splitting the stream.
//  3. Done: header().length is the stream offset; a v1 header starts with "PROXY ", ends
//     with CRLF and is at most 107 bytes; a v2 header starts with the signature and is
//     16 bytes plus its length field, which is within the limit.
//  4. The fewest bytes: the stream cut one byte before the offset of Done or Error gives
//     NeedMore (no decision was possible earlier).
//  5. Addresses are consistent: sockaddr family and length fit the header's family, the
//     ip text is inet_ntop of the sockaddr, the port matches, text is "ip:port",
//     "[ip]:port" or "unix:path"; without addresses the endpoints are empty.
//  6. A v2 PROXY header with addresses, written back from the parsed fields and TLVs,
//     gives the very same bytes; a v1 TCP header written back canonically parses to the
//     same addresses.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "net/proxy_protocol.h"
#include "splits.h"

namespace {

using sy::ProxyEndpoint;
using sy::ProxyError;
using sy::ProxyHeader;
using sy::ProxyParser;
using sy::ProxyResult;

#define CHECK(cond)                     \
  do {                                  \
    if (!(cond)) __builtin_trap();      \
  } while (0)

const std::string_view kSig("\r\n\r\n\0\r\nQUIT\n", 12);

std::size_t limit_for(std::uint8_t sel) {
  switch (sel & 3) {
    case 0: return sy::kProxyV2DefaultMaxBody;
    case 1: return 0;
    case 2: return 40;
    default: return 300;
  }
}

bool same_endpoint(const ProxyEndpoint& a, const ProxyEndpoint& b) {
  return a.addr_len == b.addr_len && std::memcmp(&a.addr, &b.addr, sizeof a.addr) == 0 &&
         a.ip == b.ip && a.port == b.port && a.text == b.text;
}

bool same_header(const ProxyHeader& a, const ProxyHeader& b) {
  return a.version == b.version && a.command == b.command && a.family == b.family &&
         same_endpoint(a.source, b.source) && same_endpoint(a.destination, b.destination) &&
         a.length == b.length && a.tlvs == b.tlvs && a.authority == b.authority &&
         a.ssl == b.ssl && a.ssl_version == b.ssl_version && a.ssl_cipher == b.ssl_cipher;
}

struct Outcome {
  ProxyResult::Status status = ProxyResult::NeedMore;
  std::size_t offset = 0;  // stream bytes consumed
  ProxyError error = ProxyError::None;
  ProxyHeader header;
};

bool same_outcome(const Outcome& a, const Outcome& b) {
  return a.status == b.status && a.offset == b.offset && a.error == b.error &&
         same_header(a.header, b.header);
}

// Feeds `data` in pieces of the given sizes (cycled; 0 = an empty feed; none = whole).
Outcome run(std::string_view data, const std::vector<std::size_t>& sizes, std::size_t limit) {
  ProxyParser p(limit);
  Outcome out;
  std::size_t pos = 0;
  std::size_t piece = 0;
  while (pos < data.size() || piece == 0) {
    std::size_t n = sizes.empty() ? data.size() : sizes[piece % sizes.size()];
    ++piece;
    if (n > data.size() - pos) n = data.size() - pos;
    const ProxyResult r = p.feed(data.substr(pos, n));
    CHECK(r.consumed <= n);
    pos += n;
    out.offset += r.consumed;
    if (r.status == ProxyResult::NeedMore) {
      CHECK(r.consumed == n);
      CHECK(r.error == ProxyError::None);
      continue;
    }
    CHECK(r.consumed > 0);
    CHECK((r.status == ProxyResult::Error) == (r.error != ProxyError::None));
    out.status = r.status;
    out.error = r.error;
    out.header = p.header();
    const ProxyResult again = p.feed(data.substr(pos));
    CHECK(again.status == r.status && again.consumed == 0 && again.error == r.error);
    break;
  }
  return out;
}

void check_endpoint(const ProxyEndpoint& e, ProxyHeader::Family family) {
  char text[INET6_ADDRSTRLEN] = "";
  switch (family) {
    case ProxyHeader::Family::Tcp4: {
      CHECK(e.addr.ss_family == AF_INET && e.addr_len == sizeof(sockaddr_in));
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&e.addr);
      CHECK(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text) != nullptr);
      CHECK(e.ip == text && ntohs(sin->sin_port) == e.port);
      CHECK(e.text == e.ip + ":" + std::to_string(e.port));
      break;
    }
    case ProxyHeader::Family::Tcp6: {
      CHECK(e.addr.ss_family == AF_INET6 && e.addr_len == sizeof(sockaddr_in6));
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&e.addr);
      CHECK(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text) != nullptr);
      CHECK(e.ip == text && ntohs(sin6->sin6_port) == e.port);
      CHECK(e.text == "[" + e.ip + "]:" + std::to_string(e.port));
      break;
    }
    case ProxyHeader::Family::Unix:
      CHECK(e.addr.ss_family == AF_UNIX && e.addr_len == sizeof(sockaddr_un));
      CHECK(e.port == 0 && e.text == "unix:" + e.ip);
      CHECK(e.ip.find('\0') == std::string::npos);
      break;
    case ProxyHeader::Family::Unspec:
      CHECK(e.addr.ss_family == AF_UNSPEC && e.addr_len == 0);
      CHECK(e.ip.empty() && e.port == 0 && e.text.empty());
      break;
  }
}

std::string be16(unsigned v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }

std::string encode_v2(const ProxyHeader& h) {
  std::string body;
  unsigned family = 0;
  for (const ProxyEndpoint* e : {&h.source, &h.destination}) {
    switch (h.family) {
      case ProxyHeader::Family::Tcp4:
        family = 0x11;
        body.append(reinterpret_cast<const char*>(
                        &reinterpret_cast<const sockaddr_in*>(&e->addr)->sin_addr), 4);
        break;
      case ProxyHeader::Family::Tcp6:
        family = 0x21;
        body.append(reinterpret_cast<const char*>(
                        &reinterpret_cast<const sockaddr_in6*>(&e->addr)->sin6_addr), 16);
        break;
      case ProxyHeader::Family::Unix:
        family = 0x31;
        body.append(reinterpret_cast<const sockaddr_un*>(&e->addr)->sun_path, 108);
        break;
      case ProxyHeader::Family::Unspec: break;
    }
  }
  if (h.family != ProxyHeader::Family::Unix) body += be16(h.source.port) + be16(h.destination.port);
  for (const sy::ProxyTlv& t : h.tlvs) body += static_cast<char>(t.type) + be16(t.value.size()) + t.value;
  return std::string(kSig) + '\x21' + static_cast<char>(family) + be16(body.size()) + body;
}

void check_done(std::string_view data, const Outcome& o, std::size_t limit) {
  const ProxyHeader& h = o.header;
  CHECK(h.length == o.offset && o.offset <= data.size());
  const std::string_view bytes = data.substr(0, o.offset);
  if (h.version == 1) {
    CHECK(bytes.size() <= sy::kProxyV1MaxLength && bytes.substr(0, 6) == "PROXY ");
    CHECK(bytes.substr(bytes.size() - 2) == "\r\n");
    CHECK(h.command == ProxyHeader::Command::Proxy && h.tlvs.empty());
    CHECK(h.family != ProxyHeader::Family::Unix);
  } else {
    CHECK(h.version == 2 && bytes.size() >= sy::kProxyV2FixedLength && bytes.substr(0, 12) == kSig);
    const std::size_t length =
        static_cast<unsigned char>(bytes[14]) << 8 | static_cast<unsigned char>(bytes[15]);
    CHECK(length <= limit && bytes.size() == sy::kProxyV2FixedLength + length);
    if (h.command == ProxyHeader::Command::Local) CHECK(h.family == ProxyHeader::Family::Unspec);
  }
  const ProxyHeader::Family f = h.has_addresses() ? h.family : ProxyHeader::Family::Unspec;
  check_endpoint(h.source, f);
  check_endpoint(h.destination, f);
  if (!h.authority.empty()) {
    bool found = false;
    for (const sy::ProxyTlv& t : h.tlvs) found = found || (t.type == 0x02 && t.value == h.authority);
    CHECK(found);
  }

  // Round trips.
  if (h.version == 2 && h.has_addresses()) {
    CHECK(encode_v2(h) == bytes);
  } else if (h.version == 1 && h.has_addresses()) {
    const std::string line = std::string("PROXY ") + sy::proxy_family_name(h.family) + " " +
                             h.source.ip + " " + h.destination.ip + " " +
                             std::to_string(h.source.port) + " " +
                             std::to_string(h.destination.port) + "\r\n";
    if (line.size() <= sy::kProxyV1MaxLength) {  // inet_ntop may write a longer form
      ProxyParser again;
      const ProxyResult r = again.feed(line);
      CHECK(r.status == ProxyResult::Done && r.consumed == line.size());
      CHECK(same_endpoint(again.header().source, h.source));
      CHECK(same_endpoint(again.header().destination, h.destination));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t limit = limit_for(data[0]);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  const Outcome whole = run(stream, {}, limit);
  switch (whole.status) {
    case ProxyResult::NeedMore:
      CHECK(whole.offset == stream.size());
      break;
    case ProxyResult::Done:
      check_done(stream, whole, limit);
      break;
    case ProxyResult::Error: {
      const ProxyHeader empty;
      CHECK(whole.offset >= 1 && same_header(whole.header, empty));
      break;
    }
  }
  if (whole.status != ProxyResult::NeedMore) {
    const Outcome shorter = run(stream.substr(0, whole.offset - 1), {}, limit);
    CHECK(shorter.status == ProxyResult::NeedMore && shorter.offset == whole.offset - 1);
  }

  const std::vector<std::size_t> sizes = sy::fuzz::derived_sizes(stream, 19);
  CHECK(same_outcome(run(stream, sizes, limit), whole));
  CHECK(same_outcome(run(stream, {1}, limit), whole));
  if (stream.size() >= 2) {
    const std::size_t half = stream.size() / 2;
    CHECK(same_outcome(run(stream, {half, stream.size() - half}, limit), whole));
  }
  return 0;
}
