// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The user's timers of one I/O thread: each is a node kept in a hash table under its sequence
// (so that a cancel by id, which may come from any thread, finds it), queued in the thread's
// deadline_queue, and listed with its owner (a connection's timers are cancelled when it closes;
// the server-wide ones when the server stops). Only the owning thread touches any of it.
//
// A timer that is firing is out of the queue; a cancel meanwhile (from its own callback, or the
// close of its connection) only marks it, and expire() frees it when the callback has returned.
// A periodic timer is due again at its first multiple of the period after now: no drift (the
// period counts from the first due time, not from when the callback ran) and no burst after a
// stall (missed periods are skipped, not fired back to back).
//
// Memory: a node of 64 bytes, its hash-table entry (a heap allocation of the node and its key
// with the table's link: 80 bytes with glibc's malloc, plus a bucket pointer) and 16 bytes in
// the deadline queue: about 100-110 bytes per armed timer (test/bench/timers.cpp measures it).

#include <cstdint>
#include <unordered_map>

#include "iocp/detail/clock.hpp"
#include "iocp/detail/deadline_queue.hpp"

namespace iocp::detail {

struct timer_node {
  std::int64_t due_ns = 0;
  std::uint64_t order = 0;    // the timer's sequence: arming order, the deadline queue's tie-break
  std::int64_t period_ns = 0; // 0: one-shot
  void* owner = nullptr;      // the connection, or nullptr for a server-wide timer
  timer_node* next = nullptr; // the owner's list
  timer_node** pprev = nullptr;
  std::uint32_t heap_index = deadline_queue<timer_node>::not_queued;
  bool firing = false;
  bool cancelled = false; // while firing: free it when the callback returns
};

class loop_timers {
public:
  bool empty() const noexcept { return queue_.empty(); }
  std::size_t size() const noexcept { return nodes_.size(); }
  /// The earliest due time; never_ns when nothing is armed.
  std::int64_t next_due() const noexcept { return queue_.empty() ? never_ns : queue_.top_due(); }

  /// Arms the timer `sequence`, listed on `list` (its owner's). Throws std::bad_alloc (nothing
  /// armed then). A sequence already armed is left as it is (ids are never given out twice).
  void arm(std::uint64_t sequence, std::int64_t due_ns, std::int64_t period_ns, void* owner,
           timer_node*& list) {
    auto [it, inserted] = nodes_.try_emplace(sequence);
    if (!inserted) return;
    timer_node& n = it->second;
    n.due_ns = due_ns;
    n.order = sequence;
    n.period_ns = period_ns > 0 ? period_ns : 0;
    n.owner = owner;
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

  /// Fires every timer due by `now`: fire(timer_node&) runs its callback (which may arm and cancel
  /// timers, this one included). Timers armed meanwhile are due after `now` unless their delay was
  /// zero: those fire in this pass too, after the ones before them. Returns how many periodic
  /// timers could not be queued again for lack of memory (they are cancelled; the loop reports it).
  /// `clock()`: the time now (read after each periodic callback).
  template <class Fire, class Clock>
  unsigned expire(std::int64_t now, Fire&& fire, Clock&& clock) {
    unsigned lost = 0;
    while (!queue_.empty() && queue_.top_due() <= now) {
      timer_node& n = queue_.pop();
      n.firing = true;
      fire(n);
      n.firing = false;
      if (n.cancelled || n.period_ns == 0) {
        unlink(n);
        nodes_.erase(n.order); // n is gone
        continue;
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
        ++lost;
      }
    }
    if (queue_.empty() && nodes_.empty() && nodes_.bucket_count() > 1024) {
      // A million timers came and went: give their table back.
      nodes_ = {};
      queue_.shrink();
    }
    return lost;
  }

private:
  void cancel(timer_node& n) noexcept {
    unlink(n);
    if (n.firing) {
      n.cancelled = true; // expire() frees it
      return;
    }
    if (n.heap_index != deadline_queue<timer_node>::not_queued) queue_.remove(n);
    nodes_.erase(n.order);
  }

  static void unlink(timer_node& n) noexcept {
    if (!n.pprev) return;
    *n.pprev = n.next;
    if (n.next) n.next->pprev = n.pprev;
    n.next = nullptr;
    n.pprev = nullptr;
  }

  std::unordered_map<std::uint64_t, timer_node> nodes_;
  deadline_queue<timer_node> queue_;
};

} // namespace iocp::detail
