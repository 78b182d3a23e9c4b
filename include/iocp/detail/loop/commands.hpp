// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Part of the event loop (detail/event_loop.hpp, which declares these members and includes this
// file at its end). The command inbox's two ends: what other threads post (sends, calls by id, functions,
// timers, sockets to adopt, the stop request) and how the loop carries it out, in order, when
// its wake-up completes (wake_completed). Graceful stop begins here too (begin_stop).

namespace iocp::detail {

template <class Server>
inline std::error_code event_loop<Server>::post_send(connection_id id, std::span<const std::byte> data) {
  return post(command_kind::send, id, 0, data.size(), true,
              [&](std::byte* to) noexcept { std::memcpy(to, data.data(), data.size()); });
}

template <class Server>
inline std::error_code event_loop<Server>::post_vector(connection_id id, std::vector<std::byte>&& data,
                                                       std::size_t reserved) {
  return post(command_kind::send_vector, id, 0, sizeof(posted_vector), true, [&](std::byte* to) noexcept {
    ::new (to) posted_vector{std::move(data), reserved};
  });
}

template <class Server>
inline std::error_code event_loop<Server>::post_call(command_kind what, connection_id id, shutdown_type how) {
  return post(what, id, static_cast<std::uint8_t>(how), 0, false, [](std::byte*) noexcept {});
}

template <class Server>
inline std::error_code event_loop<Server>::post_adopt(socket_handle s, const endpoint& remote) {
  return post(command_kind::adopt, connection_id{}, 0, sizeof(adopted_socket), false,
              [&](std::byte* to) noexcept {
                ::new (to) adopted_socket{s, remote};
              });
}

template <class Server>
template <class Call, class F>
inline std::error_code event_loop<Server>::post_function(command_kind what, connection_id id, F&& f) {
  using stored = std::decay_t<F>;
  return post(what, id, 0, posted_function::size_for<stored>(), true,
              [&](std::byte* to) noexcept { posted_function::construct<F, Call>(to, std::forward<F>(f)); });
}

template <class Server>
inline std::error_code event_loop<Server>::post_timer(connection_id id, timer_id t, std::int64_t due_ns,
                                                      std::int64_t period_ns) {
  return post(command_kind::arm_timer, id, 0, sizeof(posted_timer), false, [&](std::byte* to) noexcept {
    ::new (to) posted_timer{t.sequence(), due_ns, period_ns};
  });
}

template <class Server>
inline std::error_code event_loop<Server>::post_cancel_timer(timer_id t) {
  return post(command_kind::cancel_timer, connection_id{}, 0, sizeof(posted_timer), false,
              [&](std::byte* to) noexcept {
                ::new (to) posted_timer{t.sequence(), 0, 0};
              });
}

template <class Server>
inline timer_id event_loop<Server>::new_timer_id() noexcept {
  return {index_, timer_sequence_.fetch_add(1, std::memory_order_relaxed)};
}

template <class Server>
inline void event_loop<Server>::request_stop(std::int64_t deadline_ns) noexcept {
  std::int64_t current = stop_deadline_asked_.load(std::memory_order_relaxed);
  while (deadline_ns < current &&
         !stop_deadline_asked_.compare_exchange_weak(current, deadline_ns, std::memory_order_relaxed)) {}
  stop_asked_.store(true, std::memory_order_release);
  with_backend([](auto& b) { b.wake(); });
}

template <class Server>
inline void event_loop<Server>::wake_completed() {
  const bool stop = stop_asked_.load(std::memory_order_acquire);
  // Consecutive records for one connection (a burst of sends) look it up once: no connection is
  // freed while the inbox is drained (that waits for the deferred round).
  connection_id last_id;
  connection_type* last = nullptr;
  inbox_.drain(budget_, [&](command_record& r) {
    switch (r.what) {
    case command_kind::adopt: adopt(*std::launder(reinterpret_cast<adopted_socket*>(r.payload()))); return;
    case command_kind::run: run_posted(r, nullptr); return;
    case command_kind::cancel_timer:
      timers_.cancel(std::launder(reinterpret_cast<posted_timer*>(r.payload()))->sequence);
      return;
    case command_kind::arm_timer:
      if (!r.id) {
        if (!stopping_) arm_posted_timer(r, nullptr, server_timers_);
        return;
      }
      break;
    default: break;
    }
    if (r.id != last_id) {
      last_id = r.id;
      last = find(r.id);
    }
    if (last && !(r.what == command_kind::call && is_closing(last->close_)))
      execute(*last, r);
    else if (r.what == command_kind::call)
      run_posted(r, nullptr); // the function learns that its connection has gone
    else
      discard(r); // closed since the call was posted: an ordinary race, nothing to do
  });
  if (stop) begin_stop(stop_deadline_asked_.load(std::memory_order_relaxed));
}

template <class Server>
inline std::size_t event_loop<Server>::inbox_limit(const server_options& options,
                                                   std::size_t threads) noexcept {
  return (std::max)(options.max_send_queue_total / 32 / (std::max)(threads, std::size_t{1}),
                    std::size_t{4} << 20);
}

template <class Server>
template <class Fill>
inline std::error_code event_loop<Server>::post(command_kind what, connection_id id, std::uint8_t how,
                                                std::size_t payload, bool is_send, Fill&& fill) {
  bool wake = false;
  std::error_code e;
  try {
    e = inbox_.push(what, id, how, payload, is_send, fill, wake);
  } catch (const std::system_error& failure) { // the inbox's mutex could not be locked
    return failure.code();
  }
  if (wake) with_backend([](auto& b) { b.wake(); });
  return e;
}

template <class Server>
inline typename event_loop<Server>::connection_type* event_loop<Server>::find(connection_id id) {
  std::optional<connection_entry> entry = map().find(id);
  if (!entry || entry->owner != index_) return nullptr;
  return static_cast<connection_type*>(entry->object);
}

template <class Server>
inline void event_loop<Server>::execute(connection_type& c, command_record& r) {
  switch (r.what) {
  case command_kind::send: posted_send(c, std::span<const std::byte>(r.payload(), r.payload_size)); break;
  case command_kind::send_vector: {
    // Its memory was reserved from the shared budget when it was posted: this thread's share
    // takes the reservation over, the queue admits the vector from it, settle() gives back the rest.
    auto& posted = *std::launder(reinterpret_cast<posted_vector*>(r.payload()));
    budget_.adopt(std::exchange(posted.reserved, 0));
    posted_send(c, std::move(posted.data));
    posted.~posted_vector();
    budget_.settle();
    break;
  }
  case command_kind::shutdown: shutdown(c, static_cast<shutdown_type>(r.how)); break;
  case command_kind::disconnect: disconnect(c); break;
  case command_kind::abort: abort(c, make_error_code(std::errc::connection_aborted)); break;
  case command_kind::pause: pause_receiving(c); break;
  case command_kind::resume: resume_receiving(c); break;
  case command_kind::call: invoke(c, [&] { run_posted(r, &c, false); }); break;
  case command_kind::arm_timer:
    if (!is_closing(c.close_)) arm_posted_timer(r, &c, c.timers_);
    break;
  case command_kind::adopt:
  case command_kind::run:
  case command_kind::cancel_timer: break; // not a connection's
  }
}

template <class Server>
inline void event_loop<Server>::run_posted(command_record& r, connection_type* c, bool handled) {
  auto& f = *std::launder(reinterpret_cast<posted_function*>(r.payload()));
  if (!handled) return f.invoke(&f, c, true);
  try {
    f.invoke(&f, c, true);
  } catch (...) {
    report(make_error_code(errc::handler_exception), operation::handler);
  }
}

template <class Server>
inline void event_loop<Server>::arm_posted_timer(command_record& r, connection_type* c,
                                                 timer_node*& list) noexcept {
  const auto& p = *std::launder(reinterpret_cast<posted_timer*>(r.payload()));
  std::error_code ec;
  (void)arm_timer(timer_id(index_, p.sequence), p.due_ns, p.period_ns, c, list, ec);
  if (ec) report(ec, operation::timer); // nobody is left to see the failure
}

template <class Server>
inline void event_loop<Server>::discard(command_record& r) noexcept {
  if (r.what == command_kind::send_vector) {
    auto& posted = *std::launder(reinterpret_cast<posted_vector*>(r.payload()));
    budget_.adopt(std::exchange(posted.reserved, 0));
    posted.~posted_vector();
  } else if (r.what == command_kind::adopt) {
    (void)close_socket(std::launder(reinterpret_cast<adopted_socket*>(r.payload()))->socket);
  } else if (r.what == command_kind::call || r.what == command_kind::run) {
    auto& f = *std::launder(reinterpret_cast<posted_function*>(r.payload()));
    try {
      f.invoke(&f, nullptr, false); // destroyed, not run: the server stopped first
    } catch (...) {}
  }
}

template <class Server>
inline void event_loop<Server>::begin_stop(std::int64_t deadline_ns) {
  if (stopping_) {
    if (deadline_ns < stop_deadline_ns_) { // the earliest deadline asked for applies
      stop_deadline_ns_ = deadline_ns;
      arm_stop_deadline();
    }
    return;
  }
  stopping_ = true;
  stop_deadline_ns_ = deadline_ns;
  timers_.cancel_all(server_timers_);
  arm_stop_deadline();
  for (accept_context& ctx : accepts_)
    if (ctx.pending) with_backend([&](auto& b) { b.cancel_accept(ctx); });
  backed_off_.clear();
  if (deadlines_.contains(backoff_deadline_)) deadlines_.remove(backoff_deadline_);
  // disconnect() frees nothing and runs no callback, so the list stays as it is meanwhile.
  for (connection_type* c = live_; c; c = c->next_)
    disconnect(*c);
}

} // namespace iocp::detail
