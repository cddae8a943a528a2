// Unit tests for the PROXY protocol header parser.
//
// Every case is a connection's first bytes (a header, usually followed by the client's
// first protocol bytes) and the one outcome it must produce: the header, the stream
// offset of an error, or "need more". Each case is run fed whole, one byte at a time and
// in several seeded random splits, like a session reading a socket: after Done, whatever
// the parser did not consume must be exactly the bytes after the header.
#include "net/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include "splits.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace sy {
namespace {

using namespace std::string_literals;

using sy::test::Escape;

std::string Describe(const ProxyHeader& h) {
  std::string out = "v" + std::to_string(h.version) + " " + proxy_command_name(h.command) + " " +
                    proxy_family_name(h.family);
  if (h.has_addresses()) out += " " + Escape(h.source.text) + " -> " + Escape(h.destination.text);
  if (!h.tlvs.empty()) {
    out += " tlvs=";
    for (std::size_t i = 0; i < h.tlvs.size(); ++i) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "%s%02x:%zu", i == 0 ? "" : ",", h.tlvs[i].type,
                    h.tlvs[i].value.size());
      out += buf;
    }
  }
  if (!h.authority.empty()) out += " authority=" + Escape(h.authority);
  if (h.ssl) out += " ssl";
  if (!h.ssl_version.empty()) out += " ssl_version=" + Escape(h.ssl_version);
  if (!h.ssl_cipher.empty()) out += " ssl_cipher=" + Escape(h.ssl_cipher);
  out += " len=" + std::to_string(h.length);
  return out;
}

// Expected outcomes.
std::string Done(const std::string& header, const std::string& rest = "") {
  return "DONE " + header + " rest=" + Escape(rest);
}
std::string Err(ProxyError e, std::size_t at) {
  return "ERROR " + std::string(proxy_error_name(e)) + " at=" + std::to_string(at);
}
std::string NeedMore(std::size_t consumed) { return "NEED MORE consumed=" + std::to_string(consumed); }

using test::Chunks;

std::string Drive(const Chunks& chunks, std::size_t max_body) {
  ProxyParser p(max_body);
  std::size_t offset = 0;  // stream bytes the parser consumed
  std::string rest;
  std::string outcome;
  for (const std::string& chunk : chunks) {
    if (!outcome.empty()) {
      rest += chunk;
      continue;
    }
    const ProxyResult r = p.feed(chunk);
    EXPECT_LE(r.consumed, chunk.size());
    offset += r.consumed;
    switch (r.status) {
      case ProxyResult::NeedMore:
        EXPECT_EQ(r.consumed, chunk.size()) << "NeedMore must consume everything";
        EXPECT_EQ(r.error, ProxyError::None);
        break;
      case ProxyResult::Done:
        EXPECT_GT(r.consumed, 0u);
        EXPECT_EQ(r.error, ProxyError::None);
        EXPECT_EQ(p.header().length, offset) << "the header is exactly the bytes consumed";
        outcome = "DONE " + Describe(p.header());
        rest = chunk.substr(r.consumed);
        break;
      case ProxyResult::Error:
        EXPECT_GT(r.consumed, 0u);
        EXPECT_NE(r.error, ProxyError::None);
        outcome = Err(r.error, offset);
        break;
    }
  }
  if (outcome.empty()) return NeedMore(offset);
  if (outcome.rfind("DONE ", 0) == 0) return outcome + " rest=" + Escape(rest);
  return outcome;
}

void Expect(const std::string& input, const std::string& expected,
            std::size_t max_body = kProxyV2DefaultMaxBody) {
  // Small random pieces here run up to 8 bytes.
  test::for_each_split(
      input, [&](const Chunks& chunks) { EXPECT_EQ(Drive(chunks, max_body), expected); }, 9);
}

