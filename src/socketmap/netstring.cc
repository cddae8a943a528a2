// Netstring decoder and encoder.
//
// Accepted: "0:," or a length of decimal digits without a leading zero, ":", exactly that
// many bytes (anything, NUL included), ",". The length form is canonical (D. J.
// Bernstein's netstrings are; Postfix writes them so), which makes every accepted
// netstring the encoding of its payload: encode(decode(x)) == x. No spaces, no signs.
//
// Errors are reported at the first byte that proves them: a length that passes the limit
// is refused at the digit that makes it too long, before any payload arrives, so a peer
// cannot make the decoder hold more than max_length bytes.
#include "socketmap/netstring.h"

#include <algorithm>
#include <utility>

namespace sy {

const char* netstring_error_name(NetstringError e) {
  switch (e) {
    case NetstringError::None: return "no error";
    case NetstringError::BadLength: return "bad netstring length";
    case NetstringError::TooLong: return "netstring too long";
    case NetstringError::MissingColon: return "netstring length not followed by ':'";
    case NetstringError::MissingComma: return "netstring not ended by ','";
  }
  return "unknown error";
}

std::string NetstringDecoder::take() {
  std::string out = std::move(payload_);
  payload_.clear();
  ready_ = false;
  return out;
}

NetstringEvent NetstringDecoder::fail(NetstringError e) {
  error_ = e;
  state_ = State::Dead;
  payload_.clear();
  return NetstringEvent::Error;
}

NetstringEvent NetstringDecoder::feed(std::string_view in, std::size_t* consumed) {
  *consumed = 0;
  if (state_ == State::Dead) {
    *consumed = in.size();
    return NetstringEvent::Error;
  }
  if (ready_) {  // the previous payload was not taken: it is dropped now
    payload_.clear();
    ready_ = false;
  }
  std::size_t i = 0;
  while (i < in.size()) {
    const char c = in[i];
    switch (state_) {
      case State::Start:
        ++i;
        if (c == '0') {
          length_ = 0;
          state_ = State::Zero;
          break;
        }
        if (c < '1' || c > '9') {
          *consumed = i;
          return fail(NetstringError::BadLength);
        }
        length_ = static_cast<std::size_t>(c - '0');
        if (length_ > max_length_) {
          *consumed = i;
          return fail(NetstringError::TooLong);
        }
        state_ = State::Digits;
        break;

      case State::Digits:
      case State::Zero:
        ++i;
        if (c == ':') {
          state_ = length_ == 0 ? State::Comma : State::Payload;
          break;
        }
        if (c >= '0' && c <= '9') {
          if (state_ == State::Zero) {
            *consumed = i;
            return fail(NetstringError::BadLength);
          }
          const auto d = static_cast<std::size_t>(c - '0');
          if (length_ > max_length_ / 10 || d > max_length_ - length_ * 10) {
            *consumed = i;  // length_ * 10 + d > max_length_, without overflow
            return fail(NetstringError::TooLong);
          }
          length_ = length_ * 10 + d;
          break;
        }
        *consumed = i;
        return fail(NetstringError::MissingColon);

      case State::Payload: {
        const std::size_t n = std::min(length_ - payload_.size(), in.size() - i);
        payload_.append(in.substr(i, n));
        i += n;
        if (payload_.size() == length_) state_ = State::Comma;
        break;
      }

      case State::Comma:
        ++i;
        *consumed = i;
        if (c != ',') return fail(NetstringError::MissingComma);
        state_ = State::Start;
        ready_ = true;
        return NetstringEvent::Complete;

      case State::Dead:
        break;  // handled above
    }
  }
  *consumed = in.size();
  return NetstringEvent::NeedMore;
}

void netstring_append(std::string* out, std::string_view payload) {
  out->append(std::to_string(payload.size()));
  out->push_back(':');
  out->append(payload);
  out->push_back(',');
}

std::string netstring_encode(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 24);
  netstring_append(&out, payload);
  return out;
}

std::optional<SocketmapRequest> split_socketmap_request(std::string_view request) {
  const std::size_t sp = request.find(' ');
  if (sp == std::string_view::npos || sp == 0) return std::nullopt;
  return SocketmapRequest{request.substr(0, sp), request.substr(sp + 1)};
}

}  // namespace sy
