// The metrics listener ([[listen]] protocol = "metrics"): one HTTP request per connection,
// GET /metrics answered with the Prometheus text of every worker's counters (the shared
// block, metrics/block.h), whichever worker accepted the connection. The request is bounded
// in size (metrics/request.h) and in time; the connection closes after the answer.
#ifndef SWITCHYARD_METRICS_HTTP_H
#define SWITCHYARD_METRICS_HTTP_H

#include "config/config.h"
#include "worker/context.h"

namespace sy {

void start_metrics_session(WorkerContext& rt, Socket client, const ListenConfig& listen);

}  // namespace sy

#endif
