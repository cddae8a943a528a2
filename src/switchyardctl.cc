// switchyardctl: talk to a running switchyard. The master answers on
// <control_dir>/master.sock (status, reload, stop; see master/master.cc), each worker on
// its own worker-<pid>.sock (status, who, kick, flush, hold, release; see
// worker/control.h). status, who, kick and flush ask every worker and add up the answers;
// reload waits for the master's verdict. --json prints one JSON document per command.
#include <config.h>

#include <dirent.h>
#include <getopt.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "map/username.h"
#include "worker/holds.h"

namespace {

using Json = nlohmann::ordered_json;

void usage(FILE* out) {
  std::fprintf(out,
               "usage: switchyardctl [-c FILE] [--json] [-t SECONDS] COMMAND\n"
               "  status        version, uptime, listeners, workers and their sessions,\n"
               "                cache, back-end health, holds\n"
               "  who [USER]    every session (or USER's, any spelling of the login):\n"
               "                PID:ID protocol phase client user store / sender recipients\n"
               "  kick USER     close USER's sessions now (any spelling of the login)\n"
               "  hold USER     hold USER in the proxy (every worker, kept across reloads), end\n"
               "                their IMAP/POP3 sessions and wait until nothing of theirs is in\n"
               "                flight (-t SECONDS, default 60; exit 1 if still busy)\n"
               "  release USER  lift the hold and forget USER's cached answers\n"
               "  flush [USER]  forget USER's cached answers, or empty every worker's lookup\n"
               "                cache and kept LMTP connections\n"
               "  reload        re-read config, maps and certificates; exit 1 with the reason\n"
               "                if the daemon refuses the new configuration\n"
               "  stop          stop the daemon\n"
               "  --json        print one JSON document per command\n");
}

bool g_json = false;

void print_json(const Json& j) { std::printf("%s\n", j.dump(2).c_str()); }

int fail(const std::string& message) {
  if (g_json) print_json(Json{{"error", message}});
  std::fprintf(stderr, "switchyardctl: %s\n", message.c_str());
  return 1;
}

enum class Asked { Ok, Absent, Denied, Failed };

// Sends `command` to one control socket and reads the reply up to the closing ".".
Asked ask(const std::string& path, const std::string& command, std::string* reply) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Asked::Failed;
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    ::close(fd);
    return Asked::Failed;
  }
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EACCES || e == EPERM) return Asked::Denied;
    return e == ENOENT || e == ECONNREFUSED ? Asked::Absent : Asked::Failed;
  }
  std::string line = command + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    ::close(fd);
    return Asked::Failed;
  }
  char buf[4096];
  ssize_t n;
  reply->clear();
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    reply->append(buf, static_cast<std::size_t>(n));
    if (reply->size() >= 2 && reply->compare(reply->size() - 2, 2, ".\n") == 0 &&
        (reply->size() == 2 || (*reply)[reply->size() - 3] == '\n'))
      break;
  }
  ::close(fd);
  if (reply->size() < 2) return Asked::Failed;
  reply->resize(reply->size() - 2);  // the closing "."
  return Asked::Ok;
}

std::string g_control_group;  // the config's control_group

std::string denied(const std::string& path) {
  if (!g_control_group.empty())
    return "permission denied: " + path + " (run as root or a member of group " +
           g_control_group + ")";
  return "permission denied: " + path +
         " (run as root, or set control_group to let a group use the control sockets)";
}

std::string master_socket(const sy::Config& c) { return c.control_dir + "/master.sock"; }

std::string not_running(const sy::Config& c) {
  return "no switchyard running (no control socket at " + master_socket(c) + ")";
}

// The workers' sockets in `dir`; *denied set when the directory may not be read.
std::vector<std::string> worker_sockets(const std::string& dir, bool* denied = nullptr) {
  std::vector<std::string> sockets;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (denied) *denied = errno == EACCES || errno == EPERM;
    return sockets;
  }
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("worker-", 0) == 0 && name.size() > 5 &&
        name.compare(name.size() - 5, 5, ".sock") == 0)
      sockets.push_back(dir + "/" + name);
  }
  ::closedir(d);
  return sockets;
}

