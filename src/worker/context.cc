// The worker's context (see context.h).
#include "worker/context.h"

#include "lmtp/session.h"
#include "lmtp/store_pool.h"
#include "worker/control.h"

namespace sy {
namespace {

// Kept LMTP store connections: at most this many idle per store, each at most this long.
constexpr std::size_t kLmtpPerStore = 8;
constexpr auto kLmtpMaxIdle = std::chrono::seconds(30);

PenaltyPolicy penalty_of(const LimitsConfig& lim) {
  PenaltyPolicy p;
  p.base = lim.auth_failure_delay;
  p.max = lim.auth_failure_delay_max;
  p.block_after = static_cast<std::uint32_t>(lim.auth_failure_block_after);
  p.window = lim.auth_failure_window;
  return p;
}

}  // namespace

WorkerContext::WorkerContext(asio::io_context& i, const Config& c,
                             std::shared_ptr<const MapChain> chain,
                             std::shared_ptr<TlsContext> tls, ClientTable* table, HoldSet held,
                             std::unique_ptr<ControlSocket> ctl)
    : io(i),
      config(c),
      holds(std::move(held)),
      lookups(i, std::move(chain), c.lookup),
      store_tls(std::move(tls)),
      clients(table),
      penalty(penalty_of(c.limits)),
      lmtp_pool(std::make_unique<lmtp::StorePool>(
          lmtp::StoreEnv{i, health, store_tls.get(), lmtp_hostname(c), c.lmtp.store_timeout},
          kLmtpPerStore, kLmtpMaxIdle)),
      control(std::move(ctl)) {
  lookups.set_holds(&holds);
}

WorkerContext::~WorkerContext() = default;

}  // namespace sy
