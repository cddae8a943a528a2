// LMTP router (see session.h).
#include "lmtp/session.h"

// g++ 12 inlines Asio's coroutine-frame operator new (thread_info_base::allocate, which
// ends in aligned_alloc) into the frame's own operator delete in this file and then warns
// that they do not match; they are the pair Asio defines for the frame (allocate and
// deallocate through the same recycling cache). A false positive of -Wmismatched-new-delete
// with coroutines: silenced here only, where it fires.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "lmtp/data.h"
#include "lmtp/delivery.h"
#include "lmtp/parser.h"
#include "lmtp/spool.h"
#include "log/log.h"
#include "metrics/metrics.h"
#include "map/lookup_service.h"
#include "map/username.h"
#include "net/address.h"
#include "backend/target.h"

namespace sy {
namespace {

constexpr std::size_t kChunk = 64 * 1024;

class LmtpSession : public std::enable_shared_from_this<LmtpSession>, public SessionHandle {
 public:
  LmtpSession(WorkerContext& rt, Socket s, const ListenConfig& listen)
      : rt_(rt),
        cfg_(rt.config),
        listen_(listen),
        sock_(std::move(s)),
        idle_(rt.io),
        parser_(lmtp::Limits{4096}),
        spool_(cfg_.lmtp.spool_dir, cfg_.lmtp.spool_memory),
        id_(rt.sessions.next_id()),
        hostname_(lmtp_hostname(cfg_)) {
    peer_ = peer_name(sock_.native_handle());
  }

  void start() {
    registration_ = rt_.sessions.enter(*this, id_, SessionKind::Lmtp, SessionStage::LmtpIdle);
    auto self = shared_from_this();
    asio::co_spawn(rt_.io, run(), [self](std::exception_ptr) { self->registration_.reset(); });
  }

