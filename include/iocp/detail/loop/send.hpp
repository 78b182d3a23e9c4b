// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Part of the event loop (detail/event_loop.hpp, which declares these members and includes this
// file at its end). The send path: the lent zero-copy echo (try_send_lent), copying and moved sends into the
// queue, the water marks, the send completion and what follows it (on_sent, the next send or
// the FIN), and sends posted from other threads.

namespace iocp::detail {

template <class Server>
bool event_loop<Server>::try_send_lent(connection_type& c, std::span<const std::byte> data) noexcept {
#if defined(IOCP_HAS_IOCP)
  (void)c;
  (void)data;
  return false;
#else
  // (The backend lends at most lent_send_limit_ bytes.)
  if (!uring_ || !c.callback_depth_ || !c.queue_.empty() || send_side_shut(c.close_)) return false;
  std::uint16_t lent_buffer;
  if (!uring_->lend(data.data(), data.size(), lent_buffer)) return false;
  c.queue_.append_lent_to_empty(data, lent_buffer); // its own node: nothing is allocated
  c.after_callback_ |= connection_type::flush_owed; // started when the callback returns (invoke)
  return true;
#endif
}

template <class Server>
std::error_code event_loop<Server>::send(connection_type& c, std::span<const std::byte> data) {
  if (send_side_shut(c.close_)) return make_error_code(errc::connection_closing);
  if (data.empty()) return {}; // nothing to send: no operation, no on_sent
  if (data.size() > options_.max_send_queue_per_connection - c.queue_.bytes())
    return make_error_code(errc::send_queue_full);
  try {
    bool queued = with_backend([&](auto& backend) { return queue_send(backend, c, data); });
    return queued ? std::error_code{} : make_error_code(errc::send_queue_full);
  } catch (const std::bad_alloc&) {
    return out_of_memory(c, operation::send);
  }
}

template <class Server>
inline std::error_code event_loop<Server>::send(connection_type& c, std::vector<std::byte>&& data) {
  if (send_side_shut(c.close_)) return make_error_code(errc::connection_closing);
  if (data.empty()) return {};
  if (data.size() > options_.max_send_queue_per_connection - c.queue_.bytes())
    return make_error_code(errc::send_queue_full);
  try {
    if (!c.queue_.append(allocator_, budget_, std::move(data))) return make_error_code(errc::send_queue_full);
  } catch (const std::bad_alloc&) {
    return out_of_memory(c, operation::send);
  }
  queued(c);
  flush(c);
  return {};
}

template <class Server>
template <class Backend>
void event_loop<Server>::send_completed(Backend& backend, io_object& io, int result) {
  connection_type& c = static_cast<connection_type&>(io);
  if (is_closing(c.close_)) {
    maybe_finalize(c);
    return;
  }
  if (result >= 0) {
    loop_counters::add(counters_.bytes_sent, static_cast<std::uint64_t>(result));
    c.queue_.consume(allocator_, budget_, static_cast<std::size_t>(result), give_back(backend));
    after_sent(backend, c, static_cast<std::size_t>(result));
  } else {
    begin_close(c, errno_code(-result), false);
  }
  maybe_finalize(c);
}

template <class Server>
template <class Backend>
inline void event_loop<Server>::send_completed_at_once(Backend& backend, io_object& io, int bytes) {
  connection_type& c = static_cast<connection_type&>(io);
  if (!is_closing(c.close_)) after_sent(backend, c, static_cast<std::size_t>(bytes));
  maybe_finalize(c);
}

template <class Server>
template <class Backend>
inline bool event_loop<Server>::queue_send(Backend& backend, connection_type& c,
                                           std::span<const std::byte> data) {
  if constexpr (requires { backend.send_now(c, data.data(), data.size()); }) {
    if (c.queue_.empty() && !c.send_pending && !data.empty()) {
      // Whatever send_now leaves must be queued: make sure it may be before sending any of it.
      if (!budget_.admit(data.size() + c.queue_.block_overhead)) return false;
      int n = backend.send_now(c, data.data(), data.size());
      if (n < 0) {
        budget_.settle();
        begin_close(c, errno_code(-n), false); // reported through on_disconnected, like a
        return true;                           // send that fails later
      }
      loop_counters::add(counters_.bytes_sent, static_cast<std::uint64_t>(n));
      if (n > 0) c.last_active_ns_ = now_ns_; // progress, whether or not on_sent reports it
      if constexpr (has_on_sent<handler_type, connection_type>)
        if (n > 0) backend.report_sent_later(c, n);
      data = data.subspan(static_cast<std::size_t>(n));
      if (data.empty()) {
        budget_.settle(); // nothing queued: what was admitted for it is not held on to
        return true;
      }
    }
  }
  if constexpr (requires(std::uint16_t id) { backend.lend(data.data(), data.size(), id); }) {
    if (c.queue_.append_borrowed(allocator_, data, [&](std::uint16_t& id) noexcept {
          return backend.lend(data.data(), data.size(), id);
        })) {
      queued(c);
      flush(backend, c);
      return true;
    }
  }
  if (!c.queue_.append(allocator_, budget_, data)) return false;
  queued(c);
  flush(backend, c);
  return true;
}

template <class Server>
void event_loop<Server>::queued(connection_type& c) {
  if constexpr (has_on_send_queue_high<handler_type, connection_type> ||
                has_on_send_queue_low<handler_type, connection_type>) {
    if (!c.above_high_water_ && c.queue_.bytes() > options_.send_high_water_mark) [[unlikely]]
      crossed_high_water(c);
  }
}

template <class Server>
void event_loop<Server>::crossed_high_water(connection_type& c) {
  c.above_high_water_ = true;
  if constexpr (has_on_send_queue_high<handler_type, connection_type>) {
    c.after_callback_ |= connection_type::high_water_owed;
    if (!c.callback_depth_) defer(c);
  }
}

template <class Server>
inline void event_loop<Server>::deliver_high_water(connection_type& c) {
  c.after_callback_ &= static_cast<std::uint8_t>(~connection_type::high_water_owed);
  if (is_closing(c.close_) || !c.above_high_water_) return;
  if (c.queue_.bytes() <= options_.send_high_water_mark) {
    c.above_high_water_ = false;
    return;
  }
  if constexpr (has_on_send_queue_high<handler_type, connection_type>)
    invoke(c, [&] { handler().on_send_queue_high(c, c.queue_.bytes()); });
}

template <class Server>
inline void event_loop<Server>::drop_queue(connection_type& c) noexcept {
  c.queue_.clear(allocator_, budget_, give_back());
}

template <class Server>
template <class Backend>
inline void event_loop<Server>::after_sent(Backend& backend, connection_type& c, std::size_t bytes) {
  c.last_active_ns_ = now_ns_;
  if constexpr (has_on_sent<handler_type, connection_type>) invoke(c, [&] { handler().on_sent(c, bytes); });
  if constexpr (has_on_send_queue_high<handler_type, connection_type> ||
                has_on_send_queue_low<handler_type, connection_type>) {
    // Not while on_send_queue_high is still owed: deliver_high_water() decides then.
    if (c.above_high_water_ && c.queue_.bytes() <= options_.send_low_water_mark && !is_closing(c.close_) &&
        !(c.after_callback_ & connection_type::high_water_owed)) {
      c.above_high_water_ = false;
      if constexpr (has_on_send_queue_low<handler_type, connection_type>)
        invoke(c, [&] { handler().on_send_queue_low(c, c.queue_.bytes()); });
    }
  }
  flush(backend, c);
  check_finished(c);
}

template <class Server>
template <class Backend>
void event_loop<Server>::flush(Backend& backend, connection_type& c) {
  if (is_closing(c.close_) || c.send_pending) return;
  if (!c.queue_.empty()) {
    std::span<const std::byte> next = c.queue_.front();
    backend.start_send(c, next.data(), next.size());
  } else if (is_fin_owed(c.close_)) {
    send_fin(c);
  }
}

template <class Server>
void event_loop<Server>::flush(connection_type& c) {
  with_backend([&](auto& backend) { flush(backend, c); });
}

template <class Server>
template <class Data>
inline void event_loop<Server>::posted_send(connection_type& c, Data&& data) {
  if (send_side_shut(c.close_)) return;
  if (data.size() > options_.max_send_queue_per_connection - c.queue_.bytes()) {
    report(make_error_code(errc::send_queue_full), operation::send);
    return;
  }
  try {
    // Counted when it was posted: the cap does not refuse it now (see allow_over_limit).
    local_send_budget::allow_over_limit counted(budget_);
    if (!c.queue_.append(allocator_, budget_, std::forward<Data>(data))) {
      report(make_error_code(errc::send_queue_full), operation::send);
      return;
    }
  } catch (const std::bad_alloc&) {
    out_of_memory(c, operation::send);
    return;
  }
  queued(c);
  if (!c.send_pending) {
    c.after_callback_ |= connection_type::flush_owed;
    defer(c);
  }
}

} // namespace iocp::detail
