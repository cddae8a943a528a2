// Worker control socket (see control.h).
#include "worker/control.h"

#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "lmtp/store_pool.h"
#include "log/log.h"
#include "map/lookup_service.h"
#include "map/username.h"
#include "worker/holds.h"

namespace sy {
namespace {

using Local = asio::local::stream_protocol;

std::string join_keys(const std::vector<std::string>& keys) {
  std::string s;
  for (const auto& k : keys) s += (s.empty() ? "" : ",") + k;
  return s;
}

// "<id> <kind> <phase> client=... key=\"...\"": one session, for who and inflight.
std::string session_line(std::uint64_t id, const SessionRegistry::Entry& e) {
  return std::to_string(id) + " " + kind_name(e.kind) + " " + e.handle->describe() + " key=\"" +
         log_quote(join_keys(e.keys)) + "\"\n";
}

std::string answer(WorkerContext& rt, const std::string& line) {
  std::string cmd = line.substr(0, line.find(' '));
  std::string arg = line.size() > cmd.size() ? line.substr(cmd.size() + 1) : std::string();
  std::string out;
  if (cmd == "status") {
    out = "worker " + std::to_string(::getpid()) + " sessions " +
          std::to_string(rt.sessions.size()) + " prelogin " +
          std::to_string(rt.sessions.count(SessionStage::PreLogin)) + " cache " +
          std::to_string(rt.lookups.cache_size()) + "\n";
  } else if (cmd == "who") {
    for (const auto& [id, e] : rt.sessions.entries()) out += session_line(id, e);
  } else if (cmd == "kick" && !arg.empty()) {
    // By map key, through the username policy: any spelling of the login matches.
    const std::string key = map_key(rt.config.username, arg);
    std::size_t n = rt.sessions.kick(key);
    out = "kicked " + std::to_string(n) + "\n";
    if (n > 0)
      LOG_NOTICE("control: kicked %zu sessions of \"%s\"", n, log_quote(key).c_str());
  } else if (cmd == "hold" && !arg.empty()) {
    // Held from now on in this worker; its IMAP/POP3 sessions end now, LMTP transactions
    // already under way finish (see SessionRegistry::kick). "held <still in flight>".
    const std::string key = map_key(rt.config.username, arg);
    if (rt.holds.add(key)) LOG_NOTICE("control: holding \"%s\"", log_quote(key).c_str());
    rt.sessions.kick(key);
    out = "held " + std::to_string(rt.sessions.with_key(key).size()) + "\n";
  } else if (cmd == "inflight" && !arg.empty()) {
    // The sessions of that user still open here, one per line (none: nothing in flight).
    const std::string key = map_key(rt.config.username, arg);
    for (const auto& [id, e] : rt.sessions.entries())
      if (e.has_key(key)) out += std::to_string(::getpid()) + "/" + session_line(id, e);
  } else if (cmd == "release" && !arg.empty()) {
    const std::string key = map_key(rt.config.username, arg);
    if (rt.holds.remove(key)) LOG_NOTICE("control: released \"%s\"", log_quote(key).c_str());
    rt.lookups.forget(key);  // the map has changed: ask it again
    out = "released\n";
  } else if (cmd == "flush") {
    rt.lookups.flush_cache();
    if (rt.lmtp_pool) rt.lmtp_pool->clear();
    out = "flushed\n";
  } else {
    out = "error unknown command\n";
  }
  return out + ".\n";
}

asio::awaitable<void> serve_one(WorkerContext& rt, Local::socket s) {
  std::string line;
  char buf[512];
  for (;;) {
    std::error_code ec;
    std::size_t n = co_await s.async_read_some(asio::buffer(buf),
                                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    line.append(buf, n);
    if (line.find('\n') != std::string::npos || line.size() > 1024) break;
  }
  line.resize(line.find_first_of("\r\n") == std::string::npos ? line.size()
                                                                : line.find_first_of("\r\n"));
  std::string reply = answer(rt, line);
  std::error_code ec;
  co_await asio::async_write(s, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> accept_control(WorkerContext& rt, Local::acceptor& acceptor) {
  for (;;) {
    std::error_code ec;
    Local::socket s = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    asio::co_spawn(rt.io, serve_one(rt, std::move(s)), asio::detached);
  }
}

}  // namespace

std::string control_path(const std::string& dir, int pid) {
  return dir + "/worker-" + std::to_string(pid) + ".sock";
}

std::unique_ptr<ControlSocket> open_control(asio::io_context& io, const std::string& dir,
                                            std::string* error) {
  std::string path = control_path(dir, ::getpid());
  ::unlink(path.c_str());
  std::error_code ec;
  auto acc = std::make_unique<Local::acceptor>(io);
  acc->open(Local(), ec);
  if (!ec) acc->bind(Local::endpoint(path), ec);
  if (!ec) acc->listen(16, ec);
  if (ec) {
    *error = path + ": " + ec.message();
    return nullptr;
  }
  ::chmod(path.c_str(), 0600);
  return std::make_unique<ControlSocket>(std::move(acc), std::move(path));
}

ControlSocket::ControlSocket(std::unique_ptr<Local::acceptor> acceptor, std::string path)
    : acceptor_(std::move(acceptor)), path_(std::move(path)) {}

ControlSocket::~ControlSocket() {
  std::error_code ignored;
  acceptor_->close(ignored);
}

void ControlSocket::serve(WorkerContext& rt) {
  asio::co_spawn(rt.io, accept_control(rt, *acceptor_), asio::detached);
}

}  // namespace sy