// Asks every worker; the parsed answers of those that answered. An error message (and an
// empty result) when none did, saying why.
bool ask_workers(const sy::Config& c, const std::string& command, std::vector<Json>* answers,
                 std::string* error) {
  if (c.control_dir.empty()) {
    *error = c.path + " sets no control_dir";
    return false;
  }
  std::string denied_path;
  bool dir_denied = false;
  const std::vector<std::string> sockets = worker_sockets(c.control_dir, &dir_denied);
  if (dir_denied) denied_path = c.control_dir;
  for (const auto& s : sockets) {
    std::string reply;
    Asked a = ask(s, command, &reply);
    if (a == Asked::Denied) denied_path = s;
    if (a != Asked::Ok) continue;  // a worker that is gone
    Json j = Json::parse(reply, nullptr, false);
    if (j.is_discarded()) continue;
    answers->push_back(std::move(j));
  }
  if (!answers->empty()) return true;
  if (!denied_path.empty()) {
    *error = denied(denied_path);
  } else {
    struct stat st;
    if (::stat(master_socket(c).c_str(), &st) == 0)
      *error = "no worker answers in " + c.control_dir + " (the master runs: see its log)";
    else
      *error = not_running(c);
  }
  return false;
}

// The master's answer; Asked::Absent when there is no master socket (single-process mode,
// or not running).
Asked ask_master(const sy::Config& c, const std::string& command, std::string* reply) {
  if (c.control_dir.empty()) return Asked::Absent;
  return ask(master_socket(c), command, reply);
}

std::string duration_text(long long s) {
  std::string out;
  if (s >= 86400) out += std::to_string(s / 86400) + "d";
  if (s >= 3600) out += std::to_string(s / 3600 % 24) + "h";
  if (s >= 60) out += std::to_string(s / 60 % 60) + "m";
  return out + std::to_string(s % 60) + "s";
}

sy::HoldSet holds_of(const sy::Config& c) {
  sy::HoldSet holds;
  std::string error;
  if (!c.control_dir.empty()) (void)holds.load(sy::HoldSet::file_in(c.control_dir), &error);
  return holds;
}