// ---------------------------------------------------------------------------------------
// Builders for v2 headers.

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string Be16(unsigned v) {
  return {static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}

std::string V2(unsigned ver_cmd, unsigned family, const std::string& body) {
  return kSig + static_cast<char>(ver_cmd) + static_cast<char>(family) + Be16(body.size()) + body;
}

// The header as announced, with an explicit length field (for truncation tests).
std::string V2Len(unsigned ver_cmd, unsigned family, unsigned length, const std::string& body) {
  return kSig + static_cast<char>(ver_cmd) + static_cast<char>(family) + Be16(length) + body;
}

std::string Ip4(const char* text) {
  in_addr a{};
  EXPECT_EQ(inet_pton(AF_INET, text, &a), 1);
  return std::string(reinterpret_cast<const char*>(&a), sizeof a);
}

std::string Ip6(const char* text) {
  in6_addr a{};
  EXPECT_EQ(inet_pton(AF_INET6, text, &a), 1);
  return std::string(reinterpret_cast<const char*>(&a), sizeof a);
}

std::string UnixPath(const std::string& path) {
  std::string p = path;
  p.resize(108, '\0');
  return p;
}

std::string Tlv(unsigned type, const std::string& value) {
  return static_cast<char>(type) + Be16(value.size()) + value;
}

const std::string kTcp4Block = Ip4("192.0.2.1") + Ip4("198.51.100.2") + Be16(56324) + Be16(143);
const std::string kClient = "a1 CAPABILITY\r\n";

// ---------------------------------------------------------------------------------------
// Version 1

TEST(ProxyProtocol, V1Tcp4) {
  Expect("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\n" + kClient,
         Done("v1 PROXY TCP4 192.0.2.1:56324 -> 198.51.100.2:143 len=45", kClient));
}

TEST(ProxyProtocol, V1Tcp6IsNormalised) {
  Expect("PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 65535 0\r\nUSER x\r\n",
         Done("v1 PROXY TCP6 [2001:db8::1]:65535 -> [2001:db8::2]:0 len=53", "USER x\r\n"));
}

TEST(ProxyProtocol, V1Tcp6WithEmbeddedIpv4) {
  Expect("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
         Done("v1 PROXY TCP6 [::ffff:192.0.2.1]:1 -> [::1]:2 len=37"));
}

TEST(ProxyProtocol, V1UnknownShortForm) {
  Expect("PROXY UNKNOWN\r\n" + kClient, Done("v1 PROXY UNSPEC len=15", kClient));
}

TEST(ProxyProtocol, V1UnknownIgnoresTheRestOfTheLine) {
  Expect("PROXY UNKNOWN ffff::1 not-an-address \x01\xff 99999\r\nCAPA\r\n",
         Done("v1 PROXY UNSPEC len=47", "CAPA\r\n"));
}

TEST(ProxyProtocol, V1UnknownAtMaximumLength) {
  const std::string line107 = "PROXY UNKNOWN " + std::string(91, 'x') + "\r\n";
  ASSERT_EQ(line107.size(), 107u);
  Expect(line107 + "CAPA\r\n", Done("v1 PROXY UNSPEC len=107", "CAPA\r\n"));
  // One byte more: the CR would be byte 107, so the 106th byte already proves it.
  Expect("PROXY UNKNOWN " + std::string(92, 'x') + "\r\n", Err(ProxyError::V1TooLong, 106));
}

TEST(ProxyProtocol, V1Tcp6AtMaximumLength) {
  const std::string src = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
  const std::string line = "PROXY TCP6 " + src + " ffff:ffff:ffff:ffff:ffff:ffff:ffff:f 65535 65535\r\n";
  ASSERT_EQ(line.size(), 107u);
  Expect(line, Done("v1 PROXY TCP6 [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535 -> "
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:f]:65535 len=107"));
  Expect("PROXY TCP6 " + src + " ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff 65535 65535\r\n",
         Err(ProxyError::V1TooLong, 106));
}

TEST(ProxyProtocol, V1NeedsMoreUntilTheLf) {
  Expect("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r", NeedMore(44));
  Expect("PROXY TCP4 192.0.2.1", NeedMore(20));
  Expect("PROXY", NeedMore(5));
  Expect("", NeedMore(0));
}

TEST(ProxyProtocol, V1BadAddresses) {
  Expect("PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n", Err(ProxyError::V1BadAddress, 23));
  Expect("PROXY TCP4 192.0.2.1 198.51.100 1 2\r\n", Err(ProxyError::V1BadAddress, 32));
  Expect("PROXY TCP4 1.2.3.4.5 6.7.8.9 1 2\r\n", Err(ProxyError::V1BadAddress, 21));
  Expect("PROXY TCP4 01.2.3.4 6.7.8.9 1 2\r\n", Err(ProxyError::V1BadAddress, 20));
  Expect("PROXY TCP4 ::1 ::1 1 2\r\n", Err(ProxyError::V1BadAddress, 12));
  Expect("PROXY TCP4 1111111111111111 6.7.8.9 1 2\r\n", Err(ProxyError::V1BadAddress, 27));
  Expect("PROXY TCP6 192.0.2.1 ::1 1 2\r\n", Err(ProxyError::V1BadAddress, 21));
  Expect("PROXY TCP6 ::1 1::2::3 1 2\r\n", Err(ProxyError::V1BadAddress, 23));
  Expect("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", Err(ProxyError::V1BadAddress, 19));
  Expect("PROXY TCP6 [::1] ::1 1 2\r\n", Err(ProxyError::V1BadAddress, 12));
  Expect("PROXY TCP4 a.b.c.d 6.7.8.9 1 2\r\n", Err(ProxyError::V1BadAddress, 12));
}

TEST(ProxyProtocol, V1BadPorts) {
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Err(ProxyError::V1BadPort, 32));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1 655350\r\n", Err(ProxyError::V1BadPort, 35));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", Err(ProxyError::V1BadPort, 29));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", Err(ProxyError::V1BadPort, 29));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", Err(ProxyError::V1BadPort, 28));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", Err(ProxyError::V1BadPort, 30));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", Err(ProxyError::V1BadPort, 31));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n", Done("v1 PROXY TCP4 1.2.3.4:0 -> 5.6.7.8:0 len=32"));
}

