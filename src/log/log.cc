// Logger (see log.h).
#include "log/log.h"

#include <pthread.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "config/config.h"

namespace sy {
namespace {

LogLevel g_level = LogLevel::Info;
bool g_syslog = false;
bool g_journal = false;  // stderr is journald's stream: "<N>" priority prefixes, no stamp
int g_facility = LOG_MAIL;
std::string g_ident = "switchyard";
pid_t g_pid = 0;  // this process's, for the stderr lines (0: ask, not set up yet)

int syslog_priority(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return LOG_DEBUG;
    case LogLevel::Info: return LOG_INFO;
    case LogLevel::Notice: return LOG_NOTICE;
    case LogLevel::Warning: return LOG_WARNING;
    case LogLevel::Error: return LOG_ERR;
  }
  return LOG_INFO;
}

const char* level_name(LogLevel l) {
  static const char* names[] = {"debug", "info", "notice", "warning", "error"};
  return names[static_cast<int>(l)];
}

int facility_code(const std::string& f) {
  if (f == "daemon") return LOG_DAEMON;
  if (f.size() == 6 && f.rfind("local", 0) == 0 && f[5] >= '0' && f[5] <= '7')
    return LOG_LOCAL0 + (f[5] - '0') * (LOG_LOCAL1 - LOG_LOCAL0);
  return LOG_MAIL;
}

// systemd sets JOURNAL_STREAM to "<device>:<inode>" of the stream it connects stderr
// to; a match means stderr still is that stream (not redirected since).
bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (!env) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st;
  if (::fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace

void log_setup(const LogConfig& config, bool force_stderr, const char* ident) {
  static const char* levels[] = {"debug", "info", "notice", "warning", "error"};
  for (int i = 0; i < 5; ++i)
    if (config.level == levels[i]) g_level = static_cast<LogLevel>(i);
  g_ident = ident;
  g_facility = facility_code(config.facility);
  g_syslog = !force_stderr && config.target == "syslog";
  g_pid = ::getpid();
  static bool watching_forks = false;  // every child (daemon, workers) learns its own pid
  if (!watching_forks) watching_forks = ::pthread_atfork(nullptr, nullptr, [] { g_pid = ::getpid(); }) == 0;
  g_journal = !g_syslog && stderr_is_journal();
  if (g_syslog) ::openlog(g_ident.c_str(), LOG_PID | LOG_NDELAY, g_facility);
}

void log_reopen() {
  if (!g_syslog) return;
  ::closelog();
  ::openlog(g_ident.c_str(), LOG_PID | LOG_NDELAY, g_facility);
}

bool log_enabled(LogLevel level) { return level >= g_level; }

void log_message(LogLevel level, const char* format, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(msg, sizeof msg, format, ap);
  va_end(ap);
  if (g_syslog) {
    ::syslog(syslog_priority(level), "%s", msg);
    return;
  }
  if (g_journal) {
    // journald files the line at this priority and keeps the time; the pid says which
    // process wrote it (the workers share the master's stream).
    std::fprintf(stderr, "<%d>[%d] %s: %s\n", syslog_priority(level),
                 static_cast<int>(g_pid != 0 ? g_pid : ::getpid()), level_name(level), msg);
    return;
  }
  struct timeval tv;
  ::gettimeofday(&tv, nullptr);
  struct tm tm;
  ::localtime_r(&tv.tv_sec, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03ld %s[%d]: %s: %s\n", stamp, static_cast<long>(tv.tv_usec / 1000),
               g_ident.c_str(), static_cast<int>(g_pid != 0 ? g_pid : ::getpid()),
               level_name(level), msg);
}

std::string log_quote(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (std::size_t i = 0; i < s.size() && i < 256; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  if (s.size() > 256) out += "...";
  return out;
}

}  // namespace sy
