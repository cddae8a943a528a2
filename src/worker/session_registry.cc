// The worker's session registry (see session_registry.h).
#include "worker/session_registry.h"

#include <algorithm>

#include "metrics/metrics.h"

namespace sy {
namespace {

// What a stopping worker does with a session in each stage: true, it ends now (told in its
// protocol's words); false, it may finish (within shutdown_grace on a stop). `drain` is the gentler stop after a reload,
// when the new workers already serve: connections that clients reopen at once (Postfix's
// LMTP and socketmap clients) move over, and clients at the login prompt may finish.
bool ends_on_stop(SessionStage s, bool drain) {
  switch (s) {
    case SessionStage::PreLogin: return !drain;
    case SessionStage::LoggedIn: return !drain;        // BYE now; drained: drain_timeout
    case SessionStage::LmtpIdle: return true;          // Postfix reconnects elsewhere
    case SessionStage::LmtpTransaction: return false;  // never cut in DATA
    case SessionStage::Socketmap: return true;
  }
  return true;
}

constexpr const char* kStageNames[] = {"pre-login", "logged-in", "lmtp-idle", "lmtp-transaction",
                                       "socketmap"};
static_assert(std::size(kStageNames) == static_cast<std::size_t>(SessionStage::Socketmap) + 1);

}  // namespace

const char* stage_name(SessionStage s) { return kStageNames[static_cast<std::size_t>(s)]; }

SessionRegistry::Registration::Registration(SessionRegistry* r, std::uint64_t id)
    : registry_(r), id_(id) {
  r->entries_.at(id).owner = this;
}

SessionRegistry::Registration& SessionRegistry::Registration::operator=(
    Registration&& other) noexcept {
  if (this != &other) {
    reset();
    registry_ = other.registry_;
    id_ = other.id_;
    other.registry_ = nullptr;
    if (registry_) registry_->entries_.at(id_).owner = this;
  }
  return *this;
}

void SessionRegistry::Registration::set_stage(SessionStage stage) {
  if (registry_) registry_->staged(id_, stage);
}

void SessionRegistry::Registration::set_key(std::string key) {
  if (!registry_) return;
  auto& keys = registry_->entries_.at(id_).keys;
  keys.clear();
  if (!key.empty()) keys.push_back(std::move(key));
}

void SessionRegistry::Registration::add_key(std::string key) {
  if (!registry_ || key.empty()) return;
  Entry& e = registry_->entries_.at(id_);
  if (!e.has_key(key)) e.keys.push_back(std::move(key));
}

void SessionRegistry::Registration::set_handle(SessionHandle& handle) {
  if (registry_) registry_->entries_.at(id_).handle = &handle;
}

void SessionRegistry::Registration::reset() {
  SessionRegistry* r = registry_;
  registry_ = nullptr;
  if (r) r->leave(id_);
}

SessionRegistry::Registration SessionRegistry::enter(SessionHandle& h, std::uint64_t id,
                                                     SessionKind kind, SessionStage stage) {
  counted(entries_[id] = Entry{&h, kind, stage, {}, {}, nullptr}, +1);
  return Registration(this, id);
}

SessionRegistry::~SessionRegistry() {
  on_empty = nullptr;
  for (auto& [id, e] : entries_)
    if (e.owner) e.owner->registry_ = nullptr;
}

void SessionRegistry::staged(std::uint64_t id, SessionStage stage) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.stage == stage) return;
  counted(it->second, -1);
  it->second.stage = stage;
  counted(it->second, +1);
  if (stopping_ && ends_on_stop(stage, draining_)) it->second.handle->shut_down();
}

void SessionRegistry::leave(std::uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  counted(it->second, -1);
  entries_.erase(it);
  if (entries_.empty() && stopping_ && on_empty) on_empty();
}

void SessionRegistry::counted(const Entry& e, int delta) {
  std::size_t& n = stage_counts_[static_cast<std::size_t>(e.stage)];
  metrics::session(e.kind, static_cast<std::size_t>(e.stage), delta);
  n = delta > 0 ? n + 1 : n - 1;
  if (e.stage != SessionStage::PreLogin || e.client.empty()) return;
  if (delta > 0) {
    ++prelogin_by_client_[e.client];
  } else if (auto it = prelogin_by_client_.find(e.client);
             it != prelogin_by_client_.end() && --it->second == 0) {
    prelogin_by_client_.erase(it);
  }
}

std::size_t SessionRegistry::prelogin_from(const std::string& ip) const {
  auto it = prelogin_by_client_.find(ip);
  return it == prelogin_by_client_.end() ? 0 : it->second;
}

void SessionRegistry::Registration::set_client(std::string ip) {
  if (!registry_) return;
  Entry& e = registry_->entries_.at(id_);
  registry_->counted(e, -1);
  e.client = std::move(ip);
  registry_->counted(e, +1);
}

std::vector<SessionHandle*> SessionRegistry::with_key(std::string_view key) const {
  std::vector<SessionHandle*> found;
  for (const auto& [id, e] : entries_)
    if (e.has_key(key)) found.push_back(e.handle);
  return found;
}

std::size_t SessionRegistry::kick(std::string_view key) {
  std::vector<SessionHandle*> victims;
  for (const auto& [id, e] : entries_)
    if (e.kind != SessionKind::Lmtp && e.has_key(key))
      victims.push_back(e.handle);
  for (SessionHandle* s : victims) s->kick();  // may leave the registry: not iterating it
  return victims.size();
}

std::size_t SessionRegistry::stop(bool drain) {
  // A drain after a stop does not soften it.
  draining_ = stopping_ ? draining_ && drain : drain;
  stopping_ = true;
  std::vector<SessionHandle*> now;
  for (const auto& [id, e] : entries_)
    if (ends_on_stop(e.stage, draining_)) now.push_back(e.handle);
  for (SessionHandle* s : now) s->shut_down();
  return now.size();
}

}  // namespace sy

namespace sy {

std::size_t SessionRegistry::cut_all() {
  std::vector<SessionHandle*> all;
  for (const auto& [id, e] : entries_) all.push_back(e.handle);
  for (SessionHandle* s : all) s->cut();  // may leave the registry: not iterating it
  return all.size();
}

}  // namespace sy
