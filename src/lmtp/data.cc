// DATA framing: dot-unstuffing decoder and dot-stuffing encoder.
//
// Decoder states, over the stream as the client sends it:
//
//   LineStart --"."--> Dot --"\r"--> DotCr --"\n"--> Done        (".\r\n": the end)
//       |               |              `--other: the dot was stuffing; the held CR is
//       |               |                 written and the byte is read after a CR
//       |               `--other: the dot was stuffing, dropped; the byte is text
//       `--other--> Text --"\r"--> Cr --"\n"--> LineStart
//                                   |--"\r"--> Cr
//                                   `--other--> Text
//
// A "." at a line start is never written (it is stuffing or the start of the terminator)
// and the only byte ever held back is the CR of ".\r", so message bytes are written in
// runs straight from the input; the CRLF that precedes the final dot is written as the end
// of the message's last line. The message start counts as a line start, so ".\r\n" at
// once is an empty message, and a message always comes out empty or ending in CRLF.
#include "lmtp/data.h"

#include <cstring>

namespace sy::lmtp {

void DataDecoder::reset() {
  size_ = 0;
  too_big_ = false;
  state_ = State::LineStart;
}

DataEvent DataDecoder::feed(std::string_view in, std::size_t* consumed, std::string* out) {
  return run(in, consumed, [](void* ctx, std::string_view s) { static_cast<std::string*>(ctx)->append(s); },
             out);
}

void DataDecoder::emit(std::string_view bytes, EmitFn fn, void* ctx) {
  if (bytes.empty()) return;
  size_ += bytes.size();
  if (too_big_) return;
  if (max_size_ != 0 && size_ > max_size_) {
    too_big_ = true;
    return;
  }
  fn(ctx, bytes);
}

DataEvent DataDecoder::run(std::string_view in, std::size_t* consumed, EmitFn fn, void* ctx) {
  *consumed = 0;
  if (state_ == State::Done) return end_event();
  const char* const data = in.data();
  const std::size_t n = in.size();
  std::size_t i = 0;
  std::size_t run_start = 0;  // start of the bytes read but not yet written
  while (i < n) {
    switch (state_) {
      case State::LineStart:
        if (data[i] == '.') {
          emit(std::string_view(data + run_start, i - run_start), fn, ctx);
          run_start = ++i;
          state_ = State::Dot;
        } else {
          state_ = State::Text;
        }
        break;

      case State::Dot:
        if (data[i] == '\r') {
          run_start = ++i;  // hold the CR: ".\r\n" is the end
          state_ = State::DotCr;
        } else {
          state_ = State::Text;  // the dot was stuffing; this byte is text
        }
        break;

      case State::DotCr:
        if (data[i] == '\n') {
          *consumed = i + 1;
          state_ = State::Done;
          return end_event();
        }
        emit("\r", fn, ctx);  // ".\r" + other: the dot was stuffing, the CR is text
        state_ = State::Cr;
        break;

      case State::Text: {
        const void* cr = std::memchr(data + i, '\r', n - i);
        if (cr == nullptr) {
          i = n;
        } else {
          i = static_cast<std::size_t>(static_cast<const char*>(cr) - data) + 1;
          state_ = State::Cr;
        }
        break;
      }

      case State::Cr: {
        const char c = data[i++];
        if (c == '\n') {
          state_ = State::LineStart;
        } else if (c != '\r') {
          state_ = State::Text;
        }
        break;
      }

      case State::Done:
        break;  // unreachable: Done returns above
    }
  }
  emit(std::string_view(data + run_start, n - run_start), fn, ctx);
  *consumed = n;
  return DataEvent::NeedMore;
}

void DataEncoder::encode(std::string_view chunk, std::string* out) {
  std::size_t run_start = 0;
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    const char c = chunk[i];
    if (line_start_ && c == '.') {
      out->append(chunk, run_start, i - run_start);
      out->push_back('.');  // the stuffing dot; the message's own dot follows in the run
      run_start = i;
    }
    const bool lf = c == '\n';
    ends_crlf_ = lf && prev_cr_;
    line_start_ = lf && (prev_cr_ || options_.stuff_after_bare_lf);
    prev_cr_ = c == '\r';
  }
  out->append(chunk, run_start, std::string_view::npos);
  if (!chunk.empty()) empty_ = false;
}

void DataEncoder::finish(std::string* out) {
  if (!empty_ && !ends_crlf_) out->append("\r\n");
  out->append(".\r\n");
  line_start_ = true;
  prev_cr_ = false;
  ends_crlf_ = false;
  empty_ = true;
}

std::string dot_stuff(std::string_view message) {
  DataEncoder enc;
  std::string out;
  out.reserve(message.size() + 5);
  enc.encode(message, &out);
  enc.finish(&out);
  return out;
}

}  // namespace sy::lmtp
