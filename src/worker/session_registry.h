// Every live session of one worker, of every kind (IMAP, POP3, LMTP, socketmap), with its
// stage and its user's map key. `switchyardctl who` and `kick`, a stopping or draining
// worker, and the worker's idle test all go through this registry and nothing else.
//
// A session registers once, with one line: `registration_ = rt.sessions.enter(*this, id,
// kind, stage)`; the Registration it keeps is movable and leaves the registry when it is
// destroyed or reset. What "stop" means for each stage is written once, in
// session_registry.cc (ends_on_stop): the registry calls the session's shut_down() when
// the worker stops, and again when a session moves into a stage that ends on a stop.
//
// Used from the worker's event loop only: no locking.
#ifndef SWITCHYARD_WORKER_SESSION_REGISTRY_H
#define SWITCHYARD_WORKER_SESSION_REGISTRY_H

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/protocol.h"

namespace sy {

using SessionKind = Family;  // imap, pop3, lmtp, socketmap (config/protocol.h)
enum class SessionStage : std::uint8_t {
  PreLogin,         // IMAP/POP3 before a successful login
  LoggedIn,         // IMAP/POP3 relaying to a store
  LmtpIdle,         // LMTP between transactions
  LmtpTransaction,  // LMTP from MAIL to the last reply after DATA
  Socketmap,        // a Postfix socketmap client
};
inline const char* kind_name(SessionKind k) { return family_name(k); }
const char* stage_name(SessionStage s);

// What the registry may do with a live session.
class SessionHandle {
 public:
  // The worker stops (or drains) and this session's stage ends on a stop: say goodbye in
  // the protocol's words and close.
  virtual void shut_down() = 0;
  // Close now, whatever the stage (switchyardctl kick).
  virtual void kick() = 0;
  // Close now, whatever the stage, with the protocol's goodbye where one can still be
  // sent (the end of a stop's grace period, a drain past drain_timeout).
  virtual void cut() { kick(); }
  // One line for switchyardctl who, after "<id> <kind> ": "<phase> client=... ..."
  virtual std::string describe() const = 0;

 protected:
  ~SessionHandle() = default;
};

class SessionRegistry {
 public:
  class Registration;
  struct Entry {
    SessionHandle* handle;
    SessionKind kind;
    SessionStage stage;
    std::vector<std::string> keys;  // the users' map keys (LMTP: one per recipient)
    std::string client;             // the client's IP address, "" when unknown
    Registration* owner = nullptr;

    bool has_key(std::string_view key) const {
      for (const auto& k : keys)
        if (k == key) return true;
      return false;
    }
  };

  class Registration {
   public:
    Registration() = default;
    Registration(Registration&& other) noexcept { *this = std::move(other); }
    Registration& operator=(Registration&& other) noexcept;
    ~Registration() { reset(); }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

    void set_stage(SessionStage stage);
    void set_key(std::string key);  // the only key ("" for none)
    void add_key(std::string key);  // one more (an LMTP recipient)
    void set_client(std::string ip);
    // Who answers for the session from now on (it outlives the one that entered it).
    void set_handle(SessionHandle& handle);
    void reset();  // leaves the registry (idempotent)
    explicit operator bool() const { return registry_ != nullptr; }

   private:
    friend class SessionRegistry;
    Registration(SessionRegistry* r, std::uint64_t id);
    SessionRegistry* registry_ = nullptr;
    std::uint64_t id_ = 0;
  };

  SessionRegistry() = default;
  // Sessions can outlive the registry when the worker's loop is torn down with them
  // suspended: their registrations are let go first.
  ~SessionRegistry();
  SessionRegistry(const SessionRegistry&) = delete;
  SessionRegistry& operator=(const SessionRegistry&) = delete;

  // A new id, unique in this worker (for logs, before the session registers).
  std::uint64_t next_id() { return next_id_++; }
  [[nodiscard]] Registration enter(SessionHandle& h, std::uint64_t id, SessionKind kind,
                                   SessionStage stage);

  std::size_t size() const { return entries_.size(); }
  std::size_t count(SessionStage stage) const {
    return stage_counts_[static_cast<std::size_t>(stage)];
  }
  // Sessions of this client address still before login.
  std::size_t prelogin_from(const std::string& ip) const;
  const std::map<std::uint64_t, Entry>& entries() const { return entries_; }
  // Sessions whose map key is `key` (already put through the username policy).
  std::vector<SessionHandle*> with_key(std::string_view key) const;
  // Closes the IMAP, POP3 and socketmap sessions of that key now; returns how many. LMTP
  // transactions are left to finish: their store may have the message already, and
  // cutting them would only make the sender deliver it twice.
  std::size_t kick(std::string_view key);

  // The worker stops (drain = false) or drains after a reload (drain = true): every
  // session whose stage ends on it is shut down now, and any that enters such a stage
  // later is shut down then. Returns how many were shut down now.
  std::size_t stop(bool drain);
  // Cuts every session (SessionHandle::cut); returns how many.
  std::size_t cut_all();

  // Called when the last session leaves while stopping.
  std::function<void()> on_empty;

 private:
  void leave(std::uint64_t id);
  void staged(std::uint64_t id, SessionStage stage);

  void counted(const Entry& e, int delta);

  std::map<std::uint64_t, Entry> entries_;
  std::size_t stage_counts_[static_cast<std::size_t>(SessionStage::Socketmap) + 1] = {};
  std::unordered_map<std::string, std::size_t> prelogin_by_client_;
  std::uint64_t next_id_ = 1;
  bool stopping_ = false;
  bool draining_ = false;
};

}  // namespace sy

#endif
