// LMTP router (see session.h).
//
// g++ 12 note (as in imap/session.cc): awaited values are named before they are tested;
// no co_await inside a switch case, a condition, ?:, && or ||.
#include "lmtp/session.h"

#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "lmtp/data.h"
#include "lmtp/parser.h"
#include "lmtp/spool.h"
#include "log/log.h"
#include "map/lookup_service.h"
#include "map/username.h"
#include "net/address.h"
#include "net/stream.h"
#include "net/target.h"
#include "net/upstream.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kChunk = 64 * 1024;
constexpr auto kPoolIdle = std::chrono::seconds(30);

std::string my_hostname(const Config& c) {
  if (!c.lmtp.hostname.empty()) return c.lmtp.hostname;
  char buf[256] = "localhost";
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

struct Recipient {
  std::string address;        // as the client gave it
  std::string store_address;  // what the store is given (the map may rename the user)
  std::string target_key;     // recipients with the same key go in one transaction
  Target target;
  std::string reply;          // the final answer for this recipient, CRLF included
};

// Connections to stores, kept between messages (per worker: one loop, no locking).
struct PooledConnection {
  std::unique_ptr<Stream> stream;
  std::string buffered;  // bytes read past the last reply (none expected)
  Clock::time_point since;
};
std::map<std::string, std::vector<PooledConnection>>& pool() {
  static std::map<std::string, std::vector<PooledConnection>> p;
  return p;
}

// One store's side of a delivery: an LMTP client on a Stream.
class StoreClient {
 public:
  StoreClient(asio::io_context& io, Millis timeout) : io_(io), timeout_(timeout) {}
  Stream& stream() { return *stream_; }
  void adopt(PooledConnection c) {
    stream_ = std::move(c.stream);
    buf_ = std::move(c.buffered);
    reused_ = true;
  }
  void fresh() {
    stream_ = std::make_unique<Stream>(io_);
    buf_.clear();
    reused_ = false;
  }
  bool reused() const { return reused_; }
  PooledConnection release() { return PooledConnection{std::move(stream_), std::move(buf_), Clock::now()}; }

  // One reply, multi-line replies joined: (code, last line). code 0 on I/O failure.
  asio::awaitable<std::pair<int, std::string>> reply() {
    std::string last;
    for (;;) {
      std::string line;
      bool got = co_await read_line(&line);
      if (!got || line.size() < 3) co_return std::make_pair(0, std::string("connection lost"));
      if (line.size() == 3 || line[3] == ' ') {
        last = line;
        break;
      }
      if (line[3] != '-') co_return std::make_pair(0, std::string("garbled reply"));
      lines_.push_back(line.substr(4));
    }
    int code = std::atoi(last.substr(0, 3).c_str());
    co_return std::make_pair(code, last);
  }
  std::vector<std::string> take_lines() { return std::move(lines_); }

  asio::awaitable<bool> send(const std::string& s) {
    std::error_code ec;
    auto done = std::make_shared<bool>(false);
    asio::steady_timer watchdog(io_, timeout_);
    Stream* st = stream_.get();
    watchdog.async_wait([st, done](const std::error_code& e) {
      if (!e && !*done) st->close();
    });
    co_await stream_->write_all(asio::buffer(s), ec);
    *done = true;
    watchdog.cancel();
    co_return !ec;
  }

 private:
  asio::awaitable<bool> read_line(std::string* line) {
    for (;;) {
      auto eol = buf_.find("\r\n");
      if (eol != std::string::npos) {
        line->assign(buf_, 0, eol);
        buf_.erase(0, eol + 2);
        co_return true;
      }
      if (buf_.size() > 65536) co_return false;
      char chunk[4096];
      std::error_code ec;
      auto done = std::make_shared<bool>(false);
      asio::steady_timer watchdog(io_, timeout_);
      Stream* st = stream_.get();
      watchdog.async_wait([st, done](const std::error_code& e) {
        if (!e && !*done) st->close();
      });
      std::size_t n = co_await stream_->read_some(asio::buffer(chunk), ec);
      *done = true;
      watchdog.cancel();
      if (ec || n == 0) co_return false;
      buf_.append(chunk, n);
    }
  }

  asio::io_context& io_;
  Millis timeout_;
  std::unique_ptr<Stream> stream_;
  std::string buf_;
  std::vector<std::string> lines_;
  bool reused_ = false;
};

class LmtpSession : public std::enable_shared_from_this<LmtpSession>, public SessionHandle {
 public:
  LmtpSession(Runtime& rt, Socket s, const ListenConfig& listen)
      : rt_(rt),
        cfg_(rt.config),
        listen_(listen),
        sock_(std::move(s)),
        idle_(rt.io),
        parser_(lmtp::Limits{4096}),
        spool_(cfg_.lmtp.spool_dir, cfg_.lmtp.spool_memory),
        id_(rt.next_session_id++),
        hostname_(my_hostname(cfg_)) {
    peer_ = peer_name(sock_.native_handle());
  }

  void start() {
    rt_.session_started();
    rt_.live[id_] = this;
    auto self = shared_from_this();
    asio::co_spawn(rt_.io, run(), [self](std::exception_ptr) {
      self->rt_.live.erase(self->id_);
      self->rt_.session_ended();
    });
  }

  // A stopping worker lets a transaction finish (it is never cut in the middle of DATA
  // by a signal); an idle LMTP connection is simply closed.
  void shut_down() override {
    if (!in_data_) close();
  }
  void kick() override { close(); }
  const std::string& user() const override { return empty_; }
  std::string describe() const override {
    return std::to_string(id_) + " lmtp " + (in_data_ ? "data" : "command") + " client=" + peer_ +
           " user=\"\" server=-";
  }

 private:
  asio::awaitable<void> run();
  asio::awaitable<bool> handle(lmtp::Command cmd);
  asio::awaitable<bool> rcpt(const lmtp::Command& cmd);
  asio::awaitable<bool> data();
  asio::awaitable<void> deliver_all();
  asio::awaitable<void> deliver(std::vector<Recipient*> group);
  asio::awaitable<bool> deliver_once(StoreClient& c, std::vector<Recipient*>& group, bool* retry);
  asio::awaitable<bool> send(const std::string& s) {
    std::error_code ec;
    co_await asio::async_write(sock_, asio::buffer(s), asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }
  asio::awaitable<bool> read_more();
  void reset_transaction() {
    mail_from_.reset();
    body_ = lmtp::Body::Unspecified;
    rcpts_.clear();
    spool_.clear();
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

  Runtime& rt_;
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
  std::string empty_;
  bool lhlo_ = false;
  bool in_data_ = false;
  std::optional<std::string> mail_from_;
  lmtp::Body body_ = lmtp::Body::Unspecified;
  std::vector<Recipient> rcpts_;
  int bad_commands_ = 0;
};

asio::awaitable<bool> LmtpSession::read_more() {
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
      open = co_await handle(parser_.take_command());
    }
  }
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
    co_return co_await send("250 2.1.0 Ok\r\n");
  }
  if (cmd.verb == Verb::Rcpt) co_return co_await rcpt(cmd);
  co_return co_await data();  // Verb::Data
}

