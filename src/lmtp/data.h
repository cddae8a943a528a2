// LMTP/SMTP DATA framing (RFC 5321 4.1.1.4 and 4.5.2): the decoder reads the dot-stuffed
// message a client sends after "354" and gives back the message bytes exactly; the encoder
// dot-stuffs a message for sending to a store. Both are pure and resumable: bytes in
// whatever pieces they arrive, no sockets, no logging.
//
// The decoder writes the message to a caller's buffer (feed()) or hands it, in pieces, to
// a caller's function (feed_to()); it owns nothing but a few bytes of state. The router
// must pass messages byte-exact: the only bytes dropped are the stuffed dots and the
// final ".\r\n"; the CRLF before that final dot ends the message's last line and is kept.
//
// Only CRLF ends a line, for dot-stuffing as for the terminator: a bare CR or a bare LF is
// an ordinary message byte, and "\n.\r\n" or "\r.\r\n" inside a message ends nothing (the
// strict reading that leaves no room for SMTP smuggling). Postfix sends every line with
// CRLF.
#ifndef SWITCHYARD_LMTP_DATA_H
#define SWITCHYARD_LMTP_DATA_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace sy::lmtp {

enum class DataEvent {
  NeedMore,  // every byte given was consumed and the terminator has not been seen yet
  End,       // the terminator was consumed: the message is complete
  TooBig,    // the terminator was consumed, but the message exceeded max_size: answer
             // 552 for every recipient and deliver nothing
};

class DataDecoder {
 public:
  // max_size: the largest message accepted, in decoded bytes; 0 for no limit.
  explicit DataDecoder(std::uint64_t max_size = 0) : max_size_(max_size) {}

  // Decodes from the start of `in`, appending message bytes to *out. *consumed is set to
  // the bytes used: all of `in` for NeedMore; for End and TooBig the bytes through the
  // terminator's LF -- what follows belongs to the next command (pipelining). After End or
  // TooBig every call returns the same event, consuming and writing nothing, until reset().
  DataEvent feed(std::string_view in, std::size_t* consumed, std::string* out);

  // The same, handing each run of message bytes to sink(std::string_view) instead. The
  // views point into `in` (or to static storage) and are valid only during the call.
  template <class Sink>
  DataEvent feed_to(std::string_view in, std::size_t* consumed, Sink&& sink) {
    using S = std::remove_reference_t<Sink>;
    return run(in, consumed, [](void* ctx, std::string_view s) { (*static_cast<S*>(ctx))(s); },
               &sink);
  }

  // True once the message has passed max_size. From then on nothing more is written or
  // handed out (the bytes given before are the caller's to discard), but the decoder
  // keeps reading to the terminator and feed() ends with TooBig.
  bool too_big() const { return too_big_; }
  // Decoded message bytes so far, counted on past max_size (for logging).
  std::uint64_t size() const { return size_; }
  // True after End or TooBig.
  bool finished() const { return state_ == State::Done; }

  // Ready for a new message; the limit is kept.
  void reset();
  void set_max_size(std::uint64_t max_size) { max_size_ = max_size; }

 private:
  using EmitFn = void (*)(void* ctx, std::string_view bytes);

  enum class State : unsigned char {
    LineStart,  // at the start of a line (and of the message)
    Dot,        // a "." at the start of a line, not written
    DotCr,      // ".\r" at the start of a line, neither written yet
    Text,       // inside a line
    Cr,         // inside a line, just after a CR
    Done,       // the terminator has been consumed
  };

  DataEvent run(std::string_view in, std::size_t* consumed, EmitFn emit, void* ctx);
  void emit(std::string_view bytes, EmitFn fn, void* ctx);
  DataEvent end_event() const { return too_big_ ? DataEvent::TooBig : DataEvent::End; }

  std::uint64_t max_size_;
  std::uint64_t size_ = 0;
  bool too_big_ = false;
  State state_ = State::LineStart;
};

// Dot-stuffs a message chunk by chunk for sending after the store's "354", then ends it.
// decode(encode(m)) == m for every message m that is empty or ends with CRLF (any other
// message comes back with a CRLF added); encode(decode(d)) == d for every stream d the
// decoder accepts in which each line starting with "." starts with "..".
class DataEncoder {
 public:
  struct Options {
    // Also stuff a "." that follows a bare LF. Off by default, as that dot is not at a
    // line start for a strict receiver, which would keep the extra dot. Turn it on only for
    // a store that takes a bare LF as a line end, for which "\n.\r\n" would end the message
    // early: the dot then doubles for the strict reading but the message cannot be cut.
    bool stuff_after_bare_lf = false;
  };

  DataEncoder() = default;
  explicit DataEncoder(Options options) : options_(options) {}

  // Appends the stuffed form of the next piece of the message to *out.
  void encode(std::string_view chunk, std::string* out);
  // Appends the end: a CRLF if the message is not empty and does not end with one, then
  // ".\r\n". The encoder is then ready for a new message.
  void finish(std::string* out);

 private:
  Options options_;
  bool line_start_ = true;  // the next byte starts a line: a "." there gets doubled
  bool prev_cr_ = false;    // the last byte was CR
  bool ends_crlf_ = false;  // the last two bytes were CRLF
  bool empty_ = true;       // nothing encoded yet
};

// The whole message, stuffed and terminated: what DataEncoder gives for one chunk.
std::string dot_stuff(std::string_view message);

}  // namespace sy::lmtp

#endif
