// Unit tests for the resumable IMAP command parser.
//
// Every case is an input byte stream plus the list of events it must produce. Each case is
// run three ways and must give the same events every time: fed whole, fed one byte at a
// time, and fed in several seeded random splits. The helper behaves like a session: it
// re-feeds whatever an event left unconsumed, keeps going after Continue, calls
// expect_line() after an AUTHENTICATE without initial response, and stops at a fatal
// error.
#include "imap/parser.h"

#include <gtest/gtest.h>

#include "splits.h"

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace sy::imap {
namespace {

using namespace std::string_literals;

using sy::test::Escape;

std::string Describe(const Command& cmd) {
  std::string out = "COMMAND " + Escape(cmd.tag) + " " + Escape(cmd.name);
  for (const Arg& a : cmd.args) {
    switch (a.kind) {
      case Arg::Kind::Atom: out += " atom:" + Escape(a.value); break;
      case Arg::Kind::Quoted: out += " quoted:\"" + Escape(a.value) + "\""; break;
      case Arg::Kind::Literal:
        out += " literal{" + std::to_string(a.value.size()) + "}:" + Escape(a.value);
        break;
      case Arg::Kind::ListOpen: out += " ("; break;
      case Arg::Kind::ListClose: out += " )"; break;
    }
  }
  return out;
}

// Builders for expected events.
Arg A(std::string v) { return Arg{Arg::Kind::Atom, std::move(v)}; }
Arg Q(std::string v) { return Arg{Arg::Kind::Quoted, std::move(v)}; }
Arg L(std::string v) { return Arg{Arg::Kind::Literal, std::move(v)}; }
Arg Open() { return Arg{Arg::Kind::ListOpen, {}}; }
Arg Close() { return Arg{Arg::Kind::ListClose, {}}; }

std::string Cmd(std::string tag, std::string name, std::vector<Arg> args = {}) {
  return Describe(Command{std::move(tag), std::move(name), std::move(args)});
}
std::string Cont() { return "CONTINUE"; }
std::string Err(Error e, const std::string& tag) {
  return "ERROR " + std::string(error_name(e)) + " tag=" + Escape(tag);
}
std::string Fatal(Error e, const std::string& tag) { return Err(e, tag) + " FATAL"; }
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
          if (cmd.name == "AUTHENTICATE" && cmd.args.size() == 1) p.expect_line();
          break;
        }
        case Event::Continue: out.push_back(Cont()); break;
        case Event::Line: out.push_back(Line(p.line())); break;
        case Event::Error:
          EXPECT_NE(p.error(), Error::None);
          if (p.fatal()) {
            out.push_back(Fatal(p.error(), p.error_tag()));
            return out;
          }
          out.push_back(Err(p.error(), p.error_tag()));
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

TEST(ImapParser, SimpleCommandWithoutArguments) {
  ExpectEvents("a1 NOOP\r\n", {Cmd("a1", "NOOP")});
}

TEST(ImapParser, LowercaseCommandNameIsUppercased) {
  ExpectEvents("a1 login User PaSS\r\n", {Cmd("a1", "LOGIN", {A("User"), A("PaSS")})});
}

TEST(ImapParser, PipelinedCommandsInOneBuffer) {
  ExpectEvents("a1 NOOP\r\na2 CAPABILITY\r\na3 LOGIN u p\r\na4 LOGOUT\r\n",
               {Cmd("a1", "NOOP"), Cmd("a2", "CAPABILITY"), Cmd("a3", "LOGIN", {A("u"), A("p")}),
                Cmd("a4", "LOGOUT")});
}

TEST(ImapParser, IncompleteCommandProducesNoEvent) {
  ExpectEvents("a1 NOOP\r\na2 LOGIN \"us", {Cmd("a1", "NOOP")});
}

TEST(ImapParser, NilArgument) {
  ExpectEvents("a1 ID NIL\r\n", {Cmd("a1", "ID", {A("NIL")})});
}

TEST(ImapParser, AtomsAllowWildcardsBracketsAndBackslash) {
  ExpectEvents("a1 LIST \"\" *\r\n"
               "a2 LSUB \"\" INBOX.%\r\n"
               "a3 FETCH 1:* BODY.PEEK[]<0.100>\r\n"
               "a4 STORE 1 +FLAGS (\\Seen \\Deleted)\r\n",
               {Cmd("a1", "LIST", {Q(""), A("*")}), Cmd("a2", "LSUB", {Q(""), A("INBOX.%")}),
                Cmd("a3", "FETCH", {A("1:*"), A("BODY.PEEK[]<0.100>")}),
                Cmd("a4", "STORE", {A("1"), A("+FLAGS"), Open(), A("\\Seen"), A("\\Deleted"), Close()})});
}

TEST(ImapParser, TagMayContainCloseBracket) {
  ExpectEvents("a]1 NOOP\r\n", {Cmd("a]1", "NOOP")});
}

// ---------------------------------------------------------------------------------------
// Quoted strings

TEST(ImapParser, QuotedStringWithEscapedBackslashAndQuote) {
  ExpectEvents("a1 LOGIN \"us\\\\er\" \"p\\\"ss\"\r\n",
               {Cmd("a1", "LOGIN", {Q("us\\er"), Q("p\"ss")})});
}

TEST(ImapParser, EmptyQuotedStrings) {
  ExpectEvents("a1 LOGIN \"\" \"\"\r\n", {Cmd("a1", "LOGIN", {Q(""), Q("")})});
}

TEST(ImapParser, QuotedStringKeepsSpacesAndSpecials) {
  ExpectEvents("a1 LOGIN \"a b (c) {3} %*]\" x\r\n",
               {Cmd("a1", "LOGIN", {Q("a b (c) {3} %*]"), A("x")})});
}

TEST(ImapParser, EightBitInQuoted) {
  ExpectEvents("a1 LOGIN \"m\xc3\xbcller\" \"\xff\"\r\n",
               {Cmd("a1", "LOGIN", {Q("m\xc3\xbcller"), Q("\xff")})});
}

TEST(ImapParser, UnknownBackslashEscapeInQuotedIsSyntaxError) {
  ExpectEvents("a1 LOGIN \"a\\nb\" x\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, NulInQuotedIsSyntaxError) {
  ExpectEvents("a1 LOGIN \"a\0b\" x\r\na2 NOOP\r\n"s,
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, UnterminatedQuotedStringIsSyntaxError) {
  ExpectEvents("a1 LOGIN \"user\r\na2 NOOP\r\n", {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, QuoteInsideAtomIsSyntaxError) {
  ExpectEvents("a1 LOGIN us\"er\" x\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, EightBitInAtomIsSyntaxError) {
  ExpectEvents("a1 LOGIN m\xc3\xbcller x\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

// ---------------------------------------------------------------------------------------
// Literals

TEST(ImapParser, SynchronisingLiteralAsksForContinuation) {
  ExpectEvents("a1 LOGIN {4}\r\nuser {4}\r\npass\r\n",
               {Cont(), Cont(), Cmd("a1", "LOGIN", {L("user"), L("pass")})});
}

TEST(ImapParser, NonSynchronisingLiteralPlus) {
  ExpectEvents("a1 LOGIN {4+}\r\nuser {4+}\r\npass\r\n",
               {Cmd("a1", "LOGIN", {L("user"), L("pass")})});
}

TEST(ImapParser, LiteralContainingCRLFAndNul) {
  ExpectEvents("a1 LOGIN {7+}\r\na\r\n\0b\r\n {3}\r\n\r\n\0\r\n"s,
               {Cont(), Cmd("a1", "LOGIN", {L("a\r\n\0b\r\n"s), L("\r\n\0"s)})});
}

TEST(ImapParser, LiteralLooksLikeCommandsButIsData) {
  ExpectEvents("a1 LOGIN u {11+}\r\na2 LOGOUT\r\n\r\na3 NOOP\r\n",
               {Cmd("a1", "LOGIN", {A("u"), L("a2 LOGOUT\r\n")}), Cmd("a3", "NOOP")});
}

TEST(ImapParser, ZeroLengthLiterals) {
  ExpectEvents("a1 LOGIN {0}\r\n {0+}\r\n\r\n", {Cont(), Cmd("a1", "LOGIN", {L(""), L("")})});
}

TEST(ImapParser, LiteralWithLeadingZeros) {
  ExpectEvents("a1 LOGIN {003+}\r\nabc x\r\n", {Cmd("a1", "LOGIN", {L("abc"), A("x")})});
}

TEST(ImapParser, LiteralInsideList) {
  ExpectEvents("a1 ID ({4}\r\nname \"x\")\r\n",
               {Cont(), Cmd("a1", "ID", {Open(), L("name"), Q("x"), Close()})});
}

TEST(ImapParser, JunkAfterLiteralIsSyntaxError) {
  ExpectEvents("a1 LOGIN {3+}\r\nabcx\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, BadLiteralHeaderIsSyntaxError) {
  ExpectEvents("a1 LOGIN {3x}\r\na2 LOGIN {}\r\na3 LOGIN {+}\r\na4 LOGIN {3} \r\na5 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Err(Error::BadSyntax, "a2"),
                Err(Error::BadSyntax, "a3"), Err(Error::BadSyntax, "a4"), Cmd("a5", "NOOP")});
}

TEST(ImapParser, BraceInsideAtomIsSyntaxError) {
  ExpectEvents("a1 LOGIN us{er x\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, LiteralTooLargeSyncIsNotFatal) {
  Limits lim;
  lim.max_literal_size = 10;
  ExpectEvents("a1 LOGIN {11}\r\na2 LOGIN {10}\r\n0123456789\r\n",
               {Err(Error::LiteralTooLarge, "a1"), Cont(), Cmd("a2", "LOGIN", {L("0123456789")})},
               lim);
}

TEST(ImapParser, LiteralTooLargeNonSyncIsFatal) {
  Limits lim;
  lim.max_literal_size = 10;
  ExpectEvents("a1 LOGIN {11+}\r\n0123456789a\r\na2 NOOP\r\n",
               {Fatal(Error::LiteralTooLarge, "a1")}, lim);
}

TEST(ImapParser, HugeLiteralLengthDoesNotOverflow) {
  ExpectEvents("a1 APPEND x {99999999999999999999999999999}\r\na2 NOOP\r\n",
               {Err(Error::LiteralTooLarge, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, LiteralContentsDoNotCountTowardLineLength) {
  Limits lim;
  lim.max_line_length = 20;
  const std::string big(100, 'x');
  ExpectEvents("a1 LOGIN {100+}\r\n" + big + "\r\n", {Cmd("a1", "LOGIN", {L(big)})}, lim);
}

TEST(ImapParser, LiteralHeadersCountTowardLineLength) {
  Limits lim;
  lim.max_line_length = 20;
  // "a1 LOGIN {1+}\r\n" counts 15 bytes; the literal "x" does not count; " y1234" brings
  // the line to 21 bytes before its CRLF, " y123" to exactly 20.
  ExpectEvents("a1 LOGIN {1+}\r\nx y1234\r\n", {Err(Error::LineTooLong, "a1")}, lim);
  ExpectEvents("a1 LOGIN {1+}\r\nx y123\r\n", {Cmd("a1", "LOGIN", {L("x"), A("y123")})}, lim);
}

// ---------------------------------------------------------------------------------------
// Error recovery

TEST(ImapParser, BadCommandFollowedByNonSyncLiteralIsSkipped) {
  // The literal contents look like a command; they must not be parsed as one.
  ExpectEvents("a1 LOGIN \"a\\q\" {11+}\r\na3 LOGOUT\r\n\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, BadCommandWithSeveralNonSyncLiteralsIsSkipped) {
  ExpectEvents("a1 (x {3+}\r\nabc {2+}\r\n\r\n {0+}\r\n\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, BadCommandWithSyncLiteralResyncs) {
  // The client waits for "+" that never comes, so the next bytes are a new command.
  ExpectEvents("a1 LOGIN \"a\\q\" {5}\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, BadCommandWithTooLargeNonSyncLiteralIsFatal) {
  Limits lim;
  lim.max_literal_size = 4;
  ExpectEvents("a1 LOGIN \"a\\q\" {5+}\r\nabcde\r\na2 NOOP\r\n",
               {Fatal(Error::LiteralTooLarge, "a1")}, lim);
}

TEST(ImapParser, BraceInBadLineOnlyCountsAtLineEnd) {
  // "{3+}" not followed by CRLF announces nothing.
  ExpectEvents("a1 X \"\\q\" {3+} y\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, BadTagLineWithNonSyncLiteralIsSkipped) {
  ExpectEvents("{4+}\r\nab\r\n\r\na2 NOOP\r\n", {Err(Error::BadTag, "*"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, LineTooLongReplacesAnEarlierErrorOnTheLine) {
  Limits lim;
  lim.max_line_length = 16;
  ExpectEvents("a1 \"\\q\" " + std::string(40, 'x') + "\r\na2 NOOP\r\n",
               {Err(Error::LineTooLong, "a1"), Cmd("a2", "NOOP")}, lim);
}

TEST(ImapParser, OverlongLineIsBadAndTheNextCommandIsParsed) {
  Limits lim;
  lim.max_line_length = 20;
  ExpectEvents("a1 LOGIN aaaaaaaaaaaaaaaaaaaaaaaaa\r\na2 NOOP\r\n",
               {Err(Error::LineTooLong, "a1"), Cmd("a2", "NOOP")}, lim);
}

TEST(ImapParser, OverlongTagHasNoTag) {
  Limits lim;
  lim.max_line_length = 8;
  ExpectEvents("abcdefghijkl NOOP\r\na2 NOOP\r\n",
               {Err(Error::LineTooLong, "*"), Cmd("a2", "NOOP")}, lim);
}

TEST(ImapParser, LineExactlyAtLimitIsAccepted) {
  Limits lim;
  lim.max_line_length = 10;
  ExpectEvents("a1 NOOP xy\r\n", {Cmd("a1", "NOOP", {A("xy")})}, lim);
  ExpectEvents("a1 NOOP xyz\r\n", {Err(Error::LineTooLong, "a1")}, lim);
}

TEST(ImapParser, OverlongLineEndingInNonSyncLiteralSkipsTheLiteral) {
  // The literal's contents look like a command; they belong to the bad line.
  Limits lim;
  lim.max_line_length = 20;
  ExpectEvents("a1 NOOP " + std::string(30, 'x') + " {11+}\r\na3 LOGOUT\r\n\r\na2 NOOP\r\n",
               {Err(Error::LineTooLong, "a1"), Cmd("a2", "NOOP")}, lim);
}

TEST(ImapParser, LimitReachedInsideALiteralHeaderStillSkipsTheLiteral) {
  // "a1 NOOP {11+}": the limit falls before, on and after each byte of the header.
  for (std::size_t limit = 7; limit <= 14; ++limit) {
    SCOPED_TRACE("max_line_length " + std::to_string(limit));
    Limits lim;
    lim.max_line_length = limit;
    ExpectEvents("a1 NOOP {11+}\r\na3 LOGOUT\r\n\r\na2 NOOP\r\n",
                 {Err(Error::LineTooLong, "a1"), Cmd("a2", "NOOP")}, lim);
  }
}

TEST(ImapParser, OverlongLineEndingInSyncLiteralResyncs) {
  // The client waits for a "+" that never comes: the next line is a new command.
  Limits lim;
  lim.max_line_length = 20;
  ExpectEvents("a1 NOOP " + std::string(30, 'x') + " {5}\r\na2 NOOP\r\n",
               {Err(Error::LineTooLong, "a1"), Cmd("a2", "NOOP")}, lim);
}

TEST(ImapParser, VeryLongLineIsSkippedWithoutBeingKept) {
  // A megabyte with the default limit: skipped, then the session's next command.
  const std::string huge = "a1 ID (\"x\" \"" + std::string(1 << 20, 'x') + "\")\r\na2 NOOP\r\n";
  for (const test::Chunks& chunks : {test::whole(huge), test::random_split(huge, 7, 4096)})
    EXPECT_EQ(Drive(chunks, Limits{}), (Events{Err(Error::LineTooLong, "a1"), Cmd("a2", "NOOP")}));
}

TEST(ImapParser, FatalErrorIsSticky) {
  Limits lim;
  lim.max_literal_size = 4;
  CommandParser p(lim);
  std::size_t used = 0;
  EXPECT_EQ(p.feed("a1 X {5+}\r\nabcde\r\n", &used), Event::Error);
  EXPECT_EQ(used, 11u);
  EXPECT_TRUE(p.fatal());
  EXPECT_EQ(p.error(), Error::LiteralTooLarge);
  EXPECT_EQ(p.feed("a1 NOOP\r\n", &used), Event::Error);
  EXPECT_EQ(used, 9u);
  EXPECT_TRUE(p.fatal());
  p.expect_line();
  EXPECT_EQ(p.feed("x\r\n", &used), Event::Error);
}

// RFC 2971: at most 30 pairs, fields of at most 30 octets, values of at most 1024. Each
// value starts with an escaped quote. Returns the line and the arguments it holds.
std::pair<std::string, std::vector<Arg>> LargestId() {
  std::string line = "a1 ID (";
  std::vector<Arg> args{Open()};
  for (int i = 0; i < 30; ++i) {
    std::string field = "field-" + std::to_string(i);
    field.resize(30, 'f');
    const std::string value = "\"" + std::string(1023, 'v');
    if (i) line += ' ';
    line += "\"" + field + "\" \"\\" + value + "\"";
    args.push_back(Q(field));
    args.push_back(Q(value));
  }
  args.push_back(Close());
  return {line + ")\r\n", args};
}

TEST(ImapParser, LargestRfc2971IdFitsTheDefaultLimits) {
  Limits lim;
  lim.max_line_length = 65536;  // the configured default (LimitsConfig)
  const auto [id, args] = LargestId();
  ASSERT_GT(id.size(), 31000u);
  ExpectEvents(id + "a2 NOOP\r\n", {Cmd("a1", "ID", args), Cmd("a2", "NOOP")}, lim);
}

TEST(ImapParser, EmptyLineIsMissingTag) {
  ExpectEvents("\r\na1 NOOP\r\n", {Err(Error::MissingTag, "*"), Cmd("a1", "NOOP")});
}

TEST(ImapParser, LeadingSpaceIsMissingTag) {
  ExpectEvents(" a1 NOOP\r\na2 NOOP\r\n", {Err(Error::MissingTag, "*"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, TagOnly) {
  ExpectEvents("a1\r\na2 \r\na3 NOOP\r\n", {Err(Error::MissingCommand, "a1"),
                                            Err(Error::MissingCommand, "a2"), Cmd("a3", "NOOP")});
}

TEST(ImapParser, BadTag) {
  ExpectEvents("a+1 NOOP\r\n* NOOP\r\na\"b NOOP\r\na(b NOOP\r\na%b NOOP\r\na\\b NOOP\r\n"
               "a\x01 NOOP\r\n\xc3\xa4 NOOP\r\na2 NOOP\r\n",
               {Err(Error::BadTag, "*"), Err(Error::BadTag, "*"), Err(Error::BadTag, "*"),
                Err(Error::BadTag, "*"), Err(Error::BadTag, "*"), Err(Error::BadTag, "*"),
                Err(Error::BadTag, "*"), Err(Error::BadTag, "*"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, BadCommandName) {
  ExpectEvents("a1 NO]OP\r\na2 (NOOP)\r\na3 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Err(Error::BadSyntax, "a2"), Cmd("a3", "NOOP")});
}

TEST(ImapParser, BareLfIsError) {
  ExpectEvents("a1 NOOP\na2 NOOP\r\n\na3 LOGIN x\n\r\na4 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP"), Err(Error::BadSyntax, "*"),
                Err(Error::BadSyntax, "a3"), Err(Error::MissingTag, "*"), Cmd("a4", "NOOP")});
}

TEST(ImapParser, BareCrInsideLineIsError) {
  ExpectEvents("a1 NO\rOP\r\na2 LOGIN a\rb\r\na3 NOOP\r\r\na4 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Err(Error::BadSyntax, "a2"),
                Err(Error::BadSyntax, "a3"), Cmd("a4", "NOOP")});
}

TEST(ImapParser, DoubleAndTrailingSpacesAreSyntaxErrors) {
  ExpectEvents("a1  NOOP\r\na2 LOGIN  u p\r\na3 NOOP \r\na4 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Err(Error::BadSyntax, "a2"),
                Err(Error::BadSyntax, "a3"), Cmd("a4", "NOOP")});
}

// ---------------------------------------------------------------------------------------
// Lists and argument limits

TEST(ImapParser, ListsForIdCommand) {
  ExpectEvents("a1 ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n",
               {Cmd("a1", "ID", {Open(), Q("name"), Q("Thunderbird"), Q("version"), A("NIL"),
                                 Close()})});
}

TEST(ImapParser, NestedAndEmptyLists) {
  ExpectEvents("a1 X (a (b ()) c) ()\r\n",
               {Cmd("a1", "X", {Open(), A("a"), Open(), A("b"), Open(), Close(), Close(), A("c"),
                                Close(), Open(), Close()})});
}

TEST(ImapParser, UnbalancedListsAreSyntaxErrors) {
  ExpectEvents("a1 X (a\r\na2 X a)\r\na3 X (a))\r\na4 X ( a)\r\na5 X (a )\r\na6 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Err(Error::BadSyntax, "a2"),
                Err(Error::BadSyntax, "a3"), Err(Error::BadSyntax, "a4"),
                Err(Error::BadSyntax, "a5"), Cmd("a6", "NOOP")});
}

TEST(ImapParser, JunkRightAfterListCloseIsSyntaxError) {
  ExpectEvents("a1 FETCH 1 BODY[HEADER.FIELDS (FROM)]\r\na2 NOOP\r\n",
               {Err(Error::BadSyntax, "a1"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, TooManyArguments) {
  Limits lim;
  lim.max_arguments = 3;
  ExpectEvents("a1 X a b c\r\na2 X a b c d\r\na3 NOOP\r\n",
               {Cmd("a1", "X", {A("a"), A("b"), A("c")}), Err(Error::TooManyArguments, "a2"),
                Cmd("a3", "NOOP")},
               lim);
}

TEST(ImapParser, ListMarkersCountAsArguments) {
  Limits lim;
  lim.max_arguments = 3;
  ExpectEvents("a1 X (a)\r\na2 X (a b)\r\na3 NOOP\r\n",
               {Cmd("a1", "X", {Open(), A("a"), Close()}), Err(Error::TooManyArguments, "a2"),
                Cmd("a3", "NOOP")},
               lim);
}

TEST(ImapParser, TooManyArgumentsLineWithNonSyncLiteralIsSkipped) {
  Limits lim;
  lim.max_arguments = 2;
  ExpectEvents("a1 X a b {12+}\r\na2 LOGOUT\r\n {1}\r\na3 NOOP\r\n",
               {Err(Error::TooManyArguments, "a1"), Cmd("a3", "NOOP")}, lim);
}

// ---------------------------------------------------------------------------------------
// Raw lines for AUTHENTICATE

TEST(ImapParser, AuthenticateContinuationLine) {
  ExpectEvents("a1 AUTHENTICATE PLAIN\r\nAHVzZXIAcGFzcw==\r\na2 NOOP\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("PLAIN")}), Line("AHVzZXIAcGFzcw=="),
                Cmd("a2", "NOOP")});
}

TEST(ImapParser, CancelLineStar) {
  ExpectEvents("a1 authenticate plain\r\n*\r\na2 NOOP\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("plain")}), Line("*"), Cmd("a2", "NOOP")});
}

TEST(ImapParser, EmptyAuthenticateLine) {
  ExpectEvents("a1 AUTHENTICATE PLAIN\r\n\r\n", {Cmd("a1", "AUTHENTICATE", {A("PLAIN")}), Line("")});
}

TEST(ImapParser, AuthenticateLineIsRawNotParsed) {
  ExpectEvents("a1 AUTHENTICATE PLAIN\r\n{5+} \"( \x01\r\na2 NOOP\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("PLAIN")}), Line("{5+} \"( \x01"),
                Cmd("a2", "NOOP")});
}

TEST(ImapParser, AuthenticateWithInitialResponseNeedsNoLine) {
  ExpectEvents("a1 AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\na2 NOOP\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("PLAIN"), A("AHVzZXIAcGFzcw==")}), Cmd("a2", "NOOP")});
}

TEST(ImapParser, AuthenticateLineBareLfIsErrorAndBackToCommands) {
  ExpectEvents("a1 AUTHENTICATE PLAIN\r\nabc\na2 NOOP\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("PLAIN")}), Err(Error::BadSyntax, "*"),
                Cmd("a2", "NOOP")});
}

TEST(ImapParser, AuthenticateLineBareCrIsErrorWithoutLiteralSkipping) {
  ExpectEvents("a1 AUTHENTICATE PLAIN\r\nab\rc {3+}\r\na2 NOOP\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("PLAIN")}), Err(Error::BadSyntax, "*"),
                Cmd("a2", "NOOP")});
}

TEST(ImapParser, AuthenticateLineTooLongIsSkippedAndBackToCommands) {
  Limits lim;
  lim.max_line_length = 24;
  ExpectEvents("a1 AUTHENTICATE PLAIN\r\n" + std::string(24, 'A') + "\r\na2 NOOP\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("PLAIN")}), Line(std::string(24, 'A')),
                Cmd("a2", "NOOP")},
               lim);
  // No literal skipping in a raw line: "{3+}" at its end announces nothing.
  ExpectEvents("a1 AUTHENTICATE PLAIN\r\n" + std::string(25, 'A') + "{3+}\r\na2 NOOP\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("PLAIN")}), Err(Error::LineTooLong, "*"),
                Cmd("a2", "NOOP")},
               lim);
}

TEST(ImapParser, AuthenticateLoginUserAndPasswordLines) {
  // SASL LOGIN: the session calls expect_line() once more after the user name.
  CommandParser p;
  std::size_t used = 0;
  std::string in = "a1 AUTHENTICATE LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\na2 NOOP\r\n";
  ASSERT_EQ(p.feed(in, &used), Event::Command);
  EXPECT_EQ(p.take_command(), (Command{"a1", "AUTHENTICATE", {A("LOGIN")}}));
  in.erase(0, used);
  for (const char* expected : {"dXNlcg==", "cGFzcw=="}) {
    p.expect_line();
    ASSERT_EQ(p.feed(in, &used), Event::Line);
    EXPECT_EQ(p.line(), expected);
    in.erase(0, used);
  }
  ASSERT_EQ(p.feed(in, &used), Event::Command);
  EXPECT_EQ(p.take_command(), (Command{"a2", "NOOP", {}}));
}

TEST(ImapParser, AuthenticateLoginWithInitialResponse) {
  ExpectEvents("a1 AUTHENTICATE LOGIN dXNlcg==\r\n",
               {Cmd("a1", "AUTHENTICATE", {A("LOGIN"), A("dXNlcg==")})});
}

TEST(ImapParser, LoginWithKilobyteNameAndPassword) {
  const std::string name(1024, 'n'), password(1024, 'p');
  ExpectEvents("a1 LOGIN \"" + name + "\" \"" + password + "\"\r\n",
               {Cmd("a1", "LOGIN", {Q(name), Q(password)})});
  ExpectEvents("a1 LOGIN {1024}\r\n" + name + " {1024+}\r\n" + password + "\r\n",
               {Cont(), Cmd("a1", "LOGIN", {L(name), L(password)})});
}

// ---------------------------------------------------------------------------------------
// API details

TEST(ImapParser, EventConsumesOnlyUpToItsEnd) {
  CommandParser p;
  std::size_t used = 0;
  const std::string in = "a1 NOOP\r\na2 LOGIN {3}\r\nabc\r\n";
  ASSERT_EQ(p.feed(in, &used), Event::Command);
  EXPECT_EQ(used, 9u);
  EXPECT_EQ(p.take_command(), (Command{"a1", "NOOP", {}}));
  std::string_view rest = std::string_view(in).substr(used);
  ASSERT_EQ(p.feed(rest, &used), Event::Continue);
  EXPECT_EQ(used, 14u);
  rest.remove_prefix(used);
  ASSERT_EQ(p.feed(rest, &used), Event::Command);
  EXPECT_EQ(used, rest.size());
  EXPECT_EQ(p.take_command(), (Command{"a2", "LOGIN", {L("abc")}}));
  EXPECT_EQ(p.feed("", &used), Event::NeedMore);
  EXPECT_EQ(used, 0u);
}

TEST(ImapParser, UntakenCommandIsDroppedOnNextFeed) {
  CommandParser p;
  std::size_t used = 0;
  ASSERT_EQ(p.feed("a1 NOOP x\r\n", &used), Event::Command);
  ASSERT_EQ(p.feed("a2 CHECK\r\n", &used), Event::Command);
  EXPECT_EQ(p.take_command(), (Command{"a2", "CHECK", {}}));
}

TEST(ImapParser, ErrorNames) {
  EXPECT_STREQ(error_name(Error::LineTooLong), "line too long");
  EXPECT_STREQ(error_name(Error::LiteralTooLarge), "literal too large");
  EXPECT_STREQ(error_name(Error::TooManyArguments), "too many arguments");
  EXPECT_STREQ(error_name(Error::MissingTag), "missing tag");
  EXPECT_STREQ(error_name(Error::BadTag), "invalid tag");
  EXPECT_STREQ(error_name(Error::MissingCommand), "missing command");
  EXPECT_STREQ(error_name(Error::BadSyntax), "syntax error");
}

TEST(ImapParser, LiteralsOfOneCommandShareABudget) {
  Limits lim;
  lim.max_literal_size = 10;
  lim.max_literal_total = 15;
  // 10 + 5 fit; a third literal does not (non-synchronising: fatal, as for one too large).
  ExpectEvents("a1 ID ({10+}\r\n0123456789 {5+}\r\n01234)\r\n",
               {Cmd("a1", "ID", {Open(), L("0123456789"), L("01234"), Close()})}, lim);
  ExpectEvents("a1 ID ({10+}\r\n0123456789 {6}\r\na2 NOOP\r\n",
               {Err(Error::LiteralTooLarge, "a1"), Cmd("a2", "NOOP")}, lim);
  ExpectEvents("a1 ID ({10+}\r\n0123456789 {6+}\r\n012345)\r\n",
               {Fatal(Error::LiteralTooLarge, "a1")}, lim);
  // The budget is per command: the next one starts afresh.
  ExpectEvents("a1 LOGIN {10+}\r\n0123456789 {5+}\r\n01234\r\na2 LOGIN {10+}\r\n0123456789 x\r\n",
               {Cmd("a1", "LOGIN", {L("0123456789"), L("01234")}),
                Cmd("a2", "LOGIN", {L("0123456789"), A("x")})}, lim);
}

}  // namespace
}  // namespace sy::imap
