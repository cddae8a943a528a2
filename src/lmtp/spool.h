// A message being routed: kept in memory up to a bound, then in an unlinked temporary
// file, so a message larger than memory allows is never truncated. Written once while
// DATA is read, then read by every store's delivery (pread: no shared offset).
#ifndef SWITCHYARD_LMTP_SPOOL_H
#define SWITCHYARD_LMTP_SPOOL_H

#include <cstdint>
#include <string>
#include <string_view>

namespace sy {

class Spool {
 public:
  Spool(std::string dir, std::size_t memory_limit) : dir_(std::move(dir)), limit_(memory_limit) {}
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // False (and *error) when the temporary file cannot be made or written.
  [[nodiscard]] bool append(std::string_view bytes, std::string* error);
  std::uint64_t size() const { return size_; }
  // Copies up to `n` bytes at `offset` into `out`; returns how many (0 at the end, -1 on
  // a read error).
  long read(std::uint64_t offset, char* out, std::size_t n) const;
  void clear();

 private:
  std::string dir_;
  std::size_t limit_;
  std::string memory_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

}  // namespace sy

#endif
