// A per-worker pool of pipes for splice(2). A relay takes a pipe only while bytes are
// moving and gives it back empty, so an idle session holds none. Single-threaded.
#ifndef SWITCHYARD_RELAY_PIPE_POOL_H
#define SWITCHYARD_RELAY_PIPE_POOL_H

#include <cstddef>
#include <vector>

namespace sy {

struct Pipe {
  int read_fd = -1;
  int write_fd = -1;
  bool valid() const { return read_fd >= 0; }
};

class PipePool {
 public:
  explicit PipePool(std::size_t pipe_size = 256 * 1024, std::size_t keep = 64)
      : pipe_size_(pipe_size), keep_(keep) {}
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  Pipe take();              // invalid Pipe when pipe2() fails (fd limit)
  void give(Pipe p);        // p must be empty
  static void destroy(Pipe p);  // for a pipe left holding bytes
  std::size_t capacity() const { return pipe_size_; }
  std::size_t idle() const { return free_.size(); }

 private:
  std::size_t pipe_size_;
  std::size_t keep_;
  std::vector<Pipe> free_;
};

}  // namespace sy

#endif
