// Map chain (see chain.h).
#include "map/chain.h"

#include "config/config.h"
#include "map/module.h"
#include "metrics/metrics.h"

namespace sy {
namespace {

metrics::MapResult map_result(LookupStatus s) {
  if (s == LookupStatus::NotFound) return metrics::MapResult::NotFound;
  return s == LookupStatus::TempFail ? metrics::MapResult::TempFail : metrics::MapResult::Found;
}

}  // namespace

ChainReply MapChain::lookup(const LookupRequest& request) const {
  auto start = std::chrono::steady_clock::now();
  ChainReply out;
  for (std::size_t i = 0; i < maps_.size(); ++i) {
    const auto& m = maps_[i];
    if (!request.wanted()) {
      out.reply.status = LookupStatus::TempFail;
      out.reply.detail = "nobody waits for this lookup";
      break;
    }
    auto asked = std::chrono::steady_clock::now();
    MapReply r = m->lookup(request);
    metrics::map_lookup(i, map_result(r.status), std::chrono::duration_cast<std::chrono::microseconds>(
                                                     std::chrono::steady_clock::now() - asked));
    if (r.status != LookupStatus::NotFound) {
      out.reply = std::move(r);
      out.map_name = m->name();
      break;
    }
  }
  if (out.map_name.empty() && fallback_) {
    out.reply.status = is_hold_answer(*fallback_) ? LookupStatus::Hold : LookupStatus::Found;
    out.reply.answer = *fallback_;
    out.map_name = "fallback";
  }
  out.took = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);
  return out;
}

std::unique_ptr<MapChain> load_chain(const Config& config, std::string* error) {
  auto chain = std::make_unique<MapChain>();
  for (const auto& mc : config.maps) {
    std::string path = mc.module;
    if (path.find('/') == std::string::npos) path = config.map_dir + "/" + mc.module + ".so";
    std::string why;
    auto m = MapModule::open(path, mc.options, mc.module,
                             config.username.domain_delimiter, &why);
    if (!m || !m->init(&why)) {
      *error = config.path + ":" + std::to_string(mc.line) + ": map '" + mc.module + "': " + why;
      return nullptr;
    }
    chain->add(std::move(m));
  }
  if (!config.lookup.fallback.empty()) {
    auto fallback = parse_map_answer(config.lookup.fallback, config.username.domain_delimiter);
    if (!fallback) {
      *error = config.path + ": [lookup] fallback '" + config.lookup.fallback +
               "' is not a back end or host[:port]";
      return nullptr;
    }
    chain->set_fallback(std::move(*fallback));
  }
  return chain;
}

}  // namespace sy
