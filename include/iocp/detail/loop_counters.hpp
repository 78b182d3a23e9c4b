// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// One I/O thread's counters behind basic_iocp_server::statistics(). Only the owning thread writes
// them, so an increment is a relaxed load and store (a plain add, no locked instruction on the
// per-message path); any thread may read them.

#include <atomic>
#include <cstdint>
#include <system_error>

#include "iocp/detail/inline.hpp"
#include "iocp/error.hpp"
#include "iocp/statistics.hpp"

namespace iocp::detail {

class loop_counters {
public:
  using counter = std::atomic<std::uint64_t>;

  // Always inlined: out of line (GCC's choice once the loop grew) it costs a call and spills.
  IOCP_ALWAYS_INLINE static void add(counter& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  counter accepted{0};
  counter refused{0};
  counter bytes_received{0};
  counter bytes_sent{0};

  /// A connection that was announced ended with `reason` (what on_disconnected is given).
  void count_close(std::error_code reason) noexcept {
    // Release: whoever reads this close (acquire) also sees the accept counted before it.
    counter& c = closed_[static_cast<int>(kind_of_close(reason))];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  /// An accept-path error: `resources` when descriptors or memory ran out, `peer_gone` when only
  /// this client had left.
  void count_accept_error(bool resources, bool peer_gone) noexcept {
    add(accept_errors_[resources ? 1 : peer_gone ? 0 : 2]);
  }

  /// Adds this thread's figures to `s`. Closes are read (acquire) before accepts, so that
  /// accepted - closed (the connections still active) can never come out negative.
  void add_to(server_statistics& s) const noexcept {
    auto closes = [&](close_kind k) { return closed_[k].load(std::memory_order_acquire); };
    close_counts closed;
    closed.graceful = closes(graceful);
    closed.peer_reset = closes(peer_reset);
    closed.aborted = closes(aborted);
    closed.handler_exception = closes(handler_exception);
    closed.idle_timeout = closes(idle_timeout);
    closed.linger_timeout = closes(linger_timeout);
    closed.stop_timeout = closes(stop_timeout);
    closed.other_error = closes(other_error);
    const std::uint64_t announced = get(accepted);
    s.accepted += announced;
    s.active += announced - closed.total();
    s.refused += get(refused);
    s.closed.graceful += closed.graceful;
    s.closed.peer_reset += closed.peer_reset;
    s.closed.aborted += closed.aborted;
    s.closed.handler_exception += closed.handler_exception;
    s.closed.idle_timeout += closed.idle_timeout;
    s.closed.linger_timeout += closed.linger_timeout;
    s.closed.stop_timeout += closed.stop_timeout;
    s.closed.other_error += closed.other_error;
    s.bytes_received += get(bytes_received);
    s.bytes_sent += get(bytes_sent);
    s.accept_errors.peer_gone += get(accept_errors_[0]);
    s.accept_errors.out_of_resources += get(accept_errors_[1]);
    s.accept_errors.other += get(accept_errors_[2]);
  }

private:
  enum close_kind : int {
    graceful,
    peer_reset,
    aborted,
    handler_exception,
    idle_timeout,
    linger_timeout,
    stop_timeout,
    other_error,
    close_kinds
  };

  static close_kind kind_of_close(std::error_code reason) noexcept {
    if (!reason) return graceful;
    if (reason.category() == error_category()) {
      switch (static_cast<errc>(reason.value())) {
      case errc::handler_exception: return handler_exception;
      case errc::idle_timeout: return idle_timeout;
      case errc::linger_timeout: return linger_timeout;
      case errc::stop_timeout: return stop_timeout;
      default: return other_error;
      }
    }
    // A send into a connection the peer reset fails with EPIPE: the peer's reset all the same.
    if (reason == std::errc::connection_reset || reason == std::errc::broken_pipe) return peer_reset;
    if (reason == std::errc::connection_aborted) return aborted;
    return other_error;
  }

  static std::uint64_t get(const counter& c) noexcept { return c.load(std::memory_order_relaxed); }

  counter closed_[close_kinds] = {};
  counter accept_errors_[3] = {}; // peer gone, out of resources, other
};

} // namespace iocp::detail
