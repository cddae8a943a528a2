// Message spool (see spool.h).
#include "lmtp/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sy {

Spool::~Spool() { clear(); }

void Spool::clear() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  std::string().swap(memory_);
  size_ = 0;
}

bool Spool::append(std::string_view bytes, std::string* error) {
  if (fd_ < 0 && memory_.size() + bytes.size() <= limit_) {
    memory_.append(bytes);
    size_ += bytes.size();
    return true;
  }
  if (fd_ < 0) {
    fd_ = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      *error = dir_ + ": cannot make a spool file: " + std::strerror(errno);
      return false;
    }
    std::string_view pending(memory_);
    while (!pending.empty()) {
      ssize_t n = ::write(fd_, pending.data(), pending.size());
      if (n <= 0) {
        *error = std::string("spool write: ") + std::strerror(errno);
        return false;
      }
      pending.remove_prefix(static_cast<std::size_t>(n));
    }
    std::string().swap(memory_);
  }
  while (!bytes.empty()) {
    ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n <= 0) {
      *error = std::string("spool write: ") + std::strerror(errno);
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
    size_ += static_cast<std::uint64_t>(n);
  }
  return true;
}

long Spool::read(std::uint64_t offset, char* out, std::size_t n) const {
  if (offset >= size_) return 0;
  std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(n, size_ - offset));
  if (fd_ < 0) {
    std::memcpy(out, memory_.data() + offset, want);
    return static_cast<long>(want);
  }
  ssize_t got = ::pread(fd_, out, want, static_cast<off_t>(offset));
  return got < 0 ? -1 : static_cast<long>(got);
}

}  // namespace sy
