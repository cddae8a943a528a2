// switchyard: the IMAP/POP3 proxy and LMTP router daemon. Command line only; the work
// is in master/ (processes) and the protocol folders.
#include <config.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "config/config.h"
#include "master/master.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: switchyard [-c FILE] [-f] [-t] [-V]\n"
               "  -c FILE  configuration file (default %s)\n"
               "  -f       stay in the foreground and log to stderr\n"
               "  -t       check the configuration and the map modules, then exit\n"
               "  -V       print the version and exit\n",
               sy::default_config_path().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  sy::MasterOptions options;
  options.config_path = sy::default_config_path();
  int opt;
  while ((opt = ::getopt(argc, argv, "c:ftVh")) != -1) {
    switch (opt) {
      case 'c': options.config_path = optarg; break;
      case 'f': options.foreground = true; break;
      case 't': options.check_only = true; break;
      case 'V': std::printf("switchyard %s\n", PACKAGE_VERSION); return 0;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 64;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 64;
  }
  return sy::run_master(options);
}
