// Stand-alone driver for fuzz targets built without libFuzzer (plain "make check").
//
//   fuzz_X [-h] [FILE|DIR...]
//
// Runs LLVMFuzzerTestOneInput on every seed: the files named, the files inside the
// directories named, or, with no arguments, the files in
// "$abs_top_srcdir/tests/fuzz/corpus/<program name>" (abs_top_srcdir defaults to ".").
// Then, unless only plain files were named (reproducing a crash), it runs deterministic
// pseudo-random mutations of the seeds for up to 20000 inputs or 10 seconds, whichever
// comes first, prints a one-line summary and exits 0. A target reports a bug by crashing;
// the input being run is then saved as "fuzz-crash-<program name>" in the current
// directory. Arguments starting with '-' (libFuzzer options) are ignored.
//
// Depends only on LLVMFuzzerTestOneInput so that every fuzz target can link it.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
// Provided by the sanitizer runtimes when linked in; lets us save the input on a report.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxIterations = 20000;
constexpr auto kMaxTime = std::chrono::seconds(10);
constexpr std::size_t kMaxInputSize = 8192;

// The input under test, for the crash handlers (async-signal-safe access only).
const char* g_current_data = nullptr;
std::size_t g_current_size = 0;
char g_crash_path[512] = "fuzz-crash";

void save_current_input() {
  if (g_current_data == nullptr) return;
  const int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  std::size_t off = 0;
  while (off < g_current_size) {
    const ssize_t n = ::write(fd, g_current_data + off, g_current_size - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  static const char msg[] = "fuzz driver: crashing input saved to ";
  (void)!::write(2, msg, sizeof msg - 1);
  (void)!::write(2, g_crash_path, std::strlen(g_crash_path));
  (void)!::write(2, "\n", 1);
}

constexpr int kCrashSignals[] = {SIGILL, SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGTRAP};
struct sigaction g_previous[std::size(kCrashSignals)];

// Saves the input, then hands the signal to whoever handled it before (the sanitizer's
// reporter, or the default action).
void on_fatal_signal(int sig, siginfo_t* info, void*) {
  save_current_input();
  for (std::size_t i = 0; i < std::size(kCrashSignals); ++i) {
    if (kCrashSignals[i] == sig) ::sigaction(sig, &g_previous[i], nullptr);
  }
  // A fault raised by the CPU recurs when the instruction is re-run on return, now with
  // the previous handler and the original context; a sent signal has to be sent again.
  if (info == nullptr || info->si_code <= 0) ::raise(sig);
}

void install_crash_handlers() {
  for (std::size_t i = 0; i < std::size(kCrashSignals); ++i) {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal_signal;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ::sigaction(kCrashSignals[i], &sa, &g_previous[i]);
  }
  if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(save_current_input);
}

void run_one(const std::string& input) {
  g_current_data = input.data();
  g_current_size = input.size();
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
  g_current_data = nullptr;
  g_current_size = 0;
}

std::string program_name(const char* argv0) {
  std::string name = fs::path(argv0 != nullptr ? argv0 : "fuzz").filename().string();
  if (name.rfind("lt-", 0) == 0) name.erase(0, 3);  // libtool's uninstalled binary
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".exe") == 0) name.resize(name.size() - 4);
  return name;
}

bool read_file(const fs::path& p, std::string* out) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return false;
  out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return !f.bad();
}

// Adds the regular files of a directory (recursively, sorted for determinism).
void add_dir(const fs::path& dir, std::vector<fs::path>* files) {
  std::error_code ec;
  std::vector<fs::path> found;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) found.push_back(it->path());
  }
  std::sort(found.begin(), found.end());
  files->insert(files->end(), found.begin(), found.end());
}

// splitmix64: small, fast, the same sequence everywhere.
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
};

const std::string_view kTokens[] = {
    "{5}\r\n", "{5+}\r\n", "{0}\r\n", "{0+}\r\n", "{1}\r\n", "{99999999999999999999}\r\n",
    "{4096+}\r\n", "\"", "\\", "\\\"", "(", ")", "()", "\r\n", "\r", "\n", " ", "  ",
    std::string_view("\0", 1), "\xff", "\xc3\xa4", "NIL", "a1 ", "* ", "+", "%", "]", "[",
    "LOGIN ", "AUTHENTICATE PLAIN\r\n", "ID (\"name\" NIL)", "=\r\n", ":", "0", "9", "\t",
};

