// Gives memory back to the system after a crowd has gone. A worker that served many
// sessions at once (a burst of logins, or clients that sent all they may before logging in)
// is left with the memory they used free inside malloc's heap, where it would stay: glibc
// returns only the heap's top on its own. Every few seconds the worker looks at how much
// its heap holds free and, past a threshold, hands it back (malloc_trim).
#ifndef SWITCHYARD_WORKER_MEMORY_H
#define SWITCHYARD_WORKER_MEMORY_H

#include <cstddef>

namespace sy {

class WorkerContext;

// Starts the periodic check on the worker's loop; it runs as long as the loop does.
void watch_memory(WorkerContext& rt);

// The check itself: trims when malloc holds more than `threshold` bytes free and more free
// than in use. True when it trimmed.
bool trim_memory_if_idle(std::size_t threshold);

}  // namespace sy

#endif
