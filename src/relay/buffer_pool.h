// A per-worker pool of relay buffers for TLS relays (which cannot splice): a direction
// borrows one only while bytes are moving, so an idle session holds none. Single-threaded.
#ifndef SWITCHYARD_RELAY_BUFFER_POOL_H
#define SWITCHYARD_RELAY_BUFFER_POOL_H

#include <cstddef>
#include <memory>
#include <vector>

namespace sy {

class BufferPool {
 public:
  static constexpr std::size_t kSize = 64 * 1024;
  explicit BufferPool(std::size_t keep = 64) : keep_(keep) {}

  std::unique_ptr<char[]> take() {
    if (free_.empty()) return std::unique_ptr<char[]>(new char[kSize]);
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(std::unique_ptr<char[]> b) {
    if (free_.size() < keep_) free_.push_back(std::move(b));
  }

 private:
  std::size_t keep_;
  std::vector<std::unique_ptr<char[]>> free_;
};

}  // namespace sy

#endif
