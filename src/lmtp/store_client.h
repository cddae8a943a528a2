// The router's side towards one store: an LMTP client on one connection. It connects
// (fail-over across the target's addresses, implicit TLS), reads the greeting, says LHLO,
// then runs one transaction at a time and returns a typed verdict per recipient.
//
// A connection is reusable only after a complete transaction, or after an RSET the store
// answered 250: anything else (a refused transaction not reset, a timeout, a garbled or
// missing reply) makes it unusable, and its owner closes it instead of pooling it.
//
// Held by a delivery (lmtp/delivery) while a message is in flight, by the worker's StorePool
// (lmtp/store_pool) between messages.
#ifndef SWITCHYARD_LMTP_STORE_CLIENT_H
#define SWITCHYARD_LMTP_STORE_CLIENT_H

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/duration.h"
#include "backend/health.h"
#include "net/stream.h"
#include "backend/target.h"

namespace sy {

class Spool;

namespace lmtp {

// What a store connection needs from its worker.
struct StoreEnv {
  asio::io_context& io;
  HealthTable& health;
  TlsContext* tls;        // client context for tls = "implicit" stores; may be null
  std::string lhlo_name;  // our name in LHLO
  Millis timeout;         // each step: connect, greeting, every reply, every write
};

// One recipient's outcome in one transaction.
enum class Verdict {
  Delivered,    // the store answered 2xx after DATA for this recipient
  Refused,      // the store answered 4xx/5xx (MAIL, RCPT, DATA or after DATA): its reply
  Unavailable,  // no answer from the store: connect, greeting, TLS, LHLO, or I/O failed
  Retryable,    // the connection failed before the message could have been stored
};
const char* verdict_name(Verdict v);

struct RecipientOutcome {
  Verdict verdict = Verdict::Unavailable;
  std::string reply;  // the store's reply line (Delivered, Refused), no CRLF
};

struct Envelope {
  std::string mail_from;  // "" for the null sender
  bool eight_bit = false;
};

struct TransactionOutcome {
  std::vector<RecipientOutcome> recipients;  // one per recipient, in the order given
  std::string reason;  // what went wrong, "" when every recipient has the store's answer
};

class StoreConnection {
 public:
  using Clock = std::chrono::steady_clock;

  StoreConnection(const StoreEnv& env, std::string key);
  StoreConnection(const StoreConnection&) = delete;
  StoreConnection& operator=(const StoreConnection&) = delete;

  // Connects, reads the greeting and says LHLO. False and *why when the store cannot be
  // used; the connection is then closed.
  [[nodiscard]] asio::awaitable<bool> open(const Target& t, std::string* why);

  // MAIL, the RCPTs and DATA pipelined, the spooled message dot-stuffed, then one reply per
  // accepted recipient. `recipients` are the addresses as the store should see them.
  [[nodiscard]] asio::awaitable<TransactionOutcome> transact(
      const Envelope& envelope, const std::vector<std::string>& recipients, const Spool& spool);

  bool reusable() const { return reusable_ && stream_.is_open(); }
  const std::string& key() const { return key_; }        // the pool's key (target)
  const std::string& server() const { return server_; }  // "address:port" reached
  Stream& stream() { return stream_; }
  void close();

  Clock::time_point idle_since{};  // set by the pool

 private:
  struct Reply {
    int code = 0;      // 0: no reply (connection lost, timeout, garbled)
    std::string line;  // the last line, no CRLF
  };
  asio::awaitable<Reply> reply();
  asio::awaitable<bool> send(const std::string& bytes);
  asio::awaitable<bool> fill();  // reads more into buf_, within the timeout
  // After a transaction that did not complete: RSET; reusable only when answered 250.
  asio::awaitable<void> reset();
  std::string lost(const char* step) const;  // a reason for a failure at `step`

  const StoreEnv& env_;
  std::string key_;
  Stream stream_;
  std::string server_ = "-";
  std::string buf_;  // bytes read past the last reply
  bool reusable_ = false;
  bool timed_out_ = false;
};

}  // namespace lmtp
}  // namespace sy

#endif
