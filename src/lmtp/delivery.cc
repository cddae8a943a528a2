// Fan-out of one message to its stores (see delivery.h).
#include "lmtp/delivery.h"

#include <map>
#include <memory>

#include "lmtp/spool.h"
#include "lmtp/store_pool.h"
#include "log/log.h"
#include "metrics/metrics.h"

namespace sy::lmtp {
namespace {

std::string store_name(const Target& t) {
  return t.backend.empty() ? (t.hosts.empty() ? "-" : t.hosts.front()) : t.backend;
}

// One store's recipients (indexes into the routes) and the replies they get.
struct Group {
  std::vector<std::size_t> members;
};

asio::awaitable<void> deliver_to_store(StorePool& pool, std::uint64_t session,
                                       const Envelope& envelope, const Spool& spool,
                                       const std::vector<Route>& routes, const Group& group,
                                       std::vector<std::string>& replies) {
  const Route& first = routes[group.members.front()];
  const Target& target = first.target;
  std::vector<std::string> addresses;
  for (std::size_t i : group.members) addresses.push_back(routes[i].store_address);

  std::unique_ptr<StoreConnection> conn = pool.take(first.store_key);
  bool reused = conn != nullptr;
  TransactionOutcome outcome;
  std::string why;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!conn) {
      conn = std::make_unique<StoreConnection>(pool.env(), first.store_key);
      bool opened = co_await conn->open(target, &why);
      if (!opened) {
        outcome.recipients.assign(group.members.size(), RecipientOutcome{});
        outcome.reason = why;
        break;
      }
    }
    outcome = co_await conn->transact(envelope, addresses, spool);
    bool retry = false;
    for (const auto& r : outcome.recipients) retry = retry || r.verdict == Verdict::Retryable;
    if (!retry || !reused) break;
    // A kept connection the store had given up on: nothing was stored, so again afresh.
    LOG_DEBUG("lmtp delivery: session=%llu store=%s reason=\"kept connection: %s\"; retrying",
              static_cast<unsigned long long>(session), conn->server().c_str(),
              outcome.reason.c_str());
    conn.reset();
    reused = false;
  }
  const std::string server = conn ? conn->server() : std::string("-");
  if (!outcome.reason.empty())
    LOG_WARN("lmtp delivery: session=%llu store=%s server=%s reason=\"%s\"",
             static_cast<unsigned long long>(session), store_name(target).c_str(), server.c_str(),
             log_quote(outcome.reason).c_str());
  pool.give(std::move(conn));

  for (std::size_t k = 0; k < group.members.size(); ++k) {
    const Route& route = routes[group.members[k]];
    const RecipientOutcome& r = outcome.recipients[k];
    std::string& reply = replies[group.members[k]];
    metrics::lmtp_recipient(r.verdict == Verdict::Delivered ? metrics::RcptResult::Delivered
                            : r.verdict == Verdict::Refused && r.reply.rfind('5', 0) == 0 ? metrics::RcptResult::Refused
                                                                                 : metrics::RcptResult::Deferred);
    if (r.verdict == Verdict::Delivered || r.verdict == Verdict::Refused) {
      reply = r.reply + "\r\n";
    } else {
      reply = "451 4.4.1 <" + route.address + ">: Mail store " + store_name(target) +
              " not available\r\n";
    }
    LOG_INFO("lmtp %s: session=%llu to=\"%s\" store_to=\"%s\" store=%s server=%s reply=\"%s\"",
             verdict_name(r.verdict), static_cast<unsigned long long>(session),
             log_quote(route.address).c_str(), log_quote(route.store_address).c_str(),
             store_name(target).c_str(), server.c_str(),
             log_quote(reply.substr(0, reply.size() - 2)).c_str());
  }
}

}  // namespace

std::string store_key(const Target& t) {
  std::string key;
  for (std::size_t i = 0; i < t.hosts.size(); ++i) key += host_port(t.hosts[i], port_of(t, i)) + " ";
  return key + t.tls;
}

asio::awaitable<std::vector<std::string>> deliver(StorePool& pool, std::uint64_t session,
                                                  const Envelope& envelope, const Spool& spool,
                                                  const std::vector<Route>& routes) {
  std::vector<std::string> replies(routes.size());
  std::map<std::string, Group> groups;
  for (std::size_t i = 0; i < routes.size(); ++i) groups[routes[i].store_key].members.push_back(i);

  // Every store at once; the last one to finish wakes us. The counter lives in this
  // frame, which stays suspended until it reaches zero.
  asio::io_context& io = pool.env().io;
  std::size_t running = groups.size();
  asio::steady_timer all_done(io, asio::steady_timer::time_point::max());
  for (auto& [key, group] : groups) {
    asio::co_spawn(io, deliver_to_store(pool, session, envelope, spool, routes, group, replies),
                   [&running, &all_done](std::exception_ptr e) {
                     if (e) LOG_ERROR("lmtp delivery: unexpected exception");
                     if (--running == 0) all_done.cancel();
                   });
  }
  while (running > 0) {
    std::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  // A store task that died without an answer leaves its recipients to retry.
  for (std::size_t i = 0; i < routes.size(); ++i)
    if (replies[i].empty())
      replies[i] = "451 4.4.1 <" + routes[i].address + ">: Mail store not available\r\n";
  co_return replies;
}

}  // namespace sy::lmtp