int status(const sy::Config& c) {
  std::string reply, error;
  Json master;
  Asked m = ask_master(c, "status", &reply);
  if (m == Asked::Denied) return fail(denied(master_socket(c)));
  if (m == Asked::Ok) master = Json::parse(reply, nullptr, false);
  std::vector<Json> workers;
  if (!ask_workers(c, "status", &workers, &error) && m != Asked::Ok) return fail(error);

  Json out;
  if (master.is_object()) {
    out = master;
  } else {  // single-process mode: no master of its own
    out["version"] = PACKAGE_VERSION;
    out["pid"] = workers.empty() ? Json() : workers[0]["pid"];
    out["uptime_seconds"] = workers.empty() ? Json() : workers[0]["uptime_seconds"];
    out["config"] = c.path;
    out["listeners"] = Json::array();
    for (const auto& l : c.listen)
      out["listeners"].push_back({{"protocol", l.info().name}, {"address", l.address}});
  }
  // Draining as the master knows it (a worker learns it from its signal, a moment later).
  std::map<int, bool> draining;
  if (master.is_object())
    for (const auto& w : master["workers"]) draining[w["pid"].get<int>()] = w["draining"].get<bool>();
  Json list = Json::array();
  std::map<std::string, Json> backends;  // "backend host": down anywhere means down
  for (auto& w : workers) {
    const int pid = w["pid"].get<int>();
    if (draining.count(pid)) w["draining"] = draining[pid] || w["draining"].get<bool>();
    for (const auto& b : w["backends"]) {
      Json& agg = backends[b["backend"].get<std::string>() + " " + b["host"].get<std::string>()];
      if (agg.is_null()) {
        agg = b;
      } else if (!b["up"].get<bool>()) {
        agg["up"] = false;
        for (const auto& d : b["down"]) agg["down"].push_back(d);
      }
    }
    w.erase("backends");
    w.erase("holds");
    list.push_back(w);
  }
  out["workers"] = list;
  out["backends"] = Json::array();
  for (auto& [k, b] : backends) out["backends"].push_back(b);
  out["holds"] = Json::array();
  const sy::HoldSet holds = holds_of(c);
  for (const auto& k : holds.keys()) out["holds"].push_back(k);
  if (g_json) {
    print_json(out);
    return 0;
  }

  std::printf("switchyard %s, pid %s, up %s\nconfig %s\n",
              out["version"].get<std::string>().c_str(), out["pid"].dump().c_str(),
              out["uptime_seconds"].is_number()
                  ? duration_text(out["uptime_seconds"].get<long long>()).c_str()
                  : "?",
              out["config"].get<std::string>().c_str());
  std::string listeners;
  for (const auto& l : out["listeners"])
    listeners += (listeners.empty() ? "" : ", ") + l["protocol"].get<std::string>() + " " +
                 l["address"].get<std::string>();
  std::printf("listening: %s\n", listeners.empty() ? "nothing" : listeners.c_str());
  if (out.contains("last_reload")) {
    const Json& r = out["last_reload"];
    std::printf("reloads: %s, the last %s%s\n", out["reloads"].dump().c_str(),
                r["ok"].get<bool>() ? "done" : "refused: ",
                r["ok"].get<bool>() ? "" : r["error"].get<std::string>().c_str());
  }
  for (const auto& w : list) {
    std::string by;
    for (const auto& [proto, stages] : w["sessions"]["by_protocol"].items())
      for (const auto& [stage, n] : stages.items())
        by += (by.empty() ? "" : ", ") + proto + " " + stage + " " + n.dump();
    std::printf("worker %s%s sessions %s%s%s%s cache %s/%s up %s\n", w["pid"].dump().c_str(),
                w["draining"].get<bool>() ? " (draining)" : "",
                w["sessions"]["total"].dump().c_str(), by.empty() ? "" : " (", by.c_str(),
                by.empty() ? "" : ")", w["cache"]["entries"].dump().c_str(),
                w["cache"]["capacity"].dump().c_str(),
                duration_text(w["uptime_seconds"].get<long long>()).c_str());
  }
  for (const auto& b : out["backends"]) {
    std::string down;
    for (const auto& d : b["down"]) down += (down.empty() ? "" : ", ") + d.get<std::string>();
    std::printf("backend %s %s %s%s%s%s\n", b["backend"].get<std::string>().c_str(),
                b["host"].get<std::string>().c_str(), b["up"].get<bool>() ? "up" : "down",
                down.empty() ? "" : " (", down.c_str(), down.empty() ? "" : ")");
  }
  if (!out["holds"].empty()) {
    std::string list_text;
    for (const auto& k : out["holds"]) list_text += " " + k.get<std::string>();
    std::printf("holds%s\n", list_text.c_str());
  }
  return 0;
}

// One line per session, as the worker describes it: "PID:ID protocol phase name=value ...".
std::string session_text(const Json& s) {
  std::string line = s["id"].get<std::string>() + " " + s["protocol"].get<std::string>() + " " +
                     s["phase"].get<std::string>();
  for (const auto& [name, value] : s.items()) {
    if (name == "id" || name == "pid" || name == "protocol" || name == "stage" ||
        name == "phase" || name == "keys")
      continue;
    std::string v;
    if (value.is_array()) {
      for (const auto& x : value) v += (v.empty() ? "" : ",") + x.get<std::string>();
    } else if (value.is_string()) {
      v = value.get<std::string>();
    } else {
      v = value.dump();
    }
    if (name == "client" || name == "server" || name == "requests")
      line += " " + name + "=" + (v.empty() ? "-" : v);
    else
      line += " " + name + "=\"" + v + "\"";
  }
  std::string keys;
  for (const auto& k : s["keys"]) keys += (keys.empty() ? "" : ",") + k.get<std::string>();
  return line + " key=\"" + keys + "\"";
}

