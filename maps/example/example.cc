// The example map module: a small static table, written with <switchyard/map.hpp>. It is
// the template to copy for a module of your own (see README and switchyard-map-plugin(3)).
//
// Options: the table itself, entries separated by ';'
//     jane=store1;joe=joe.smith@store2:10143,store3:10143;*=store1
// or, when they start with '/', the path of a file holding one entry a line ('#' comments).
// An entry is KEY=VALUE:
//   KEY    a user name, or "*" for everyone not listed; "/PROTOCOL" after it ("jane/pop3")
//          makes the entry apply to that protocol only (imap, pop3, lmtp, socketmap, cli)
//   VALUE  [USER@]SERVER[,SERVER...]  the stores in fail-over order, each "host[:port]" or
//                                     a [backend.NAME], and optionally the login to use
//          hold                       the user is being moved: logins fail for now
//          tempfail                   the lookup fails temporarily (a test aid)
// A key is tried as KEY/PROTOCOL, KEY, */PROTOCOL, then *. Unknown keys are not found.
#include <switchyard/map.hpp>

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::string trim(std::string_view s) {
  const char* space = " \t\r\n";
  auto first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return std::string(s.substr(first, s.find_last_not_of(space) - first + 1));
}

class StaticMap {
 public:
  // Runs in dbserver_init, as root and before privileges drop: a root-only file is fine.
  // Throwing here refuses to start, and the message goes to the host's log.
  explicit StaticMap(const char* options) {
    std::string text = options != nullptr ? options : "";
    char separator = ';';
    if (!text.empty() && text[0] == '/') {
      std::ifstream file(text);
      if (!file) throw std::runtime_error(text + ": cannot be read");
      std::ostringstream contents;
      contents << file.rdbuf();
      text = contents.str();
      separator = '\n';
    }
    std::istringstream entries(text);
    for (std::string entry; std::getline(entries, entry, separator);) add(trim(entry));
    if (table_.empty()) throw std::invalid_argument("no entries: expected KEY=SERVER;...");
  }

  // Called for every login. It only reads table_, so it is safe to call from several
  // threads at once (hence "true" in SWITCHYARD_MAP_PLUGIN below).
  switchyard::Result lookup(const switchyard::Query& query, switchyard::Answer& answer) const {
    std::string key(query.key), protocol(query.protocol);
    std::vector<std::string> candidates;
    if (!protocol.empty()) candidates.push_back(key + "/" + protocol);  // "" from Perdition
    candidates.push_back(key);
    if (!protocol.empty()) candidates.push_back("*/" + protocol);
    candidates.push_back("*");
    for (const std::string& candidate : candidates) {
      auto it = table_.find(candidate);
      if (it == table_.end()) continue;
      const Entry& entry = it->second;
      if (entry.kind == Entry::TempFail)  // an exception is a temporary failure, too
        throw switchyard::MapError("entry \"" + candidate + "\" says tempfail");
      answer.hold = entry.kind == Entry::Hold;
      answer.user = entry.user;
      answer.servers = entry.servers;
      return switchyard::Result::Found;
    }
    return switchyard::Result::NotFound;
  }

 private:
  struct Entry {
    enum Kind { Servers, Hold, TempFail } kind = Servers;
    std::string user;
    std::vector<std::string> servers;
  };

  // Parses "KEY=VALUE" into table_; a bad entry refuses the whole map.
  void add(const std::string& text) {
    if (text.empty() || text[0] == '#') return;
    auto equals = text.find('=');
    std::string key = trim(text.substr(0, equals));
    std::string value = equals == std::string::npos ? "" : trim(text.substr(equals + 1));
    if (key.empty() || value.empty()) throw std::invalid_argument("not KEY=VALUE: " + text);
    Entry entry;
    if (value == "hold") {
      entry.kind = Entry::Hold;
    } else if (value == "tempfail") {
      entry.kind = Entry::TempFail;
    } else {
      auto at = value.rfind('@');  // the login may hold '@' itself; servers never do
      if (at != std::string::npos) entry.user = value.substr(0, at);
      std::istringstream servers(value.substr(at == std::string::npos ? 0 : at + 1));
      for (std::string server; std::getline(servers, server, ',');) {
        if (trim(server).empty()) throw std::invalid_argument("empty server in: " + text);
        entry.servers.push_back(trim(server));
      }
      if (entry.servers.empty()) throw std::invalid_argument("no server in: " + text);
    }
    if (!table_.emplace(key, std::move(entry)).second)
      throw std::invalid_argument("key listed twice: " + key);
  }

  std::map<std::string, Entry> table_;
};

}  // namespace

SWITCHYARD_MAP_PLUGIN(StaticMap, true);