TEST(ProxyProtocol, V1MissingCrlf) {
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nCAPA\r\n", Err(ProxyError::V1BadSyntax, 31));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rCAPA\r\n", Err(ProxyError::V1BadSyntax, 32));
  Expect("PROXY UNKNOWN\nCAPA\r\n", Err(ProxyError::V1BadSyntax, 14));
  Expect("PROXY UNKNOWN x\ny\r\n", Err(ProxyError::V1BadSyntax, 16));
  Expect("PROXY TCP4 1.2.3.4\n", Err(ProxyError::V1BadSyntax, 19));
}

TEST(ProxyProtocol, V1ExtraOrMissingSpacesAndFields) {
  Expect("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Err(ProxyError::V1BadSyntax, 7));
  Expect("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", Err(ProxyError::V1BadSyntax, 12));
  Expect("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", Err(ProxyError::V1BadSyntax, 20));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", Err(ProxyError::V1BadSyntax, 30));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Err(ProxyError::V1BadSyntax, 31));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Err(ProxyError::V1BadSyntax, 31));
  Expect("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Err(ProxyError::V1BadSyntax, 29));
  Expect("PROXY TCP4 1.2.3.4\r\n", Err(ProxyError::V1BadSyntax, 19));
  Expect("PROXY TCP4\r\n", Err(ProxyError::V1BadSyntax, 11));
  Expect("PROXY \r\n", Err(ProxyError::V1BadSyntax, 7));
  Expect("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", Err(ProxyError::V1BadSyntax, 11));
}

TEST(ProxyProtocol, V1UnknownProtocolNames) {
  Expect("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", Err(ProxyError::V1BadSyntax, 10));
  Expect("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", Err(ProxyError::V1BadSyntax, 7));
  Expect("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Err(ProxyError::V1BadSyntax, 8));
  Expect("PROXY UNKNOWNX\r\n", Err(ProxyError::V1BadSyntax, 14));
  Expect("PROXY UNKNOW\r\n", Err(ProxyError::V1BadSyntax, 13));
}

TEST(ProxyProtocol, NotAProxyHeader) {
  Expect("a1 CAPABILITY\r\n", Err(ProxyError::NotProxy, 1));
  Expect("CAPA\r\n", Err(ProxyError::NotProxy, 1));
  Expect("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Err(ProxyError::NotProxy, 1));
  Expect("PROXX TCP4\r\n", Err(ProxyError::NotProxy, 5));
  Expect("PROXY\r\n", Err(ProxyError::NotProxy, 6));
  Expect("\x16\x03\x01\x02\x00", Err(ProxyError::NotProxy, 1));  // a TLS ClientHello
  Expect("\r\nQUIT\r\n", Err(ProxyError::NotProxy, 3));
}

// ---------------------------------------------------------------------------------------
// Version 2

TEST(ProxyProtocol, V2ProxyTcp4) {
  Expect(V2(0x21, 0x11, kTcp4Block) + kClient,
         Done("v2 PROXY TCP4 192.0.2.1:56324 -> 198.51.100.2:143 len=28", kClient));
}

TEST(ProxyProtocol, V2ProxyTcp6) {
  const std::string block = Ip6("2001:db8::1") + Ip6("2001:db8:0:0:1::2") + Be16(1) + Be16(995);
  Expect(V2(0x21, 0x21, block) + "USER x\r\n",
         Done("v2 PROXY TCP6 [2001:db8::1]:1 -> [2001:db8::1:0:0:2]:995 len=52", "USER x\r\n"));
}

TEST(ProxyProtocol, V2ProxyUnix) {
  const std::string block = UnixPath("/run/haproxy/client.sock") + UnixPath("/run/switchyard.sock");
  Expect(V2(0x21, 0x31, block) + kClient,
         Done("v2 PROXY UNIX unix:/run/haproxy/client.sock -> unix:/run/switchyard.sock len=232",
              kClient));
}

TEST(ProxyProtocol, V2ProxyUnixAbstract) {
  const std::string block = UnixPath("\0haproxy"s) + UnixPath("/s");
  Expect(V2(0x21, 0x31, block), Done("v2 PROXY UNIX unix:@haproxy -> unix:/s len=232"));
}

TEST(ProxyProtocol, V2Local) {
  Expect(V2(0x20, 0x00, "") + kClient, Done("v2 LOCAL UNSPEC len=16", kClient));
}

TEST(ProxyProtocol, V2LocalIgnoresFamilyAndBody) {
  // The specification says to discard a LOCAL header's body, family byte included.
  Expect(V2(0x20, 0x12, kTcp4Block + "\x01\xff") + kClient, Done("v2 LOCAL UNSPEC len=30", kClient));
  Expect(V2(0x20, 0xff, "\x20") + kClient, Done("v2 LOCAL UNSPEC len=17", kClient));
}

TEST(ProxyProtocol, V2ProxyUnspecKeepsTheSocketAddresses) {
  Expect(V2(0x21, 0x00, "") + kClient, Done("v2 PROXY UNSPEC len=16", kClient));
  Expect(V2(0x21, 0x01, "junk") + kClient, Done("v2 PROXY UNSPEC len=20", kClient));
}

TEST(ProxyProtocol, V2Tlvs) {
  const std::string ssl = "\x07"s + "\0\0\0\0"s + Tlv(0x21, "TLSv1.3") +
                          Tlv(0x23, "TLS_AES_256_GCM_SHA384") + Tlv(0x22, "client");
  const std::string tlvs = Tlv(0x02, "imap.example.com") + Tlv(0x04, std::string(3, '\0')) +
                           Tlv(0x20, ssl) + Tlv(0x05, "id-1") + Tlv(0xe0, "");
  Expect(V2(0x21, 0x11, kTcp4Block + tlvs) + kClient,
         Done("v2 PROXY TCP4 192.0.2.1:56324 -> 198.51.100.2:143 tlvs=02:16,04:3,20:49,05:4,e0:0"
              " authority=imap.example.com ssl ssl_version=TLSv1.3"
              " ssl_cipher=TLS_AES_256_GCM_SHA384 len=115",
              kClient));
}

TEST(ProxyProtocol, V2SslTlvWithoutClientSslFlag) {
  const std::string ssl = "\x00"s + "\0\0\0\1"s;
  Expect(V2(0x21, 0x11, kTcp4Block + Tlv(0x20, ssl)),
         Done("v2 PROXY TCP4 192.0.2.1:56324 -> 198.51.100.2:143 tlvs=20:5 len=36"));
}

TEST(ProxyProtocol, V2TlvOverrunningTheLengthIsErrorAtItsHeader) {
  // Body: 12 address bytes, then a TLV announcing 10 bytes where only 5 remain.
  const std::string body = kTcp4Block + "\x02" + Be16(10) + "abcde";
  Expect(V2Len(0x21, 0x11, body.size(), body), Err(ProxyError::V2BadTlv, 16 + 15));
}

TEST(ProxyProtocol, V2TlvRemnantIsErrorAsSoonAsTheLengthIsKnown) {
  // Two bytes after the addresses cannot hold a TLV header: known from the length field.
  Expect(V2(0x21, 0x11, kTcp4Block + "\x04\x00"), Err(ProxyError::V2BadTlv, 16));
  // Likewise right after a TLV that leaves one byte.
  Expect(V2(0x21, 0x11, kTcp4Block + Tlv(0x04, "x") + "\x04"), Err(ProxyError::V2BadTlv, 16 + 16));
}

TEST(ProxyProtocol, V2MalformedSslTlv) {
  Expect(V2(0x21, 0x11, kTcp4Block + Tlv(0x20, "\x01\0\0\0"s)), Err(ProxyError::V2BadTlv, 35));
  const std::string bad_sub = "\x01"s + "\0\0\0\0"s + "\x21" + Be16(9) + "TLSv1";
  Expect(V2(0x21, 0x11, kTcp4Block + Tlv(0x20, bad_sub)),
         Err(ProxyError::V2BadTlv, 16 + 12 + 3 + bad_sub.size()));
  const std::string remnant = "\x01"s + "\0\0\0\0"s + "\x21\x00"s;
  Expect(V2(0x21, 0x11, kTcp4Block + Tlv(0x20, remnant)),
         Err(ProxyError::V2BadTlv, 16 + 12 + 3 + remnant.size()));
}

TEST(ProxyProtocol, V2Truncated) {
  const std::string full = V2(0x21, 0x11, kTcp4Block + Tlv(0x02, "host"));
  Expect(full.substr(0, 20), NeedMore(20));
  Expect(full.substr(0, 30), NeedMore(30));
  Expect(full.substr(0, full.size() - 1), NeedMore(full.size() - 1));
  Expect(full.substr(0, 14), NeedMore(14));
  Expect(kSig.substr(0, 7), NeedMore(7));
}

TEST(ProxyProtocol, V2BadSignature) {
  std::string sig = kSig;
  sig[11] = 'X';
  Expect(sig + "\x21\x11" + Be16(12) + kTcp4Block, Err(ProxyError::NotProxy, 12));
  Expect("\r\n\r\n\r\n"s, Err(ProxyError::NotProxy, 5));
  Expect("\r\n\r\n\0\r\nquit\n"s, Err(ProxyError::NotProxy, 8));
}

TEST(ProxyProtocol, V2BadVersion) {
  Expect(V2(0x11, 0x11, kTcp4Block), Err(ProxyError::V2BadVersion, 13));
  Expect(V2(0x31, 0x11, kTcp4Block), Err(ProxyError::V2BadVersion, 13));
  Expect(V2(0x01, 0x11, kTcp4Block), Err(ProxyError::V2BadVersion, 13));
}

TEST(ProxyProtocol, V2BadCommand) {
  Expect(V2(0x22, 0x11, kTcp4Block), Err(ProxyError::V2BadCommand, 13));
  Expect(V2(0x2f, 0x11, kTcp4Block), Err(ProxyError::V2BadCommand, 13));
}

TEST(ProxyProtocol, V2DatagramIsRefused) {
  Expect(V2(0x21, 0x12, kTcp4Block), Err(ProxyError::V2Datagram, 14));
  Expect(V2(0x21, 0x22, std::string(36, '\0')), Err(ProxyError::V2Datagram, 14));
  Expect(V2(0x21, 0x32, std::string(216, '\0')), Err(ProxyError::V2Datagram, 14));
}

TEST(ProxyProtocol, V2UnknownFamilyOrTransport) {
  Expect(V2(0x21, 0x41, kTcp4Block), Err(ProxyError::V2BadFamily, 14));
  Expect(V2(0x21, 0x13, kTcp4Block), Err(ProxyError::V2BadFamily, 14));
  Expect(V2(0x21, 0x10, kTcp4Block), Err(ProxyError::V2BadFamily, 14));  // INET, no transport
}

TEST(ProxyProtocol, V2LengthTooShortForTheFamily) {
  Expect(V2(0x21, 0x11, kTcp4Block.substr(0, 11)), Err(ProxyError::V2ShortAddress, 16));
  Expect(V2(0x21, 0x21, std::string(35, '\0')), Err(ProxyError::V2ShortAddress, 16));
  Expect(V2(0x21, 0x31, std::string(215, '\0')), Err(ProxyError::V2ShortAddress, 16));
  Expect(V2(0x21, 0x11, ""), Err(ProxyError::V2ShortAddress, 16));
}

TEST(ProxyProtocol, V2LengthLimit) {
  const std::string padding = Tlv(0x04, std::string(4096 - 12 - 3, '\0'));
  Expect(V2(0x21, 0x11, kTcp4Block + padding) + kClient,
         Done("v2 PROXY TCP4 192.0.2.1:56324 -> 198.51.100.2:143 tlvs=04:4081 len=4112", kClient));
  Expect(V2Len(0x21, 0x11, 4097, kTcp4Block), Err(ProxyError::V2TooLong, 16));
  Expect(V2Len(0x21, 0x11, 0xffff, kTcp4Block), Err(ProxyError::V2TooLong, 16));
  Expect(V2(0x21, 0x11, kTcp4Block + Tlv(0x04, "12345")), Err(ProxyError::V2TooLong, 16), 19);
  Expect(V2(0x21, 0x11, kTcp4Block + Tlv(0x04, "1234")) + kClient,
         Done("v2 PROXY TCP4 192.0.2.1:56324 -> 198.51.100.2:143 tlvs=04:4 len=35", kClient), 19);
}

// ---------------------------------------------------------------------------------------
// API details

TEST(ProxyProtocol, TrailingClientDataIsLeftUnconsumed) {
  const std::string header = V2(0x21, 0x11, kTcp4Block);
  ProxyParser p;
  const std::string in = header + kClient;
  ProxyResult r = p.feed(std::string_view(in).substr(0, 10));
  EXPECT_EQ(r.status, ProxyResult::NeedMore);
  EXPECT_EQ(r.consumed, 10u);
  r = p.feed(std::string_view(in).substr(10));
  ASSERT_EQ(r.status, ProxyResult::Done);
  EXPECT_EQ(r.consumed, header.size() - 10);
  EXPECT_EQ(p.header().length, header.size());
  // Done is final: nothing more is consumed.
  r = p.feed(kClient);
  EXPECT_EQ(r.status, ProxyResult::Done);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(ProxyProtocol, ErrorIsFinal) {
  ProxyParser p;
  ProxyResult r = p.feed("GET / HTTP/1.0\r\n");
  EXPECT_EQ(r.status, ProxyResult::Error);
  EXPECT_EQ(r.consumed, 1u);
  EXPECT_EQ(r.error, ProxyError::NotProxy);
  r = p.feed("PROXY UNKNOWN\r\n");
  EXPECT_EQ(r.status, ProxyResult::Error);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(r.error, ProxyError::NotProxy);
}

TEST(ProxyProtocol, SockaddrMatchesTheText) {
  {
    ProxyParser p;
    ASSERT_EQ(p.feed("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\n").status, ProxyResult::Done);
    const ProxyEndpoint& s = p.header().source;
    ASSERT_EQ(s.addr.ss_family, AF_INET);
    EXPECT_EQ(s.addr_len, sizeof(sockaddr_in));
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&s.addr);
    EXPECT_EQ(ntohs(sin->sin_port), 56324);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(&sin->sin_addr), 4), Ip4("192.0.2.1"));
    EXPECT_EQ(s.ip, "192.0.2.1");
    EXPECT_EQ(s.port, 56324);
    EXPECT_EQ(p.header().destination.ip, "198.51.100.2");
    EXPECT_EQ(p.header().destination.port, 143);
  }
  {
    ProxyParser p;
    const std::string block = Ip6("2001:db8::1") + Ip6("::1") + Be16(4242) + Be16(110);
    ASSERT_EQ(p.feed(V2(0x21, 0x21, block)).status, ProxyResult::Done);
    const ProxyEndpoint& s = p.header().source;
    ASSERT_EQ(s.addr.ss_family, AF_INET6);
    EXPECT_EQ(s.addr_len, sizeof(sockaddr_in6));
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&s.addr);
    EXPECT_EQ(ntohs(sin6->sin6_port), 4242);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(&sin6->sin6_addr), 16), Ip6("2001:db8::1"));
    EXPECT_EQ(s.ip, "2001:db8::1");
    EXPECT_EQ(s.text, "[2001:db8::1]:4242");
  }
  {
    ProxyParser p;
    ASSERT_EQ(p.feed(V2(0x21, 0x31, UnixPath("/a") + UnixPath("/b"))).status, ProxyResult::Done);
    const ProxyEndpoint& d = p.header().destination;
    ASSERT_EQ(d.addr.ss_family, AF_UNIX);
    EXPECT_STREQ(reinterpret_cast<const sockaddr_un*>(&d.addr)->sun_path, "/b");
    EXPECT_EQ(d.ip, "/b");
    EXPECT_EQ(d.port, 0);
  }
  {
    ProxyParser p;
    ASSERT_EQ(p.feed("PROXY UNKNOWN\r\n").status, ProxyResult::Done);
    EXPECT_FALSE(p.header().has_addresses());
    EXPECT_EQ(p.header().source.addr.ss_family, AF_UNSPEC);
    EXPECT_EQ(p.header().source.addr_len, 0u);
  }
}

