// switchyardctl: talk to a running switchyard. status, who and flush ask every worker
// over its control socket (see master/control.h); kick closes a user's sessions wherever
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

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: switchyardctl [-c FILE] COMMAND\n"
               "  status      workers, sessions, cache entries\n"
               "  who         every session: id protocol phase client user store\n"
               "  kick USER   close USER's sessions now (after a move to another store)\n"
               "  flush       empty every worker's lookup cache\n"
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

}  // namespace

int main(int argc, char** argv) {
  std::string path = sy::default_config_path();
  int opt;
  while ((opt = ::getopt(argc, argv, "c:hV")) != -1) {
    switch (opt) {
      case 'c': path = optarg; break;
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
  if (command != "status" && command != "who" && command != "flush" &&
      command.rfind("kick ", 0) != 0) {
    usage(stderr);
    return 64;
  }
  DIR* d = ::opendir(config.control_dir.c_str());
  if (!d) {
    std::fprintf(stderr, "switchyardctl: %s: %s (is switchyard running?)\n",
                 config.control_dir.c_str(), std::strerror(errno));
    return 1;
  }
  std::vector<std::string> sockets;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("worker-", 0) == 0 && name.size() > 5 &&
        name.compare(name.size() - 5, 5, ".sock") == 0)
      sockets.push_back(config.control_dir + "/" + name);
  }
  ::closedir(d);
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
  if (command == "flush") std::printf("flushed %d workers\n", answered);
  return 0;
}
