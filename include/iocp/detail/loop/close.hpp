// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Part of the event loop (detail/event_loop.hpp, which declares these members and includes this
// file at its end). The close sequence (states and legal transitions: detail/close_state.hpp): shutdown,
// disconnect and its linger period, abort, the FIN, begin_close and the finalisation that frees
// a connection once the kernel and the handler have let go of it.

namespace iocp::detail {

template <class Server>
inline std::error_code event_loop<Server>::shutdown(connection_type& c, shutdown_type how) {
  if (is_closing(c.close_)) return make_error_code(errc::connection_closing);
  if (how != shutdown_type::send) stop_reading(c);
  if (how != shutdown_type::receive) {
    if (c.close_ == close_state::open) enter(c, close_state::fin_owed);
    flush(c);
    check_finished(c);
  }
  return {};
}

template <class Server>
inline std::error_code event_loop<Server>::disconnect(connection_type& c) {
  if (is_closing(c.close_)) return make_error_code(errc::connection_closing);
  const bool was_lingering = is_lingering(c.close_); // a second disconnect() changes nothing
  if (!was_lingering) enter(c, disconnected(c.close_));
  stop_reading(c);
  flush(c);
  check_finished(c);
  if (!was_lingering && !is_closing(c.close_)) {
    c.linger_pending_ = close_pending_bytes(c);
    start_linger(c, monotonic_ns());
  }
  return {};
}

template <class Server>
inline void event_loop<Server>::abort(connection_type& c, std::error_code reason) {
  begin_close(c, reason, true);
}

template <class Server>
void event_loop<Server>::abort(connection_type& c) {
  begin_close(c, make_error_code(std::errc::connection_aborted), true);
}

template <class Server>
inline void event_loop<Server>::close_reported(socket_handle s) noexcept {
  if (int e = close_socket(s)) report(errno_code(e), operation::close);
}

template <class Server>
inline void event_loop<Server>::finish_sending(connection_type& c) {
  if (c.close_ == close_state::open) enter(c, close_state::fin_owed);
  flush(c);
}

template <class Server>
inline void event_loop<Server>::send_fin(connection_type& c) {
  IOCP_ASSERT(c.queue_.empty() && !c.send_pending);
  enter(c, fin_went_out(c.close_));
  // The peer's FIN is in and everything before it was read, so the close that check_finished()
  // starts next sends our FIN (not a reset): one system call fewer per connection.
  if (c.peer_eof_) return;
  if (std::error_code e = shutdown_send(c.fd)) {
    c.report_owed_ = static_cast<std::uint8_t>(operation::shutdown) + 1; // maybe inside a user's call
    begin_close(c, e, false);
  }
}

template <class Server>
void event_loop<Server>::check_finished(connection_type& c) {
  if (is_fin_sent(c.close_) && c.peer_eof_) [[unlikely]]
    close_finished(c); // out of line: the send completion that checks this is per message
}

template <class Server>
void event_loop<Server>::close_finished(connection_type& c) {
  begin_close(c, {}, false);
}

template <class Server>
inline std::size_t event_loop<Server>::close_pending_bytes(connection_type& c) noexcept {
  const long unacked = unacknowledged_bytes(c.fd);
  return c.queue_.bytes() + (unacked > 0 ? static_cast<std::size_t>(unacked) : 0);
}

template <class Server>
inline void event_loop<Server>::start_linger(connection_type& c, std::int64_t now) {
  IOCP_ASSERT(is_lingering(c.close_));
  c.linger_deadline_ns_ = later_ns(now, linger_timeout_ns_);
  if (!schedule_connection(c)) (void)out_of_memory(c, operation::close);
}

template <class Server>
inline void event_loop<Server>::enter(connection_type& c, close_state to) noexcept {
  IOCP_ASSERT(legal_close_transition(c.close_, to));
  c.close_ = to;
}

template <class Server>
void event_loop<Server>::begin_close(connection_type& c, std::error_code reason, bool abortive) {
  if (is_closing(c.close_)) return;
  enter(c, close_state::closing);
  c.close_reason_ = reason;
  timers_.cancel_all(c.timers_);
  if (abortive && c.fd != invalid_socket) set_linger_zero(c.fd);
  if (deadlines_.contains(c.deadline_)) deadlines_.remove(c.deadline_); // no deadline once closing
  with_backend([&](auto& b) { b.cancel(c); });
  defer(c);
}

template <class Server>
void event_loop<Server>::maybe_finalize(connection_type& c) {
  if (is_closing(c.close_)) [[unlikely]]
    finalize_if_released(c);
}

template <class Server>
void event_loop<Server>::finalize_if_released(connection_type& c) {
  IOCP_ASSERT(is_closing(c.close_));
  if (c.receive_pending || c.send_pending || c.callback_depth_ || c.deferred_) return;
  IOCP_ASSERT(!deadlines_.contains(c.deadline_) && !c.timers_);
  map().erase(c.id_);
  if (int e = with_backend([&](auto& b) { return b.release(c); })) report(errno_code(e), operation::close);
  unlink(c);
  drop_queue(c);
  if (c.announced_) {
    c.announced_ = false;
    counters_.count_close(c.close_reason_);
    if constexpr (has_on_disconnected<handler_type, connection_type>) {
      ++c.callback_depth_;
      try {
        handler().on_disconnected(c, c.close_reason_);
      } catch (...) {
        report(make_error_code(errc::handler_exception), operation::handler);
      }
      --c.callback_depth_;
    }
  }
  destroy(c);
  // A descriptor was freed: an accept waiting out EMFILE may succeed now.
  if (deadlines_.contains(backoff_deadline_))
    deadlines_.update(backoff_deadline_, 0); // queued: no allocation
}

template <class Server>
inline void event_loop<Server>::destroy(connection_type& c, bool report_close) noexcept {
  if (c.fd != invalid_socket) {
    if (report_close)
      close_reported(c.fd);
    else
      (void)close_socket(c.fd);
    c.fd = invalid_socket;
  }
  if (c.prev_ || c.next_ || live_ == &c) unlink(c);
  if (deadlines_.contains(c.deadline_)) deadlines_.remove(c.deadline_);
  drop_queue(c);
  free_held(std::exchange(c.held_, nullptr));
  if (c.receive_buffer) allocator_.deallocate(c.receive_buffer, options_.receive_buffer_size);
  c.~connection_type();
  allocator_.deallocate(&c, sizeof(connection_type));
}

template <class Server>
inline void event_loop<Server>::link(connection_type& c) noexcept {
  c.prev_ = nullptr;
  c.next_ = live_;
  if (live_) live_->prev_ = &c;
  live_ = &c;
  ++live_count_;
}

template <class Server>
inline void event_loop<Server>::unlink(connection_type& c) noexcept {
  IOCP_ASSERT(live_count_ > 0 && (c.prev_ || live_ == &c));
  if (c.prev_)
    c.prev_->next_ = c.next_;
  else if (live_ == &c)
    live_ = c.next_;
  if (c.next_) c.next_->prev_ = c.prev_;
  c.prev_ = c.next_ = nullptr;
  --live_count_;
}

template <class Server>
inline std::error_code event_loop<Server>::out_of_memory(connection_type& c, operation where) {
  const std::error_code e = make_error_code(std::errc::not_enough_memory);
  if (!is_closing(c.close_)) c.report_owed_ = static_cast<std::uint8_t>(static_cast<int>(where) + 1);
  begin_close(c, e, true);
  return e;
}

} // namespace iocp::detail
