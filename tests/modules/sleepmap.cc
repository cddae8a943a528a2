// Test-only map module (tests/modules): a slow, flaky and sloppy map for the loader's and the
// lookup service's tests. Owner: the map-modules engineer. Exports only dbserver_get.
//   options   decimal milliseconds to sleep (NULL = 1000)
//   "slow..." (any key starting with "slow") sleeps that long, then not found (-2)
//   "tempfail" database error (-1)
//   "garbage"  found (0): 5 bytes "\x01\x02:::", not NUL-terminated, not a valid answer
//   "intlen"   found (0): "127.0.0.1:143", length written as an int (*(int*)len_return),
//              like Perdition's gdbm/bdb/nis/posix_regex modules: the host must zero the
//              size_t first
//   others     not found (-2) at once
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

extern "C" int dbserver_get(const char* key, const char* options, char** str_return,
                            size_t* len_return) {
  if (key == nullptr || str_return == nullptr || len_return == nullptr) return -3;
  std::string_view k(key);
  if (k.starts_with("slow")) {
    long ms = options != nullptr ? std::strtol(options, nullptr, 10) : 1000;
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return -2;
  }
  if (k == "tempfail") return -1;
  if (k == "garbage") {
    static const char kGarbage[5] = {'\x01', '\x02', ':', ':', ':'};
    char* out = static_cast<char*>(std::malloc(sizeof kGarbage));
    if (out == nullptr) return -3;
    std::memcpy(out, kGarbage, sizeof kGarbage);
    *str_return = out;
    *len_return = sizeof kGarbage;
    return 0;
  }
  if (k == "intlen") {
    static const char kValue[] = "127.0.0.1:143";
    char* out = static_cast<char*>(std::malloc(sizeof kValue));
    if (out == nullptr) return -3;
    std::memcpy(out, kValue, sizeof kValue);
    *str_return = out;
    // Old modules declared the parameter int*: only the low 4 bytes are written.
    int n = static_cast<int>(sizeof kValue - 1);
    std::memcpy(len_return, &n, sizeof n);
    return 0;
  }
  return -2;
}