int who(const sy::Config& c, const std::string& user) {
  std::vector<Json> answers;
  std::string error;
  if (!ask_workers(c, user.empty() ? "who" : "who " + user, &answers, &error)) return fail(error);
  Json all = Json::array();
  for (const auto& a : answers)
    for (const auto& s : a) all.push_back(s);
  if (g_json) {
    print_json(user.empty() ? Json{{"sessions", all}}
                            : Json{{"user", user}, {"key", sy::map_key(c.username, user)},
                                   {"sessions", all}});
    return 0;
  }
  for (const auto& s : all) std::printf("%s\n", session_text(s).c_str());
  return 0;
}

int kick(const sy::Config& c, const std::string& user) {
  std::vector<Json> answers;
  std::string error;
  if (!ask_workers(c, "kick " + user, &answers, &error)) return fail(error);
  long kicked = 0;
  for (const auto& a : answers) kicked += a.value("kicked", 0L);
  if (g_json) print_json({{"key", sy::map_key(c.username, user)}, {"kicked", kicked},
                          {"workers", answers.size()}});
  else std::printf("kicked %ld sessions\n", kicked);
  return 0;
}

int flush(const sy::Config& c, const std::string& user) {
  std::vector<Json> answers;
  std::string error;
  if (!ask_workers(c, user.empty() ? "flush" : "flush " + user, &answers, &error))
    return fail(error);
  if (g_json) {
    print_json({{"flushed", user.empty() ? "all" : sy::map_key(c.username, user)},
                {"workers", answers.size()}});
  } else if (user.empty()) {
    std::printf("flushed %zu workers\n", answers.size());
  } else {
    std::printf("flushed the cached answers for %s on %zu workers\n",
                sy::map_key(c.username, user).c_str(), answers.size());
  }
  return 0;
}

int signal_master(const sy::Config& c, int sig) {
  if (c.pid_file.empty()) return fail(not_running(c));
  std::ifstream in(c.pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 1) return fail(not_running(c) + " and no pid in " + c.pid_file);
  if (::kill(static_cast<pid_t>(pid), sig) != 0)
    return fail("pid " + std::to_string(pid) + " (" + c.pid_file + "): " + std::strerror(errno));
  return 0;
}

// Workers answer but no master does: the daemon serves from one process (workers = 0).
bool single_process(const sy::Config& c) {
  std::vector<Json> answers;
  std::string error;
  return ask_workers(c, "status", &answers, &error);
}

// reload: the master answers once the new configuration is in force, or refused.
int reload(const sy::Config& c) {
  std::string reply;
  Asked a = ask_master(c, "reload", &reply);
  if (a == Asked::Denied) return fail(denied(master_socket(c)));
  if (a != Asked::Ok && single_process(c))
    return fail("no reload in single-process mode (workers = 0): restart switchyard instead");
  if (a != Asked::Ok) return fail(not_running(c));
  if (!reply.empty() && reply.back() == '\n') reply.pop_back();
  const bool ok = reply.rfind("ok ", 0) == 0;
  const std::string detail = reply.substr(reply.find(' ') == std::string::npos ? reply.size()
                                                                                : reply.find(' ') + 1);
  if (g_json) print_json({{"reload", ok ? "ok" : "refused"}, {"detail", detail}});
  if (ok) {
    if (!g_json) std::printf("%s\n", detail.c_str());
    return 0;
  }
  std::fprintf(stderr, "switchyardctl: reload refused, the running configuration is kept: %s\n",
               detail.c_str());
  return 1;
}

int stop(const sy::Config& c) {
  std::string reply;
  Asked a = ask_master(c, "stop", &reply);
  if (a == Asked::Denied) return fail(denied(master_socket(c)));
  if (a != Asked::Ok) {
    if (c.pid_file.empty() && single_process(c))
      return fail("single-process mode (workers = 0) and no pid_file: stop it by its pid");
    int rc = signal_master(c, SIGTERM);  // single-process mode has no master socket
    if (rc == 0 && g_json) print_json({{"stop", "signalled"}});
    return rc;
  }
  if (g_json) print_json({{"stop", "stopping"}});
  else std::printf("stopping\n");
  return 0;
}

