// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Part of the event loop (detail/event_loop.hpp, which declares these members and includes this
// file at its end). Everything timed, on one deadline queue (detail/loop_timers.hpp): the user's timers, each
// connection's linger and idle deadline, the accept back-off and stop()'s deadline; and the
// loop's wait, which lasts until the earliest of them.

namespace iocp::detail {

template <class Server>
inline timer_id event_loop<Server>::set_timer(connection_type& c, std::int64_t delay_ns,
                                              std::int64_t period_ns, std::error_code& ec) noexcept {
  if (is_closing(c.close_)) {
    ec = make_error_code(errc::connection_closing);
    return {};
  }
  return arm_timer(new_timer_id(), later_ns(monotonic_ns(), delay_ns), period_ns, &c, c.timers_, ec);
}

template <class Server>
inline timer_id event_loop<Server>::set_server_timer(std::int64_t delay_ns, std::int64_t period_ns,
                                                     std::error_code& ec) noexcept {
  if (stopping_) {
    ec = make_error_code(errc::server_stopping);
    return {};
  }
  return arm_timer(new_timer_id(), later_ns(monotonic_ns(), delay_ns), period_ns, nullptr, server_timers_,
                   ec);
}

template <class Server>
inline void event_loop<Server>::cancel_timer(timer_id t) noexcept {
  timers_.cancel(t.sequence());
}

template <class Server>
inline bool event_loop<Server>::schedule_connection(connection_type& c) noexcept {
  std::int64_t due = is_lingering(c.close_) ? c.linger_deadline_ns_ : never_ns;
  if (idle_timeout_ns_) due = (std::min)(due, c.idle_check_ns_);
  if (due == never_ns) {
    if (deadlines_.contains(c.deadline_)) deadlines_.remove(c.deadline_);
    return true;
  }
  if (deadlines_.contains(c.deadline_) && c.deadline_.due_ns == due) return true;
  return schedule(c.deadline_, due);
}

template <class Server>
inline bool event_loop<Server>::schedule(deadline_node& d, std::int64_t due) noexcept {
  try {
    deadlines_.update(d, due);
    return true;
  } catch (const std::bad_alloc&) {
    return false;
  }
}

template <class Server>
inline timer_id event_loop<Server>::arm_timer(timer_id t, std::int64_t due_ns, std::int64_t period_ns,
                                              connection_type* c, timer_node*& list,
                                              std::error_code& ec) noexcept {
  try {
    timers_.arm(t.sequence(), due_ns, period_ns, c, list);
  } catch (const std::bad_alloc&) {
    ec = make_error_code(std::errc::not_enough_memory);
    return {};
  }
  ec = {};
  return t;
}

template <class Server>
inline void event_loop<Server>::fire_user_timer(timer_node& n) {
  const bool requeued = timers_.fire(
      n,
      [&](timer_node& due) {
        const timer_id t(index_, due.order);
        if (due.owner) {
          if constexpr (has_on_timer<handler_type, connection_type>) {
            connection_type& c = *static_cast<connection_type*>(due.owner);
            invoke(c, [&] { handler().on_timer(c, t); });
          }
        } else if constexpr (has_on_server_timer<handler_type>) {
          try {
            handler().on_server_timer(t);
          } catch (...) {
            report(make_error_code(errc::handler_exception), operation::handler);
          }
        }
      },
      [] { return monotonic_ns(); });
  if (!requeued) report(make_error_code(std::errc::not_enough_memory), operation::timer);
}

template <class Server>
inline void event_loop<Server>::arm_stop_deadline() {
  if (stop_deadline_ns_ == never_ns) return;
  if (!schedule(stop_deadline_, stop_deadline_ns_)) stop_deadline_passed(); // no memory: reset now
}

template <class Server>
inline long long event_loop<Server>::next_timeout_ns() const noexcept {
  if (deferred_head_) return 0;
  if (deadlines_.empty()) return -1;
  const std::int64_t deadline = deadlines_.top_due();
  if (deadline == never_ns) return -1;
  return std::max<std::int64_t>(0, deadline - monotonic_ns());
}

template <class Server>
inline bool event_loop<Server>::timers_armed() const noexcept {
  return idle_timeout_ns_ || !deadlines_.empty();
}

template <class Server>
inline void event_loop<Server>::run_timers() {
  // The clock is read only when something is timed: a round of an echo costs no clock read.
  if (!idle_timeout_ns_ && deadlines_.empty()) return;
  const std::int64_t now = monotonic_ns();
  if (idle_timeout_ns_) note_round(now);
  while (!deadlines_.empty() && deadlines_.top_due() <= now) {
    deadline_node& d = deadlines_.pop();
    switch (d.kind) {
    case deadline_kind::user_timer: fire_user_timer(static_cast<timer_node&>(d)); break;
    case deadline_kind::connection: connection_deadline(*static_cast<connection_type*>(d.owner), now); break;
    case deadline_kind::accept_backoff: retry_accepts(); break;
    case deadline_kind::stop: stop_deadline_passed(); break;
    }
  }
  timers_.trim();
}

template <class Server>
inline void event_loop<Server>::connection_deadline(connection_type& c, std::int64_t now) {
  if (is_closing(c.close_)) return;
  if (is_lingering(c.close_) && c.linger_deadline_ns_ <= now) {
    // The period runs from the disconnect(), but a slow reader may still be taking the data.
    // While it makes progress, it gets another period; a reset now would throw that data away.
    // A peer that took nothing in a whole period is reset, with what is queued for it.
    const std::size_t pending = close_pending_bytes(c);
    if (pending >= c.linger_pending_) {
      abort(c, make_error_code(errc::linger_timeout));
      return;
    }
    c.linger_pending_ = pending;
    c.linger_deadline_ns_ = later_ns(now, linger_timeout_ns_);
  }
  if (idle_timeout_ns_ && c.idle_check_ns_ <= now) {
    // Judged by the round's clock (now_ns_), as activity is stamped: time this round's callbacks
    // took is not held against a connection whose data waits to be seen in the next one. Active
    // until the end of the round that stamped it, if that round was long (note_round).
    const std::int64_t idle_since = (std::max)(c.last_active_ns_, active_until(c.last_active_ns_));
    const std::int64_t limit = idle_limit_ns();
    if (now_ns_ - idle_since > limit) {
      abort(c, make_error_code(errc::idle_timeout));
      return;
    }
    // Not before the next round (whose clock is later): it is not due again in this one.
    c.idle_check_ns_ = limit == never_ns ? never_ns : (std::max)(later_ns(idle_since, limit + 1), now + 1);
  }
  if (!schedule_connection(c)) (void)out_of_memory(c, operation::close);
}

template <class Server>
inline void event_loop<Server>::stop_deadline_passed() {
  for (connection_type* c = live_; c; c = c->next_) // abort() frees nothing: see begin_close
    abort(*c, make_error_code(errc::stop_timeout));
}

template <class Server>
inline void event_loop<Server>::note_round(std::int64_t end_ns) noexcept {
  if (end_ns - now_ns_ <= idle_slack_ns() / 2) return;
  long_rounds_[long_round_next_++ % long_rounds_kept] = {now_ns_, end_ns};
}

template <class Server>
inline std::int64_t event_loop<Server>::active_until(std::int64_t stamp) const noexcept {
  for (const long_round& r : long_rounds_)
    if (r.start_ns == stamp) return r.end_ns;
  return stamp;
}

template <class Server>
inline std::int64_t event_loop<Server>::idle_slack_ns() const noexcept {
  return (std::max)(idle_timeout_ns_ / 10, std::int64_t{1'000'000});
}

template <class Server>
inline std::int64_t event_loop<Server>::idle_limit_ns() const noexcept {
  return later_ns(idle_timeout_ns_, idle_slack_ns());
}

} // namespace iocp::detail
