// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Part of the event loop (detail/event_loop.hpp, which declares these members and includes this
// file at its end). The receive path: a completion delivered to on_received, the peer's FIN, and the receive
// hold (pause_receiving keeps what the kernel had already handed over, resume_receiving
// delivers it in order before the receive is armed again).

namespace iocp::detail {

template <class Server>
inline void event_loop<Server>::pause_receiving(connection_type& c) {
  if (is_closing(c.close_) || c.receive_paused) return;
  c.receive_paused = true;
  // Until its send queue has drained, a connection paused with sends queued (a slow reader's
  // backpressure) receives one buffer at a time: a multishot receive takes up to 32 buffers per
  // wake-up, all of which a pause must then hold (about 100 KiB a connection, a thousand slow
  // readers 100 MiB more). A pause with nothing queued (the handler's own reasons) keeps
  // multishot: nothing would ever end single-shot receiving for a connection that never sends.
  if (!c.queue_.empty()) c.receive_single_shot = true;
  if (c.receive_pending) with_backend([&](auto& b) { b.pause_receive(c); });
}

template <class Server>
inline void event_loop<Server>::resume_receiving(connection_type& c) {
  if (!c.receive_paused) return;
  c.receive_paused = false;
  if (is_closing(c.close_)) return;
  if (c.held_) {
    // Delivered from the loop, not from inside this call (which may be in another callback).
    c.held_delivery_owed_ = true;
    defer(c);
    return;
  }
  rearm_receive(c);
}

template <class Server>
template <class Backend>
void event_loop<Server>::receive_completed(Backend& backend, io_object& io, int result, std::byte* data) {
  connection_type& c = static_cast<connection_type&>(io);
  if (is_closing(c.close_)) {
    maybe_finalize(c);
    return;
  }
  // Paused, or resumed with held input not yet delivered (an io_uring multishot receive may go on
  // until the pause's cancel lands): new bytes go behind the held ones, never ahead of them.
  if (c.receive_paused || c.held_) [[unlikely]] {
    hold(c, result, data);
  } else if (result > 0) {
    c.last_active_ns_ = now_ns_;
    loop_counters::add(counters_.bytes_received, static_cast<std::uint64_t>(result));
    deliver(backend, c, std::span<const std::byte>(data, static_cast<std::size_t>(result)));
    rearm_receive(backend, c);
  } else if (result == 0) {
    on_peer_eof(c);
  } else {
    begin_close(c, errno_code(-result), false);
  }
  maybe_finalize(c);
}

template <class Server>
template <class Backend>
void event_loop<Server>::deliver(Backend& backend, connection_type& c, std::span<const std::byte> data) {
  if (c.read_shut_) return;
  invoke(backend, c, [&] {
    if constexpr (has_on_received<handler_type, connection_type>) handler().on_received(c, data);
  });
}

template <class Server>
inline void event_loop<Server>::deliver(connection_type& c, std::span<const std::byte> data) {
  with_backend([&](auto& backend) { deliver(backend, c, data); });
}

template <class Server>
void event_loop<Server>::on_peer_eof(connection_type& c) {
  IOCP_ASSERT(!is_closing(c.close_) && !c.peer_eof_); // a receive is armed only before both
  c.peer_eof_ = true;
  if constexpr (has_on_peer_shutdown<handler_type, connection_type>) {
    if (!is_lingering(c.close_)) // after disconnect(), the handler has said all it had to
      invoke(c, [&] { handler().on_peer_shutdown(c); });
    else
      finish_sending(c);
  } else {
    finish_sending(c); // the original's default: send what is queued, then close our side
  }
  check_finished(c);
}

template <class Server>
void event_loop<Server>::hold(connection_type& c, int result, const std::byte* data) {
  if (result < 0) {
    if (result != -ECANCELED) begin_close(c, errno_code(-result), false);
    return;
  }
  loop_counters::add(counters_.bytes_received, static_cast<std::uint64_t>(result));
  try {
    if (!c.held_) c.held_ = ::new (allocator_.allocate(sizeof(held_input))) held_input{};
    if (result == 0)
      c.held_->eof = true;
    else
      append_held(*c.held_, data, static_cast<std::size_t>(result));
  } catch (const std::bad_alloc&) {
    out_of_memory(c, operation::receive);
  }
}

template <class Server>
inline void event_loop<Server>::append_held(held_input& h, const std::byte* data, std::size_t n) {
  if (h.capacity - h.size < n) {
    const std::size_t capacity = allocation_size(allocator_, (std::max)(h.size + n, 2 * h.capacity));
    auto* grown = static_cast<std::byte*>(allocator_.allocate(capacity));
    if (h.size) std::memcpy(grown, h.data, h.size);
    if (h.data) allocator_.deallocate(h.data, h.capacity);
    h.data = grown;
    h.capacity = capacity;
  }
  std::memcpy(h.data + h.size, data, n);
  h.size += n;
}

template <class Server>
inline void event_loop<Server>::free_held(held_input* h) noexcept {
  if (!h) return;
  if (h->data) allocator_.deallocate(h->data, h->capacity);
  h->~held_input();
  allocator_.deallocate(h, sizeof(held_input));
}

template <class Server>
inline void event_loop<Server>::deliver_held(connection_type& conn) {
  if (is_closing(conn.close_) || conn.receive_paused || !conn.held_) return;
  ++conn.callback_depth_; // conn stays while its held input is handed over
  held_input* held = std::exchange(conn.held_, nullptr);
  std::size_t at = 0;
  while (at < held->size && !is_closing(conn.close_) && !conn.receive_paused) {
    const std::size_t n = (std::min)(options_.receive_buffer_size, held->size - at);
    conn.last_active_ns_ = now_ns_;
    deliver(conn, std::span<const std::byte>(held->data + at, n));
    at += n;
  }
  if (!is_closing(conn.close_) && (at < held->size || (held->eof && conn.receive_paused))) {
    // Paused again: the rest (and the FIN, if it came) waits for the next resume.
    std::memmove(held->data, held->data + at, held->size - at);
    held->size -= at;
    conn.held_ = std::exchange(held, nullptr);
  } else if (held->eof && !is_closing(conn.close_)) {
    on_peer_eof(conn);
  }
  free_held(held);
  --conn.callback_depth_;
  if (!is_closing(conn.close_)) rearm_receive(conn);
}

template <class Server>
template <class Backend>
void event_loop<Server>::rearm_receive(Backend& backend, connection_type& c) {
  // receive_pending first: a multishot receive stays armed, so this is usually all there is to check.
  if (!c.receive_pending && !is_closing(c.close_) && !c.peer_eof_ && !c.receive_paused && !c.held_) {
    // A throttled connection (see pause_receiving) receives single-shot until the peer has taken
    // everything queued; checked here, where a receive is armed, not on the per-message path.
    if (c.receive_single_shot && c.queue_.empty()) c.receive_single_shot = false;
    backend.start_receive(c);
  }
}

template <class Server>
inline void event_loop<Server>::rearm_receive(connection_type& c) {
  with_backend([&](auto& backend) { rearm_receive(backend, c); });
}

template <class Server>
inline void event_loop<Server>::stop_reading(connection_type& c) {
  c.read_shut_ = true;
  c.receive_paused = false;
  if (c.held_) {
    c.held_->size = 0;
    if (c.held_->eof) { // the FIN was held: it is reported from the loop, as after a resume
      c.held_delivery_owed_ = true;
      defer(c);
      return;
    }
    free_held(std::exchange(c.held_, nullptr));
  }
  rearm_receive(c);
}

} // namespace iocp::detail
