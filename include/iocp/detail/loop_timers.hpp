// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The deadlines of one I/O thread, and the user's timers among them.
//
// Every deadline the loop keeps is a deadline_node in one deadline_queue: the user's timers, each
// connection's own (its idle check and its graceful close's linger period, one node for both), the
// accept back-off and the stop deadline. The loop fires what is due by kind (event_loop's
// fire_deadlines); nothing else walks the connections on a clock.
//
// The user's timers (loop_timers): each is a timer_node kept in a hash table under its sequence
// (so that a cancel by id, which may come from any thread, finds it), queued in the thread's
// deadline queue, and listed with its owner (a connection's timers are cancelled when it closes;
// the server-wide ones when the server stops). Only the owning thread touches any of it.
//
// A timer that is firing is out of the queue; a cancel meanwhile (from its own callback, or the
// close of its connection) only marks it, and fire() frees it when the callback has returned.
// A periodic timer is due again at its first multiple of the period after the callback returned:
// no drift (the period counts from the first due time, not from when the callback ran) and no
// burst after a stall (missed periods are skipped, not fired back to back).
//
// Memory: a node of 72 bytes, its hash-table entry (a heap allocation of the node and its key
// with the table's link: 96 bytes with glibc's malloc, plus a bucket pointer) and 16 bytes in
// the deadline queue: about 120 bytes per armed timer (test/bench/timers.cpp measures it).

#include <cstdint>
#include <unordered_map>

#include "iocp/detail/clock.hpp"
#include "iocp/detail/deadline_queue.hpp"

namespace iocp::detail {

enum class deadline_kind : std::uint8_t {
  user_timer,     // a timer_node
  connection,     // a connection's idle check and linger period; owner: the connection
  accept_backoff, // accepts waiting out a resource error
  stop,           // the graceful stop's deadline
};

struct deadline_node {
  std::int64_t due_ns = never_ns;
  std::uint64_t order = 0; // the deadline queue's tie-break: arming order for the user's timers
  std::uint32_t heap_index = deadline_queue<deadline_node>::not_queued;
  deadline_kind kind = deadline_kind::user_timer;
  void* owner = nullptr; // a connection (user_timer: nullptr for a server-wide timer)
};

using loop_deadlines = deadline_queue<deadline_node>;

struct timer_node : deadline_node {
  std::int64_t period_ns = 0; // 0: one-shot
  timer_node* next = nullptr; // the owner's list
  timer_node** pprev = nullptr;
  bool firing = false;
  bool cancelled = false; // while firing: free it when the callback returns
};

class loop_timers {
public:
  explicit loop_timers(loop_deadlines& queue) noexcept : queue_(queue) {}
  loop_timers(const loop_timers&) = delete;
  loop_timers& operator=(const loop_timers&) = delete;

  /// Timers armed (queued or firing).
  std::size_t size() const noexcept { return nodes_.size(); }
  bool empty() const noexcept { return nodes_.empty(); }

  /// Arms the timer `sequence`, listed on `list` (its owner's). Throws std::bad_alloc (nothing
  /// armed then). A sequence already armed is left as it is (ids are never given out twice).
  void arm(std::uint64_t sequence, std::int64_t due_ns, std::int64_t period_ns, void* owner,
           timer_node*& list) {
    auto [it, inserted] = nodes_.try_emplace(sequence);
    if (!inserted) return;
    timer_node& n = it->second;
    n.due_ns = due_ns;
    n.order = sequence;
    n.kind = deadline_kind::user_timer;
    n.owner = owner;
    n.period_ns = period_ns > 0 ? period_ns : 0;
    try {
      queue_.push(n);
    } catch (...) {
      nodes_.erase(it);
      throw;
    }
    n.next = list;
    if (list) list->pprev = &n.next;
    n.pprev = &list;
    list = &n;
  }

  /// Cancels the timer `sequence` if it is armed (or firing); does nothing otherwise.
  void cancel(std::uint64_t sequence) noexcept {
    auto it = nodes_.find(sequence);
    if (it != nodes_.end()) cancel(it->second);
  }

  /// Cancels every timer on `list` (a connection that closes, the server-wide ones at stop).
  void cancel_all(timer_node*& list) noexcept {
    while (list)
      cancel(*list);
  }

  /// Fires `n`, just taken out of the queue: fire(timer_node&) runs its callback (which may arm
  /// and cancel timers, this one included); then a periodic timer is queued again, the rest freed.
  /// `clock()`: the time now. Returns false if a periodic timer could not be queued again for
  /// lack of memory (it is cancelled; the loop reports it).
  template <class Fire, class Clock>
  bool fire(timer_node& n, Fire&& fire, Clock&& clock) {
    n.firing = true;
    fire(n);
    n.firing = false;
    if (n.cancelled || n.period_ns == 0) {
      unlink(n);
      nodes_.erase(n.order); // n is gone
      return true;
    }
    // Due again at the first multiple of the period after the callback returned (a callback
    // that took several periods must not be followed by a burst of the ones it missed).
    const std::int64_t late = clock() - n.due_ns;
    const std::int64_t periods = late < 0 ? 1 : late / n.period_ns + 1;
    n.due_ns = periods > (never_ns - n.due_ns) / n.period_ns ? never_ns : n.due_ns + periods * n.period_ns;
    try {
      queue_.push(n);
    } catch (...) { // no memory to queue it again (the vector grows only if others were armed)
      unlink(n);
      nodes_.erase(n.order);
      return false;
    }
    return true;
  }

  /// Fires every timer due by `now`, for a queue that holds only user timers (the loop has its
  /// own dispatch by kind). Returns how many periodic timers were lost for lack of memory.
  template <class Fire, class Clock>
  unsigned expire(std::int64_t now, Fire&& fire_one, Clock&& clock) {
    unsigned lost = 0;
    while (!queue_.empty() && queue_.top_due() <= now)
      if (!fire(static_cast<timer_node&>(queue_.pop()), fire_one, clock)) ++lost;
    return lost;
  }

  /// After a mass cancel or expiry: gives the table's memory back once it is empty.
  void trim() {
    if (nodes_.empty() && nodes_.bucket_count() > 1024) nodes_ = {};
  }

private:
  void cancel(timer_node& n) noexcept {
    unlink(n);
    if (n.firing) {
      n.cancelled = true; // fire() frees it
      return;
    }
    if (queue_.contains(n)) queue_.remove(n);
    nodes_.erase(n.order);
  }

  static void unlink(timer_node& n) noexcept {
    if (!n.pprev) return;
    *n.pprev = n.next;
    if (n.next) n.next->pprev = n.pprev;
    n.next = nullptr;
    n.pprev = nullptr;
  }

  loop_deadlines& queue_;
  std::unordered_map<std::uint64_t, timer_node> nodes_;
};

} // namespace iocp::detail
