// Back-end resolution (see target.h).
#include "backend/target.h"

namespace sy {
namespace {

// A store named by a bare host is asked on its protocol's standard port.
std::string default_port(Service s) {
  const Protocol p = s == Service::Pop3 ? Protocol::Pop3 : s == Service::Lmtp ? Protocol::Lmtp
                                                                             : Protocol::Imap;
  return std::to_string(protocol_info(p).default_port);
}

}  // namespace

std::string host_port(const std::string& host, const std::string& port) {
  if (port.rfind("unix:", 0) == 0) return port;
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
}

Target resolve_target(const Config& config, const MapAnswer& answer, Service service,
                      const std::vector<MapAnswer>& more) {
  Target t;
  auto it = config.backends.find(answer.host);
  if (it != config.backends.end()) {
    const BackendConfig& b = it->second;
    t.backend = b.name;
    t.hosts = b.hosts;
    t.connect_timeout = b.connect_timeout;
    t.login_timeout = b.login_timeout;
    t.down_time = b.down_time;
    t.tls = b.tls;
    t.tls_verify = b.tls_verify;
    t.forward_client_ip = b.forward_client_ip;
    switch (service) {
      case Service::Imap: t.port = b.imap; break;
      case Service::Pop3: t.port = b.pop3; break;
      case Service::Lmtp: t.port = b.lmtp; break;
    }
  } else {
    t.hosts = {answer.host};
    t.port = default_port(service);
  }
  // A port in the answer is the login port (Perdition's meaning): mail goes to the back
  // end's LMTP port, or the LMTP default.
  if (!answer.port.empty() && service != Service::Lmtp) t.port = answer.port;
  if (t.backend.empty()) {
    for (const MapAnswer& m : more) {
      t.hosts.push_back(m.host);
      t.host_ports.resize(t.hosts.size());
      t.host_ports.back() = m.port;
    }
  }
  return t;
}

}  // namespace sy
