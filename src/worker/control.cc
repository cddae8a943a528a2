// Worker control socket (see control.h).
#include "worker/control.h"

#include <grp.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/target.h"

#include "lmtp/store_pool.h"
#include "log/log.h"
#include "map/lookup_service.h"
#include "map/username.h"
#include "worker/holds.h"

namespace sy {
namespace {

using Local = asio::local::stream_protocol;

using Json = nlohmann::ordered_json;

std::string join_keys(const std::vector<std::string>& keys) {
  std::string s;
  for (const auto& k : keys) s += (s.empty() ? "" : ",") + k;
  return s;
}

// "<pid>:<id>": unique across the workers of one master (pids are, while they live).
std::string global_id(std::uint64_t id) { return std::to_string(::getpid()) + ":" + std::to_string(id); }

// "<pid>:<id> <kind> <phase> client=... key=\"...\"": one session, for inflight.
std::string session_line(std::uint64_t id, const SessionRegistry::Entry& e) {
  return global_id(id) + " " + kind_name(e.kind) + " " + e.handle->describe() + " key=\"" +
         log_quote(join_keys(e.keys)) + "\"\n";
}

// describe() is "<phase> name=value name=\"value\" ...", values put through log_quote
// (which escapes any '"'): split into fields. LMTP's to="a,b" becomes a list.
void describe_fields(const std::string& text, Json* out) {
  std::size_t i = text.find(' ');
  (*out)["phase"] = text.substr(0, i);
  while (i != std::string::npos && i < text.size()) {
    ++i;
    std::size_t eq = text.find('=', i);
    if (eq == std::string::npos) break;
    if (std::size_t space = text.find(' ', i); space < eq) {  // a word, not name=value
      (*out)["phase"] = (*out)["phase"].get<std::string>() + " " + text.substr(i, space - i);
      i = space;
      continue;
    }
    std::string name = text.substr(i, eq - i);
    std::string value;
    if (eq + 1 < text.size() && text[eq + 1] == '"') {
      std::size_t close = text.find('"', eq + 2);
      if (close == std::string::npos) close = text.size();
      value = text.substr(eq + 2, close - eq - 2);
      i = text.find(' ', close);
    } else {
      i = text.find(' ', eq);
      value = text.substr(eq + 1, i == std::string::npos ? std::string::npos : i - eq - 1);
    }
    if (name == "to") {
      Json list = Json::array();
      std::size_t at = 0;
      while (!value.empty() && at <= value.size()) {
        std::size_t comma = value.find(',', at);
        list.push_back(value.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
        if (comma == std::string::npos) break;
        at = comma + 1;
      }
      (*out)[name] = std::move(list);
    } else if (name == "requests") {
      (*out)[name] = std::strtoull(value.c_str(), nullptr, 10);
    } else {
      (*out)[name] = value == "-" ? "" : value;
    }
  }
}

Json session_json(std::uint64_t id, const SessionRegistry::Entry& e) {
  Json j;
  j["id"] = global_id(id);
  j["pid"] = static_cast<int>(::getpid());
  j["protocol"] = kind_name(e.kind);
  j["stage"] = stage_name(e.stage);
  describe_fields(e.handle->describe(), &j);
  j["keys"] = e.keys;
  return j;
}

Json status_json(WorkerContext& rt, std::int64_t started) {
  Json j;
  j["pid"] = static_cast<int>(::getpid());
  j["started"] = started;
  j["uptime_seconds"] = static_cast<std::int64_t>(::time(nullptr)) - started;
  j["draining"] = rt.draining;
  Json by = Json::object();
  for (const auto& [id, e] : rt.sessions.entries()) {
    Json& n = by[kind_name(e.kind)][stage_name(e.stage)];
    n = n.is_null() ? 1 : n.get<int>() + 1;
  }
  j["sessions"] = {{"total", rt.sessions.size()}, {"by_protocol", std::move(by)}};
  j["cache"] = {{"entries", rt.lookups.cache_size()}, {"capacity", rt.config.lookup.cache_size}};
  Json backends = Json::array();
  const auto now = HealthTable::Clock::now();
  for (const auto& [name, b] : rt.config.backends) {
    for (const auto& host : b.hosts) {
      Json down = Json::array();
      for (const std::string* port : {&b.imap, &b.pop3, &b.lmtp}) {
        const std::string key = host_port(host, *port);
        if (rt.health.is_down(key, now)) down.push_back(key);
      }
      backends.push_back({{"backend", name}, {"host", host}, {"up", down.empty()}, {"down", down}});
    }
  }
  j["backends"] = std::move(backends);
  j["holds"] = Json::array();
  for (const auto& k : rt.holds.keys()) j["holds"].push_back(k);
  return j;
}

std::string answer(WorkerContext& rt, std::int64_t started, const std::string& line) {
  std::string cmd = line.substr(0, line.find(' '));
  std::string arg = line.size() > cmd.size() ? line.substr(cmd.size() + 1) : std::string();
  std::string out;
  if (cmd == "status") {
    out = status_json(rt, started).dump() + "\n";
  } else if (cmd == "who") {
    // Everyone, or the sessions whose map key is USER's (any spelling, as kick).
    const std::string key = arg.empty() ? std::string() : map_key(rt.config.username, arg);
    Json list = Json::array();
    for (const auto& [id, e] : rt.sessions.entries())
      if (key.empty() || e.has_key(key)) list.push_back(session_json(id, e));
    out = list.dump() + "\n";
  } else if (cmd == "kick" && !arg.empty()) {
    // By map key, through the username policy: any spelling of the login matches.
    const std::string key = map_key(rt.config.username, arg);
    std::size_t n = rt.sessions.kick(key);
    out = Json{{"pid", static_cast<int>(::getpid())}, {"key", key}, {"kicked", n}}.dump() + "\n";
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
      if (e.has_key(key)) out += session_line(id, e);
  } else if (cmd == "release" && !arg.empty()) {
    const std::string key = map_key(rt.config.username, arg);
    if (rt.holds.remove(key)) LOG_NOTICE("control: released \"%s\"", log_quote(key).c_str());
    rt.lookups.forget(key);  // the map has changed: ask it again
    out = "released\n";
  } else if (cmd == "flush") {
    Json j{{"pid", static_cast<int>(::getpid())}};
    if (arg.empty()) {
      j["cache_entries"] = rt.lookups.cache_size();
      rt.lookups.flush_cache();
      if (rt.lmtp_pool) rt.lmtp_pool->clear();
      j["flushed"] = "all";
    } else {
      const std::string key = map_key(rt.config.username, arg);
      rt.lookups.forget(key);
      j["flushed"] = key;
    }
    out = j.dump() + "\n";
  } else {
    out = Json{{"error", "unknown command"}}.dump() + "\n";
  }
  return out + ".\n";
}

asio::awaitable<void> serve_one(WorkerContext& rt, std::int64_t started, Local::socket s) {
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
  std::string reply = answer(rt, started, line);
  std::error_code ec;
  co_await asio::async_write(s, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> accept_control(WorkerContext& rt, std::int64_t started,
                                     Local::acceptor& acceptor) {
  for (;;) {
    std::error_code ec;
    Local::socket s = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    asio::co_spawn(rt.io, serve_one(rt, started, std::move(s)), asio::detached);
  }
}

}  // namespace

std::string control_path(const std::string& dir, int pid) {
  return dir + "/worker-" + std::to_string(pid) + ".sock";
}

bool grant_control_access(const std::string& path, const std::string& group, bool directory) {
  if (group.empty()) return directory || ::chmod(path.c_str(), 0600) == 0;
  struct group* g = ::getgrnam(group.c_str());
  if (!g || ::chown(path.c_str(), 0, g->gr_gid) != 0) {
    if (!directory) ::chmod(path.c_str(), 0600);
    return false;
  }
  return ::chmod(path.c_str(), directory ? 0750 : 0660) == 0;
}

std::unique_ptr<ControlSocket> open_control(asio::io_context& io, const std::string& dir,
                                            const std::string& group, std::string* error) {
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
  if (!grant_control_access(path, group, false))
    LOG_WARN("%s: cannot give it to group %s; root only", path.c_str(), group.c_str());
  return std::make_unique<ControlSocket>(std::move(acc), std::move(path));
}

ControlSocket::ControlSocket(std::unique_ptr<Local::acceptor> acceptor, std::string path)
    : acceptor_(std::move(acceptor)), path_(std::move(path)), started_(::time(nullptr)) {}

ControlSocket::~ControlSocket() {
  std::error_code ignored;
  acceptor_->close(ignored);
}

void ControlSocket::serve(WorkerContext& rt) {
  asio::co_spawn(rt.io, accept_control(rt, started_, *acceptor_), asio::detached);
}

}  // namespace sy
