// Test-only map module (tests/modules): exports only Perdition's dbserver_get2 (no
// dbserver_get, init or fini). Owner: the map-modules engineer.
//   options  "USER,SERVER,PORT": each non-empty part comes back strdup'd, an empty or
//            missing part as NULL (NULL options: all three NULL, still returning 0)
//   "missing" not found (-2); any other key: 0
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

char* dup_or_null(std::string_view part) {
  return part.empty() ? nullptr : strndup(part.data(), part.size());
}

}  // namespace

extern "C" int dbserver_get2(const char* key, const char* options, char** user, char** server,
                             char** port) {
  if (key == nullptr || user == nullptr || server == nullptr || port == nullptr) return -3;
  if (std::string_view(key) == "missing") return -2;
  std::string_view parts[3];
  std::string_view rest = options != nullptr ? options : "";
  for (auto& part : parts) {
    auto comma = rest.find(',');
    part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  *user = dup_or_null(parts[0]);
  *server = dup_or_null(parts[1]);
  *port = dup_or_null(parts[2]);
  return 0;
}
