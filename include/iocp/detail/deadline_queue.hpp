// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The deadlines of one I/O thread, earliest first: a 4-ary min-heap of (due, node) pairs in one
// vector, each node knowing its place so that it can be removed from the middle.
//
// Why a heap, not a timer wheel: the loop needs the earliest deadline exactly (it is the wait's
// timeout), timers must never fire early and should fire within a millisecond of their time, and
// their delays range from microseconds to days. A wheel arms and cancels in O(1) but rounds every
// deadline to its tick, needs hierarchy (and cascading) for long delays, and must tick while
// anything is armed; a heap is exact, idle when nothing is due, and costs O(log n):
//   arm     O(log4 n) sift-up (a new deadline later than the rest, the common case, stops at once);
//   cancel  O(log4 n) (the last entry takes the hole and sifts either way);
//   expiry  O(log4 n) per timer that fires; peeking at the earliest is O(1).
// Four children per node halve the depth of a binary heap and keep a node's children in one
// cache line (4 x 16 bytes). Entries hold the due time beside the pointer, so sifting compares
// without touching the nodes; equal due times are ordered by the node's `order` (its arming
// sequence): timers due at the same time fire in the order they were armed.
//
// Node needs: std::int64_t due_ns; std::uint64_t order; std::uint32_t heap_index.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace iocp::detail {

template <class Node>
class deadline_queue {
public:
  static constexpr std::uint32_t not_queued = ~std::uint32_t{0};

  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  /// The earliest deadline's node; the queue must not be empty.
  Node* top() const noexcept { return heap_.front().node; }
  std::int64_t top_due() const noexcept { return heap_.front().due; }

  /// Queues `n` at n.due_ns. Throws std::bad_alloc (nothing changed then).
  void push(Node& n) {
    heap_.push_back({n.due_ns, &n});
    sift_up(heap_.size() - 1);
  }

  /// Takes `n` out (it must be queued).
  void remove(Node& n) noexcept {
    const std::size_t at = n.heap_index;
    n.heap_index = not_queued;
    const entry last = heap_.back();
    heap_.pop_back();
    if (at == heap_.size()) return; // it was the last entry
    heap_[at] = last;
    last.node->heap_index = static_cast<std::uint32_t>(at);
    if (at > 0 && before(last, heap_[parent(at)]))
      sift_up(at);
    else
      sift_down(at);
  }

  bool contains(const Node& n) const noexcept { return n.heap_index != not_queued; }

  /// Moves `n` (queued or not) to `due_ns`. Throws std::bad_alloc only if `n` was not queued and
  /// the vector must grow (see reserve).
  void update(Node& n, std::int64_t due_ns) {
    if (contains(n)) remove(n);
    n.due_ns = due_ns;
    push(n); // after a remove there is room: cannot throw
  }

  /// Room for `n` entries without allocating: pushes up to that size cannot throw.
  void reserve(std::size_t n) {
    if (heap_.capacity() < n) heap_.reserve((std::max)(n, heap_.capacity() * 2));
  }

  /// Takes out the earliest; the queue must not be empty.
  Node& pop() noexcept {
    Node& n = *heap_.front().node;
    remove(n);
    return n;
  }

  /// Gives back the vector's spare memory (after a mass cancel, for instance).
  void shrink() { heap_.shrink_to_fit(); }

private:
  struct entry {
    std::int64_t due;
    Node* node;
  };
  static constexpr std::size_t arity = 4;
  static std::size_t parent(std::size_t i) noexcept { return (i - 1) / arity; }

  static bool before(const entry& a, const entry& b) noexcept {
    return a.due < b.due || (a.due == b.due && a.node->order < b.node->order);
  }

  void sift_up(std::size_t i) noexcept {
    const entry moving = heap_[i];
    while (i > 0) {
      const std::size_t p = parent(i);
      if (!before(moving, heap_[p])) break;
      heap_[i] = heap_[p];
      heap_[i].node->heap_index = static_cast<std::uint32_t>(i);
      i = p;
    }
    heap_[i] = moving;
    moving.node->heap_index = static_cast<std::uint32_t>(i);
  }

  void sift_down(std::size_t i) noexcept {
    const entry moving = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      const std::size_t first = i * arity + 1;
      if (first >= n) break;
      const std::size_t end = first + arity < n ? first + arity : n;
      std::size_t best = first;
      for (std::size_t c = first + 1; c < end; ++c)
        if (before(heap_[c], heap_[best])) best = c;
      if (!before(heap_[best], moving)) break;
      heap_[i] = heap_[best];
      heap_[i].node->heap_index = static_cast<std::uint32_t>(i);
      i = best;
    }
    heap_[i] = moving;
    moving.node->heap_index = static_cast<std::uint32_t>(i);
  }

  std::vector<entry> heap_;
};

} // namespace iocp::detail
