// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Part of the event loop (detail/event_loop.hpp, which declares these members and includes this
// file at its end). Handler invocation: every callback runs through invoke(), which counts the depth (no
// connection is freed under its own callback), applies the exception policy and afterwards does
// what the callback left owed; and the deferred round, for work owed outside any callback.

namespace iocp::detail {

template <class Server>
inline void event_loop<Server>::backend_failed(std::error_code e) {
  report(e, operation::submit);
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

template <class Server>
inline void event_loop<Server>::defer(connection_type& c) noexcept {
  if (c.deferred_) return;
  c.deferred_ = true;
  c.deferred_next_ = nullptr;
  if (deferred_tail_)
    deferred_tail_->deferred_next_ = &c;
  else
    deferred_head_ = &c;
  deferred_tail_ = &c;
}

template <class Server>
inline void event_loop<Server>::run_deferred() {
  connection_type* next = std::exchange(deferred_head_, nullptr);
  deferred_tail_ = nullptr;
  while (next) {
    connection_type& c = *next;
    next = std::exchange(c.deferred_next_, nullptr);
    c.deferred_ = false;
    if (std::exchange(c.held_delivery_owed_, false)) deliver_held(c);
    if (c.after_callback_ & connection_type::flush_owed) { // sends posted from other threads
      c.after_callback_ &= static_cast<std::uint8_t>(~connection_type::flush_owed);
      flush(c);
    }
    if (c.after_callback_ & connection_type::high_water_owed) deliver_high_water(c);
    if (std::uint8_t owed = std::exchange(c.report_owed_, 0))
      report(c.close_reason_, static_cast<operation>(owed - 1));
    maybe_finalize(c);
  }
}

template <class Server>
template <class Backend, class F>
void event_loop<Server>::invoke(Backend& backend, connection_type& c, F&& f) {
  call_handler(c, f);
  if (c.after_callback_) {
    if (c.after_callback_ == connection_type::flush_owed) {
      c.after_callback_ = 0;
      flush(backend, c);
    } else {
      after_callback(c);
    }
  }
}

template <class Server>
void event_loop<Server>::after_callback(connection_type& c) {
  if (c.after_callback_ & connection_type::flush_owed) {
    c.after_callback_ &= static_cast<std::uint8_t>(~connection_type::flush_owed);
    flush(c);
  }
  if (c.after_callback_ & connection_type::high_water_owed) deliver_high_water(c);
}

template <class Server>
template <class F>
inline void event_loop<Server>::invoke(connection_type& c, F&& f) {
  with_backend([&](auto& backend) { invoke(backend, c, f); });
}

template <class Server>
template <class F>
void event_loop<Server>::call_handler(connection_type& c, F& f) {
  IOCP_ASSERT(c.callback_depth_ < 255); // callbacks nest (a callback's call runs another) only a few deep
  ++c.callback_depth_;
  try {
    f();
  } catch (...) {
    report(make_error_code(errc::handler_exception), operation::handler);
    begin_close(c, make_error_code(errc::handler_exception), true);
  }
  --c.callback_depth_;
}

template <class Server>
inline void event_loop<Server>::report(std::error_code e, operation where) noexcept {
  if constexpr (has_on_server_error<handler_type>) {
    try {
      handler().on_server_error(e, where);
    } catch (...) {}
  }
}

} // namespace iocp::detail
