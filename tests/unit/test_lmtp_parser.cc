// Unit tests for the resumable LMTP command parser and its formatting helpers.
//
// Every case is an input byte stream plus the list of events it must produce. Each case is
// run three ways and must give the same events every time: fed whole, fed one byte at a
// time, and fed in several seeded random splits. The helper behaves like a session: it
// re-feeds whatever an event left unconsumed.
#include "lmtp/parser.h"

#include <gtest/gtest.h>

#include "splits.h"

#include <cstdio>
#include <string>
#include <vector>

namespace sy::lmtp {
namespace {

using namespace std::string_literals;

using sy::test::Escape;

const char* BodyName(Body b) {
  switch (b) {
    case Body::Unspecified: return "-";
    case Body::SevenBit: return "7BIT";
    case Body::EightBitMime: return "8BITMIME";
  }
  return "?";
}

// Fields are bracketed so that spaces inside them are visible in a failure message.
std::string Describe(const Command& cmd) {
  std::string out = std::string(verb_name(cmd.verb)) + " arg=[" + Escape(cmd.arg) + "] addr=[" +
                    Escape(cmd.address) + "]";
  for (const auto& [k, v] : cmd.params) out += " {" + Escape(k) + "=" + Escape(v) + "}";
  if (cmd.size) out += " size=" + std::to_string(*cmd.size);
  out += " body=" + std::string(BodyName(cmd.body));
  return out;
}

using Params = std::vector<std::pair<std::string, std::string>>;

std::string Cmd(Verb verb, std::string arg = {}) {
  Command c;
  c.verb = verb;
  c.arg = std::move(arg);
  return Describe(c);
}
std::string Mail(std::string address, Params params = {},
                 std::optional<std::uint64_t> size = std::nullopt, Body body = Body::Unspecified) {
  Command c;
  c.verb = Verb::Mail;
  c.address = std::move(address);
  c.params = std::move(params);
  c.size = size;
  c.body = body;
  return Describe(c);
}
std::string Rcpt(std::string address, Params params = {}) {
  Command c;
  c.verb = Verb::Rcpt;
  c.address = std::move(address);
  c.params = std::move(params);
  return Describe(c);
}
std::string Err(Error e) { return "ERROR " + std::string(error_name(e)); }

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
        case Event::Command: out.push_back(Describe(p.take_command())); break;
        case Event::Error:
          EXPECT_NE(p.error(), Error::None);
          EXPECT_FALSE(p.fatal());
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
// Commands

TEST(LmtpParser, PostfixTransaction) {
  // What Postfix's lmtp(8) sends for one message to two recipients (pipelined).
  ExpectEvents(
      "LHLO mx.example.com\r\n"
      "MAIL FROM:<sender@example.org> SIZE=1234 BODY=8BITMIME\r\n"
      "RCPT TO:<alice@example.com>\r\n"
      "RCPT TO:<bob@example.com> ORCPT=rfc822;bob@example.com\r\n"
      "DATA\r\n",
      {Cmd(Verb::Lhlo, "mx.example.com"),
       Mail("sender@example.org", {{"SIZE", "1234"}, {"BODY", "8BITMIME"}}, 1234,
            Body::EightBitMime),
       Rcpt("alice@example.com"), Rcpt("bob@example.com", {{"ORCPT", "rfc822;bob@example.com"}}),
       Cmd(Verb::Data)});
}

TEST(LmtpParser, VerbsAreCaseInsensitive) {
  ExpectEvents("lhlo x\r\nmail from:<a@b>\r\nRcPt tO:<c@d>\r\ndata\r\nrset\r\nnoop\r\nquit\r\n",
               {Cmd(Verb::Lhlo, "x"), Mail("a@b"), Rcpt("c@d"), Cmd(Verb::Data), Cmd(Verb::Rset),
                Cmd(Verb::Noop), Cmd(Verb::Quit)});
}

TEST(LmtpParser, LhloTakesOneWord) {
  ExpectEvents("LHLO [192.0.2.1]\r\nLHLO  host   \r\nLHLO\r\nLHLO \r\nLHLO a b\r\n",
               {Cmd(Verb::Lhlo, "[192.0.2.1]"), Cmd(Verb::Lhlo, "host"), Err(Error::Syntax),
                Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, HeloAndEhloAreUnknownInLmtp) {
  ExpectEvents("HELO x\r\nEHLO x\r\nLHLO x\r\n",
               {Err(Error::UnknownCommand), Err(Error::UnknownCommand), Cmd(Verb::Lhlo, "x")});
}

TEST(LmtpParser, NullReversePath) {
  ExpectEvents("MAIL FROM:<>\r\nMAIL FROM:<> BODY=7BIT\r\n",
               {Mail(""), Mail("", {{"BODY", "7BIT"}}, std::nullopt, Body::SevenBit)});
}

TEST(LmtpParser, NullForwardPathIsSyntaxError) {
  ExpectEvents("RCPT TO:<>\r\nNOOP\r\n", {Err(Error::Syntax), Cmd(Verb::Noop)});
}

TEST(LmtpParser, SpaceAfterColonTolerated) {
  ExpectEvents("MAIL FROM: <a@b>\r\nRCPT TO:  <c@d>\r\nRCPT TO:\t<e@f>\r\nMAIL FROM: <>\r\n",
               {Mail("a@b"), Rcpt("c@d"), Rcpt("e@f"), Mail("")});
}

TEST(LmtpParser, OtherMisplacedSpacesAreSyntaxErrors) {
  ExpectEvents("MAIL FROM :<a@b>\r\nMAIL  FROM:<a@b>\r\nRCPT TO:<c@d >\r\nRCPT TO:< c@d>\r\n",
               {Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, MailAndRcptNeedTheirKeyword) {
  ExpectEvents("MAIL\r\nMAIL TO:<a@b>\r\nRCPT FROM:<a@b>\r\nRCPT <a@b>\r\nMAIL FROM\r\n",
               {Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax),
                Err(Error::Syntax)});
}

TEST(LmtpParser, MissingBracketsIsSyntaxError) {
  ExpectEvents("MAIL FROM:a@b\r\nRCPT TO:c@d\r\nRCPT TO:<c@d\r\nRCPT TO:c@d>\r\nMAIL FROM:\r\n",
               {Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax),
                Err(Error::Syntax)});
}

TEST(LmtpParser, QuotedLocalPart) {
  ExpectEvents("RCPT TO:<\"john doe\"@example.com>\r\n", {Rcpt("john doe@example.com")});
}

TEST(LmtpParser, QuotedLocalPartEscapesAreUnquoted) {
  ExpectEvents("RCPT TO:<\"a\\\"b\\\\c\\d\"@x>\r\n", {Rcpt("a\"b\\cd@x")});
}

TEST(LmtpParser, QuotedLocalPartMayHoldAtAndSpecials) {
  ExpectEvents("RCPT TO:<\"a@b<>(),;: \"@x>\r\nMAIL FROM:<\"\"@x>\r\n",
               {Rcpt("a@b<>(),;: @x"), Mail("@x")});
}

TEST(LmtpParser, QuotedLocalPartBadContent) {
  // Tab is neither qtextSMTP nor quotable; the quote must be closed; "\" needs a byte.
  ExpectEvents("RCPT TO:<\"a\tb\"@x>\r\nRCPT TO:<\"ab@x>\r\nRCPT TO:<\"ab\\\r\nRCPT TO:<\"a\"b@x>\r\n",
               {Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, PostmasterWithoutDomain) {
  ExpectEvents("RCPT TO:<Postmaster>\r\nRCPT TO:<postMASTER> NOTIFY=NEVER\r\n",
               {Rcpt("Postmaster"), Rcpt("postMASTER", {{"NOTIFY", "NEVER"}})});
}

TEST(LmtpParser, OnlyPostmasterMayLackADomain) {
  ExpectEvents("RCPT TO:<alice>\r\nMAIL FROM:<Postmaster>\r\nRCPT TO:<\"Postmaster\">\r\n",
               {Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, SourceRouteIsDropped) {
  ExpectEvents("RCPT TO:<@relay.example,@b.example:user@example.com>\r\n"
               "MAIL FROM:<@a:x@y>\r\nRCPT TO:<@a,b:x@y>\r\nRCPT TO:<@a x@y>\r\n",
               {Rcpt("user@example.com"), Mail("x@y"), Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, AddressLiteralDomain) {
  ExpectEvents("RCPT TO:<a@[192.0.2.1]>\r\nRCPT TO:<a@[IPv6:2001:db8::1]>\r\n",
               {Rcpt("a@[192.0.2.1]"), Rcpt("a@[IPv6:2001:db8::1]")});
}

TEST(LmtpParser, BadDomains) {
  ExpectEvents(
      "RCPT TO:<a@>\r\nRCPT TO:<a@.x>\r\nRCPT TO:<a@x..y>\r\nRCPT TO:<a@x.>\r\n"
      "RCPT TO:<a@[]>\r\nRCPT TO:<a@[1.2.3.4>\r\nRCPT TO:<a@x y>\r\nRCPT TO:<a@b@c>\r\n",
      {Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax),
       Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, DomainCaseAndUnderscoresKept) {
  ExpectEvents("RCPT TO:<Alice@Mail_1.Example.COM>\r\n", {Rcpt("Alice@Mail_1.Example.COM")});
}

TEST(LmtpParser, LenientDotString) {
  // Postfix passes these on; refusing them here would bounce mail already accepted.
  ExpectEvents("RCPT TO:<a..b@x>\r\nRCPT TO:<.a@x>\r\nRCPT TO:<a.@x>\r\n",
               {Rcpt("a..b@x"), Rcpt(".a@x"), Rcpt("a.@x")});
}

TEST(LmtpParser, AtextSpecialsInDotString) {
  ExpectEvents("RCPT TO:<a+tag!#$%&'*/=?^_`{|}~-@x>\r\n", {Rcpt("a+tag!#$%&'*/=?^_`{|}~-@x")});
}

TEST(LmtpParser, Utf8AddressAccepted) {
  ExpectEvents("RCPT TO:<j\xc3\xb6rg@b\xc3\xbc" "cher.example>\r\n",
               {Rcpt("j\xc3\xb6rg@b\xc3\xbc" "cher.example")});
}

TEST(LmtpParser, ControlCharacterInAddressIsSyntaxError) {
  ExpectEvents("RCPT TO:<a\x01@x>\r\nRCPT TO:<a@x\x7f>\r\n", {Err(Error::Syntax), Err(Error::Syntax)});
}

// ---------------------------------------------------------------------------------------
// Parameters

TEST(LmtpParser, SizeAndBodyParams) {
  ExpectEvents("MAIL FROM:<a@b> SIZE=0\r\nMAIL FROM:<a@b> BODY=8BITMIME SIZE=18446744073709551615\r\n",
               {Mail("a@b", {{"SIZE", "0"}}, 0),
                Mail("a@b", {{"BODY", "8BITMIME"}, {"SIZE", "18446744073709551615"}},
                     18446744073709551615ULL, Body::EightBitMime)});
}

TEST(LmtpParser, KeywordsAndBodyValueUppercased) {
  ExpectEvents("MAIL FROM:<a@b> body=8bitmime size=7 ret=hdrs\r\n",
               {Mail("a@b", {{"BODY", "8BITMIME"}, {"SIZE", "7"}, {"RET", "hdrs"}}, 7,
                     Body::EightBitMime)});
}

TEST(LmtpParser, BadSizeIsSyntaxError) {
  ExpectEvents(
      "MAIL FROM:<a@b> SIZE\r\nMAIL FROM:<a@b> SIZE=\r\nMAIL FROM:<a@b> SIZE=12k\r\n"
      "MAIL FROM:<a@b> SIZE=18446744073709551616\r\nMAIL FROM:<a@b> SIZE=-1\r\n"
      "MAIL FROM:<a@b> SIZE=000000000000000000001\r\n",
      {Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax),
       Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, UnsupportedBodyIsSyntaxError) {
  ExpectEvents("MAIL FROM:<a@b> BODY=BINARYMIME\r\nMAIL FROM:<a@b> BODY\r\n",
               {Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, OtherParamsKeptInOrder) {
  ExpectEvents("MAIL FROM:<a@b> SMTPUTF8 ENVID=QQ314159 RET=FULL AUTH=<>\r\n"
               "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+2Bx@d X-Y=\xc3\xa4\r\n",
               {Mail("a@b", {{"SMTPUTF8", ""}, {"ENVID", "QQ314159"}, {"RET", "FULL"}, {"AUTH", "<>"}}),
                Rcpt("c@d", {{"NOTIFY", "SUCCESS,FAILURE"}, {"ORCPT", "rfc822;c+2Bx@d"},
                             {"X-Y", "\xc3\xa4"}})});
}

TEST(LmtpParser, SizeAndBodyOnRcptAreJustParameters) {
  ExpectEvents("RCPT TO:<c@d> SIZE=big BODY=x\r\n", {Rcpt("c@d", {{"SIZE", "big"}, {"BODY", "x"}})});
}

TEST(LmtpParser, ParamsWithRunsOfSpacesAndTrailingSpaces) {
  ExpectEvents("MAIL FROM:<a@b>   SIZE=5    RET=HDRS  \r\nRCPT TO:<c@d> \r\n",
               {Mail("a@b", {{"SIZE", "5"}, {"RET", "HDRS"}}, 5), Rcpt("c@d")});
}

TEST(LmtpParser, DuplicateParamIsSyntaxError) {
  ExpectEvents("MAIL FROM:<a@b> SIZE=1 size=2\r\nRCPT TO:<c@d> NOTIFY=NEVER NOTIFY=NEVER\r\n",
               {Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, BadParamSyntax) {
  ExpectEvents(
      "MAIL FROM:<a@b>SIZE=1\r\nMAIL FROM:<a@b> =x\r\nMAIL FROM:<a@b> KEY=\r\n"
      "MAIL FROM:<a@b> -KEY\r\nMAIL FROM:<a@b> KEY=a=b\r\nMAIL FROM:<a@b> K_Y\r\n"
      "MAIL FROM:<a@b> KEY=a\tb\r\n",
      {Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax),
       Err(Error::Syntax), Err(Error::Syntax), Err(Error::Syntax)});
}

// ---------------------------------------------------------------------------------------
// Commands without paths

TEST(LmtpParser, DataRsetQuitTakeNoArguments) {
  ExpectEvents("DATA  \r\nRSET \r\nQUIT\r\nDATA x\r\nRSET now\r\nQUIT please\r\n",
               {Cmd(Verb::Data), Cmd(Verb::Rset), Cmd(Verb::Quit), Err(Error::Syntax),
                Err(Error::Syntax), Err(Error::Syntax)});
}

TEST(LmtpParser, NoopWithAndWithoutString) {
  ExpectEvents("NOOP\r\nNOOP \r\nNOOP hello  there \r\n",
               {Cmd(Verb::Noop), Cmd(Verb::Noop), Cmd(Verb::Noop, "hello  there ")});
}

TEST(LmtpParser, VrfyNeedsAString) {
  ExpectEvents("VRFY alice\r\nVRFY <a@b> x\r\nVRFY\r\nVRFY   \r\n",
               {Cmd(Verb::Vrfy, "alice"), Cmd(Verb::Vrfy, "<a@b> x"), Err(Error::Syntax),
                Err(Error::Syntax)});
}

TEST(LmtpParser, UnknownCommands) {
  ExpectEvents("BDAT 10 LAST\r\nSTARTTLS\r\nMAILFROM:<a@b>\r\nDATAX\r\nEXPN x\r\nDATA\r\n",
               {Err(Error::UnknownCommand), Err(Error::UnknownCommand), Err(Error::UnknownCommand),
                Err(Error::UnknownCommand), Err(Error::UnknownCommand), Cmd(Verb::Data)});
}

TEST(LmtpParser, EmptyLineAndLeadingSpaceAreUnknown) {
  ExpectEvents("\r\n NOOP\r\n\tNOOP\r\nNOOP\r\n",
               {Err(Error::UnknownCommand), Err(Error::UnknownCommand), Err(Error::UnknownCommand),
                Cmd(Verb::Noop)});
}

// ---------------------------------------------------------------------------------------
// Line ends and limits

TEST(LmtpParser, BareLfIsErrorAndEndsTheLine) {
  ExpectEvents("NOOP\nQUIT\r\n\nRCPT TO:<a@b>\n\r\nRSET\r\n",
               {Err(Error::BareLf), Cmd(Verb::Quit), Err(Error::BareLf), Err(Error::BareLf),
                Err(Error::UnknownCommand), Cmd(Verb::Rset)});
}

TEST(LmtpParser, BareCrIsError) {
  ExpectEvents("NO\rOP\r\nNOOP\r\r\n\r\r\nMAIL FROM:<a@b>\rx\nRSET\r\n",
               {Err(Error::BareCr), Err(Error::BareCr), Err(Error::BareCr), Err(Error::BareCr),
                Cmd(Verb::Rset)});
}

TEST(LmtpParser, NulIsError) {
  ExpectEvents("NO\0OP\r\nRCPT TO:<a\0@b>\r\n\0\r\nNOOP\r\n"s,
               {Err(Error::Nul), Err(Error::Nul), Err(Error::Nul), Cmd(Verb::Noop)});
}

TEST(LmtpParser, FirstFaultOfALineIsReported) {
  ExpectEvents("X\0\rY\r\nQ\ra\0\r\nDATA\r\n"s, {Err(Error::Nul), Err(Error::BareCr), Cmd(Verb::Data)});
}

TEST(LmtpParser, LineTooLongIsNotFatal) {
  Limits lim;
  lim.max_line_length = 20;
  ExpectEvents("RCPT TO:<" + std::string(40, 'a') + "@b>\r\nRSET\r\n",
               {Err(Error::LineTooLong), Cmd(Verb::Rset)}, lim);
}

TEST(LmtpParser, LineExactlyAtLimitIsAccepted) {
  Limits lim;
  lim.max_line_length = 14;
  ExpectEvents("RCPT TO:<a@bc>\r\nRCPT TO:<a@bcd>\r\nRCPT TO:<a@bc>\r\n",
               {Rcpt("a@bc"), Err(Error::LineTooLong), Rcpt("a@bc")}, lim);
}

TEST(LmtpParser, LineTooLongWinsOverAnEarlierFault) {
  Limits lim;
  lim.max_line_length = 10;
  ExpectEvents("A\0" + std::string(20, 'x') + "\r\nB\r\r\r\r\r\r\r\r\r\r\r\r\nC\0\r\nNOOP\r\n"s,
               {Err(Error::LineTooLong), Err(Error::LineTooLong), Err(Error::Nul), Cmd(Verb::Noop)},
               lim);
}

TEST(LmtpParser, OverlongLineEndedByBareLf) {
  Limits lim;
  lim.max_line_length = 8;
  ExpectEvents("NOOP 123456789\nNOOP\r\n", {Err(Error::LineTooLong), Cmd(Verb::Noop)}, lim);
}

TEST(LmtpParser, DefaultLimitIs4096) {
  const std::string ok = "NOOP " + std::string(4091, 'x');
  ExpectEvents(ok + "\r\n" + ok + "y\r\n", {Cmd(Verb::Noop, std::string(4091, 'x')),
                                            Err(Error::LineTooLong)});
}

TEST(LmtpParser, HugeOverlongLineIsSkippedAndTheNextCommandParses) {
  ExpectEvents("NOOP " + std::string(100000, 'z') + "\r\nQUIT\r\n",
               {Err(Error::LineTooLong), Cmd(Verb::Quit)});
}

TEST(LmtpParser, IncompleteCommandProducesNoEvent) {
  ExpectEvents("RSET\r\nMAIL FROM:<a@b>\r", {Cmd(Verb::Rset)});
}

// ---------------------------------------------------------------------------------------
// API details

TEST(LmtpParser, PipelinedCommandsStopAtData) {
  // The bytes after DATA's CRLF are the message: the parser must not have eaten them.
  CommandParser p;
  const std::string in = "RCPT TO:<a@b>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";
  std::size_t used = 0;
  ASSERT_EQ(p.feed(in, &used), Event::Command);
  EXPECT_EQ(used, 15u);
  EXPECT_EQ(p.take_command().address, "a@b");
  ASSERT_EQ(p.feed(std::string_view(in).substr(15), &used), Event::Command);
  EXPECT_EQ(used, 6u);
  EXPECT_EQ(p.take_command().verb, Verb::Data);
}

TEST(LmtpParser, UntakenCommandIsDroppedOnNextFeed) {
  CommandParser p;
  std::size_t used = 0;
  ASSERT_EQ(p.feed("RCPT TO:<a@b>\r\n", &used), Event::Command);
  ASSERT_EQ(p.feed("NOOP\r\n", &used), Event::Command);
  const Command c = p.take_command();
  EXPECT_EQ(c.verb, Verb::Noop);
  EXPECT_TRUE(c.address.empty());
  EXPECT_EQ(p.feed("", &used), Event::NeedMore);
  EXPECT_EQ(used, 0u);
}

TEST(LmtpParser, ErrorNamesAndReplyCodes) {
  EXPECT_STREQ(error_name(Error::LineTooLong), "line too long");
  EXPECT_STREQ(error_name(Error::UnknownCommand), "unknown command");
  EXPECT_EQ(reply_code(Error::Syntax), 501);
  for (Error e : {Error::LineTooLong, Error::BareLf, Error::BareCr, Error::Nul,
                  Error::UnknownCommand}) {
    EXPECT_EQ(reply_code(e), 500) << error_name(e);
  }
  EXPECT_STREQ(verb_name(Verb::Lhlo), "LHLO");
  EXPECT_STREQ(verb_name(Verb::Vrfy), "VRFY");
}

TEST(LmtpParser, ParseCommandLineDirectly) {
  Command c;
  EXPECT_EQ(parse_command_line("RCPT TO:<\"x y\"@z>", &c), Error::None);
  EXPECT_EQ(c.address, "x y@z");
  EXPECT_EQ(parse_command_line("RCPT TO:<x y@z>", &c), Error::Syntax);
  EXPECT_EQ(c, Command{});
  EXPECT_EQ(parse_command_line("XYZZY", &c), Error::UnknownCommand);
}

// ---------------------------------------------------------------------------------------
// Formatting for the store side

TEST(LmtpFormat, PathQuotesOnlyWhenNeeded) {
  EXPECT_EQ(format_path(""), "<>");
  EXPECT_EQ(format_path("a.b+c@example.com"), "<a.b+c@example.com>");
  EXPECT_EQ(format_path("john doe@x"), "<\"john doe\"@x>");
  EXPECT_EQ(format_path("a\"b\\c@x"), "<\"a\\\"b\\\\c\"@x>");
  EXPECT_EQ(format_path("a@b@x"), "<\"a@b\"@x>");
  EXPECT_EQ(format_path("a..b@x"), "<\"a..b\"@x>");
  EXPECT_EQ(format_path(".a@x"), "<\".a\"@x>");
  EXPECT_EQ(format_path("@x"), "<\"\"@x>");
  EXPECT_EQ(format_path("Postmaster"), "<Postmaster>");
  EXPECT_EQ(format_path("a@[192.0.2.1]"), "<a@[192.0.2.1]>");
  EXPECT_EQ(format_path("j\xc3\xb6rg@x"), "<j\xc3\xb6rg@x>");
}

TEST(LmtpFormat, AddressLiteralMayHoldAnAtSign) {
  // dcontent allows "@": the domain of a literal starts at its "[", not at the last "@".
  Command c;
  ASSERT_EQ(parse_command_line("RCPT TO:<u@[IPv6:a@b]>", &c), Error::None);
  EXPECT_EQ(c.address, "u@[IPv6:a@b]");
  EXPECT_EQ(format_path(c.address), "<u@[IPv6:a@b]>");
  ASSERT_EQ(parse_command_line("RCPT TO:<\"x@[y\"@[1.2.3.4]>", &c), Error::None);
  EXPECT_EQ(format_path(c.address), "<\"x@[y\"@[1.2.3.4]>");
}

TEST(LmtpFormat, SplitMailbox) {
  const auto m = split_mailbox("a@b@example.com");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->local, "a@b");
  EXPECT_EQ(m->domain, "example.com");
  const auto lit = split_mailbox("a@[IPv6:x@y]");
  ASSERT_TRUE(lit.has_value());
  EXPECT_EQ(lit->local, "a");
  EXPECT_EQ(lit->domain, "[IPv6:x@y]");
  EXPECT_FALSE(split_mailbox("").has_value());
  EXPECT_FALSE(split_mailbox("Postmaster").has_value());
  EXPECT_FALSE(split_mailbox("a@x]").has_value());
}

TEST(LmtpFormat, UnwritablePaths) {
  EXPECT_EQ(format_path("alice"), std::nullopt);
  EXPECT_EQ(format_path("a@"), std::nullopt);
  EXPECT_EQ(format_path("a@x..y"), std::nullopt);
  EXPECT_EQ(format_path("a\tb@x"), std::nullopt);
  EXPECT_EQ(format_path("a\r\n@x"), std::nullopt);
}

TEST(LmtpFormat, Commands) {
  Command mail;
  mail.verb = Verb::Mail;
  mail.address = "a b@x";
  mail.params = {{"SIZE", "10"}, {"SMTPUTF8", ""}};
  EXPECT_EQ(format_command(mail), "MAIL FROM:<\"a b\"@x> SIZE=10 SMTPUTF8\r\n");
  mail.address = "";
  EXPECT_EQ(format_command(mail), "MAIL FROM:<> SIZE=10 SMTPUTF8\r\n");
  mail.address = "Postmaster";  // not a reverse-path
  EXPECT_EQ(format_command(mail), std::nullopt);

  Command rcpt;
  rcpt.verb = Verb::Rcpt;
  EXPECT_EQ(format_command(rcpt), std::nullopt);  // no null forward-path
  rcpt.address = "postmaster";
  EXPECT_EQ(format_command(rcpt), "RCPT TO:<postmaster>\r\n");
  rcpt.params = {{"BAD KEY", "x"}};
  EXPECT_EQ(format_command(rcpt), std::nullopt);
  rcpt.params = {{"K", "a=b"}};
  EXPECT_EQ(format_command(rcpt), std::nullopt);

  Command lhlo;
  lhlo.verb = Verb::Lhlo;
  lhlo.arg = "router.example";
  EXPECT_EQ(format_command(lhlo), "LHLO router.example\r\n");
  lhlo.arg = "a b";
  EXPECT_EQ(format_command(lhlo), std::nullopt);

  Command noop;
  noop.verb = Verb::Noop;
  noop.arg = "x\r\nQUIT";
  EXPECT_EQ(format_command(noop), std::nullopt);
  Command data;
  data.verb = Verb::Data;
  EXPECT_EQ(format_command(data), "DATA\r\n");
}

TEST(LmtpFormat, FormattedCommandsParseBackToTheSame) {
  const char* lines[] = {
      "lhlo x.example",
      "MAIL FROM:<> BODY=7bit",
      "mail from: <\"a\\\"b\"@x> size=99 ENVID=abc",
      "RCPT TO:<@r1,@r2:u@[1.2.3.4]> NOTIFY=NEVER",
      "RCPT TO:<\"a..b\"@x>",
      "RCPT TO:<a..b@x>",
      "RCPT TO:<PostMaster>",
      "RCPT TO:<\"\"@x>",
      "NOOP  spaced  ",
      "VRFY  x",
      "DATA ",
      "RSET",
      "QUIT",
  };
  for (const char* line : lines) {
    SCOPED_TRACE(line);
    Command c;
    ASSERT_EQ(parse_command_line(line, &c), Error::None);
    const std::optional<std::string> text = format_command(c);
    ASSERT_TRUE(text.has_value());
    ASSERT_GE(text->size(), 2u);
    Command again;
    ASSERT_EQ(parse_command_line(std::string_view(*text).substr(0, text->size() - 2), &again),
              Error::None);
    EXPECT_EQ(again, c) << *text;
  }
}

}  // namespace
}  // namespace sy::lmtp
