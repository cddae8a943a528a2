// Unit tests for the netstring decoder and encoder and the socketmap request split.
//
// Every decoder case is a byte stream plus the events it must produce (payloads, then
// possibly an error with the stream offset it was found at). Each case is run fed whole,
// one byte at a time and in seeded random splits, and must give the same events.
#include "socketmap/netstring.h"

#include <gtest/gtest.h>

#include "splits.h"

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace sy {
namespace {

using namespace std::string_literals;

using Events = std::vector<std::string>;
using test::Chunks;

using sy::test::Escape;

std::string Str(std::string_view payload) { return "STRING [" + Escape(payload) + "]"; }
std::string Err(NetstringError e, std::size_t offset) {
  return "ERROR " + std::string(netstring_error_name(e)) + " at " + std::to_string(offset);
}

Events Drive(const Chunks& chunks, std::size_t max_length) {
  NetstringDecoder d(max_length);
  Events out;
  std::string pending;
  std::size_t base = 0;  // stream offset of pending[0]
  for (const std::string& chunk : chunks) {
    pending += chunk;
    for (;;) {
      std::size_t used = 12345;
      const NetstringEvent ev = d.feed(pending, &used);
      EXPECT_LE(used, pending.size());
      if (ev == NetstringEvent::NeedMore) {
        EXPECT_EQ(used, pending.size()) << "NeedMore must consume everything";
        base += used;
        pending.clear();
        break;
      }
      EXPECT_GT(used, 0u);
      if (used == 0 || used > pending.size()) return out;
      pending.erase(0, used);
      base += used;
      if (ev == NetstringEvent::Error) {
        EXPECT_NE(d.error(), NetstringError::None);
        out.push_back(Err(d.error(), base));
        return out;  // fatal: the session closes
      }
      EXPECT_LE(d.payload().size(), max_length);
      out.push_back(Str(d.take()));
    }
  }
  return out;
}

void ExpectEvents(const std::string& input, const Events& expected,
                  std::size_t max_length = kSocketmapMaxRequest) {
  test::for_each_split(input, [&](const Chunks& chunks) {
    EXPECT_EQ(Drive(chunks, max_length), expected);
  });
}

// ---------------------------------------------------------------------------------------
// Decoder

TEST(Netstring, SimpleRequest) {
  ExpectEvents("25:virtual alice@example.com,", {Str("virtual alice@example.com")});
}

TEST(Netstring, EmptyNetstring) {
  ExpectEvents("0:,", {Str("")});
}

TEST(Netstring, SeveralInARow) {
  ExpectEvents("3:a b,0:,12:NOTFOUND x y,", {Str("a b"), Str(""), Str("NOTFOUND x y")});
}

TEST(Netstring, NetstringSplitEverywhere) {
  const std::string in = "12:hello world!,5:a:b,c,";
  for (std::size_t a = 0; a <= in.size(); ++a) {
    for (std::size_t b = a; b <= in.size(); ++b) {
      SCOPED_TRACE("cut at " + std::to_string(a) + " and " + std::to_string(b));
      EXPECT_EQ(Drive({in.substr(0, a), in.substr(a, b - a), in.substr(b)}, 100),
                (Events{Str("hello world!"), Str("a:b,c")}));
    }
  }
}

TEST(Netstring, PayloadMayHoldAnything) {
  ExpectEvents("10:\0,:9\r\n\xff\x01,\x80,"s, {Str("\0,:9\r\n\xff\x01,\x80"s)});
}

TEST(Netstring, IncompleteProducesNoEvent) {
  ExpectEvents("", {});
  ExpectEvents("1", {});
  ExpectEvents("12", {});
  ExpectEvents("5:", {});
  ExpectEvents("5:hel", {});
  ExpectEvents("5:hello", {});
  ExpectEvents("0:", {});
}

TEST(Netstring, LeadingZeroLength) {
  // The length is canonical: "0" alone, otherwise no leading zero.
  ExpectEvents("05:hello,", {Err(NetstringError::BadLength, 2)});
  ExpectEvents("00:,", {Err(NetstringError::BadLength, 2)});
  ExpectEvents("0:,0:,", {Str(""), Str("")});
}

TEST(Netstring, NonDigitLength) {
  ExpectEvents(":", {Err(NetstringError::BadLength, 1)});
  ExpectEvents("-1:x,", {Err(NetstringError::BadLength, 1)});
  ExpectEvents("+1:x,", {Err(NetstringError::BadLength, 1)});
  ExpectEvents(" 1:x,", {Err(NetstringError::BadLength, 1)});
  ExpectEvents("x", {Err(NetstringError::BadLength, 1)});
  ExpectEvents("3:abc,x", {Str("abc"), Err(NetstringError::BadLength, 7)});
}

TEST(Netstring, MissingColon) {
  ExpectEvents("5hello,", {Err(NetstringError::MissingColon, 2)});
  ExpectEvents("1 :x,", {Err(NetstringError::MissingColon, 2)});
  ExpectEvents("0;,", {Err(NetstringError::MissingColon, 2)});
  ExpectEvents("12,", {Err(NetstringError::MissingColon, 3)});
}

TEST(Netstring, MissingComma) {
  ExpectEvents("5:hello;", {Err(NetstringError::MissingComma, 8)});
  ExpectEvents("5:helloo,", {Err(NetstringError::MissingComma, 8)});
  ExpectEvents("0:x", {Err(NetstringError::MissingComma, 3)});
  ExpectEvents("3:abc\r\n", {Err(NetstringError::MissingComma, 6)});
}

TEST(Netstring, LengthAtTheLimitIsAccepted) {
  ExpectEvents("5:hello,", {Str("hello")}, 5);
  ExpectEvents("10:0123456789,", {Str("0123456789")}, 10);
}

TEST(Netstring, TooLongIsRefusedBeforeThePayload) {
  ExpectEvents("6:hello!,", {Err(NetstringError::TooLong, 1)}, 5);
  ExpectEvents("11:", {Err(NetstringError::TooLong, 2)}, 10);
  ExpectEvents("100001:", {Err(NetstringError::TooLong, 6)}, kSocketmapMaxReply);
  ExpectEvents("10001:", {Err(NetstringError::TooLong, 5)});  // the request default
}

TEST(Netstring, HugeLengthsDoNotOverflow) {
  const std::size_t max = SIZE_MAX;
  ExpectEvents("99999999999999999999999999:", {Err(NetstringError::TooLong, 20)}, max);
  ExpectEvents("18446744073709551616:", {Err(NetstringError::TooLong, 20)}, max);
  ExpectEvents("1844674407370955161", {}, max);  // below SIZE_MAX: still waiting
  ExpectEvents("9", {Err(NetstringError::TooLong, 1)}, 8);
  ExpectEvents("19", {Err(NetstringError::TooLong, 2)}, 18);
}

TEST(Netstring, ZeroLimitAcceptsOnlyTheEmptyString) {
  ExpectEvents("0:,", {Str("")}, 0);
  ExpectEvents("1:a,", {Err(NetstringError::TooLong, 1)}, 0);
}

TEST(Netstring, ErrorIsSticky) {
  NetstringDecoder d;
  std::size_t used = 0;
  EXPECT_EQ(d.feed("3x", &used), NetstringEvent::Error);
  EXPECT_EQ(used, 2u);
  EXPECT_EQ(d.error(), NetstringError::MissingColon);
  EXPECT_EQ(d.feed("3:abc,", &used), NetstringEvent::Error);
  EXPECT_EQ(used, 6u);
  EXPECT_EQ(d.error(), NetstringError::MissingColon);
}

TEST(Netstring, CompleteConsumesOnlyItsOwnBytes) {
  NetstringDecoder d;
  std::size_t used = 0;
  ASSERT_EQ(d.feed("3:abc,4:defg,", &used), NetstringEvent::Complete);
  EXPECT_EQ(used, 6u);
  EXPECT_EQ(d.payload(), "abc");
  EXPECT_EQ(d.take(), "abc");
}

TEST(Netstring, UntakenPayloadIsDroppedOnNextFeed) {
  NetstringDecoder d;
  std::size_t used = 0;
  ASSERT_EQ(d.feed("3:abc,", &used), NetstringEvent::Complete);
  ASSERT_EQ(d.feed("2:", &used), NetstringEvent::NeedMore);
  EXPECT_EQ(d.payload(), "");
  ASSERT_EQ(d.feed("de,", &used), NetstringEvent::Complete);
  EXPECT_EQ(d.take(), "de");
}

TEST(Netstring, ErrorNames) {
  EXPECT_STREQ(netstring_error_name(NetstringError::None), "no error");
  EXPECT_STREQ(netstring_error_name(NetstringError::TooLong), "netstring too long");
}

// ---------------------------------------------------------------------------------------
// Encoder and round trips

TEST(Netstring, Encode) {
  EXPECT_EQ(netstring_encode(""), "0:,");
  EXPECT_EQ(netstring_encode("hello world!"), "12:hello world!,");
  EXPECT_EQ(netstring_encode("OK mailhost.example:143"), "23:OK mailhost.example:143,");
  std::string out = "x";
  netstring_append(&out, "NOTFOUND ");
  EXPECT_EQ(out, "x9:NOTFOUND ,");
  EXPECT_EQ(netstring_encode(std::string(100000, 'a')).substr(0, 7), "100000:");
}

TEST(Netstring, DecodeOfEncodeIsIdentity) {
  std::mt19937 rng(3);
  std::string stream;
  std::vector<std::string> payloads;
  for (int i = 0; i < 300; ++i) {
    std::string p(rng() % (i % 10 == 0 ? 2000 : 20), '\0');
    for (char& c : p) c = static_cast<char>(rng());
    netstring_append(&stream, p);
    payloads.push_back(std::move(p));
  }
  Events expected;
  for (const std::string& p : payloads) expected.push_back(Str(p));
  EXPECT_EQ(Drive(test::whole(stream), 2000), expected);
  EXPECT_EQ(Drive(test::random_split(stream, 9), 2000), expected);
}

TEST(Netstring, EncodeOfDecodeIsIdentity) {
  // Every netstring the decoder accepts is canonical, so it re-encodes to its own bytes.
  for (const std::string& in : {"0:,"s, "1:x,"s, "10:0123456789,"s, "3:\0\0\0,"s}) {
    NetstringDecoder d;
    std::size_t used = 0;
    ASSERT_EQ(d.feed(in, &used), NetstringEvent::Complete) << Escape(in);
    EXPECT_EQ(used, in.size());
    EXPECT_EQ(netstring_encode(d.take()), in);
  }
}

// ---------------------------------------------------------------------------------------
// Socketmap requests

TEST(SocketmapRequest, SplitAtTheFirstSpace) {
  const auto r = split_socketmap_request("virtual alice@example.com");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->name, "virtual");
  EXPECT_EQ(r->key, "alice@example.com");
}

TEST(SocketmapRequest, KeyWithSpaces) {
  const auto r = split_socketmap_request("mailbox john doe@example.com ");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->name, "mailbox");
  EXPECT_EQ(r->key, "john doe@example.com ");
  const auto two = split_socketmap_request("m  x");
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->name, "m");
  EXPECT_EQ(two->key, " x");
}

TEST(SocketmapRequest, EmptyKeyIsLeftToTheMap) {
  const auto r = split_socketmap_request("virtual ");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->name, "virtual");
  EXPECT_EQ(r->key, "");
}

TEST(SocketmapRequest, NoSpaceOrNoNameIsRefused) {
  EXPECT_FALSE(split_socketmap_request("virtual").has_value());
  EXPECT_FALSE(split_socketmap_request("").has_value());
  EXPECT_FALSE(split_socketmap_request(" key").has_value());
}

TEST(SocketmapRequest, KeyMayHoldAnyByte) {
  const std::string request = "m a\0b\xff\r\n"s;  // the result views into it
  const auto r = split_socketmap_request(request);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->key, "a\0b\xff\r\n"s);
}

}  // namespace
}  // namespace sy
