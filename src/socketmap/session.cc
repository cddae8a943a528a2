// Postfix socketmap service (see session.h).
#include "socketmap/session.h"

#include <memory>

#include "socketmap/netstring.h"
#include "log/log.h"
#include "map/chain.h"
#include "map/lookup_service.h"
#include "map/username.h"
#include "net/address.h"
#include "backend/target.h"

namespace sy {
namespace {

// A Postfix next hop for the first address of the user's LMTP target.
std::string lmtp_nexthop(const Target& t) {
  if (t.port.rfind("unix:", 0) == 0) return "lmtp:" + t.port;
  const std::string& host = t.hosts.front();
  const std::string& port = port_of(t, 0);
  if (host.find(':') != std::string::npos) return "lmtp:inet:[" + host + "]:" + port;
  return "lmtp:inet:" + host + ":" + port;
}

class SocketmapSession : public std::enable_shared_from_this<SocketmapSession>,
                         public SessionHandle {
 public:
  SocketmapSession(WorkerContext& rt, Socket s, const ListenConfig& listen)
      : rt_(rt), listen_(listen), sock_(std::move(s)), timer_(rt.io), id_(rt.sessions.next_id()) {
    peer_ = peer_name(sock_.native_handle());
  }

  void start() {
    registration_ = rt_.sessions.enter(*this, id_, SessionKind::Socketmap, SessionStage::Socketmap);
    auto self = shared_from_this();
    asio::co_spawn(rt_.io, run(), [self](std::exception_ptr) { self->registration_.reset(); });
  }

  // Postfix reopens a socketmap connection whenever it needs one: closing is the goodbye.
  void shut_down() override { close(); }
  void kick() override { close(); }
  std::string describe() const override {
    return "lookups client=" + peer_ + " requests=" + std::to_string(requests_);
  }

 private:
  asio::awaitable<void> run();
  void arm_idle_timer();

  void close() {
    std::error_code ignored;
    sock_.close(ignored);
  }

  WorkerContext& rt_;
  const ListenConfig& listen_;
  Socket sock_;
  asio::steady_timer timer_;
  std::uint64_t id_;
  std::string peer_;
  std::uint64_t requests_ = 0;
  SessionRegistry::Registration registration_;
};

void SocketmapSession::arm_idle_timer() {
  timer_.expires_after(rt_.config.limits.idle_timeout);
  std::weak_ptr<SocketmapSession> weak = shared_from_this();
  timer_.async_wait([weak](const std::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) {
      std::error_code ignored;
      self->sock_.close(ignored);
    }
  });
}

asio::awaitable<void> SocketmapSession::run() {
  NetstringDecoder decoder(kSocketmapMaxRequest);
  std::string in;
  char buf[4096];
  for (;;) {
    arm_idle_timer();
    std::error_code ec;
    std::size_t n = co_await sock_.async_read_some(asio::buffer(buf),
                                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    in.append(buf, n);
    std::string out;
    bool fatal = false;
    for (;;) {
      std::size_t consumed = 0;
      NetstringEvent ev = decoder.feed(in, &consumed);
      in.erase(0, consumed);
      if (ev == NetstringEvent::NeedMore) break;
      if (ev == NetstringEvent::Error) {
        LOG_WARN("socketmap %s: %s, closing", peer_.c_str(),
                 netstring_error_name(decoder.error()));
        fatal = true;
        break;
      }
      std::string request = decoder.take();
      ++requests_;
      auto parts = split_socketmap_request(request);
      if (!parts) {
        netstring_append(&out, "PERM malformed request");
        continue;
      }
      std::string table(parts->name);
      if (table != "transport" && table != "mailbox" && table != "backend") {
        netstring_append(&out, "PERM unknown table " + table);
        continue;
      }
      LookupRequest q;
      q.key = map_key(rt_.config.username, parts->key);
      q.protocol = "socketmap";
      ChainReply found = co_await rt_.lookups.lookup(std::move(q));
      std::string reply = socketmap_reply(rt_.config, table, found);
      LOG_DEBUG("socketmap %s: %s \"%s\" -> %s", peer_.c_str(), table.c_str(),
                log_quote(std::string(parts->key)).c_str(), log_quote(reply).c_str());
      netstring_append(&out, reply);
    }
    if (!out.empty()) {
      co_await asio::async_write(sock_, asio::buffer(out),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    if (fatal) break;
  }
  timer_.cancel();
  std::error_code ignored;
  sock_.close(ignored);
}

}  // namespace

std::string socketmap_reply(const Config& config, const std::string& table,
                            const ChainReply& found) {
  switch (found.reply.status) {
    case LookupStatus::NotFound: return "NOTFOUND ";
    case LookupStatus::TempFail: return "TEMP map lookup failed";
    case LookupStatus::Hold: return "TEMP mailbox is being moved";
    case LookupStatus::Found: break;
  }
  const MapAnswer& a = found.reply.answer;
  if (table == "backend") return "OK " + format_map_answer(a);
  Target t = resolve_target(config, a, Service::Lmtp, found.reply.more);
  if (table == "mailbox") return "OK " + (t.backend.empty() ? a.host : t.backend);
  if (t.hosts.empty()) return "TEMP no store address";
  return "OK " + lmtp_nexthop(t);
}

void start_socketmap_session(WorkerContext& rt, Socket client, const ListenConfig& listen) {
  std::make_shared<SocketmapSession>(rt, std::move(client), listen)->start();
}

}  // namespace sy
