// Unit tests for the resumable POP3 command parser.
//
// Every case is an input byte stream plus the list of events it must produce. Each case is
// run three ways and must give the same events every time: fed whole, fed one byte at a
// time, and fed in several seeded random splits. The helper behaves like a session: it
// re-feeds whatever an event left unconsumed, calls expect_line() after an AUTH that names
// a mechanism without an initial response, and stops at a fatal error.
#include "pop3/parser.h"

#include <gtest/gtest.h>

#include "splits.h"

#include <cstdio>
#include <string>
#include <vector>

namespace sy::pop3 {
namespace {

using namespace std::string_literals;

using sy::test::Escape;

// Arguments are bracketed so that spaces inside them are visible in a failure message.
std::string Describe(const Command& cmd) {
  std::string out = "COMMAND " + Escape(cmd.name);
  for (const std::string& a : cmd.args) out += " [" + Escape(a) + "]";
  return out;
}

std::string Cmd(std::string name, std::vector<std::string> args = {}) {
  return Describe(Command{std::move(name), std::move(args)});
}
std::string Err(Error e) { return "ERROR " + std::string(error_name(e)); }
std::string Fatal(Error e) { return Err(e) + " FATAL"; }
std::string Line(const std::string& l) { return "LINE " + Escape(l); }

using Events = std::vector<std::string>;
using test::Chunks;

// Drives a fresh parser over the chunks, as a session would.
Events Drive(const Chunks& chunks, const Limits& limits) {
  CommandParser p(limits);
  Events out;
  std::string pending;
  for (const std::string& chunk : chunks) {
    pending += chunk;
    for (;;) {
      std::size_t used = 12345;
      const Event ev = p.feed(pending, &used);
      EXPECT_LE(used, pending.size());
      if (ev == Event::NeedMore) {
        EXPECT_EQ(used, pending.size()) << "NeedMore must consume everything";
        pending.clear();
        break;
      }
      EXPECT_GT(used, 0u) << "an event must consume at least one byte";
      if (used == 0 || used > pending.size()) return out;  // avoid looping forever
      pending.erase(0, used);
      switch (ev) {
        case Event::Command: {
          Command cmd = p.take_command();
          out.push_back(Describe(cmd));
          if (cmd.name == "AUTH" && cmd.args.size() == 1) p.expect_line();
          break;
        }
        case Event::Line: out.push_back(Line(p.line())); break;
        case Event::Error:
          EXPECT_NE(p.error(), Error::None);
          if (p.fatal()) {
            out.push_back(Fatal(p.error()));
            return out;
          }
          out.push_back(Err(p.error()));
          break;
        case Event::NeedMore: break;
      }
    }
  }
  return out;
}

void ExpectEvents(const std::string& input, const Events& expected, Limits limits = {}) {
  test::for_each_split(input, [&](const Chunks& chunks) {
    EXPECT_EQ(Drive(chunks, limits), expected);
  });
}

// ---------------------------------------------------------------------------------------
// Basic commands

TEST(Pop3Parser, SimpleCommandsWithoutArguments) {
  ExpectEvents("CAPA\r\nSTLS\r\nQUIT\r\n", {Cmd("CAPA"), Cmd("STLS"), Cmd("QUIT")});
}

TEST(Pop3Parser, LowercaseKeywordUppercased) {
  ExpectEvents("capa\r\nuser Bob@Example.COM\r\nStLs\r\n",
               {Cmd("CAPA"), Cmd("USER", {"Bob@Example.COM"}), Cmd("STLS")});
}

TEST(Pop3Parser, UserWithArgument) {
  ExpectEvents("USER mrose\r\n", {Cmd("USER", {"mrose"})});
}

TEST(Pop3Parser, UserWithoutArgument) {
  // The parser does not know which commands need arguments; the session answers -ERR.
  ExpectEvents("USER\r\nUSER \r\nUSER   \r\n", {Cmd("USER"), Cmd("USER"), Cmd("USER")});
}

TEST(Pop3Parser, ArgumentsSplitOnRunsOfSpaces) {
  ExpectEvents("APOP  mrose   c4c9334bac560ecc979e58001b3e22fb \r\nTOP 1 10\r\n",
               {Cmd("APOP", {"mrose", "c4c9334bac560ecc979e58001b3e22fb"}),
                Cmd("TOP", {"1", "10"})});
}

TEST(Pop3Parser, EightBitAndControlBytesInArgumentsArePassedOn) {
  ExpectEvents("USER m\xc3\xbcller\r\nUSER a\tb\x01\r\n",
               {Cmd("USER", {"m\xc3\xbcller"}), Cmd("USER", {"a\tb\x01"})});
}

TEST(Pop3Parser, PipelinedCommands) {
  // RFC 2449 PIPELINING: the client sends several commands without waiting.
  ExpectEvents("USER a\r\nPASS b c\r\nSTAT\r\nLIST\r\nQUIT\r\n",
               {Cmd("USER", {"a"}), Cmd("PASS", {"b c"}), Cmd("STAT"), Cmd("LIST"), Cmd("QUIT")});
}

TEST(Pop3Parser, IncompleteCommandProducesNoEvent) {
  ExpectEvents("CAPA\r\nUSER bo", {Cmd("CAPA")});
  ExpectEvents("CAPA\r\nUSER bob\r", {Cmd("CAPA")});
}

TEST(Pop3Parser, KeywordMayBeAnyPrintableAscii) {
  ExpectEvents("X-FOO:1 a\r\n*\r\n", {Cmd("X-FOO:1", {"a"}), Cmd("*")});
}

// ---------------------------------------------------------------------------------------
// PASS takes the rest of the line

TEST(Pop3Parser, PassWithSpacesKeepsTheWholeRest) {
  ExpectEvents("PASS correct horse battery staple\r\n",
               {Cmd("PASS", {"correct horse battery staple"})});
}

TEST(Pop3Parser, PassWithLeadingAndTrailingSpacesIsVerbatim) {
  ExpectEvents("PASS  se  cret  \r\n", {Cmd("PASS", {" se  cret  "})});
}

TEST(Pop3Parser, PassLowercaseKeywordAlsoTakesTheRest) {
  ExpectEvents("pass a b\r\n", {Cmd("PASS", {"a b"})});
}

TEST(Pop3Parser, PassEmptyAndMissing) {
  ExpectEvents("PASS \r\nPASS\r\n", {Cmd("PASS", {""}), Cmd("PASS")});
}

TEST(Pop3Parser, PassKeepsEightBitTabsAndSpecials) {
  ExpectEvents("PASS p\xc3\xa4ss\tw \"x\" * =\r\n", {Cmd("PASS", {"p\xc3\xa4ss\tw \"x\" * ="})});
}

TEST(Pop3Parser, PassWithNulIsError) {
  ExpectEvents("PASS a\0b\r\nQUIT\r\n"s, {Err(Error::BadSyntax), Cmd("QUIT")});
}

TEST(Pop3Parser, PassWithBareCrOrLfIsError) {
  ExpectEvents("PASS a\rb\r\nPASS c\nQUIT\r\n", {Err(Error::BadSyntax), Err(Error::BadSyntax), Cmd("QUIT")});
}

TEST(Pop3Parser, PassLookalikeKeywordsAreSplitNormally) {
  ExpectEvents("PASSX a  b\r\nXPASS a  b\r\n", {Cmd("PASSX", {"a", "b"}), Cmd("XPASS", {"a", "b"})});
}

TEST(Pop3Parser, PassCountsAsOneArgument) {
  Limits lim;
  lim.max_arguments = 0;
  ExpectEvents("PASS x\r\nPASS\r\nQUIT\r\n", {Err(Error::TooManyArguments), Cmd("PASS"), Cmd("QUIT")},
               lim);
}

// ---------------------------------------------------------------------------------------
// AUTH (RFC 5034)

TEST(Pop3Parser, AuthPlainWithInitialResponse) {
  ExpectEvents("AUTH PLAIN AHVzZXIAcGFzcw==\r\nQUIT\r\n",
               {Cmd("AUTH", {"PLAIN", "AHVzZXIAcGFzcw=="}), Cmd("QUIT")});
}

TEST(Pop3Parser, AuthEmptyInitialResponseIsEquals) {
  ExpectEvents("AUTH PLAIN =\r\n", {Cmd("AUTH", {"PLAIN", "="})});
}

TEST(Pop3Parser, AuthContinuationLine) {
  ExpectEvents("AUTH PLAIN\r\nAHVzZXIAcGFzcw==\r\nQUIT\r\n",
               {Cmd("AUTH", {"PLAIN"}), Line("AHVzZXIAcGFzcw=="), Cmd("QUIT")});
}

TEST(Pop3Parser, CancelStar) {
  ExpectEvents("auth plain\r\n*\r\nCAPA\r\n", {Cmd("AUTH", {"plain"}), Line("*"), Cmd("CAPA")});
}

TEST(Pop3Parser, AuthWithoutMechanismIsAPlainCommand) {
  // Some clients send a bare AUTH to list mechanisms; no continuation follows.
  ExpectEvents("AUTH\r\nCAPA\r\n", {Cmd("AUTH"), Cmd("CAPA")});
}

TEST(Pop3Parser, EmptyContinuationLine) {
  ExpectEvents("AUTH PLAIN\r\n\r\nQUIT\r\n", {Cmd("AUTH", {"PLAIN"}), Line(""), Cmd("QUIT")});
}

TEST(Pop3Parser, ContinuationLineIsRawNotParsed) {
  ExpectEvents("AUTH PLAIN\r\n  PASS x  \x01\xff\r\nQUIT\r\n",
               {Cmd("AUTH", {"PLAIN"}), Line("  PASS x  \x01\xff"), Cmd("QUIT")});
}

TEST(Pop3Parser, ContinuationLineWithBareLfIsErrorAndBackToCommands) {
  ExpectEvents("AUTH PLAIN\r\nabc\nQUIT\r\n",
               {Cmd("AUTH", {"PLAIN"}), Err(Error::BadSyntax), Cmd("QUIT")});
}

TEST(Pop3Parser, ContinuationLineWithBareCrOrNulIsError) {
  ExpectEvents("AUTH PLAIN\r\nab\rc\r\nAUTH PLAIN\r\na\0b\r\nQUIT\r\n"s,
               {Cmd("AUTH", {"PLAIN"}), Err(Error::BadSyntax), Cmd("AUTH", {"PLAIN"}),
                Err(Error::BadSyntax), Cmd("QUIT")});
}

TEST(Pop3Parser, ContinuationLineTooLongIsSkippedAndBackToCommands) {
  Limits lim;
  lim.max_line_length = 24;
  ExpectEvents("AUTH PLAIN\r\n" + std::string(24, 'A') + "\r\nQUIT\r\n",
               {Cmd("AUTH", {"PLAIN"}), Line(std::string(24, 'A')), Cmd("QUIT")}, lim);
  ExpectEvents("AUTH PLAIN\r\n" + std::string(25, 'A') + "\r\nQUIT\r\n",
               {Cmd("AUTH", {"PLAIN"}), Err(Error::LineTooLong), Cmd("QUIT")}, lim);
}

TEST(Pop3Parser, AuthLoginUserAndPasswordLines) {
  // SASL LOGIN: the session calls expect_line() once more after the user name.
  CommandParser p;
  std::size_t used = 0;
  std::string in = "AUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\nQUIT\r\n";
  ASSERT_EQ(p.feed(in, &used), Event::Command);
  EXPECT_EQ(p.take_command(), (Command{"AUTH", {"LOGIN"}}));
  in.erase(0, used);
  for (const char* expected : {"dXNlcg==", "cGFzcw=="}) {
    p.expect_line();
    ASSERT_EQ(p.feed(in, &used), Event::Line);
    EXPECT_EQ(p.line(), expected);
    in.erase(0, used);
  }
  ASSERT_EQ(p.feed(in, &used), Event::Command);
  EXPECT_EQ(p.take_command(), (Command{"QUIT", {}}));
}

TEST(Pop3Parser, AuthLoginWithInitialResponse) {
  ExpectEvents("AUTH LOGIN dXNlcg==\r\n", {Cmd("AUTH", {"LOGIN", "dXNlcg=="})});
}

TEST(Pop3Parser, LongInitialResponseWithinLimit) {
  // Far beyond RFC 2449's 255 bytes: a Kerberos or PLAIN initial response can be long.
  const std::string ir(8000, 'Q');
  ExpectEvents("AUTH GSSAPI " + ir + "\r\n", {Cmd("AUTH", {"GSSAPI", ir})});
}

// ---------------------------------------------------------------------------------------
// Errors

TEST(Pop3Parser, EmptyLine) {
  ExpectEvents("\r\nCAPA\r\n\r\n\r\n", {Err(Error::EmptyLine), Cmd("CAPA"), Err(Error::EmptyLine),
                                         Err(Error::EmptyLine)});
}

TEST(Pop3Parser, SpacesOnlyLineIsSyntaxError) {
  ExpectEvents("   \r\nCAPA\r\n", {Err(Error::BadSyntax), Cmd("CAPA")});
}

TEST(Pop3Parser, LeadingSpaceIsSyntaxError) {
  ExpectEvents(" CAPA\r\nQUIT\r\n", {Err(Error::BadSyntax), Cmd("QUIT")});
}

TEST(Pop3Parser, NulIsError) {
  ExpectEvents("CA\0PA\r\nUSER a\0b\r\nUSER \0\r\n\0\r\nQUIT\r\n"s,
               {Err(Error::BadSyntax), Err(Error::BadSyntax), Err(Error::BadSyntax),
                Err(Error::BadSyntax), Cmd("QUIT")});
}

TEST(Pop3Parser, BareLfIsError) {
  // A bare LF is not a line end; it still ends the bad line, so the next command parses.
  ExpectEvents("CAPA\nQUIT\r\n\nUSER a\n\r\nUSER b \nNOOP\r\n",
               {Err(Error::BadSyntax), Cmd("QUIT"), Err(Error::BadSyntax), Err(Error::BadSyntax),
                Err(Error::EmptyLine), Err(Error::BadSyntax), Cmd("NOOP")});
}

TEST(Pop3Parser, BareCrInsideLineIsError) {
  ExpectEvents("CA\rPA\r\nUSER a\rb\r\nQUIT\r\r\n\r\r\nNOOP\r\n",
               {Err(Error::BadSyntax), Err(Error::BadSyntax), Err(Error::BadSyntax),
                Err(Error::BadSyntax), Cmd("NOOP")});
}

TEST(Pop3Parser, KeywordOfFortyCharactersIsTheLongest) {
  const std::string k40(40, 'K');
  ExpectEvents(k40 + " a\r\n" + k40 + "X a\r\nQUIT\r\n",
               {Cmd(k40, {"a"}), Err(Error::BadSyntax), Cmd("QUIT")});
}

TEST(Pop3Parser, KeywordWithEightBitOrControlIsError) {
  ExpectEvents("C\xc3\xa4PA\r\nCA\tPA\r\nCAPA\x7f\r\nQUIT\r\n",
               {Err(Error::BadSyntax), Err(Error::BadSyntax), Err(Error::BadSyntax), Cmd("QUIT")});
}

TEST(Pop3Parser, TooManyArguments) {
  ExpectEvents("X a b c d\r\nX a b c d e\r\nX a b c d  \r\nQUIT\r\n",
               {Cmd("X", {"a", "b", "c", "d"}), Err(Error::TooManyArguments),
                Cmd("X", {"a", "b", "c", "d"}), Cmd("QUIT")});
}

TEST(Pop3Parser, TooManyArgumentsWithSmallLimit) {
  Limits lim;
  lim.max_arguments = 1;
  ExpectEvents("USER a b\r\nAUTH PLAIN =\r\nUSER a\r\n",
               {Err(Error::TooManyArguments), Err(Error::TooManyArguments), Cmd("USER", {"a"})}, lim);
}

TEST(Pop3Parser, OverlongLineIsAnErrorAndTheNextCommandIsParsed) {
  Limits lim;
  lim.max_line_length = 20;
  ExpectEvents("USER aaaaaaaaaaaaaaaaaaaaaaaaa\r\nQUIT\r\n",
               {Err(Error::LineTooLong), Cmd("QUIT")}, lim);
}

TEST(Pop3Parser, OverlongPassIsAnError) {
  Limits lim;
  lim.max_line_length = 10;
  ExpectEvents("PASS 12345\r\nPASS 123456\r\nQUIT\r\n",
               {Cmd("PASS", {"12345"}), Err(Error::LineTooLong), Cmd("QUIT")}, lim);
}

TEST(Pop3Parser, LineExactlyAtLimitIsAccepted) {
  Limits lim;
  lim.max_line_length = 10;
  ExpectEvents("USER abcde\r\n", {Cmd("USER", {"abcde"})}, lim);
  ExpectEvents("USER abcdef\r\n", {Err(Error::LineTooLong)}, lim);
}

TEST(Pop3Parser, LineTooLongReplacesAnEarlierErrorOnTheLine) {
  Limits lim;
  lim.max_line_length = 16;
  ExpectEvents("\0"s + std::string(40, 'x') + "\r\nCAPA\r\n",
               {Err(Error::LineTooLong), Cmd("CAPA")}, lim);
  ExpectEvents("\0"s + std::string(10, 'x') + "\r\nCAPA\r\n",
               {Err(Error::BadSyntax), Cmd("CAPA")}, lim);
}

TEST(Pop3Parser, OverlongLineWithBareLfEndsThere) {
  Limits lim;
  lim.max_line_length = 8;
  ExpectEvents("USER " + std::string(20, 'x') + "\nCAPA\r\n",
               {Err(Error::LineTooLong), Cmd("CAPA")}, lim);
}

TEST(Pop3Parser, VeryLongLineIsSkippedWithoutBeingKept) {
  // A megabyte with the default limit: skipped, then the session's next command.
  const std::string huge = "USER " + std::string(1 << 20, 'x') + "\r\nQUIT\r\n";
  for (const test::Chunks& chunks : {test::whole(huge), test::random_split(huge, 7, 4096)})
    EXPECT_EQ(Drive(chunks, Limits{}), (Events{Err(Error::LineTooLong), Cmd("QUIT")}));
}

TEST(Pop3Parser, PipelinedCapaUserPassInOneBuffer) {
  ExpectEvents("CAPA\r\nUSER paul\r\nPASS paul pw\r\nSTAT\r\n",
               {Cmd("CAPA"), Cmd("USER", {"paul"}), Cmd("PASS", {"paul pw"}), Cmd("STAT")});
}

// ---------------------------------------------------------------------------------------
// API details

TEST(Pop3Parser, EventConsumesOnlyUpToItsEnd) {
  CommandParser p;
  std::size_t used = 0;
  const std::string in = "AUTH PLAIN\r\nAHVzZXIAcGFzcw==\r\nQUIT\r\n";
  ASSERT_EQ(p.feed(in, &used), Event::Command);
  EXPECT_EQ(used, 12u);
  EXPECT_EQ(p.take_command(), (Command{"AUTH", {"PLAIN"}}));
  p.expect_line();
  std::string_view rest = std::string_view(in).substr(used);
  ASSERT_EQ(p.feed(rest, &used), Event::Line);
  EXPECT_EQ(used, 18u);
  EXPECT_EQ(p.line(), "AHVzZXIAcGFzcw==");
  rest.remove_prefix(used);
  ASSERT_EQ(p.feed(rest, &used), Event::Command);
  EXPECT_EQ(used, rest.size());
  EXPECT_EQ(p.take_command(), (Command{"QUIT", {}}));
  EXPECT_EQ(p.feed("", &used), Event::NeedMore);
  EXPECT_EQ(used, 0u);
}

TEST(Pop3Parser, UntakenCommandIsDroppedOnNextFeed) {
  CommandParser p;
  std::size_t used = 0;
  ASSERT_EQ(p.feed("USER a\r\n", &used), Event::Command);
  ASSERT_EQ(p.feed("CAPA\r\n", &used), Event::Command);
  EXPECT_EQ(p.take_command(), (Command{"CAPA", {}}));
}

TEST(Pop3Parser, ExpectLineDropsAPartialCommand) {
  CommandParser p;
  std::size_t used = 0;
  ASSERT_EQ(p.feed("USER a", &used), Event::NeedMore);
  p.expect_line();
  ASSERT_EQ(p.feed("*\r\n", &used), Event::Line);
  EXPECT_EQ(p.line(), "*");
  ASSERT_EQ(p.feed("CAPA\r\n", &used), Event::Command);
  EXPECT_EQ(p.take_command(), (Command{"CAPA", {}}));
}

TEST(Pop3Parser, ErrorNames) {
  EXPECT_STREQ(error_name(Error::None), "no error");
  EXPECT_STREQ(error_name(Error::LineTooLong), "line too long");
  EXPECT_STREQ(error_name(Error::EmptyLine), "empty line");
  EXPECT_STREQ(error_name(Error::BadSyntax), "syntax error");
  EXPECT_STREQ(error_name(Error::TooManyArguments), "too many arguments");
}

}  // namespace
}  // namespace sy::pop3
