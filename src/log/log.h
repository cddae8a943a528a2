// Logging to syslog or stderr, printf-style. One process-wide logger, set up once by the
// master and inherited by workers. Callers never pass passwords here.
#ifndef SWITCHYARD_LOG_LOG_H
#define SWITCHYARD_LOG_LOG_H

#include <string>

namespace sy {

enum class LogLevel { Debug = 0, Info, Notice, Warning, Error };

struct LogConfig;

// Before log_setup() messages go to stderr at level info.
void log_setup(const LogConfig& config, bool force_stderr, const char* ident);
void log_reopen();  // after fork: re-open syslog under the new pid
bool log_enabled(LogLevel level);
void log_message(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

// Quotes a client-supplied string for a log line: printable ASCII kept, the rest \xNN,
// cut at 256 bytes.
std::string log_quote(const std::string& s);

}  // namespace sy

#define SY_LOG(level, ...)                                   \
  do {                                                        \
    if (::sy::log_enabled(level)) ::sy::log_message(level, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...) SY_LOG(::sy::LogLevel::Debug, __VA_ARGS__)
#define LOG_INFO(...) SY_LOG(::sy::LogLevel::Info, __VA_ARGS__)
#define LOG_NOTICE(...) SY_LOG(::sy::LogLevel::Notice, __VA_ARGS__)
#define LOG_WARN(...) SY_LOG(::sy::LogLevel::Warning, __VA_ARGS__)
#define LOG_ERROR(...) SY_LOG(::sy::LogLevel::Error, __VA_ARGS__)

#endif