TEST(ProxyProtocol, Names) {
  EXPECT_STREQ(proxy_error_name(ProxyError::None), "no error");
  EXPECT_STREQ(proxy_error_name(ProxyError::NotProxy), "not a PROXY protocol header");
  EXPECT_STREQ(proxy_error_name(ProxyError::V1TooLong), "PROXY v1 line too long");
  EXPECT_STREQ(proxy_error_name(ProxyError::V1BadSyntax), "PROXY v1 syntax error");
  EXPECT_STREQ(proxy_error_name(ProxyError::V1BadAddress), "PROXY v1 invalid address");
  EXPECT_STREQ(proxy_error_name(ProxyError::V1BadPort), "PROXY v1 invalid port");
  EXPECT_STREQ(proxy_error_name(ProxyError::V2BadVersion), "PROXY v2 unsupported version");
  EXPECT_STREQ(proxy_error_name(ProxyError::V2BadCommand), "PROXY v2 unknown command");
  EXPECT_STREQ(proxy_error_name(ProxyError::V2BadFamily), "PROXY v2 unsupported address family");
  EXPECT_STREQ(proxy_error_name(ProxyError::V2Datagram), "PROXY v2 datagram transport");
  EXPECT_STREQ(proxy_error_name(ProxyError::V2TooLong), "PROXY v2 header too long");
  EXPECT_STREQ(proxy_error_name(ProxyError::V2ShortAddress), "PROXY v2 address block too short");
  EXPECT_STREQ(proxy_error_name(ProxyError::V2BadTlv), "PROXY v2 malformed TLV");
  EXPECT_STREQ(proxy_command_name(ProxyHeader::Command::Local), "LOCAL");
  EXPECT_STREQ(proxy_command_name(ProxyHeader::Command::Proxy), "PROXY");
  EXPECT_STREQ(proxy_family_name(ProxyHeader::Family::Unspec), "UNSPEC");
  EXPECT_STREQ(proxy_family_name(ProxyHeader::Family::Tcp4), "TCP4");
  EXPECT_STREQ(proxy_family_name(ProxyHeader::Family::Tcp6), "TCP6");
  EXPECT_STREQ(proxy_family_name(ProxyHeader::Family::Unix), "UNIX");
}

}  // namespace
}  // namespace sy
