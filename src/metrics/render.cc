// Prometheus text of a snapshot (see render.h).
#include "metrics/render.h"

#include <prometheus/text_serializer.h>

#include <cstdlib>
#include <limits>
#include <sstream>
#include <vector>

namespace sy::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

constexpr const char* kLoginNames[] = {"ok",   "failed",      "unknown-user", "tempfail",
                                       "hold", "unavailable", "refused"};
static_assert(std::size(kLoginNames) == kLoginResults);
constexpr const char* kMapResultNames[] = {"found", "not-found", "tempfail"};
static_assert(std::size(kMapResultNames) == kMapResults);
constexpr const char* kCacheNames[] = {"hit", "miss", "stale"};
static_assert(std::size(kCacheNames) == kCacheResults);
constexpr const char* kRcptNames[] = {"delivered", "refused", "deferred"};
static_assert(std::size(kRcptNames) == kRcptResults);
// worker/session_registry.cc's stage names, and which stages each kind of session has.
constexpr const char* kStageNames[] = {"pre-login", "logged-in", "lmtp-idle", "lmtp-transaction",
                                       "socketmap"};
static_assert(std::size(kStageNames) == kStages);

bool is_login_protocol(Protocol p) {
  const Family f = protocol_info(p).family;
  return f == Family::Imap || f == Family::Pop3;
}

struct Builder {
  // References to families are held while later ones are added: no reallocation.
  static constexpr std::size_t kMaxFamilies = 32;
  Builder() { families.reserve(kMaxFamilies); }
  std::vector<MetricFamily> families;

  MetricFamily& family(const char* name, const char* help, MetricType type) {
    if (families.size() == kMaxFamilies) std::abort();  // raise kMaxFamilies
    families.push_back(MetricFamily{name, help, type, {}});
    return families.back();
  }
  static void counter(MetricFamily& f, Labels labels, std::uint64_t v) {
    ClientMetric m;
    m.label = std::move(labels);
    m.counter.value = static_cast<double>(v);
    f.metric.push_back(std::move(m));
  }
  static void gauge(MetricFamily& f, Labels labels, double v) {
    ClientMetric m;
    m.label = std::move(labels);
    m.gauge.value = v;
    f.metric.push_back(std::move(m));
  }
};

}  // namespace

