// Prometheus text exposition (format 0.0.4) of a Snapshot: the families are built here and
// written by prometheus-cpp's TextSerializer (Debian's libprometheus-cpp-core), which does
// the escaping, the histogram's _bucket/_sum/_count lines and number formatting. Its
// registry and metric objects are not used: the values live in the shared block
// (metrics/block.h), which its per-process registry cannot span.
// Pure: the HTTP side is metrics/http.h. Every metric is documented in
// man/switchyard-metrics.7.
#ifndef SWITCHYARD_METRICS_RENDER_H
#define SWITCHYARD_METRICS_RENDER_H

#include <cstddef>
#include <string>

#include "metrics/block.h"

namespace sy::metrics {

// What the rendering worker adds from its own state.
struct Local {
  std::size_t holds = 0;    // users on hold (every worker holds the same set)
  std::string version;      // switchyard_build_info
};

std::string render(const Snapshot& s, const Local& local);

// The Content-Type of render()'s output.
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace sy::metrics

#endif