  // Only between transactions (the registry never stops one in the middle of DATA).
  void shut_down() override {
    closing_ = true;
    if (busy_) return;  // run() says 421 when the command in hand is done
    std::error_code ignored;
    sock_.cancel(ignored);  // ends the wait for the next command; run() says 421
  }
  void kick() override { close(); }
  // The stop's grace is over (or a drain's timeout): 421 without waiting, then close. A
  // transaction cut here is not acknowledged, so the sender delivers it again.
  void cut() override {
    if (!sock_.is_open()) return;
    const std::string bye = "421 4.3.2 " + hostname_ + " shutting down\r\n";
    (void)::send(sock_.native_handle(), bye.data(), bye.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    close();
  }
  std::string describe() const override {
    std::string to;
    for (const auto& r : routes_) to += (to.empty() ? "" : ",") + log_quote(r.address);
    return std::string(mail_from_ ? "transaction" : "idle") + " client=" + peer_ + " from=\"" +
           (mail_from_ ? log_quote(*mail_from_) : "") +
           "\" to=\"" + to + "\"";
  }

 private:
  asio::awaitable<void> run();
  [[nodiscard]] asio::awaitable<bool> handle(lmtp::Command cmd);
  [[nodiscard]] asio::awaitable<bool> rcpt(const lmtp::Command& cmd);
  [[nodiscard]] asio::awaitable<bool> data();
  // Replies wait in outbuf_ until the session is about to wait for the client (read_more)
  // or ends: the replies to pipelined commands (MAIL, RCPT..., DATA in one packet) go out
  // in one write, as RFC 2920 lets a server do, instead of waking the client for each.
  [[nodiscard]] asio::awaitable<bool> send(const std::string& s) {
    outbuf_ += s;
    if (outbuf_.size() < kChunk) co_return true;
    co_return co_await flush();
  }
  // A client that sends and never reads blocks this write: idle_timeout bounds it too.
  [[nodiscard]] asio::awaitable<bool> flush() {
    if (outbuf_.empty()) co_return sock_.is_open();
    arm_idle();
    std::error_code ec;
    co_await asio::async_write(sock_, asio::buffer(outbuf_),
                               asio::redirect_error(asio::use_awaitable, ec));
    idle_.cancel();
    outbuf_.clear();
    co_return !ec;
  }
  [[nodiscard]] asio::awaitable<bool> read_more();
  void reset_transaction() {
    mail_from_.reset();
    body_ = lmtp::Body::Unspecified;
    routes_.clear();
    route_keys_.clear();
    spool_.clear();
    registration_.set_key("");
    registration_.set_stage(SessionStage::LmtpIdle);
  }
  // The users in flight in this transaction: those of the accepted recipients.
  void register_route_keys() {
    registration_.set_key("");
    for (const std::string& k : route_keys_) registration_.add_key(k);
  }
  void close() {
    std::error_code ignored;
    sock_.close(ignored);
  }
  void arm_idle() {
    idle_.expires_after(cfg_.limits.idle_timeout);
    std::weak_ptr<LmtpSession> weak = shared_from_this();
    idle_.async_wait([weak](const std::error_code& ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->close();
    });
  }

  WorkerContext& rt_;
  const Config& cfg_;
  const ListenConfig& listen_;
  Socket sock_;
  asio::steady_timer idle_;
  lmtp::CommandParser parser_;
  Spool spool_;
  std::uint64_t id_;
  std::string hostname_;
  std::string peer_;
  std::string inbuf_;
  std::string outbuf_;  // replies not yet written (see send)
  bool lhlo_ = false;
  bool busy_ = false;     // a command is being served (its reply not yet sent)
  bool closing_ = false;  // the worker stops: 421 after the command in hand
  std::optional<std::string> mail_from_;
  lmtp::Body body_ = lmtp::Body::Unspecified;
  std::vector<lmtp::Route> routes_;
  std::vector<std::string> route_keys_;  // the map keys of routes_ (registered in flight)
  int bad_commands_ = 0;
  SessionRegistry::Registration registration_;
};

asio::awaitable<bool> LmtpSession::read_more() {
  if (!co_await flush()) co_return false;
  arm_idle();
  char buf[kChunk];
  std::error_code ec;
  std::size_t n = co_await sock_.async_read_some(asio::buffer(buf),
                                                 asio::redirect_error(asio::use_awaitable, ec));
  idle_.cancel();
  if (ec || n == 0) co_return false;
  inbuf_.append(buf, n);
  co_return true;
}

asio::awaitable<void> LmtpSession::run() {
  bool greeted = co_await send("220 " + hostname_ + " LMTP Switchyard ready\r\n");
  bool open = greeted;
  while (open) {
    std::size_t consumed = 0;
    lmtp::Event ev = parser_.feed(inbuf_, &consumed);
    inbuf_.erase(0, consumed);
    if (ev == lmtp::Event::NeedMore) {
      open = co_await read_more();
    } else if (ev == lmtp::Event::Error) {
      ++bad_commands_;
      const lmtp::Error e = parser_.error();
      std::string text = std::to_string(lmtp::reply_code(e)) +
                         (lmtp::reply_code(e) == 501 ? " 5.5.4 " : " 5.5.2 ") +
                         lmtp::error_name(e) + "\r\n";
      open = co_await send(text);
      if (bad_commands_ >= cfg_.limits.max_bad_commands) {
        co_await send("421 4.7.0 Too many errors\r\n");
        open = false;
      }
    } else {
      busy_ = true;
      open = co_await handle(parser_.take_command());
      busy_ = false;
    }
    if (closing_) break;
  }
  if (closing_) co_await send("421 4.3.2 " + hostname_ + " shutting down\r\n");
  (void)co_await flush();
  idle_.cancel();
  close();
  LOG_DEBUG("lmtp session %llu closed: client=%s", static_cast<unsigned long long>(id_),
            peer_.c_str());
}

asio::awaitable<bool> LmtpSession::handle(lmtp::Command cmd) {
  using lmtp::Verb;
  if (cmd.verb == Verb::Lhlo) {
    lhlo_ = true;
    reset_transaction();
    co_return co_await send("250-" + hostname_ + "\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
                            "250-8BITMIME\r\n250 SIZE " +
                            std::to_string(cfg_.lmtp.max_message_size) + "\r\n");
  }
  if (cmd.verb == Verb::Quit) {
    co_await send("221 2.0.0 Bye\r\n");
    co_return false;
  }
  if (cmd.verb == Verb::Noop) co_return co_await send("250 2.0.0 Ok\r\n");
  if (cmd.verb == Verb::Rset) {
    reset_transaction();
    co_return co_await send("250 2.0.0 Ok\r\n");
  }
  if (cmd.verb == Verb::Vrfy) co_return co_await send("252 2.5.0 Cannot VRFY user\r\n");
  if (!lhlo_) co_return co_await send("503 5.5.1 Send LHLO first\r\n");
  if (cmd.verb == Verb::Mail) {
    if (mail_from_) co_return co_await send("503 5.5.1 Nested MAIL command\r\n");
    if (cmd.size && *cmd.size > cfg_.lmtp.max_message_size)
      co_return co_await send("552 5.3.4 Message size exceeds fixed limit\r\n");
    mail_from_ = cmd.address;
    body_ = cmd.body;
    registration_.set_stage(SessionStage::LmtpTransaction);
    co_return co_await send("250 2.1.0 Ok\r\n");
  }
  if (cmd.verb == Verb::Rcpt) co_return co_await rcpt(cmd);
  co_return co_await data();  // Verb::Data
}

asio::awaitable<bool> LmtpSession::rcpt(const lmtp::Command& cmd) {
  if (!mail_from_) co_return co_await send("503 5.5.1 Send MAIL first\r\n");
  if (routes_.size() >= static_cast<std::size_t>(cfg_.lmtp.max_recipients))
    co_return co_await send("452 4.5.3 Too many recipients\r\n");
  const std::string& address = cmd.address;
  LookupRequest q;
  q.key = map_key(cfg_.username, address);
  q.protocol = "lmtp";
  const std::string key = q.key;
  // In flight for this user from the lookup on, not only once accepted: a hold taken while
  // the map is being asked waits for its answer (switchyardctl hold asks the registry).
  registration_.add_key(key);
  ChainReply found = co_await rt_.lookups.lookup(std::move(q));
  std::string text;
  const LookupStatus status = found.reply.status;
  if (status == LookupStatus::NotFound) {
    text = "550 5.1.1 <" + address + ">: User unknown\r\n";
  } else if (status == LookupStatus::TempFail) {
    text = "451 4.3.0 <" + address + ">: Temporary lookup failure\r\n";
  } else if (status == LookupStatus::Hold) {
    text = "451 4.2.1 <" + address + ">: Mailbox is being moved, try again later\r\n";
  } else {
    lmtp::Route r;
    r.address = address;
    r.store_address = store_recipient(cfg_.username, address, found.reply.answer);
    r.target = resolve_target(cfg_, found.reply.answer, Service::Lmtp, found.reply.more);
    r.store_key = lmtp::store_key(r.target);
    routes_.push_back(std::move(r));
    route_keys_.push_back(key);  // in flight for this user until the transaction ends
    text = "250 2.1.5 Ok\r\n";
  }
  if (text[0] != '2') register_route_keys();  // refused: in flight only through the others
  if (text[0] != '2') metrics::lmtp_recipient(text[0] == '5' ? metrics::RcptResult::Refused : metrics::RcptResult::Deferred);
  LOG_INFO("lmtp rcpt: session=%llu client=%s to=\"%s\" map=%s%s result=%.3s",
           static_cast<unsigned long long>(id_), peer_.c_str(), log_quote(address).c_str(),
           found.map_name.empty() ? "-" : found.map_name.c_str(),
           found.cached ? "(cache)" : "", text.c_str());
  co_return co_await send(text);
}

asio::awaitable<bool> LmtpSession::data() {
  if (!mail_from_) co_return co_await send("503 5.5.1 Send MAIL first\r\n");
  if (routes_.empty()) co_return co_await send("503 5.5.1 No valid recipients\r\n");
  bool go = co_await send("354 Start mail input; end with <CRLF>.<CRLF>\r\n");
  if (!go) co_return false;
  lmtp::DataDecoder decoder(cfg_.lmtp.max_message_size);
  std::string spool_error;
  lmtp::DataEvent ev = lmtp::DataEvent::NeedMore;
  for (;;) {
    std::size_t consumed = 0;
    ev = decoder.feed_to(inbuf_, &consumed, [&](std::string_view s) {
      if (spool_error.empty()) (void)spool_.append(s, &spool_error);
    });
    inbuf_.erase(0, consumed);
    if (ev != lmtp::DataEvent::NeedMore) break;
    bool more = co_await read_more();
    if (!more) {
      // The client went away in the middle of DATA: nothing is delivered.
      LOG_NOTICE("lmtp session %llu: client %s left during DATA; nothing delivered",
                 static_cast<unsigned long long>(id_), peer_.c_str());
      co_return false;
    }
  }
  std::string replies;
  if (ev == lmtp::DataEvent::TooBig) {
    for (auto& r : routes_) replies += "552 5.3.4 <" + r.address + ">: Message too big\r\n";
  } else if (!spool_error.empty()) {
    LOG_ERROR("lmtp session %llu: %s", static_cast<unsigned long long>(id_), spool_error.c_str());
    for (auto& r : routes_) replies += "451 4.3.0 <" + r.address + ">: Local spool error\r\n";
  } else {
    lmtp::Envelope envelope{*mail_from_, body_ == lmtp::Body::EightBitMime};
    std::vector<std::string> verdicts =
        co_await lmtp::deliver(*rt_.lmtp_pool, id_, envelope, spool_, routes_);
    for (const std::string& v : verdicts) replies += v;
  }
  reset_transaction();
  co_return co_await send(replies);
}

}  // namespace

std::string lmtp_hostname(const Config& c) {
  if (!c.lmtp.hostname.empty()) return c.lmtp.hostname;
  char buf[256] = "localhost";
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

void start_lmtp_session(WorkerContext& rt, Socket client, const ListenConfig& listen) {
  std::make_shared<LmtpSession>(rt, std::move(client), listen)->start();
}

}  // namespace sy
