// Logging to syslog or stderr, printf-style. One process-wide logger, set up once by the
// master and inherited by workers. Callers never pass passwords here.
#ifndef SWITCHYARD_LOG_LOG_H
#define SWITCHYARD_LOG_LOG_H

#include <functional>
#include <string>

namespace sy {

enum class LogLevel { Debug = 0, Info, Notice, Warning, Error };

struct LogConfig;

// Before log_setup() messages go to stderr at level info.
void log_setup(const LogConfig& config, bool force_stderr, const char* ident);
void log_reopen();  // after fork: re-open syslog under the new pid
bool log_enabled(LogLevel level);
// Lines to stderr below warning wait in a buffer until log_flush(); when the first one
// waits, schedule_flush is called (a worker posts log_flush onto its loop, so one turn of
// the loop costs one write). Warnings and errors flush and go out at once; the buffer is
// also written when it fills and at exit. Not for syslog, which has its own socket.
void log_buffer_lines(std::function<void()> schedule_flush);  // nullptr: write at once
void log_flush();
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
