// The protocol table (see protocol.h).
#include "config/protocol.h"

namespace sy {
namespace {

constexpr ProtocolInfo kProtocols[] = {
    {Protocol::Imap, "imap", Family::Imap, "imap", false, 143, false},
    {Protocol::Imaps, "imaps", Family::Imap, "imap", true, 993, false},
    {Protocol::Pop3, "pop3", Family::Pop3, "pop3", false, 110, false},
    {Protocol::Pop3s, "pop3s", Family::Pop3, "pop3", true, 995, false},
    {Protocol::Lmtp, "lmtp", Family::Lmtp, "lmtp", false, 24, true},
    {Protocol::Socketmap, "socketmap", Family::Socketmap, "socketmap", false, 0, true},
    {Protocol::Metrics, "metrics", Family::Metrics, "metrics", false, 0, true},
};
static_assert(std::size(kProtocols) == kProtocolCount);

constexpr bool rows_in_order() {
  for (std::size_t i = 0; i < std::size(kProtocols); ++i)
    if (static_cast<std::size_t>(kProtocols[i].protocol) != i) return false;
  return true;
}
static_assert(rows_in_order(), "kProtocols is indexed by Protocol");

}  // namespace

const ProtocolInfo& protocol_info(Protocol p) { return kProtocols[static_cast<std::size_t>(p)]; }

std::optional<Protocol> protocol_named(std::string_view name) {
  for (const auto& row : kProtocols)
    if (name == row.name) return row.protocol;
  return std::nullopt;
}

const char* protocol_name(Protocol p) { return protocol_info(p).name; }

const char* family_name(Family f) {
  for (const auto& row : kProtocols)
    if (row.family == f) return row.family_name;
  return "?";
}

}  // namespace sy
