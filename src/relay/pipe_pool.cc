// Pipe pool (see pipe_pool.h).
#include "relay/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace sy {

PipePool::~PipePool() {
  for (Pipe p : free_) destroy(p);
}

Pipe PipePool::take() {
  if (!free_.empty()) {
    Pipe p = free_.back();
    free_.pop_back();
    return p;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
  ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(pipe_size_));  // best effort
  return Pipe{fds[0], fds[1]};
}

void PipePool::give(Pipe p) {
  if (!p.valid()) return;
  if (free_.size() >= keep_) {
    destroy(p);
    return;
  }
  free_.push_back(p);
}

void PipePool::destroy(Pipe p) {
  if (p.read_fd >= 0) ::close(p.read_fd);
  if (p.write_fd >= 0) ::close(p.write_fd);
}

}  // namespace sy
