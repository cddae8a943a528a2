// switchyardctl: talk to a running switchyard. status, who and flush ask every worker
// over its control socket (see worker/control.h); kick closes a user's sessions wherever
// they are; reload and stop signal the master through its pid file.
#include <config.h>

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "map/username.h"
#include "worker/holds.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: switchyardctl [-c FILE] COMMAND\n"
               "  status      workers, sessions, cache entries\n"
               "  who         every session: id protocol phase client user store\n"
               "  kick USER   close USER's sessions now (any spelling of the login)\n"
               "  hold USER   hold USER in the proxy (every worker, kept across reloads), end\n"
               "              their IMAP/POP3 sessions and wait until nothing of theirs is in\n"
               "              flight (-t SECONDS, default 60; exit 1 if still busy)\n"
               "  release USER  lift the hold and forget USER's cached answers\n"
               "  flush       empty every worker's lookup cache and kept LMTP connections\n"
               "  reload      SIGHUP the master: re-read config, maps and certificates\n"
               "  stop        SIGTERM the master\n");
}

// Sends `command` to one worker socket; false when nobody listens there.
bool ask(const std::string& path, const std::string& command, std::string* reply) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    ::close(fd);
    return false;
  }
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    ::close(fd);
    return false;
  }
  std::string line = command + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    ::close(fd);
    return false;
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
  if (reply->size() >= 2) reply->resize(reply->size() - 2);  // the closing "."
  return true;
}

int signal_master(const sy::Config& c, int sig) {
  if (c.pid_file.empty()) {
    std::fprintf(stderr, "switchyardctl: %s sets no pid_file\n", c.path.c_str());
    return 1;
  }
  std::ifstream in(c.pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 1) {
    std::fprintf(stderr, "switchyardctl: no pid in %s\n", c.pid_file.c_str());
    return 1;
  }
  if (::kill(static_cast<pid_t>(pid), sig) != 0) {
    std::fprintf(stderr, "switchyardctl: pid %ld: %s\n", pid, std::strerror(errno));
    return 1;
  }
  return 0;
}

std::vector<std::string> worker_sockets(const std::string& dir) {
  std::vector<std::string> sockets;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return sockets;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("worker-", 0) == 0 && name.size() > 5 &&
        name.compare(name.size() - 5, 5, ".sock") == 0)
      sockets.push_back(dir + "/" + name);
  }
  ::closedir(d);
  return sockets;
}

// hold / release: the file first (for workers that start later), then every worker.
int hold_or_release(const sy::Config& c, bool hold, const std::string& user, int timeout_s) {
  if (c.control_dir.empty()) {
    std::fprintf(stderr, "switchyardctl: %s sets no control_dir\n", c.path.c_str());
    return 1;
  }
  const std::string key = sy::map_key(c.username, user);
  const std::string file = sy::HoldSet::file_in(c.control_dir);
  sy::HoldSet holds;
  std::string error;
  if (!holds.load(file, &error)) {
    std::fprintf(stderr, "switchyardctl: %s\n", error.c_str());
    return 1;
  }
  if (hold) holds.add(key);
  else holds.remove(key);
  if (!holds.save(file, &error)) {
    std::fprintf(stderr, "switchyardctl: %s\n", error.c_str());
    return 1;
  }
  const std::string command = (hold ? "hold " : "release ") + key;
  for (const auto& s : worker_sockets(c.control_dir)) {
    std::string reply;
    (void)ask(s, command, &reply);  // a worker that is gone reads the file when replaced
  }
  if (!hold) {
    std::printf("released %s\n", key.c_str());
    return 0;
  }
  // Wait until no worker has a session or delivery of that user in flight.
  const int polls = timeout_s * 10;
  std::string busy;
  for (int i = 0; i <= polls; ++i) {
    busy.clear();
    for (const auto& s : worker_sockets(c.control_dir)) {
      std::string reply;
      if (ask(s, "inflight " + key, &reply)) busy += reply;
    }
    if (busy.empty()) {
      std::printf("held %s: nothing in flight\n", key.c_str());
      return 0;
    }
    if (i < polls) ::usleep(100 * 1000);
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
  while ((opt = ::getopt(argc, argv, "c:hVt:")) != -1) {
    switch (opt) {
      case 'c': path = optarg; break;
      case 't': timeout_s = std::atoi(optarg); break;
      case 'V': std::printf("switchyardctl %s\n", PACKAGE_VERSION); return 0;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 64;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return 64;
  }
  std::string command = argv[optind];
  for (int i = optind + 1; i < argc; ++i) command += std::string(" ") + argv[i];
  sy::Config config;
  std::string error;
  if (!sy::load_config(path, &config, &error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  if (command == "reload") return signal_master(config, SIGHUP);
  if (command == "stop") return signal_master(config, SIGTERM);
  if (command.rfind("hold ", 0) == 0 || command.rfind("release ", 0) == 0) {
    const bool hold = command[0] == 'h';
    return hold_or_release(config, hold, command.substr(hold ? 5 : 8), timeout_s);
  }
  if (command != "status" && command != "who" && command != "flush" &&
      command.rfind("kick ", 0) != 0) {
    usage(stderr);
    return 64;
  }
  if (::access(config.control_dir.c_str(), F_OK) != 0) {
    std::fprintf(stderr, "switchyardctl: %s: %s (is switchyard running?)\n",
                 config.control_dir.c_str(), std::strerror(errno));
    return 1;
  }
  std::vector<std::string> sockets = worker_sockets(config.control_dir);
  int answered = 0;
  long kicked = 0;
  for (const auto& s : sockets) {
    std::string reply;
    if (!ask(s, command, &reply)) continue;  // a worker that is gone
    ++answered;
    if (command.rfind("kick ", 0) == 0) kicked += std::strtol(reply.c_str() + 7, nullptr, 10);
    else if (command == "flush") continue;
    else std::fputs(reply.c_str(), stdout);
  }
  if (answered == 0) {
    std::fprintf(stderr, "switchyardctl: no worker answers in %s\n", config.control_dir.c_str());
    return 1;
  }
  if (command.rfind("kick ", 0) == 0) std::printf("kicked %ld sessions\n", kicked);
  if (command == "status") {
    sy::HoldSet holds;
    std::string error;
    if (holds.load(sy::HoldSet::file_in(config.control_dir), &error) && !holds.empty()) {
      std::string list;
      for (const auto& k : holds.keys()) list += " " + k;
      std::printf("holds%s\n", list.c_str());
    }
  }
  if (command == "flush") std::printf("flushed %d workers\n", answered);
  return 0;
}
