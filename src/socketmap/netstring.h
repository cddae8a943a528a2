// Netstrings ("<decimal length>:<bytes>,"), the framing of the Postfix socketmap protocol:
// a pure, resumable decoder, an encoder, and the split of a socketmap request
// "name<SP>key". No sockets, no logging.
//
// The decoder owns the payload it is building; take() moves it out. Errors are fatal: a
// stream with a broken frame cannot be resynchronised, the connection must be closed.
#ifndef SWITCHYARD_SOCKETMAP_NETSTRING_H
#define SWITCHYARD_SOCKETMAP_NETSTRING_H

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sy {

// Postfix reads socketmap replies of up to 100000 bytes.
inline constexpr std::size_t kSocketmapMaxReply = 100000;
// Requests are a map name and a key (an address, a domain): short. The default limit of a
// socketmap server's decoder.
inline constexpr std::size_t kSocketmapMaxRequest = 10000;

enum class NetstringEvent {
  NeedMore,  // every byte given was consumed; call again with more
  Complete,  // a whole netstring was read: take() its payload
  Error,     // error(): fatal
};

enum class NetstringError {
  None,
  BadLength,     // no digits before ":", a non-digit first byte, or a leading zero ("05:")
  TooLong,       // the length is over the decoder's limit (seen before its bytes arrive)
  MissingColon,  // the digits are followed by something other than a digit or ":"
  MissingComma,  // the payload is followed by something other than ","
};

const char* netstring_error_name(NetstringError e);  // "bad length", ... for logs

class NetstringDecoder {
 public:
  explicit NetstringDecoder(std::size_t max_length = kSocketmapMaxRequest)
      : max_length_(max_length) {}

  // Parses from the start of `in`. *consumed is set to the bytes used: all of `in` for
  // NeedMore; for Complete the bytes through the ","; for Error the bytes through the one
  // that showed the error. The caller drops them and calls again with the rest. After an
  // error every call returns Error again and swallows its input.
  NetstringEvent feed(std::string_view in, std::size_t* consumed);

  // The payload, valid right after Complete; a payload not taken is dropped by the next
  // feed().
  std::string take();
  const std::string& payload() const { return payload_; }
  NetstringError error() const { return error_; }

 private:
  enum class State : unsigned char { Start, Digits, Zero, Payload, Comma, Dead };

  NetstringEvent fail(NetstringError e);

  std::size_t max_length_;
  State state_ = State::Start;
  NetstringError error_ = NetstringError::None;
  std::size_t length_ = 0;  // declared length (State::Digits, Zero, Payload)
  bool ready_ = false;      // payload_ is complete and not taken
  std::string payload_;
};

// Appends payload as a netstring to *out.
void netstring_append(std::string* out, std::string_view payload);
std::string netstring_encode(std::string_view payload);

// A socketmap request: the map name and the key, split at the FIRST space (keys may hold
// spaces; names cannot). Views into the request.
struct SocketmapRequest {
  std::string_view name;
  std::string_view key;  // may be empty: the map decides what an empty key finds
};

// nullopt when there is no space or the name is empty.
[[nodiscard]] std::optional<SocketmapRequest> split_socketmap_request(std::string_view request);

}  // namespace sy

#endif
