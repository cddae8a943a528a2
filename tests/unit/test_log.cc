// Tests for the logger's line buffer (log/log.h): lines wait for the loop's flush, in
// order; warnings and errors go out at once, after what waited.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "config/config.h"
#include "log/log.h"

namespace {

// Points fd 2 at a temporary file for the test's length and reads back what was written.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    saved_ = ::dup(2);
    std::FILE* f = std::tmpfile();
    fd_ = ::dup(::fileno(f));
    std::fclose(f);
    ::dup2(fd_, 2);
  }
  ~StderrCapture() {
    ::dup2(saved_, 2);
    ::close(saved_);
    ::close(fd_);
  }
  std::string text() const {
    std::string out;
    char buf[4096];
    off_t at = 0;
    for (ssize_t n; (n = ::pread(fd_, buf, sizeof buf, at)) > 0; at += n) out.append(buf, n);
    return out;
  }

 private:
  int saved_ = -1, fd_ = -1;
};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(LogBuffer, LinesWaitForTheFlushInOrderAndWarningsGoOutAtOnce) {
  sy::LogConfig config;
  config.target = "stderr";
  config.level = "info";
  sy::log_setup(config, true, "switchyard-test");
  StderrCapture capture;
  int scheduled = 0;
  sy::log_buffer_lines([&scheduled] { ++scheduled; });
  LOG_INFO("first %d", 1);
  LOG_INFO("second %d", 2);
  EXPECT_EQ(scheduled, 1);  // once per batch
  EXPECT_EQ(capture.text(), "");
  LOG_WARN("third %d", 3);  // writes what waited, then itself
  std::string text = capture.text();
  ASSERT_EQ(count(text, "\n"), 3u) << text;
  EXPECT_LT(text.find("first 1"), text.find("second 2"));
  EXPECT_LT(text.find("second 2"), text.find("third 3"));
  LOG_INFO("fourth %d", 4);
  EXPECT_EQ(scheduled, 2);
  sy::log_flush();
  EXPECT_EQ(count(capture.text(), "fourth 4"), 1u);
  sy::log_buffer_lines(nullptr);  // back to one write per line
  LOG_INFO("fifth %d", 5);
  EXPECT_EQ(count(capture.text(), "fifth 5"), 1u);
  EXPECT_EQ(scheduled, 2);
}

TEST(LogBuffer, AFullBufferIsWrittenWithoutWaitingForTheFlush) {
  sy::LogConfig config;
  config.target = "stderr";
  config.level = "info";
  sy::log_setup(config, true, "switchyard-test");
  StderrCapture capture;
  sy::log_buffer_lines([] {});
  const std::string filler(1000, 'x');
  for (int i = 0; i < 40; ++i) LOG_INFO("line %d %s", i, filler.c_str());
  // 40 KB of lines against a 16 KB buffer: most are out already, the rest at the flush.
  std::string text = capture.text();
  EXPECT_GE(count(text, "\n"), 16u);
  EXPECT_LT(count(text, "\n"), 40u);
  sy::log_buffer_lines(nullptr);
  EXPECT_EQ(count(capture.text(), "\n"), 40u);
}

}  // namespace