asio::awaitable<bool> LmtpSession::rcpt(const lmtp::Command& cmd) {
  if (!mail_from_) co_return co_await send("503 5.5.1 Send MAIL first\r\n");
  if (static_cast<int>(rcpts_.size()) >= cfg_.lmtp.max_recipients)
    co_return co_await send("452 4.5.3 Too many recipients\r\n");
  const std::string& address = cmd.address;
  LookupRequest q;
  q.key = map_key(cfg_.username, address);
  q.protocol = "lmtp";
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
    Recipient r;
    r.address = address;
    const MapAnswer& a = found.reply.answer;
    r.store_address = address;
    if (cfg_.username.use_map_user && !a.user.empty()) {
      // The map renames the user: the store gets the new name, in the same domain when
      // the map gives none.
      auto box = lmtp::split_mailbox(address);
      r.store_address = a.user.find('@') != std::string::npos || !box
                            ? a.user
                            : a.user + "@" + std::string(box->domain);
    }
    r.target = resolve_target(cfg_, a, Service::Lmtp, found.reply.more);
    for (std::size_t i = 0; i < r.target.hosts.size(); ++i)
      r.target_key += host_port(r.target.hosts[i], port_of(r.target, i)) + " ";
    r.target_key += r.target.tls;
    rcpts_.push_back(std::move(r));
    text = "250 2.1.5 Ok\r\n";
  }
  LOG_INFO("lmtp rcpt: session=%llu client=%s to=\"%s\" map=%s%s result=%.3s",
           static_cast<unsigned long long>(id_), peer_.c_str(), log_quote(address).c_str(),
           found.map_name.empty() ? "-" : found.map_name.c_str(),
           found.cached ? "(cache)" : "", text.c_str());
  co_return co_await send(text);
}

