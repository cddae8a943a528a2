// Test-only map module (tests/modules): a directory with a fixed latency, for the lookup
// concurrency tests and the benchmark's "map with a fixed latency" rows.
//   options  "MS;SERVER[;N]": every lookup takes MS milliseconds, then answers SERVER
//            (a [backend.NAME] or host[:port]); N (default 8) is for "together" keys
//   keys:
//     "hang..."      sleeps 30 s (a hung directory), then not found
//     "together..."  waits until N lookups are inside the module at once (at most 5 s):
//                    found when they were, a database error (-1) when they never were
//     "miss..."      not found, after MS
//     others         found: SERVER, after MS
// Built twice: latencymap exports switchyard_map_thread_safe = 1; latencymap_unsafe
// (LATENCYMAP_UNSAFE) does not, and answers -1 for a lookup that finds another one already
// inside the module, which a host must never let happen.
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace {

std::mutex g_mutex;
std::condition_variable g_cv;
int g_inside = 0;
bool g_met = false;  // N "together" lookups were inside at once (stays true)

struct Options {
  long ms = 0;
  std::string server = "127.0.0.1";
  int together = 8;
};

Options parse(const char* text) {
  Options o;
  std::string s = text ? text : "";
  auto first = s.find(';');
  o.ms = std::strtol(s.substr(0, first).c_str(), nullptr, 10);
  if (first == std::string::npos) return o;
  auto second = s.find(';', first + 1);
  o.server = s.substr(first + 1, second == std::string::npos ? std::string::npos
                                                             : second - first - 1);
  if (second != std::string::npos) o.together = std::atoi(s.c_str() + second + 1);
  return o;
}

int answer(const std::string& server, char** str_return, size_t* len_return) {
  char* out = static_cast<char*>(std::malloc(server.size() + 1));
  if (out == nullptr) return -3;
  std::memcpy(out, server.c_str(), server.size() + 1);
  *str_return = out;
  *len_return = server.size();
  return 0;
}

class Inside {
 public:
  Inside() {
    std::lock_guard lock(g_mutex);
    others_ = g_inside++;
    g_cv.notify_all();
  }
  ~Inside() {
    std::lock_guard lock(g_mutex);
    --g_inside;
  }
  int others() const { return others_; }

 private:
  int others_;
};

}  // namespace

extern "C" {

#ifndef LATENCYMAP_UNSAFE
extern const int switchyard_map_thread_safe = 1;
#endif

int dbserver_get(const char* key, const char* options, char** str_return, size_t* len_return) {
  if (key == nullptr || str_return == nullptr || len_return == nullptr) return -3;
  Inside inside;
#ifdef LATENCYMAP_UNSAFE
  if (inside.others() != 0) return -1;  // called beside another lookup: never allowed
#endif
  Options o = parse(options);
  std::string_view k(key);
  if (k.starts_with("hang")) {
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return -2;
  }
  if (k.starts_with("together")) {
    std::unique_lock lock(g_mutex);
    bool met = g_cv.wait_for(lock, std::chrono::seconds(5), [&] {
      if (g_inside >= o.together) g_met = true;
      return g_met;
    });
    g_cv.notify_all();
    if (!met) return -1;
    lock.unlock();
    return answer(o.server, str_return, len_return);
  }
  if (o.ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.ms));
  if (k.starts_with("miss")) return -2;
  return answer(o.server, str_return, len_return);
}

}  // extern "C"
