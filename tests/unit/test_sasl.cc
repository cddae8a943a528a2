// Unit tests for SASL PLAIN and LOGIN (proxy/sasl.h): SaslServer on its own, then whole
// exchanges as the IMAP and POP3 sessions run them, the client's bytes read by the real
// command parsers fed whole, one byte at a time and in random splits.
#include "proxy/sasl.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "imap/parser.h"
#include "pop3/parser.h"
#include "splits.h"

namespace sy {
namespace {

using namespace std::string_literals;
using Status = SaslServer::Status;

std::string B64(std::string_view s) { return base64_encode(s); }

TEST(Sasl, LoginPromptsAreUsernameAndPassword) {
  EXPECT_EQ(base64_decode(kLoginUserPrompt), "Username:");
  EXPECT_EQ(base64_decode(kLoginPasswordPrompt), "Password:");
}

TEST(Sasl, MechanismNamesAreCaseInsensitive) {
  EXPECT_EQ(parse_sasl_mechanism("PLAIN"), SaslMechanism::Plain);
  EXPECT_EQ(parse_sasl_mechanism("plain"), SaslMechanism::Plain);
  EXPECT_EQ(parse_sasl_mechanism("Login"), SaslMechanism::Login);
  EXPECT_EQ(parse_sasl_mechanism("LOGINX"), std::nullopt);
  EXPECT_EQ(parse_sasl_mechanism("CRAM-MD5"), std::nullopt);
  EXPECT_EQ(parse_sasl_mechanism(""), std::nullopt);
  EXPECT_STREQ(sasl_mechanism_name(SaslMechanism::Plain), "PLAIN");
  EXPECT_STREQ(sasl_mechanism_name(SaslMechanism::Login), "LOGIN");
}

TEST(Sasl, PlainWithoutInitialResponseSendsAnEmptyChallenge) {
  SaslServer s(SaslMechanism::Plain);
  ASSERT_EQ(s.start(std::nullopt), Status::Challenge);
  EXPECT_EQ(s.challenge(), "");
  ASSERT_EQ(s.respond(B64(std::string("\0jane\0pw", 8))), Status::Done);
  PlainCredentials c = s.take_credentials();
  EXPECT_EQ(c.authcid, "jane");
  EXPECT_EQ(c.password, "pw");
}

TEST(Sasl, PlainWithInitialResponseKeepsTheAuthzid) {
  SaslServer s(SaslMechanism::Plain);
  ASSERT_EQ(s.start(B64(std::string("admin\0jane\0pw", 13))), Status::Done);
  PlainCredentials c = s.take_credentials();
  EXPECT_EQ(c.authzid, "admin");
  EXPECT_EQ(c.authcid, "jane");
}

TEST(Sasl, PlainEmptyOrBadResponsesAreMalformed) {
  for (const std::string& ir : {"="s, "!!"s, B64("janepw")}) {
    SaslServer s(SaslMechanism::Plain);
    EXPECT_EQ(s.start(ir), Status::Malformed) << ir;
  }
  SaslServer s(SaslMechanism::Plain);
  ASSERT_EQ(s.start(std::nullopt), Status::Challenge);
  EXPECT_EQ(s.respond(""), Status::Malformed);
}

TEST(Sasl, LoginAsksForUserThenPassword) {
  SaslServer s(SaslMechanism::Login);
  ASSERT_EQ(s.start(std::nullopt), Status::Challenge);
  EXPECT_EQ(s.challenge(), kLoginUserPrompt);
  ASSERT_EQ(s.respond(B64("jane")), Status::Challenge);
  EXPECT_EQ(s.challenge(), kLoginPasswordPrompt);
  ASSERT_EQ(s.respond(B64("s3cret pw")), Status::Done);
  PlainCredentials c = s.take_credentials();
  EXPECT_EQ(c.authzid, "");
  EXPECT_EQ(c.authcid, "jane");
  EXPECT_EQ(c.password, "s3cret pw");
}

TEST(Sasl, LoginInitialResponseIsTheUserName) {
  SaslServer s(SaslMechanism::Login);
  ASSERT_EQ(s.start(B64("jane")), Status::Challenge);
  EXPECT_EQ(s.challenge(), kLoginPasswordPrompt);
  ASSERT_EQ(s.respond(B64("pw")), Status::Done);
  EXPECT_EQ(s.take_credentials().authcid, "jane");
}

TEST(Sasl, LoginEmptyInitialResponseAsksForTheUserName) {
  SaslServer s(SaslMechanism::Login);
  ASSERT_EQ(s.start("="), Status::Challenge);
  EXPECT_EQ(s.challenge(), kLoginUserPrompt);
}

TEST(Sasl, LoginEmptyPasswordIsAllowedEmptyUserIsNot) {
  SaslServer s(SaslMechanism::Login);
  ASSERT_EQ(s.start(B64("jane")), Status::Challenge);
  ASSERT_EQ(s.respond(""), Status::Done);
  EXPECT_EQ(s.take_credentials().password, "");
  SaslServer t(SaslMechanism::Login);
  ASSERT_EQ(t.start(std::nullopt), Status::Challenge);
  EXPECT_EQ(t.respond(""), Status::Malformed);
}

TEST(Sasl, LoginBadBase64IsMalformed) {
  SaslServer s(SaslMechanism::Login);
  ASSERT_EQ(s.start(std::nullopt), Status::Challenge);
  EXPECT_EQ(s.respond("amFuZQ"), Status::Malformed);  // unpadded
  SaslServer t(SaslMechanism::Login);
  ASSERT_EQ(t.start(B64("jane")), Status::Challenge);
  EXPECT_EQ(t.respond("pw!"), Status::Malformed);
}

TEST(Sasl, StarCancelsAtEveryStep) {
  for (SaslMechanism m : kSaslMechanisms) {
    SaslServer a(m);
    EXPECT_EQ(a.start("*"), Status::Cancelled);
    SaslServer b(m);
    ASSERT_EQ(b.start(std::nullopt), Status::Challenge);
    EXPECT_EQ(b.respond("*"), Status::Cancelled);
  }
  SaslServer c(SaslMechanism::Login);
  ASSERT_EQ(c.start(B64("jane")), Status::Challenge);
  EXPECT_EQ(c.respond("*"), Status::Cancelled);
}

TEST(Sasl, AnswersAfterTheEndAreMalformed) {
  SaslServer s(SaslMechanism::Login);
  ASSERT_EQ(s.start(B64("jane")), Status::Challenge);
  ASSERT_EQ(s.respond(B64("pw")), Status::Done);
  EXPECT_EQ(s.respond(B64("more")), Status::Malformed);
  SaslServer t(SaslMechanism::Plain);
  EXPECT_EQ(t.respond(B64(std::string("\0a\0b", 4))), Status::Malformed) << "before start()";
}

TEST(Sasl, KilobyteNameAndPassword) {
  const std::string name(1024, 'n'), password(1024, 'p');
  SaslServer s(SaslMechanism::Login);
  ASSERT_EQ(s.start(B64(name)), Status::Challenge);
  ASSERT_EQ(s.respond(B64(password)), Status::Done);
  PlainCredentials c = s.take_credentials();
  EXPECT_EQ(c.authcid, name);
  EXPECT_EQ(c.password, password);
  SaslServer p(SaslMechanism::Plain);
  ASSERT_EQ(p.start(B64("\0"s + name + "\0"s + password)), Status::Done);
  EXPECT_EQ(p.take_credentials().password, password);
}

TEST(Sasl, CredentialsAreTakenOnce) {
  SaslServer s(SaslMechanism::Login);
  ASSERT_EQ(s.start(B64("jane")), Status::Challenge);
  ASSERT_EQ(s.respond(B64("pw")), Status::Done);
  EXPECT_EQ(s.take_credentials().password, "pw");
  PlainCredentials again = s.take_credentials();
  EXPECT_EQ(again.authcid, "");
  EXPECT_EQ(again.password, "");
}

// ---------------------------------------------------------------------------------------
// Whole exchanges over the command parsers, as the sessions run them: the transcript of
// what the server would send ("+ challenge") and what it concludes.

using Transcript = std::vector<std::string>;

std::string Outcome(Status st, SaslServer& s) {
  if (st == Status::Cancelled) return "cancelled";
  if (st == Status::Malformed) return "malformed";
  PlainCredentials c = s.take_credentials();
  return "login " + c.authcid + " / " + c.password;
}

// Feeds the chunks to `Parser` as a session does; `on_command` starts an exchange for an
// authentication command (returns the mechanism and initial response) or names the
// command. Shared by the IMAP and POP3 drivers below.
template <class Parser, class Event, class OnCommand>
Transcript Exchange(const test::Chunks& chunks, OnCommand on_command) {
  Parser p;
  Transcript out;
  std::optional<SaslServer> sasl;
  std::string pending;
  for (const std::string& chunk : chunks) {
    pending += chunk;
    for (;;) {
      std::size_t used = 0;
      const Event ev = p.feed(pending, &used);
      pending.erase(0, used);
      if (ev == Event::NeedMore) break;
      Status st = Status::Challenge;
      if (ev == Event::Command) {
        std::optional<SaslMechanism> mech;
        std::optional<std::string> initial;
        std::string name = on_command(p.take_command(), &mech, &initial);
        if (!mech) {
          out.push_back(name);
          continue;
        }
        sasl.emplace(*mech);
        st = sasl->start(initial);
      } else if (ev == Event::Line && sasl) {
        st = sasl->respond(p.line());
      } else {
        out.push_back("error");
        sasl.reset();
        continue;
      }
      if (st == Status::Challenge) {
        out.push_back("+ " + std::string(sasl->challenge()));
        p.expect_line();
      } else {
        out.push_back(Outcome(st, *sasl));
        sasl.reset();
      }
    }
  }
  return out;
}

Transcript ImapExchange(const test::Chunks& chunks) {
  return Exchange<imap::CommandParser, imap::Event>(
      chunks, [](imap::Command cmd, std::optional<SaslMechanism>* mech,
                 std::optional<std::string>* initial) {
        if (cmd.name == "AUTHENTICATE" && !cmd.args.empty()) {
          *mech = parse_sasl_mechanism(cmd.args[0].value);
          if (cmd.args.size() == 2) *initial = cmd.args[1].value;
        }
        return cmd.tag + " " + cmd.name;
      });
}

Transcript Pop3Exchange(const test::Chunks& chunks) {
  return Exchange<pop3::CommandParser, pop3::Event>(
      chunks, [](pop3::Command cmd, std::optional<SaslMechanism>* mech,
                 std::optional<std::string>* initial) {
        if (cmd.name == "AUTH" && !cmd.args.empty()) {
          *mech = parse_sasl_mechanism(cmd.args[0]);
          if (cmd.args.size() == 2) *initial = cmd.args[1];
        }
        return cmd.name;
      });
}

void ExpectImap(const std::string& input, const Transcript& expected) {
  test::for_each_split(input, [&](const test::Chunks& c) { EXPECT_EQ(ImapExchange(c), expected); });
}
void ExpectPop3(const std::string& input, const Transcript& expected) {
  test::for_each_split(input, [&](const test::Chunks& c) { EXPECT_EQ(Pop3Exchange(c), expected); });
}

const std::string kUser = B64("jane");
const std::string kPass = B64("pass word");

TEST(SaslExchange, ImapAuthenticateLoginWithoutInitialResponse) {
  ExpectImap("a1 AUTHENTICATE LOGIN\r\n" + kUser + "\r\n" + kPass + "\r\na2 NOOP\r\n",
             {"+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "login jane / pass word", "a2 NOOP"});
}

TEST(SaslExchange, ImapAuthenticateLoginWithSaslIr) {
  ExpectImap("a1 authenticate login " + kUser + "\r\n" + kPass + "\r\na2 NOOP\r\n",
             {"+ UGFzc3dvcmQ6", "login jane / pass word", "a2 NOOP"});
}

TEST(SaslExchange, ImapAuthenticateLoginCancelledAtEachPrompt) {
  ExpectImap("a1 AUTHENTICATE LOGIN\r\n*\r\na2 AUTHENTICATE LOGIN\r\n" + kUser +
                 "\r\n*\r\na3 NOOP\r\n",
             {"+ VXNlcm5hbWU6", "cancelled", "+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "cancelled",
              "a3 NOOP"});
}

TEST(SaslExchange, ImapAuthenticatePlainStillWorks) {
  ExpectImap("a1 AUTHENTICATE PLAIN\r\n" + B64(std::string("\0jane\0pw", 8)) + "\r\n",
             {"+ ", "login jane / pw"});
}

TEST(SaslExchange, ImapTooLongAnswerIsAnErrorThenCommandsAgain) {
  // Past max_line_length (default 8192 in the bare parser) the answer is skipped.
  ExpectImap("a1 AUTHENTICATE LOGIN\r\n" + std::string(9000, 'A') + "\r\na2 NOOP\r\n",
             {"+ VXNlcm5hbWU6", "error", "a2 NOOP"});
}

TEST(SaslExchange, Pop3AuthLoginWithoutInitialResponse) {
  ExpectPop3("AUTH LOGIN\r\n" + kUser + "\r\n" + kPass + "\r\nSTAT\r\n",
             {"+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "login jane / pass word", "STAT"});
}

TEST(SaslExchange, Pop3AuthLoginWithInitialResponse) {
  ExpectPop3("AUTH LOGIN " + kUser + "\r\n" + kPass + "\r\nSTAT\r\n",
             {"+ UGFzc3dvcmQ6", "login jane / pass word", "STAT"});
}

TEST(SaslExchange, Pop3AuthLoginCancelled) {
  ExpectPop3("AUTH LOGIN\r\n" + kUser + "\r\n*\r\nCAPA\r\n",
             {"+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "cancelled", "CAPA"});
}

TEST(SaslExchange, Pop3MalformedAnswer) {
  ExpectPop3("AUTH LOGIN\r\nnot base64\r\nCAPA\r\n", {"+ VXNlcm5hbWU6", "malformed", "CAPA"});
}

}  // namespace
}  // namespace sy