std::string mutate(const std::vector<std::string>& seeds, Rng& rng) {
  std::string s = seeds.empty() ? std::string() : seeds[rng.below(seeds.size())];
  const std::size_t rounds = 1 + rng.below(4);
  for (std::size_t r = 0; r < rounds; ++r) {
    const std::size_t pos = rng.below(s.size() + 1);  // an insertion point
    switch (rng.below(8)) {
      case 0:  // flip a bit
        if (!s.empty()) s[pos % s.size()] ^= static_cast<char>(1u << rng.below(8));
        break;
      case 1:  // set a byte
        if (!s.empty()) s[pos % s.size()] = static_cast<char>(rng.next());
        break;
      case 2: {  // insert an interesting token
        const std::string_view t = kTokens[rng.below(std::size(kTokens))];
        s.insert(pos, t.data(), t.size());
        break;
      }
      case 3:  // erase a few bytes
        if (pos < s.size()) s.erase(pos, 1 + rng.below(std::min<std::size_t>(16, s.size() - pos)));
        break;
      case 4:  // truncate
        s.resize(pos);
        break;
      case 5:  // duplicate a piece
        if (!s.empty()) {
          const std::size_t from = rng.below(s.size());
          const std::string piece = s.substr(from, 1 + rng.below(32));
          s.insert(pos, piece);
        }
        break;
      case 6:  // splice: our head, another seed's tail
        if (!seeds.empty()) {
          const std::string& other = seeds[rng.below(seeds.size())];
          s.resize(pos);
          s.append(other, rng.below(other.size() + 1), std::string::npos);
        }
        break;
      case 7: {  // insert random bytes
        const std::size_t n = 1 + rng.below(4);
        for (std::size_t i = 0; i < n; ++i) s.insert(s.begin() + static_cast<long>(pos), static_cast<char>(rng.next()));
        break;
      }
    }
    if (s.size() > kMaxInputSize) s.resize(kMaxInputSize);
  }
  return s;
}

void usage(const std::string& name) {
  std::printf(
      "usage: %s [FILE|DIR...]\n"
      "Runs the fuzz target on the given seeds (default: $abs_top_srcdir/tests/fuzz/corpus/%s),\n"
      "then on up to %zu mutations of them (at most %lld s). With only files given, runs\n"
      "just those files.\n",
      name.c_str(), name.c_str(), kMaxIterations, static_cast<long long>(kMaxTime.count()));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = program_name(argc > 0 ? argv[0] : nullptr);
  std::snprintf(g_crash_path, sizeof g_crash_path, "fuzz-crash-%s", name.c_str());

  std::vector<fs::path> files;
  bool only_files = true;
  bool any_path = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      usage(name);
      return 0;
    }
    if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "%s: ignoring option %s\n", name.c_str(), arg.c_str());
      continue;
    }
    any_path = true;
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      only_files = false;
      add_dir(arg, &files);
    } else {
      files.emplace_back(arg);
    }
  }
  if (!any_path) {
    only_files = false;
    const char* top = std::getenv("abs_top_srcdir");
    const fs::path dir = fs::path(top != nullptr && *top != '\0' ? top : ".") / "tests" / "fuzz" /
                         "corpus" / name;
    std::error_code ec;
    if (fs::is_directory(dir, ec)) {
      add_dir(dir, &files);
    } else {
      std::fprintf(stderr, "%s: no seed directory %s, mutating from nothing\n", name.c_str(),
                   dir.string().c_str());
    }
  }

  install_crash_handlers();

  std::vector<std::string> seeds;
  for (const fs::path& p : files) {
    std::string data;
    if (!read_file(p, &data)) {
      std::fprintf(stderr, "%s: cannot read %s\n", name.c_str(), p.string().c_str());
      return 1;
    }
    if (only_files) std::fprintf(stderr, "%s: running %s\n", name.c_str(), p.string().c_str());
    run_one(data);
    if (data.size() > kMaxInputSize) data.resize(kMaxInputSize);
    seeds.push_back(std::move(data));
  }

  const auto start = std::chrono::steady_clock::now();
  std::size_t iterations = 0;
  if (!only_files) {
    Rng rng{0x5717c4a7d0a11ULL};
    while (iterations < kMaxIterations && std::chrono::steady_clock::now() - start < kMaxTime) {
      run_one(mutate(seeds, rng));
      ++iterations;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %zu seed(s), %zu mutated input(s) in %.1f s, no failures\n", name.c_str(),
              seeds.size(), iterations, secs);
  return 0;
}
