// Test-only host for map modules (tests/modules): loads one module with dlopen and calls
// its Perdition functions as a host does, on commands read from stdin, one per line, so
// that Python tests can drive a module without loading it into the Python process (which
// a sanitized module cannot be: its runtime must come first in the process).
//
//   maphost MODULE.so
//
// Commands (arguments are "x" and the bytes in hex; "-" is a NULL options string):
//   init OPTIONS          prints the return code of dbserver_init
//   get KEY OPTIONS       prints the return code of dbserver_get and the value (hex, or "-")
//   fini                  prints the return code of dbserver_fini
//   forkget KEY OPTIONS   forks; the child calls dbserver_get, then dbserver_fini, and exits
//                         0 if the get returned 0, else 1; prints the child's exit status
// Each reply is one line on stdout, flushed; whatever the module writes to stderr goes to
// stderr. SIGPIPE keeps its default action, as in switchyard and Perdition. Exits 0 at
// end of input, 2 on a bad command or a module that does not load.
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>

namespace {

using InitFn = int (*)(char*);
using GetFn = int (*)(const char*, const char*, char**, std::size_t*);
using FiniFn = int (*)();

bool unhex(const std::string& in, std::string* out, bool* null) {
  *null = in == "-";
  out->clear();
  if (*null) return true;
  if (in.empty() || in[0] != 'x' || in.size() % 2 != 1) return false;
  for (std::size_t i = 1; i < in.size(); i += 2) {
    char* end = nullptr;
    const std::string byte = in.substr(i, 2);
    const long v = std::strtol(byte.c_str(), &end, 16);
    if (end != byte.c_str() + 2) return false;
    out->push_back(static_cast<char>(v));
  }
  return true;
}

std::string hex(const char* data, std::size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out = "x";
  for (std::size_t i = 0; i < size; ++i) {
    const auto b = static_cast<unsigned char>(data[i]);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: maphost MODULE.so\n");
    return 2;
  }
  void* module = ::dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (module == nullptr) {
    std::fprintf(stderr, "maphost: %s\n", ::dlerror());
    return 2;
  }
  auto init = reinterpret_cast<InitFn>(::dlsym(module, "dbserver_init"));
  auto get = reinterpret_cast<GetFn>(::dlsym(module, "dbserver_get"));
  auto fini = reinterpret_cast<FiniFn>(::dlsym(module, "dbserver_fini"));
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd, a, b;
    in >> cmd >> a >> b;
    std::string key, options;
    bool key_null = false, options_null = false;
    if (cmd == "init" && init != nullptr && unhex(a, &options, &options_null)) {
      std::printf("%d\n", init(options_null ? nullptr : options.data()));
    } else if (cmd == "fini" && fini != nullptr) {
      std::printf("%d\n", fini());
    } else if ((cmd == "get" || cmd == "forkget") && get != nullptr && unhex(a, &key, &key_null) &&
               !key_null && unhex(b, &options, &options_null)) {
      const char* opts = options_null ? nullptr : options.c_str();
      if (cmd == "forkget") {
        std::fflush(stdout);
        const pid_t pid = ::fork();
        if (pid < 0) return 2;
        if (pid == 0) {
          char* value = nullptr;
          std::size_t size = 0;
          const int rc = get(key.c_str(), opts, &value, &size);
          std::free(value);
          if (fini != nullptr) fini();
          ::_exit(rc == 0 ? 0 : 1);
        }
        int status = 0;
        if (::waitpid(pid, &status, 0) != pid) return 2;
        std::printf("%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      } else {
        char* value = nullptr;
        std::size_t size = 0;
        const int rc = get(key.c_str(), opts, &value, &size);
        std::printf("%d %s\n", rc, value != nullptr ? hex(value, size).c_str() : "-");
        std::free(value);
      }
    } else {
      std::fprintf(stderr, "maphost: bad command: %s\n", line.c_str());
      return 2;
    }
    std::fflush(stdout);
  }
  ::dlclose(module);
  return 0;
}