asio::awaitable<bool> LmtpSession::data() {
  if (!mail_from_) co_return co_await send("503 5.5.1 Send MAIL first\r\n");
  if (rcpts_.empty()) co_return co_await send("503 5.5.1 No valid recipients\r\n");
  bool go = co_await send("354 Start mail input; end with <CRLF>.<CRLF>\r\n");
  if (!go) co_return false;
  in_data_ = true;
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
      in_data_ = false;
      co_return false;
    }
  }
  std::string replies;
  if (ev == lmtp::DataEvent::TooBig) {
    for (auto& r : rcpts_) replies += "552 5.3.4 <" + r.address + ">: Message too big\r\n";
  } else if (!spool_error.empty()) {
    LOG_ERROR("lmtp session %llu: %s", static_cast<unsigned long long>(id_), spool_error.c_str());
    for (auto& r : rcpts_) replies += "451 4.3.0 <" + r.address + ">: Local spool error\r\n";
  } else {
    co_await deliver_all();
    for (auto& r : rcpts_) replies += r.reply;
  }
  in_data_ = false;
  reset_transaction();
  co_return co_await send(replies);
}

// Every store at once; each recipient's reply is filled in by its store's delivery.
asio::awaitable<void> LmtpSession::deliver_all() {
  std::map<std::string, std::vector<Recipient*>> groups;
  for (auto& r : rcpts_) groups[r.target_key].push_back(&r);
  auto self = shared_from_this();
  std::size_t running = groups.size();
  asio::steady_timer all_done(rt_.io, asio::steady_timer::time_point::max());
  for (auto& [key, group] : groups) {
    asio::co_spawn(rt_.io, deliver(group), [&running, &all_done, self](std::exception_ptr) {
      if (--running == 0) all_done.cancel();
    });
  }
  while (running > 0) {
    std::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> LmtpSession::deliver(std::vector<Recipient*> group) {
  const Target& t = group.front()->target;
  const std::string key = group.front()->target_key;
  StoreClient client(rt_.io, cfg_.lmtp.store_timeout);
  // A kept connection first; if it turns out dead before anything was accepted, once more
  // on a fresh one.
  auto& kept = pool()[key];
  while (!kept.empty() && Clock::now() - kept.back().since > kPoolIdle) kept.pop_back();
  bool have_pooled = !kept.empty();
  if (have_pooled) {
    client.adopt(std::move(kept.back()));
    kept.pop_back();
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (attempt == 1 || !have_pooled) client.fresh();
    bool retry = false;
    bool ok = co_await deliver_once(client, group, &retry);
    if (ok) {
      if (pool()[key].size() < 8) pool()[key].push_back(client.release());
      co_return;
    }
    if (!retry || !client.reused()) break;
  }
  for (Recipient* r : group)
    if (r->reply.empty())
      r->reply = "451 4.4.1 <" + r->address + ">: Mail store " +
                 (t.backend.empty() ? t.hosts.front() : t.backend) + " not available\r\n";
}

// One LMTP transaction with one store. False when the connection failed; *retry when it
// failed before the store accepted anything (a kept connection that had died).
asio::awaitable<bool> LmtpSession::deliver_once(StoreClient& c, std::vector<Recipient*>& group,
                                                bool* retry) {
  const Target& t = group.front()->target;
  *retry = false;
  if (!c.reused()) {
    std::string server, host, why;
    bool connected = co_await connect_target(c.stream().socket(), t, rt_.health, &server, &host, &why);
    if (!connected) {
      LOG_WARN("lmtp delivery: %s", why.c_str());
      co_return false;
    }
    if (t.tls == "implicit") {
      bool secured = co_await c.stream().connect_tls(*rt_.store_tls, host, t.tls_verify, &why);
      if (!secured) {
        LOG_WARN("lmtp delivery: %s: %s", server.c_str(), why.c_str());
        co_return false;
      }
    }
    auto greeting = co_await c.reply();
    if (greeting.first != 220) co_return false;
    bool sent = co_await c.send("LHLO " + hostname_ + "\r\n");
    if (!sent) co_return false;
    auto lhlo = co_await c.reply();
    if (lhlo.first != 250) co_return false;
    c.take_lines();
  }
  // MAIL, every RCPT and DATA in one write (the stores we talk to pipeline, as RFC 2033
  // requires of LMTP servers), then the answers in order.
  auto from = lmtp::format_path(*mail_from_);
  std::string out = "MAIL FROM:" + (from ? *from : std::string("<>")) +
                    (body_ == lmtp::Body::EightBitMime ? " BODY=8BITMIME" : "") + "\r\n";
  for (Recipient* r : group) {
    auto path = lmtp::format_path(r->store_address);
    out += "RCPT TO:" + (path ? *path : "<" + r->store_address + ">") + "\r\n";
  }
  out += "DATA\r\n";
  bool sent = co_await c.send(out);
  if (!sent) {
    *retry = true;
    co_return false;
  }
  auto mail = co_await c.reply();
  if (mail.first == 0) {
    *retry = true;
    co_return false;
  }
  std::vector<Recipient*> accepted;
  for (Recipient* r : group) {
    auto answer = co_await c.reply();
    if (answer.first == 0) co_return false;
    if (mail.first / 100 != 2) r->reply = mail.second + "\r\n";
    else if (answer.first / 100 != 2) r->reply = answer.second + "\r\n";
    else accepted.push_back(r);
  }
  auto go = co_await c.reply();
  if (go.first == 0) co_return false;
  if (go.first != 354) {
    for (Recipient* r : accepted) r->reply = go.second + "\r\n";
    // The store refused the transaction: the connection is still good, if reset.
    if (accepted.empty() && go.first / 100 == 5) co_return true;
    bool reset = co_await c.send("RSET\r\n");
    if (reset) {
      auto rs = co_await c.reply();
      co_return rs.first == 250;
    }
    co_return false;
  }
  // The message, dot-stuffed, in 64 KiB pieces straight from the spool.
  lmtp::DataEncoder encoder;
  std::string buf(kChunk, '\0');
  std::string wire;
  std::uint64_t offset = 0;
  for (;;) {
    long n = spool_.read(offset, buf.data(), buf.size());
    if (n < 0) co_return false;
    if (n == 0) break;
    offset += static_cast<std::uint64_t>(n);
    wire.clear();
    encoder.encode(std::string_view(buf.data(), static_cast<std::size_t>(n)), &wire);
    bool ok = co_await c.send(wire);
    if (!ok) co_return false;
  }
  wire.clear();
  encoder.finish(&wire);
  bool ended = co_await c.send(wire);
  if (!ended) co_return false;
  // One answer per accepted recipient, in order: only now may 250 be passed on.
  for (Recipient* r : accepted) {
    auto answer = co_await c.reply();
    if (answer.first == 0) co_return false;  // the others get 451 4.4.1
    r->reply = answer.second + "\r\n";
    LOG_INFO("lmtp delivered: session=%llu to=\"%s\" store_to=\"%s\" store=%s reply=\"%s\"",
             static_cast<unsigned long long>(id_), log_quote(r->address).c_str(),
             log_quote(r->store_address).c_str(), r->target_key.c_str(),
             log_quote(answer.second).c_str());
  }
  co_return true;
}

}  // namespace

void start_lmtp_session(Runtime& rt, Socket client, const ListenConfig& listen) {
  std::make_shared<LmtpSession>(rt, std::move(client), listen)->start();
}

}  // namespace sy