std::string render(const Snapshot& s, const Local& local) {
  Builder b;
  constexpr auto kCounter = MetricType::Counter;
  constexpr auto kGauge = MetricType::Gauge;

  Builder::gauge(b.family("switchyard_build_info", "Switchyard's version, as a label; always 1.", kGauge),
                 {{"version", local.version}}, 1);
  Builder::gauge(b.family("switchyard_workers", "Worker processes alive, draining ones included.", kGauge),
                 {}, static_cast<double>(s.workers));

  auto& accepted = b.family("switchyard_connections_accepted_total",
                            "Connections accepted, by listener protocol.", kCounter);
  auto& refused = b.family("switchyard_connections_refused_total",
                           "Connections closed at once: not in allow_from, or over a connection limit.",
                           kCounter);
  for (std::size_t p = 0; p < kProtocolCount; ++p) {
    const char* name = protocol_name(static_cast<Protocol>(p));
    Builder::counter(accepted, {{"protocol", name}}, s.connections[p][0]);
    Builder::counter(refused, {{"protocol", name}}, s.connections[p][1]);
  }

  auto& logins = b.family("switchyard_logins_total", "IMAP and POP3 logins, by protocol and outcome.",
                          kCounter);
  auto& bytes = b.family("switchyard_relayed_bytes_total",
                         "Bytes relayed after login, by protocol and direction.", kCounter);
  for (std::size_t p = 0; p < kProtocolCount; ++p) {
    if (!is_login_protocol(static_cast<Protocol>(p))) continue;
    const char* name = protocol_name(static_cast<Protocol>(p));
    for (std::size_t o = 0; o < kLoginResults; ++o)
      Builder::counter(logins, {{"protocol", name}, {"outcome", kLoginNames[o]}}, s.logins[p][o]);
    Builder::counter(bytes, {{"protocol", name}, {"direction", "to_store"}}, s.relayed[p][0]);
    Builder::counter(bytes, {{"protocol", name}, {"direction", "to_client"}}, s.relayed[p][1]);
  }

  auto& sessions = b.family("switchyard_sessions", "Live sessions, by protocol and phase.", kGauge);
  auto session = [&](Family f, std::size_t stage) {
    Builder::gauge(sessions, {{"protocol", family_name(f)}, {"phase", kStageNames[stage]}},
                   static_cast<double>(s.sessions[static_cast<std::size_t>(f)][stage]));
  };
  for (Family f : {Family::Imap, Family::Pop3})
    for (std::size_t stage : {0, 1}) session(f, stage);
  session(Family::Lmtp, 2);
  session(Family::Lmtp, 3);
  session(Family::Socketmap, 4);

  auto& lookups = b.family("switchyard_map_lookups_total",
                           "Questions put to each [[map]], by answer.", kCounter);
  auto& latency = b.family("switchyard_map_lookup_duration_seconds",
                           "How long each [[map]] took to answer.", MetricType::Histogram);
  for (std::size_t m = 0; m < s.maps.size(); ++m) {
    for (std::size_t o = 0; o < kMapResults; ++o)
      Builder::counter(lookups, {{"map", s.maps[m]}, {"outcome", kMapResultNames[o]}},
                       s.map_lookups[m][o]);
    ClientMetric h;
    h.label = {{"map", s.maps[m]}};
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      cumulative += s.map_latency[m][i];
      const double bound = i < kLatencyBounds.size() ? kLatencyBounds[i]
                                                     : std::numeric_limits<double>::infinity();
      h.histogram.bucket.push_back({cumulative, bound});
    }
    h.histogram.sample_count = cumulative;
    h.histogram.sample_sum = static_cast<double>(s.map_latency_us[m]) / 1e6;
    latency.metric.push_back(std::move(h));
  }
  Builder::counter(b.family("switchyard_lookup_timeouts_total",
                            "Lookups answered TEMP because the maps took longer than [lookup] timeout.",
                            kCounter),
                   {}, s.lookup_timeouts);
  auto& cache = b.family("switchyard_lookup_cache_total",
                         "Lookups served from the workers' caches (hit, stale) or not (miss).", kCounter);
  for (std::size_t i = 0; i < kCacheResults; ++i)
    Builder::counter(cache, {{"result", kCacheNames[i]}}, s.cache[i]);

  auto& up = b.family("switchyard_backend_up",
                      "1 unless a worker currently skips this store address as down.", kGauge);
  for (const auto& st : s.stores)
    Builder::gauge(up, {{"backend", st.backend}, {"store", st.address}}, st.up ? 1 : 0);
  auto& failures = b.family("switchyard_backend_connect_failures_total",
                            "Failed connections to a store, by back end (\"-\": a host a map named).",
                            kCounter);
  for (std::size_t i = 0; i < s.backends.size(); ++i)
    Builder::counter(failures, {{"backend", s.backends[i]}}, s.backend_connect_failures[i]);

  auto& rcpt = b.family("switchyard_lmtp_recipients_total", "LMTP recipients, by final outcome.",
                        kCounter);
  for (std::size_t i = 0; i < kRcptResults; ++i)
    Builder::counter(rcpt, {{"outcome", kRcptNames[i]}}, s.lmtp_recipients[i]);

  auto& tls = b.family("switchyard_tls_handshakes_total",
                       "TLS handshakes with clients and with stores, by result.", kCounter);
  for (int side = 0; side < 2; ++side)
    for (int ok = 0; ok < 2; ++ok)
      Builder::counter(tls, {{"side", side == 0 ? "client" : "store"}, {"result", ok == 0 ? "ok" : "failed"}},
                       s.tls[side][ok]);

  Builder::gauge(b.family("switchyard_holds", "Users on hold (switchyardctl hold).", kGauge), {},
                 static_cast<double>(local.holds));
  auto& reloads = b.family("switchyard_reloads_total", "Configuration reloads, by result.", kCounter);
  Builder::counter(reloads, {{"result", "ok"}}, s.reloads[0]);
  Builder::counter(reloads, {{"result", "refused"}}, s.reloads[1]);
  Builder::counter(b.family("switchyard_worker_restarts_total",
                            "Workers that died unasked and were started again.", kCounter),
                   {}, s.worker_restarts);

  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, b.families);
  return out.str();
}

}  // namespace sy::metrics
