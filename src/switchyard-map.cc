// switchyard-map: ask the configured map chain from the shell, like postmap -q.
// Prints, for each key, what the chain answers and where IMAP, POP3 and LMTP would go.
// Exit status: 0 all found, 1 some not found, 2 some TempFail or hold.
#include <config.h>

#include <unistd.h>

#include <cstdio>

#include "config/config.h"
#include "map/chain.h"
#include "map/username.h"
#include "backend/target.h"

namespace {

std::string destination(const sy::Config& c, const sy::MapAnswer& a, sy::Service s) {
  sy::Target t = sy::resolve_target(c, a, s);
  std::string out;
  for (const auto& h : t.hosts) out += (out.empty() ? "" : ",") + sy::host_port(h, t.port);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = sy::default_config_path();
  int opt;
  while ((opt = ::getopt(argc, argv, "c:Vh")) != -1) {
    switch (opt) {
      case 'c': path = optarg; break;
      case 'V': std::printf("switchyard-map %s\n", PACKAGE_VERSION); return 0;
      default:
        std::fprintf(stderr, "usage: switchyard-map [-c FILE] KEY...\n");
        return opt == 'h' ? 0 : 64;
    }
  }
  if (optind >= argc) {
    std::fprintf(stderr, "usage: switchyard-map [-c FILE] KEY...\n");
    return 64;
  }
  sy::Config config;
  std::string error;
  if (!sy::load_config(path, &config, &error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 2;
  }
  auto chain = sy::load_chain(config, &error);
  if (!chain) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 2;
  }
  int worst = 0;
  for (int i = optind; i < argc; ++i) {
    std::string login = argv[i];
    std::string key = sy::map_key(config.username, login);
    sy::ChainReply r = chain->lookup(key);
    double ms = r.took.count() / 1000.0;
    const char* status = sy::lookup_status_name(r.reply.status);
    std::printf("%s: %s", login.c_str(), status);
    if (key != login) std::printf(" key=%s", key.c_str());
    if (r.reply.status == sy::LookupStatus::Found) {
      const sy::MapAnswer& a = r.reply.answer;
      sy::Target t = sy::resolve_target(config, a, sy::Service::Imap);
      std::printf(" user=%s backend=%s host=%s port=%s",
                  sy::store_login(config.username, key, a).c_str(),
                  t.backend.empty() ? "-" : t.backend.c_str(), a.host.c_str(),
                  a.port.empty() ? "-" : a.port.c_str());
      std::printf(" imap=%s pop3=%s lmtp=%s", destination(config, a, sy::Service::Imap).c_str(),
                  destination(config, a, sy::Service::Pop3).c_str(),
                  destination(config, a, sy::Service::Lmtp).c_str());
    } else if (!r.reply.detail.empty()) {
      std::printf(" reason=\"%s\"", r.reply.detail.c_str());
    }
    std::printf(" map=%s time=%.3fms\n", r.map_name.empty() ? "-" : r.map_name.c_str(), ms);
    int code = r.reply.status == sy::LookupStatus::Found      ? 0
               : r.reply.status == sy::LookupStatus::NotFound ? 1
                                                              : 2;
    if (code > worst) worst = code;
  }
  return worst;
}