// hold / release: the file first (for workers that start later), then every worker.
int hold_or_release(const sy::Config& c, bool hold, const std::string& user, int timeout_s) {
  if (c.control_dir.empty()) return fail(c.path + " sets no control_dir");
  const std::string key = sy::map_key(c.username, user);
  const std::string file = sy::HoldSet::file_in(c.control_dir);
  sy::HoldSet holds;
  std::string error;
  if (!holds.load(file, &error)) return fail(error);
  if (hold) holds.add(key);
  else holds.remove(key);
  if (!holds.save(file, &error)) {
    if (errno == EACCES || errno == EPERM)
      return fail("permission denied: " + file + " (hold and release rewrite it: run as root)");
    return fail(error);
  }
  const std::string command = (hold ? "hold " : "release ") + key;
  for (const auto& s : worker_sockets(c.control_dir)) {
    std::string reply;
    (void)ask(s, command, &reply);  // a worker that is gone reads the file when replaced
  }
  if (!hold) {
    if (g_json) print_json({{"released", key}});
    else std::printf("released %s\n", key.c_str());
    return 0;
  }
  // Wait until no worker has a session or delivery of that user in flight.
  const int polls = timeout_s * 10;
  std::string busy;
  for (int i = 0; i <= polls; ++i) {
    busy.clear();
    for (const auto& s : worker_sockets(c.control_dir)) {
      std::string reply;
      if (ask(s, "inflight " + key, &reply) == Asked::Ok) busy += reply;
    }
    if (busy.empty()) {
      if (g_json) print_json({{"held", key}, {"in_flight", Json::array()}});
      else std::printf("held %s: nothing in flight\n", key.c_str());
      return 0;
    }
    if (i < polls) ::usleep(100 * 1000);
  }
  if (g_json) {
    Json lines = Json::array();
    std::size_t at = 0, eol;
    while ((eol = busy.find('\n', at)) != std::string::npos) {
      lines.push_back(busy.substr(at, eol - at));
      at = eol + 1;
    }
    print_json({{"held", key}, {"in_flight", lines}, {"timeout_seconds", timeout_s}});
  }
  std::fprintf(stderr, "switchyardctl: %s is held, but still in flight after %ds:\n%s", key.c_str(),
               timeout_s, busy.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = sy::default_config_path();
  int opt;
  int timeout_s = 60;
  static const option longopts[] = {{"json", no_argument, nullptr, 'j'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  while ((opt = ::getopt_long(argc, argv, "+c:hVt:j", longopts, nullptr)) != -1) {
    switch (opt) {
      case 'c': path = optarg; break;
      case 't': timeout_s = std::atoi(optarg); break;
      case 'j': g_json = true; break;
      case 'V': std::printf("switchyardctl %s\n", PACKAGE_VERSION); return 0;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 64;
    }
  }
  // --json may also follow the command.
  std::vector<std::string> words;
  for (int i = optind; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) g_json = true;
    else words.push_back(argv[i]);
  }
  if (words.empty() || words.size() > 2) {
    usage(stderr);
    return 64;
  }
  const std::string& command = words[0];
  const std::string arg = words.size() > 1 ? words[1] : std::string();
  const bool takes_user = command == "kick" || command == "hold" || command == "release";
  const bool may_take_user = command == "who" || command == "flush";
  const bool bare = command == "status" || command == "reload" || command == "stop";
  if ((takes_user && arg.empty()) || (bare && !arg.empty()) ||
      (!takes_user && !may_take_user && !bare)) {
    usage(stderr);
    return 64;
  }
  sy::Config config;
  std::string error;
  if (!sy::load_config(path, &config, &error)) return fail(error);
  g_control_group = config.control_group;
  if (command == "status") return status(config);
  if (command == "who") return who(config, arg);
  if (command == "kick") return kick(config, arg);
  if (command == "flush") return flush(config, arg);
  if (command == "reload") return reload(config);
  if (command == "stop") return stop(config);
  return hold_or_release(config, command == "hold", arg, timeout_s);
}
