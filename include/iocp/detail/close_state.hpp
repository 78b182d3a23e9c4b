// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The close sequence of a connection, as one state. The event loop changes it only through
// event_loop::enter(), which asserts (IOCP_ASSERT) that the transition is one of the legal ones.
//
//   state               the send side                     disconnect()   the loop meanwhile
//   open                open                              no             everything
//   fin_owed            FIN once the queue has drained    no             sends the queue, then the FIN
//   lingering           FIN once the queue has drained    yes            same; the linger deadline runs
//   fin_sent            our FIN is out                    no             receives until the peer's FIN
//   lingering_fin_sent  our FIN is out                    yes            same; the linger deadline runs
//   closing             closed for business               -              waits for the kernel to let
//                                                                        go, then frees (finalize)
//
// Legal transitions (any other is a bug):
//   open -> fin_owed                     shutdown(send); the peer's FIN, without on_peer_shutdown
//   open, fin_owed -> lingering          disconnect()
//   fin_sent -> lingering_fin_sent       disconnect()
//   fin_owed -> fin_sent                 the FIN goes out (send_fin)
//   lingering -> lingering_fin_sent      the FIN goes out (send_fin)
//   any but closing -> closing           begin_close: an error, abort(), both directions finished,
//                                        the linger or idle timeout, stop()'s deadline
//
// The receive side is not part of it: the peer's FIN (peer_eof_), a receive side shut by the
// handler (read_shut_) and a pause (receive_paused) combine with any of these states; closing
// ends receiving too. The order of the values makes the per-message checks one comparison each:
// "may still send" is `state == open`, "closing" is `state == closing`.

#include <cstdint>

namespace iocp::detail {

enum class close_state : std::uint8_t {
  open = 0,
  fin_owed,
  lingering,
  fin_sent,
  lingering_fin_sent,
  closing,
};

/// The handler may no longer queue data: the send side is shut or shutting, or the connection closes.
constexpr bool send_side_shut(close_state s) noexcept { return s != close_state::open; }
constexpr bool is_closing(close_state s) noexcept { return s == close_state::closing; }
/// A FIN is to follow the queued data and has not gone out yet.
constexpr bool is_fin_owed(close_state s) noexcept {
  return s == close_state::fin_owed || s == close_state::lingering;
}
constexpr bool is_fin_sent(close_state s) noexcept {
  return s == close_state::fin_sent || s == close_state::lingering_fin_sent;
}
/// disconnect() was called and the connection is not closing yet: its linger deadline runs.
constexpr bool is_lingering(close_state s) noexcept {
  return s == close_state::lingering || s == close_state::lingering_fin_sent;
}

/// The state disconnect() moves to (from any state but closing).
constexpr close_state disconnected(close_state s) noexcept {
  return is_fin_sent(s) ? close_state::lingering_fin_sent : close_state::lingering;
}
/// The state once the FIN has gone out (from fin_owed or lingering).
constexpr close_state fin_went_out(close_state s) noexcept {
  return s == close_state::lingering ? close_state::lingering_fin_sent : close_state::fin_sent;
}

/// The table above.
constexpr bool legal_close_transition(close_state from, close_state to) noexcept {
  using enum close_state;
  switch (to) {
  case open: return false;
  case fin_owed: return from == open;
  case lingering: return from == open || from == fin_owed;
  case fin_sent: return from == fin_owed;
  case lingering_fin_sent: return from == fin_sent || from == lingering;
  case closing: return from != closing;
  }
  return false;
}

} // namespace iocp::detail
