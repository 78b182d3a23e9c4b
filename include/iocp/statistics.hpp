// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// What a running server has done, for monitoring: basic_iocp_server::statistics() sums the I/O
// threads' counters at any time, without stopping or slowing them (each thread writes its own
// counters; a read is a handful of relaxed loads per thread). The figures of one snapshot are each
// exact but not taken at one instant: a connection that closes during the read may be counted as
// closed and still as active.

#include <cstdint>
#include <system_error>

namespace iocp {

/// How connections ended, by the reason on_disconnected was given.
struct close_counts {
  std::uint64_t graceful = 0;          ///< both sides closed in order (empty reason)
  std::uint64_t peer_reset = 0;        ///< the peer reset the connection (std::errc::connection_reset)
  std::uint64_t aborted = 0;           ///< abort() (std::errc::connection_aborted)
  std::uint64_t handler_exception = 0; ///< a callback threw (errc::handler_exception)
  std::uint64_t idle_timeout = 0;      ///< errc::idle_timeout
  std::uint64_t linger_timeout = 0;    ///< errc::linger_timeout
  std::uint64_t stop_timeout = 0;      ///< errc::stop_timeout
  std::uint64_t other_error = 0;       ///< any other system error (a failed receive, send or shutdown)

  std::uint64_t total() const noexcept {
    return graceful + peer_reset + aborted + handler_exception + idle_timeout + linger_timeout +
           stop_timeout + other_error;
  }
};

/// Accept-path errors (each also reported to on_server_error with operation::accept), by cause.
struct accept_error_counts {
  std::uint64_t peer_gone = 0;        ///< the client left before its accept completed (ECONNABORTED...)
  std::uint64_t out_of_resources = 0; ///< descriptors or memory ran out (EMFILE, ENFILE, ENOBUFS, ENOMEM)
  std::uint64_t other = 0;

  std::uint64_t total() const noexcept { return peer_gone + out_of_resources + other; }
};

struct server_statistics {
  std::uint64_t accepted = 0; ///< connections announced with on_connected
  std::uint64_t active = 0;   ///< connections open now (announced and not yet disconnected)
  /// Connections the kernel handed over that were closed at once: more than max_connections (also
  /// reported as errc::too_many_connections), or no memory for them.
  std::uint64_t refused = 0;
  close_counts closed;
  std::uint64_t bytes_received = 0; ///< every byte read from the peers, delivered or discarded
  std::uint64_t bytes_sent = 0;     ///< every byte the kernel took for sending
  accept_error_counts accept_errors;
};

} // namespace iocp
