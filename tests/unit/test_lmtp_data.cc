// Unit tests for DATA framing: the dot-unstuffing decoder and the dot-stuffing encoder.
//
// Every decoder case is a byte stream (what follows the "354") plus the message, the end
// event and the bytes left over for the next command. Each case is run fed whole, one byte
// at a time and in seeded random splits, through both feed() and feed_to(), and must give
// the same result every time. The encoder is checked the same way, and both directions are
// checked against each other on generated messages full of dots, CRs and LFs.
#include "lmtp/data.h"

#include <gtest/gtest.h>

#include "splits.h"

#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace sy::lmtp {
namespace {

using namespace std::string_literals;

using test::Chunks;

std::string Escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

struct Result {
  std::string message;          // what was written (empty when too big)
  std::string event = "none";   // "end", "too big", or "none" (terminator not seen)
  std::string rest;             // bytes after the terminator, not consumed
  std::uint64_t size = 0;
  bool operator==(const Result&) const = default;
};

void PrintTo(const Result& r, std::ostream* os) {
  *os << "{message=\"" << Escape(r.message) << "\" event=" << r.event << " rest=\""
      << Escape(r.rest) << "\" size=" << r.size << "}";
}

Result Decode(const Chunks& chunks, std::uint64_t max_size, bool use_sink) {
  DataDecoder d(max_size);
  Result r;
  std::string pending;
  bool ended = false;
  for (const std::string& chunk : chunks) {
    if (ended) {
      r.rest += chunk;
      continue;
    }
    pending += chunk;
    std::size_t used = 12345;
    DataEvent ev;
    if (use_sink) {
      ev = d.feed_to(pending, &used, [&](std::string_view s) {
        EXPECT_FALSE(s.empty());
        r.message.append(s);
      });
    } else {
      ev = d.feed(pending, &used, &r.message);
    }
    EXPECT_LE(used, pending.size());
    if (ev == DataEvent::NeedMore) {
      EXPECT_EQ(used, pending.size()) << "NeedMore must consume everything";
      EXPECT_FALSE(d.finished());
      pending.clear();
      continue;
    }
    EXPECT_GT(used, 0u);
    EXPECT_TRUE(d.finished());
    EXPECT_EQ(ev == DataEvent::TooBig, d.too_big());
    r.event = ev == DataEvent::End ? "end" : "too big";
    r.rest = pending.substr(used);
    ended = true;
  }
  r.size = d.size();
  if (d.too_big()) {
    EXPECT_LE(r.message.size(), max_size) << "nothing is written past the limit";
    r.message.clear();  // the session discards what it got
  }
  return r;
}

Result Expected(std::string message, std::string event, std::string rest = {}) {
  Result r;
  r.size = message.size();
  r.message = std::move(message);
  r.event = std::move(event);
  r.rest = std::move(rest);
  return r;
}

void ExpectDecode(const std::string& input, const Result& expected, std::uint64_t max_size = 0) {
  for (bool sink : {false, true}) {
    SCOPED_TRACE(sink ? "through feed_to()" : "through feed()");
    test::for_each_split(input, [&](const Chunks& chunks) {
      EXPECT_EQ(Decode(chunks, max_size, sink), expected);
    });
  }
}

// ---------------------------------------------------------------------------------------
// Decoder

TEST(LmtpData, SimpleMessage) {
  ExpectDecode("Subject: hi\r\n\r\nHello.\r\n.\r\n",
               Expected("Subject: hi\r\n\r\nHello.\r\n", "end"));
}

TEST(LmtpData, EmptyMessage) {
  ExpectDecode(".\r\n", Expected("", "end"));
}

TEST(LmtpData, MessageOfOneEmptyLine) {
  ExpectDecode("\r\n.\r\n", Expected("\r\n", "end"));
}

TEST(LmtpData, DotStuffedLineIsUnstuffed) {
  ExpectDecode("a\r\n..b\r\n...\r\n..\r\n.\r\n", Expected("a\r\n.b\r\n..\r\n.\r\n", "end"));
}

TEST(LmtpData, DotStuffedFirstLine) {
  ExpectDecode("..\r\n.\r\n", Expected(".\r\n", "end"));
  ExpectDecode("..x\r\n.\r\n", Expected(".x\r\n", "end"));
}

TEST(LmtpData, UnneededDotIsDroppedToo) {
  // RFC 5321 4.5.2: the first dot of a line is removed whatever follows it.
  ExpectDecode(".x\r\n. \r\n.\r\n", Expected("x\r\n \r\n", "end"));
}

TEST(LmtpData, DotsInsideALineAreKept) {
  ExpectDecode("a.b\r\n x.\r\n .\r\n.\r\n", Expected("a.b\r\n x.\r\n .\r\n", "end"));
}

TEST(LmtpData, TerminatorSplitAcrossFeeds) {
  const std::string in = "line\r\n.\r\nNOOP\r\n";
  for (std::size_t a = 0; a <= in.size(); ++a) {
    for (std::size_t b = a; b <= in.size(); ++b) {
      SCOPED_TRACE("cut at " + std::to_string(a) + " and " + std::to_string(b));
      const Chunks chunks = {in.substr(0, a), in.substr(a, b - a), in.substr(b)};
      EXPECT_EQ(Decode(chunks, 0, false), Expected("line\r\n", "end", "NOOP\r\n"));
    }
  }
}

TEST(LmtpData, BareLfInBodyPassesThrough) {
  // A bare LF is no line end: neither the dot after it nor "\n.\n" means anything.
  ExpectDecode("a\n.b\n.\nc\n.\r\nd\r\n.\r\n", Expected("a\n.b\n.\nc\n.\r\nd\r\n", "end"));
}

TEST(LmtpData, BareCrInBodyPassesThrough) {
  ExpectDecode("a\r.b\r.\r\nc\r\r\n.\r\n", Expected("a\r.b\r.\r\nc\r\r\n", "end"));
}

TEST(LmtpData, SmugglingLookalikesDoNotEndTheMessage) {
  ExpectDecode("x\n.\r\nRSET\r\n\r.\r\nMAIL\r\n.\nQUIT\r\n\r\n.\r\n",
               Expected("x\n.\r\nRSET\r\n\r.\r\nMAIL\r\n\nQUIT\r\n\r\n", "end"));
}

TEST(LmtpData, DotCrNotFollowedByLf) {
  // ".\r" + other: the dot was stuffing and the CR is message text.
  ExpectDecode(".\rx\r\n.\r\r\n.\r\n", Expected("\rx\r\n\r\r\n", "end"));
  ExpectDecode("a\r\n.\r.\r\n.\r\n", Expected("a\r\n\r.\r\n", "end"));
}

TEST(LmtpData, CrCrLfBeforeTheTerminator) {
  ExpectDecode("a\r\r\n.\r\n", Expected("a\r\r\n", "end"));
}

TEST(LmtpData, NulAndEightBitPassThrough) {
  ExpectDecode("a\0b\xff\r\n.\0\r\n.\r\n"s, Expected("a\0b\xff\r\n\0\r\n"s, "end"));
}

TEST(LmtpData, PipelinedCommandAfterData) {
  ExpectDecode("hello\r\n.\r\nQUIT\r\n", Expected("hello\r\n", "end", "QUIT\r\n"));
  ExpectDecode(".\r\n.\r\n", Expected("", "end", ".\r\n"));
}

TEST(LmtpData, NoTerminatorYet) {
  Result r = Expected("hello\r\n", "none");
  ExpectDecode("hello\r\n", r);
  r.message = "hello\r\n";
  ExpectDecode("hello\r\n.", r);
  ExpectDecode("hello\r\n.\r", r);
  Result empty = Expected("", "none");
  ExpectDecode("", empty);
  ExpectDecode(".", empty);
  ExpectDecode(".\r", empty);
}

TEST(LmtpData, TooBigIsReportedButConsumedToTheEnd) {
  Result r;
  r.event = "too big";
  r.rest = "RSET\r\n";
  r.size = 18;  // "0123456789\r\n" + "abcd\r\n"
  ExpectDecode("0123456789\r\nabcd\r\n.\r\nRSET\r\n", r, 10);
}

TEST(LmtpData, ExactlyMaxSizeIsAccepted) {
  ExpectDecode("12345678\r\n.\r\n", Expected("12345678\r\n", "end"), 10);
  Result r;
  r.event = "too big";
  r.size = 11;
  ExpectDecode("123456789\r\n.\r\n", r, 10);
}

TEST(LmtpData, StuffingDotsDoNotCount) {
  ExpectDecode("..\r\n..\r\n..\r\n.\r\n", Expected(".\r\n.\r\n.\r\n", "end"), 9);
}

TEST(LmtpData, TooBigIsKnownBeforeTheEnd) {
  DataDecoder d(4);
  std::string out;
  std::size_t used = 0;
  EXPECT_EQ(d.feed("abc", &used, &out), DataEvent::NeedMore);
  EXPECT_FALSE(d.too_big());
  EXPECT_EQ(d.feed("de", &used, &out), DataEvent::NeedMore);
  EXPECT_TRUE(d.too_big());
  EXPECT_EQ(out, "abc");
  EXPECT_EQ(d.feed("fgh\r\n", &used, &out), DataEvent::NeedMore);
  EXPECT_EQ(out, "abc");
  EXPECT_EQ(d.size(), 10u);
  EXPECT_EQ(d.feed(".\r\nQUIT", &used, &out), DataEvent::TooBig);
  EXPECT_EQ(used, 3u);
}

TEST(LmtpData, FeedAfterEndConsumesNothing) {
  DataDecoder d;
  std::string out;
  std::size_t used = 0;
  ASSERT_EQ(d.feed("a\r\n.\r\n", &used, &out), DataEvent::End);
  EXPECT_EQ(used, 6u);
  EXPECT_EQ(d.feed("b\r\n.\r\n", &used, &out), DataEvent::End);
  EXPECT_EQ(used, 0u);
  EXPECT_EQ(out, "a\r\n");
}

TEST(LmtpData, ResetStartsANewMessageAndKeepsTheLimit) {
  DataDecoder d(3);
  std::string out;
  std::size_t used = 0;
  ASSERT_EQ(d.feed("abcdef\r\n.\r\n", &used, &out), DataEvent::TooBig);
  d.reset();
  EXPECT_FALSE(d.too_big());
  EXPECT_FALSE(d.finished());
  EXPECT_EQ(d.size(), 0u);
  out.clear();
  ASSERT_EQ(d.feed(".\r\n", &used, &out), DataEvent::End);
  d.reset();
  ASSERT_EQ(d.feed("abcd\r\n.\r\n", &used, &out), DataEvent::TooBig);
  d.reset();
  d.set_max_size(0);
  ASSERT_EQ(d.feed("abcd\r\n.\r\n", &used, &out), DataEvent::End);
  EXPECT_EQ(out, "abcd\r\n");
}

TEST(LmtpData, SinkGetsViewsIntoTheInput) {
  DataDecoder d;
  const std::string in = "first line\r\n..second\r\n.\r\n";
  std::vector<std::string_view> pieces;
  std::size_t used = 0;
  ASSERT_EQ(d.feed_to(in, &used, [&](std::string_view s) { pieces.push_back(s); }), DataEvent::End);
  ASSERT_EQ(pieces.size(), 2u);  // the stuffing dot splits the runs; nothing is copied
  EXPECT_EQ(pieces[0], "first line\r\n");
  EXPECT_EQ(pieces[0].data(), in.data());
  EXPECT_EQ(pieces[1], ".second\r\n");
  EXPECT_EQ(pieces[1].data(), in.data() + 13);
}

TEST(LmtpData, LargeMessageInBigChunks) {
  std::string message;
  for (int i = 0; i < 20000; ++i) message += (i % 7 == 0 ? "." : "") + std::to_string(i) + " line\r\n";
  const std::string wire = dot_stuff(message) + "QUIT\r\n";
  DataDecoder d;
  std::string out;
  std::size_t pos = 0;
  DataEvent ev = DataEvent::NeedMore;
  while (ev == DataEvent::NeedMore && pos < wire.size()) {
    std::size_t used = 0;
    ev = d.feed(std::string_view(wire).substr(pos, 65536), &used, &out);
    pos += used;
  }
  EXPECT_EQ(ev, DataEvent::End);
  EXPECT_EQ(out, message);
  EXPECT_EQ(wire.substr(pos), "QUIT\r\n");
}

// ---------------------------------------------------------------------------------------
// Encoder

std::string EncodeChunks(const Chunks& chunks, DataEncoder::Options options = {}) {
  DataEncoder enc(options);
  std::string out;
  for (const std::string& c : chunks) enc.encode(c, &out);
  enc.finish(&out);
  return out;
}

void ExpectEncode(const std::string& message, const std::string& expected,
                  DataEncoder::Options options = {}) {
  EXPECT_EQ(Escape(EncodeChunks(test::whole(message), options)), Escape(expected));
  EXPECT_EQ(Escape(EncodeChunks(test::bytes(message), options)), Escape(expected));
  for (unsigned seed = 1; seed <= 8; ++seed) {
    EXPECT_EQ(Escape(EncodeChunks(test::random_split(message, seed), options)), Escape(expected));
  }
}

TEST(LmtpDataEncoder, LeadingDotsAreDoubled) {
  ExpectEncode(".a\r\nb.\r\n..\r\n.\r\n", "..a\r\nb.\r\n...\r\n..\r\n.\r\n");
}

TEST(LmtpDataEncoder, EmptyMessageIsJustTheDotLine) {
  ExpectEncode("", ".\r\n");
  EXPECT_EQ(dot_stuff(""), ".\r\n");
}

TEST(LmtpDataEncoder, MissingFinalCrlfIsAdded) {
  ExpectEncode("abc", "abc\r\n.\r\n");
  ExpectEncode("abc\r", "abc\r\r\n.\r\n");
  ExpectEncode("abc\n", "abc\n\r\n.\r\n");
  ExpectEncode(".", "..\r\n.\r\n");
}

TEST(LmtpDataEncoder, BareLfAndCrDoNotStartALine) {
  ExpectEncode("a\n.b\r.c\r\n", "a\n.b\r.c\r\n.\r\n");
}

TEST(LmtpDataEncoder, StuffAfterBareLfOption) {
  DataEncoder::Options lenient;
  lenient.stuff_after_bare_lf = true;
  ExpectEncode("a\n.\r\nb\r.c\r\n.d\r\n", "a\n..\r\nb\r.c\r\n..d\r\n.\r\n", lenient);
}

TEST(LmtpDataEncoder, FinishMakesItReadyForTheNextMessage) {
  DataEncoder enc;
  std::string out;
  enc.encode("x", &out);
  enc.finish(&out);
  enc.encode(".y\r\n", &out);
  enc.finish(&out);
  EXPECT_EQ(out, "x\r\n.\r\n..y\r\n.\r\n");
}

// ---------------------------------------------------------------------------------------
// Round trips

// Random messages from an alphabet that hits every state: dots, CRs, LFs, CRLFs.
std::string RandomText(std::mt19937& rng, std::size_t max_len) {
  static const char* const kPieces[] = {".", "..", "\r", "\n", "\r\n", "\r\n.", "a", " ", "\0"};
  std::string s;
  const std::size_t n = rng() % (max_len + 1);
  while (s.size() < n) {
    const char* p = kPieces[rng() % std::size(kPieces)];
    if (*p == '\0') s.push_back('\0'); else s += p;
  }
  return s;
}

std::string DecodeAll(const std::string& wire, std::string* rest = nullptr) {
  DataDecoder d;
  std::string out;
  std::size_t used = 0;
  const DataEvent ev = d.feed(wire, &used, &out);
  EXPECT_EQ(ev, DataEvent::End) << Escape(wire);
  if (rest != nullptr) *rest = wire.substr(used);
  return out;
}

TEST(LmtpDataRoundTrip, DecodeOfEncodeIsIdentity) {
  std::mt19937 rng(42);
  for (int i = 0; i < 3000; ++i) {
    const std::string m = RandomText(rng, 40);
    const bool ends_crlf = m.size() >= 2 && m.compare(m.size() - 2, 2, "\r\n") == 0;
    const std::string expected = m.empty() || ends_crlf ? m : m + "\r\n";
    std::string rest;
    const std::string wire = EncodeChunks(test::random_split(m, static_cast<unsigned>(i))) + "NEXT";
    EXPECT_EQ(Escape(DecodeAll(wire, &rest)), Escape(expected)) << Escape(m);
    EXPECT_EQ(rest, "NEXT");
  }
}

TEST(LmtpDataRoundTrip, EncodeOfDecodeIsIdentityForCanonicalStreams) {
  // Make canonical streams by stuffing random messages; also check that the decoder's
  // output always re-encodes to a stream that decodes to the same message.
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string m = RandomText(rng, 40);
    if (!m.empty() && !(m.size() >= 2 && m.compare(m.size() - 2, 2, "\r\n") == 0)) m += "\r\n";
    const std::string wire = dot_stuff(m);
    const std::string decoded = DecodeAll(wire);
    EXPECT_EQ(dot_stuff(decoded), wire) << Escape(wire);
  }
  for (int i = 0; i < 3000; ++i) {
    // Arbitrary streams (unneeded dots included) that end in a terminator.
    std::string wire = RandomText(rng, 40);
    wire += wire.empty() || (wire.size() >= 2 && wire.compare(wire.size() - 2, 2, "\r\n") == 0)
                ? ".\r\n"
                : "\r\n.\r\n";
    std::string rest;
    const std::string decoded = DecodeAll(wire, &rest);
    EXPECT_EQ(DecodeAll(dot_stuff(decoded)), decoded) << Escape(wire);
  }
}

}  // namespace
}  // namespace sy::lmtp
