// Unit tests for src/map/answer.{h,cc}: Perdition's "[user<delim>]host[:port]" value syntax.
// Owner: the map-modules engineer. Each test is named for the edge case it pins.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "map/answer.h"

namespace sy {
namespace {

MapAnswer A(std::string user, std::string host, std::string port) {
  return MapAnswer{std::move(user), std::move(host), std::move(port)};
}

std::optional<MapAnswer> P(std::string_view v, std::string_view delim = "@") {
  return parse_map_answer(v, delim);
}

TEST(MapAnswerParse, HostOnly) { EXPECT_EQ(P("store1.example.net"), A("", "store1.example.net", "")); }

TEST(MapAnswerParse, HostAndPort) { EXPECT_EQ(P("store1:143"), A("", "store1", "143")); }

TEST(MapAnswerParse, UserAndHost) { EXPECT_EQ(P("jane@store1"), A("jane", "store1", "")); }

TEST(MapAnswerParse, UserHostAndPort) {
  EXPECT_EQ(P("jane@store1:1143"), A("jane", "store1", "1143"));
}

TEST(MapAnswerParse, UserSplitsAtTheLastDelimiter) {
  EXPECT_EQ(P("a@b@host:143"), A("a@b", "host", "143"));
  EXPECT_EQ(P("jane@example.org@store2"), A("jane@example.org", "store2", ""));
}

TEST(MapAnswerParse, MultiCharacterDelimiter) {
  EXPECT_EQ(P("jane@example.org%%store1:143", "%%"), A("jane@example.org", "store1", "143"));
  EXPECT_EQ(P("a%%b%%host", "%%"), A("a%%b", "host", ""));
  // The '@' is just a host character when it is not the delimiter.
  EXPECT_EQ(P("jane@store1", "%%"), A("", "jane@store1", ""));
  // "u%%%h": the last "%%" starts at index 2, so the user keeps one '%'.
  EXPECT_EQ(P("u%%%h", "%%"), A("u%", "h", ""));
}

TEST(MapAnswerParse, EmptyDelimiterDisablesTheUserSplit) {
  EXPECT_EQ(P("jane@store1:143", ""), A("", "jane@store1", "143"));
}

TEST(MapAnswerParse, BracketedIpv6) {
  EXPECT_EQ(P("[::1]"), A("", "::1", ""));
  EXPECT_EQ(P("[::1]:143"), A("", "::1", "143"));
  EXPECT_EQ(P("jane@[2001:db8::7]:993"), A("jane", "2001:db8::7", "993"));
  EXPECT_EQ(P("a@b@[::1]"), A("a@b", "::1", ""));
}

TEST(MapAnswerParse, BracketedIpv6WithZoneKeepsPercentEvenWithPercentDelimiter) {
  EXPECT_EQ(P("jane%[fe80::1%eth0]:143", "%"), A("jane", "fe80::1%eth0", "143"));
}

TEST(MapAnswerParse, BracketsAroundAnyHostAreRemoved) {
  EXPECT_EQ(P("[192.0.2.1]:143"), A("", "192.0.2.1", "143"));
  EXPECT_EQ(P("[store1]"), A("", "store1", ""));
}

TEST(MapAnswerParse, BracketedHostWithGarbageAfterIsMalformed) {
  EXPECT_EQ(P("[::1]x"), std::nullopt);
  EXPECT_EQ(P("[::1]143"), std::nullopt);
  EXPECT_EQ(P("[::1]:"), std::nullopt);
}

TEST(MapAnswerParse, UnclosedBracketIsMalformed) {
  EXPECT_EQ(P("[::1"), std::nullopt);
  EXPECT_EQ(P("[::1:143"), std::nullopt);
  EXPECT_EQ(P("["), std::nullopt);
}

TEST(MapAnswerParse, StrayBracketsAreMalformed) {
  EXPECT_EQ(P("]"), std::nullopt);
  EXPECT_EQ(P("[]"), std::nullopt);
  EXPECT_EQ(P("[]:143"), std::nullopt);
  EXPECT_EQ(P("[a]b]"), std::nullopt);
  EXPECT_EQ(P("ho]st"), std::nullopt);
  EXPECT_EQ(P("x[::1]"), std::nullopt);       // text before '[' must end with the delimiter
  EXPECT_EQ(P("jane[::1]:143"), std::nullopt);
}

// The rule puts the port after the last ':', which would make "::1" the host "::" with
// port 1 (and "2001:db8::1" the host "2001:db8:"). A host without brackets may not
// contain ':', so such values are refused rather than sent to the wrong place.
TEST(MapAnswerParse, UnbracketedIpv6IsMalformed) {
  EXPECT_EQ(P("::1"), std::nullopt);
  EXPECT_EQ(P("2001:db8::1"), std::nullopt);
  EXPECT_EQ(P("::1:143"), std::nullopt);
  EXPECT_EQ(P("jane@::1"), std::nullopt);
}

TEST(MapAnswerParse, Empty) {
  EXPECT_EQ(P(""), std::nullopt);
  EXPECT_EQ(P("   "), std::nullopt);
  EXPECT_EQ(P(std::string_view("\0", 1)), std::nullopt);
}

TEST(MapAnswerParse, EmptyPortIsMalformed) { EXPECT_EQ(P("host:"), std::nullopt); }

TEST(MapAnswerParse, MissingHostIsMalformed) {
  EXPECT_EQ(P(":143"), std::nullopt);
  EXPECT_EQ(P("user@"), std::nullopt);
  EXPECT_EQ(P("user@:143"), std::nullopt);
  EXPECT_EQ(P("@"), std::nullopt);
}

TEST(MapAnswerParse, EmptyUserMeansNoUser) {
  EXPECT_EQ(P("@host:143"), A("", "host", "143"));
  EXPECT_EQ(P("@[::1]"), A("", "::1", ""));
}

TEST(MapAnswerParse, PortNumberRange) {
  EXPECT_EQ(P("h:1"), A("", "h", "1"));
  EXPECT_EQ(P("h:65535"), A("", "h", "65535"));
  EXPECT_EQ(P("h:00143"), A("", "h", "00143"));  // kept as written
  EXPECT_EQ(P("h:0"), std::nullopt);
  EXPECT_EQ(P("h:65536"), std::nullopt);
  EXPECT_EQ(P("h:99999999999999999999999"), std::nullopt);
}

TEST(MapAnswerParse, PortServiceName) {
  EXPECT_EQ(P("h:imap"), A("", "h", "imap"));
  EXPECT_EQ(P("h:imap-ssl"), A("", "h", "imap-ssl"));
  EXPECT_EQ(P("h:pop_3"), A("", "h", "pop_3"));
  EXPECT_EQ(P("h:-"), std::nullopt);
  EXPECT_EQ(P("h:1-2"), std::nullopt);
  EXPECT_EQ(P("h:im ap"), std::nullopt);
  EXPECT_EQ(P("h:1/tcp"), std::nullopt);
}

// The port is split off first, at the last ':', as the rule says.
TEST(MapAnswerParse, ColonInUserNeedsAPort) {
  EXPECT_EQ(P("a:b@host:143"), A("a:b", "host", "143"));
  EXPECT_EQ(P("a:b@host"), std::nullopt);  // "b@host" is not a port
  EXPECT_EQ(P("a:b@[host]"), A("a:b", "host", ""));
}

TEST(MapAnswerParse, DelimiterInPortIsMalformed) { EXPECT_EQ(P("user@host:14@3"), std::nullopt); }

TEST(MapAnswerParse, SurroundingWhitespaceIsTrimmed) {
  EXPECT_EQ(P("  jane@store1:143 \t"), A("jane", "store1", "143"));
  EXPECT_EQ(P("store1\r\n"), A("", "store1", ""));
  EXPECT_EQ(P("\n\v\fstore1"), A("", "store1", ""));
}

TEST(MapAnswerParse, InnerWhitespaceInHostOrPortIsMalformed) {
  EXPECT_EQ(P("store 1"), std::nullopt);
  EXPECT_EQ(P("store1 :143"), std::nullopt);
  EXPECT_EQ(P("store1: 143"), std::nullopt);
  EXPECT_EQ(P("[:: 1]"), std::nullopt);
}

TEST(MapAnswerParse, SpaceInUserIsKept) { EXPECT_EQ(P("jane doe@h"), A("jane doe", "h", "")); }

TEST(MapAnswerParse, EmbeddedNulIsMalformed) {
  using namespace std::string_view_literals;
  EXPECT_EQ(P("store1\0:143"sv), std::nullopt);
  EXPECT_EQ(P("ja\0ne@store1"sv), std::nullopt);
  EXPECT_EQ(P("\0store1"sv), std::nullopt);
  EXPECT_EQ(P("store1\0 "sv), std::nullopt);  // NUL then a space: the NUL is inside
}

// Perdition's makegdbm stores values with their terminator; Perdition reads C strings.
TEST(MapAnswerParse, TrailingNulsAreDropped) {
  using namespace std::string_view_literals;
  EXPECT_EQ(P("store1:143\0"sv), A("", "store1", "143"));
  EXPECT_EQ(P("store1 \0\0"sv), A("", "store1", ""));
}

TEST(MapAnswerParse, EmbeddedCrLfAndOtherControlsAreMalformed) {
  EXPECT_EQ(P("store1\r\n:143"), std::nullopt);
  EXPECT_EQ(P("jane\n@store1"), std::nullopt);
  EXPECT_EQ(P("ja\tne@store1"), std::nullopt);
  EXPECT_EQ(P("store\x01"), std::nullopt);
  EXPECT_EQ(P("store\x7f"), std::nullopt);
  EXPECT_EQ(P("\x01\x02:::"), std::nullopt);  // tests/modules/sleepmap's "garbage"
}

TEST(MapAnswerParse, HighBytesAreAllowed) {
  EXPECT_EQ(P("j\xc3\xa4ne@st\xc3\xb6re"), A("j\xc3\xa4ne", "st\xc3\xb6re", ""));
}

// A module hands back a pointer and a length: nothing past the view may be read.
TEST(MapAnswerParse, ViewIntoALargerBufferReadsOnlyTheView) {
  const char buffer[] = "jane@store1:143:999 and more";
  EXPECT_EQ(P(std::string_view(buffer, 15)), A("jane", "store1", "143"));
  EXPECT_EQ(P(std::string_view(buffer, 11)), A("jane", "store1", ""));
  EXPECT_EQ(P(std::string_view(buffer, 12)), std::nullopt);  // "jane@store1:"
  // Not NUL-terminated at all: a heap copy without a terminator.
  std::string text = "[::1]:143";
  auto owned = std::make_unique<char[]>(text.size());
  std::copy(text.begin(), text.end(), owned.get());
  EXPECT_EQ(P(std::string_view(owned.get(), text.size())), A("", "::1", "143"));
}

TEST(MapAnswerFormat, Forms) {
  EXPECT_EQ(format_map_answer(A("", "store1", "")), "store1");
  EXPECT_EQ(format_map_answer(A("", "store1", "143")), "store1:143");
  EXPECT_EQ(format_map_answer(A("jane", "store1", "143")), "jane@store1:143");
  EXPECT_EQ(format_map_answer(A("jane", "::1", "143")), "jane@[::1]:143");
  EXPECT_EQ(format_map_answer(A("", "::1", "")), "[::1]");
  EXPECT_EQ(format_map_answer(A("jane", "store1", ""), "%%"), "jane%%store1");
}

TEST(MapAnswerFormat, BracketsAHostThatHoldsTheDelimiter) {
  auto a = P("u@[a@b]");
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, A("u", "a@b", ""));
  EXPECT_EQ(format_map_answer(*a), "u@[a@b]");
  auto b = P("u%%[%h]", "%%");
  ASSERT_TRUE(b);
  EXPECT_EQ(format_map_answer(*b, "%%"), "u%%[%h]");
}

TEST(MapAnswerFormat, RoundTrip) {
  struct Case {
    std::string_view text, delim;
  };
  const Case cases[] = {
      {"store1", "@"},           {"store1:143", "@"},        {"jane@store1", "@"},
      {"jane@store1:143", "@"},  {"a@b@host:143", "@"},      {"[::1]", "@"},
      {"[::1]:143", "@"},        {"x@[fe80::1%lo]:1", "@"},  {"a:b@host:143", "@"},
      {"u%%%h", "%%"},           {"u%%[%h]", "%%"},          {"u:[h]", ":"},
      {"[store1]:imap", "@"},    {"jane doe@h", "@"},        {"@host", "@"},
  };
  for (const auto& c : cases) {
    auto a = parse_map_answer(c.text, c.delim);
    ASSERT_TRUE(a) << c.text;
    std::string text = format_map_answer(*a, c.delim);
    EXPECT_EQ(parse_map_answer(text, c.delim), a) << c.text << " -> " << text;
  }
}

}  // namespace
}  // namespace sy
