// The socketmap service's answers for each table and lookup outcome.
#include <gtest/gtest.h>

#include "config/config.h"
#include "map/chain.h"
#include "socketmap/session.h"

namespace {

sy::Config config() {
  sy::Config c;
  sy::BackendConfig b;
  b.name = "store1";
  b.hosts = {"10.0.0.1", "10.0.0.2"};
  b.lmtp = "10024";
  c.backends["store1"] = b;
  sy::BackendConfig u;
  u.name = "local";
  u.hosts = {"localhost"};
  u.lmtp = "unix:/run/dovecot/lmtp";
  c.backends["local"] = u;
  return c;
}

sy::ChainReply found(std::string user, std::string host, std::string port) {
  sy::ChainReply r;
  r.reply.status = sy::LookupStatus::Found;
  r.reply.answer = sy::MapAnswer{std::move(user), std::move(host), std::move(port)};
  return r;
}

sy::ChainReply status(sy::LookupStatus s) {
  sy::ChainReply r;
  r.reply.status = s;
  return r;
}

}  // namespace

TEST(SocketmapReply, TransportIsTheBackendsLmtpNextHop) {
  EXPECT_EQ(sy::socketmap_reply(config(), "transport", found("", "store1", "")),
            "OK lmtp:inet:10.0.0.1:10024");
  EXPECT_EQ(sy::socketmap_reply(config(), "transport", found("", "local", "")),
            "OK lmtp:unix:/run/dovecot/lmtp");
}

TEST(SocketmapReply, TransportForAPlainHostUsesItsPortOrLmtpDefault) {
  EXPECT_EQ(sy::socketmap_reply(config(), "transport", found("", "mail.example", "")),
            "OK lmtp:inet:mail.example:24");
  EXPECT_EQ(sy::socketmap_reply(config(), "transport", found("", "::1", "143")),
            "OK lmtp:inet:[::1]:24");  // the answer's port is a login port
}

TEST(SocketmapReply, MailboxAndBackendTables) {
  EXPECT_EQ(sy::socketmap_reply(config(), "mailbox", found("", "store1", "")), "OK store1");
  EXPECT_EQ(sy::socketmap_reply(config(), "backend", found("s009", "store1", "24")),
            "OK s009@store1:24");
}

TEST(SocketmapReply, NotFoundHoldAndTempFail) {
  EXPECT_EQ(sy::socketmap_reply(config(), "transport", status(sy::LookupStatus::NotFound)),
            "NOTFOUND ");
  EXPECT_EQ(sy::socketmap_reply(config(), "transport", status(sy::LookupStatus::Hold)).rfind(
                "TEMP ", 0),
            0u);
  EXPECT_EQ(sy::socketmap_reply(config(), "mailbox", status(sy::LookupStatus::TempFail)).rfind(
                "TEMP ", 0),
            0u);
}
