// The socket every layer passes around, and the one way Asio is included.
//
// <cstddef> comes first on purpose: Asio decides at its first inclusion whether to use
// aligned_alloc (it looks for libstdc++'s _GLIBCXX_HAVE_ALIGNED_ALLOC), so a file that
// includes Asio before any standard header allocates with new and frees with free() in
// another file's eyes. Including Asio only through this header keeps every file alike.
#ifndef SWITCHYARD_NET_SOCKET_H
#define SWITCHYARD_NET_SOCKET_H

#include <cstddef>

#include <asio.hpp>

namespace sy {

using Socket = asio::generic::stream_protocol::socket;

}  // namespace sy

#endif
