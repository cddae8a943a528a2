// LMTP client towards one store (see store_client.h).
#include "lmtp/store_client.h"

#include <cstdlib>

#include "lmtp/data.h"
#include "lmtp/parser.h"
#include "lmtp/spool.h"
#include "backend/upstream.h"

namespace sy::lmtp {
namespace {

constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kMaxReply = 64 * 1024;  // a reply longer than this is garbage

// Closes the stream when `timeout` passes before the guarded step is done.
class Watchdog {
 public:
  Watchdog(asio::io_context& io, Millis timeout, Stream& stream, bool* timed_out)
      : timer_(io, timeout), done_(std::make_shared<bool>(false)) {
    timer_.async_wait([&stream, timed_out, done = done_](const std::error_code& ec) {
      if (ec || *done) return;
      *timed_out = true;
      stream.close();
    });
  }
  ~Watchdog() {
    *done_ = true;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  std::shared_ptr<bool> done_;  // outlives us: a handler already queued must not act
};

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Delivered: return "delivered";
    case Verdict::Refused: return "refused";
    case Verdict::Unavailable: return "unavailable";
    case Verdict::Retryable: return "retryable";
  }
  return "?";
}

StoreConnection::StoreConnection(const StoreEnv& env, std::string key)
    : env_(env), key_(std::move(key)), stream_(env.io) {}

void StoreConnection::close() {
  reusable_ = false;
  stream_.close();
}

std::string StoreConnection::lost(const char* step) const {
  return std::string(timed_out_ ? "timeout" : "connection lost") + " " + step;
}

asio::awaitable<bool> StoreConnection::fill() {
  char chunk[4096];
  std::error_code ec;
  std::size_t n = 0;
  {
    Watchdog dog(env_.io, env_.timeout, stream_, &timed_out_);
    n = co_await stream_.read_some(asio::buffer(chunk), ec);
  }
  if (ec || n == 0) co_return false;
  buf_.append(chunk, n);
  co_return true;
}

asio::awaitable<StoreConnection::Reply> StoreConnection::reply() {
  // Multi-line replies ("250-...") end at the line with a space after the code.
  for (;;) {
    auto eol = buf_.find("\r\n");
    if (eol == std::string::npos) {
      if (buf_.size() > kMaxReply) co_return Reply{};
      bool more = co_await fill();
      if (!more) co_return Reply{};
      continue;
    }
    std::string line = buf_.substr(0, eol);
    buf_.erase(0, eol + 2);
    const bool digits = line.size() >= 3 && std::isdigit(static_cast<unsigned char>(line[0])) &&
                        std::isdigit(static_cast<unsigned char>(line[1])) &&
                        std::isdigit(static_cast<unsigned char>(line[2]));
    if (!digits) co_return Reply{};
    if (line.size() == 3 || line[3] == ' ')
      co_return Reply{std::atoi(line.substr(0, 3).c_str()), std::move(line)};
    if (line[3] != '-') co_return Reply{};
  }
}

asio::awaitable<bool> StoreConnection::send(const std::string& bytes) {
  std::error_code ec;
  {
    Watchdog dog(env_.io, env_.timeout, stream_, &timed_out_);
    co_await stream_.write_all(asio::buffer(bytes), ec);
  }
  co_return !ec;
}

asio::awaitable<bool> StoreConnection::open(const Target& t, std::string* why) {
  std::string host;
  server_ = "-";
  bool connected = co_await connect_target(stream_.socket(), t, env_.health, &server_, &host, why);
  if (!connected) co_return false;
  if (t.tls == "implicit") {
    if (!env_.tls) {
      *why = server_ + ": no TLS client context";
      close();
      co_return false;
    }
    bool secured = false;
    {
      Watchdog dog(env_.io, env_.timeout, stream_, &timed_out_);
      secured = co_await stream_.connect_tls(*env_.tls, host, t.tls_verify, why);
    }
    if (!secured) {
      close();
      co_return false;
    }
  }
  Reply greeting = co_await reply();
  if (greeting.code != 220) {
    *why = greeting.code == 0 ? lost("before the greeting")
                              : "greeting \"" + greeting.line + "\"";
    close();
    co_return false;
  }
  bool sent = co_await send("LHLO " + env_.lhlo_name + "\r\n");
  if (!sent) {
    *why = lost("sending LHLO");
    close();
    co_return false;
  }
  Reply lhlo = co_await reply();
  if (lhlo.code != 250) {
    *why = lhlo.code == 0 ? lost("after LHLO") : "LHLO answered \"" + lhlo.line + "\"";
    close();
    co_return false;
  }
  reusable_ = true;
  co_return true;
}

asio::awaitable<void> StoreConnection::reset() {
  reusable_ = false;
  bool sent = co_await send("RSET\r\n");
  if (!sent) co_return;
  Reply rs = co_await reply();
  reusable_ = rs.code == 250;
}

asio::awaitable<TransactionOutcome> StoreConnection::transact(
    const Envelope& envelope, const std::vector<std::string>& recipients, const Spool& spool) {
  TransactionOutcome out;
  out.recipients.resize(recipients.size());
  // The connection is given up: every recipient without the store's answer gets `v`
  // (Retryable until the final dot is sent, since nothing can have been stored before).
  auto give_up = [this, &out](std::string reason, Verdict v) {
    out.reason = std::move(reason);
    close();
    for (auto& r : out.recipients)
      if (r.reply.empty()) r.verdict = v;
    return out;
  };
  reusable_ = false;  // until the transaction completes
  if (!buf_.empty()) {
    // The store spoke out of turn while the connection was idle (a 421 before closing):
    // it is not in step with us.
    co_return give_up("store sent an unexpected reply while idle", Verdict::Retryable);
  }

  // MAIL, every RCPT and DATA in one write (RFC 2033 requires PIPELINING of LMTP
  // servers), then the answers in order.
  auto from = format_path(envelope.mail_from);
  std::string wire = "MAIL FROM:" + (from ? *from : std::string("<>")) +
                     (envelope.eight_bit ? " BODY=8BITMIME" : "") + "\r\n";
  for (const std::string& to : recipients) {
    auto path = format_path(to);
    wire += "RCPT TO:" + (path ? *path : "<" + to + ">") + "\r\n";
  }
  wire += "DATA\r\n";
  bool sent = co_await send(wire);
  if (!sent) {
    co_return give_up(lost("sending MAIL/RCPT/DATA"), Verdict::Retryable);
  }
  Reply mail = co_await reply();
  if (mail.code == 0 || mail.code == 421) {
    // 421: the store is closing the connection (an idle kept one, typically).
    std::string why = mail.code == 0 ? lost("after MAIL") : "store closing: " + mail.line;
    co_return give_up(std::move(why), Verdict::Retryable);
  }
  std::vector<std::size_t> accepted;
  for (std::size_t i = 0; i < recipients.size(); ++i) {
    Reply rcpt = co_await reply();
    if (rcpt.code == 0) {
      co_return give_up(lost("after RCPT"), Verdict::Retryable);
    }
    RecipientOutcome& r = out.recipients[i];
    if (mail.code / 100 != 2) {
      r = {Verdict::Refused, mail.line};
    } else if (rcpt.code / 100 != 2) {
      r = {Verdict::Refused, rcpt.line};
    } else {
      accepted.push_back(i);
    }
  }
  Reply go = co_await reply();
  if (go.code == 0) {
    co_return give_up(lost("after DATA"), Verdict::Retryable);
  }
  if (go.code != 354) {
    // No message to send: every recipient still open gets the store's answer to DATA,
    // and the transaction (MAIL may have been accepted) is reset before reuse.
    for (std::size_t i : accepted) out.recipients[i] = {Verdict::Refused, go.line};
    if (accepted.empty() && mail.code / 100 == 2)
      out.reason = "store refused every recipient";
    else if (mail.code / 100 != 2)
      out.reason = "store refused MAIL: " + mail.line;
    else
      out.reason = "store refused DATA: " + go.line;
    co_await reset();
    if (!reusable_) close();
    co_return out;
  }

  if (accepted.empty()) {
    // 354 with no recipient accepted: out of turn. Whatever the store would answer after
    // the message could not be matched to anyone, so the connection is dropped instead.
    out.reason = "store answered DATA with 354 after refusing every recipient";
    close();
    co_return out;
  }

  // The message, dot-stuffed, straight from the spool: sent whenever 64 KiB are ready, and
  // the rest together with the final dot (a small message is one write, one wake-up of
  // the store).
  DataEncoder encoder;
  std::string chunk(kChunk, '\0');
  std::uint64_t offset = 0;
  wire.clear();
  for (;;) {
    long n = spool.read(offset, chunk.data(), chunk.size());
    if (n < 0) {
      // Our own spool failed: the store must not keep a partial message, so the
      // connection is dropped before the final dot.
      co_return give_up("spool read error", Verdict::Retryable);
    }
    if (n == 0) break;
    offset += static_cast<std::uint64_t>(n);
    encoder.encode(std::string_view(chunk.data(), static_cast<std::size_t>(n)), &wire);
    if (wire.size() < kChunk) continue;
    bool ok = co_await send(wire);
    if (!ok) {
      co_return give_up(lost("during DATA"), Verdict::Retryable);
    }
    wire.clear();
  }
  encoder.finish(&wire);
  bool ended = co_await send(wire);
  if (!ended) {
    // The dot may or may not have reached the store: from here a lost reply means
    // "unknown", which the sender must retry (a duplicate at worst, never a loss).
    co_return give_up(lost("sending the end of DATA"), Verdict::Unavailable);
  }
  // One answer per accepted recipient, in order: only now may 250 be passed on.
  for (std::size_t i : accepted) {
    Reply final_reply = co_await reply();
    if (final_reply.code == 0) {
      co_return give_up(lost("before the final replies"), Verdict::Unavailable);
    }
    out.recipients[i] = {final_reply.code / 100 == 2 ? Verdict::Delivered : Verdict::Refused,
                         final_reply.line};
  }
  reusable_ = true;
  co_return out;
}

}  // namespace sy::lmtp
