// Transitional: the relay and the stream still name the worker's context by its old name.
#ifndef SWITCHYARD_MASTER_RUNTIME_H
#define SWITCHYARD_MASTER_RUNTIME_H
#include "worker/context.h"
namespace sy {
using Runtime = WorkerContext;
}
#endif
