// Users the proxy itself holds while their mailbox moves (switchyardctl hold / release),
// whatever the maps say: every lookup of a held key answers Hold (IMAP/POP3 NO
// [UNAVAILABLE], LMTP 451 4.2.1, socketmap TEMP). Keys are map keys, after the username
// policy. The set is kept in <control_dir>/holds, one key per line, written by
// switchyardctl and read by every worker when it starts, so holds survive a reload and a
// worker restart; the running workers are told over their control sockets.
// Pure (files only): used by the workers and by switchyardctl.
#ifndef SWITCHYARD_WORKER_HOLDS_H
#define SWITCHYARD_WORKER_HOLDS_H

#include <set>
#include <string>
#include <string_view>

namespace sy {

class HoldSet {
 public:
  bool contains(std::string_view key) const { return keys_.find(key) != keys_.end(); }
  bool add(const std::string& key) { return keys_.insert(key).second; }
  bool remove(const std::string& key) { return keys_.erase(key) > 0; }
  const std::set<std::string, std::less<>>& keys() const { return keys_; }
  bool empty() const { return keys_.empty(); }

  // The file under control_dir.
  static std::string file_in(const std::string& control_dir) { return control_dir + "/holds"; }
  // A missing file is an empty set. False and *error when it cannot be read.
  [[nodiscard]] bool load(const std::string& path, std::string* error);
  // Written to a temporary file and renamed over `path` (mode 0644: readable by whoever
  // may enter control_dir, for switchyardctl status).
  [[nodiscard]] bool save(const std::string& path, std::string* error) const;

 private:
  std::set<std::string, std::less<>> keys_;
};

}  // namespace sy

#endif
