// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The bytes a connection has queued but the kernel has not yet taken. Copied sends are coalesced
// into blocks from the Allocator policy, so many small messages become one send operation; so are
// small moved std::vectors (copied, up to `copy_limit`), while a larger one is queued as it is,
// without a copy. Appending to the block a send is in flight from is safe: the kernel only reads
// the range it was given, and the block never moves.
//
// The memory a queue holds (blocks at the size their allocation really takes, moved vectors at
// their capacity, and the nodes that hold them; not lent receive buffers, which belong to the
// backend's fixed ring) is counted against a Budget (local_send_budget): an append that the budget
// refuses returns false and queues nothing. An allocation that throws queues nothing either, and
// the exception goes to the caller.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <utility>
#include <vector>

#include "iocp/allocator.hpp"
#include "iocp/detail/inline.hpp"

namespace iocp::detail {

/// What a queued block or moved vector costs beyond its payload, at most: its node, and rounding up
/// to a pool class. Posted sends reserve it ahead (command_inbox, basic_iocp_server).
inline constexpr std::size_t send_block_overhead = 256;
/// A moved vector up to this size is copied into the coalescing blocks (and freed): many small
/// ones then go out in one send operation, as copied sends do.
inline constexpr std::size_t send_vector_copy_limit = 4096;

template <class Allocator, class Budget>
class send_queue {
public:
  /// Payload of a copy block opened while data is already queued: a backlog coalesces into blocks
  /// this large. A larger message gets a block of its own size.
  static constexpr std::size_t block_payload = 16 * 1024 - 64;
  /// Into an empty queue (the usual case: the last send went out), a block just fits the message,
  /// rounded up to a pool class, so a request-response connection never holds 16 KiB.
  static constexpr std::size_t small_block = 256;
  static constexpr std::size_t block_overhead = send_block_overhead;
  static_assert(block_overhead >= small_block);
  static constexpr std::size_t copy_limit = send_vector_copy_limit;

  send_queue() = default;
  send_queue(const send_queue&) = delete;
  send_queue& operator=(const send_queue&) = delete;

  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t bytes() const noexcept { return bytes_; }

  [[nodiscard]] bool append(Allocator& alloc, Budget& budget, std::span<const std::byte> data) {
    if (data.empty()) return true;
    if (tail_ && !tail_->owned && !tail_->borrowed && tail_->capacity - tail_->size >= data.size()) {
      std::memcpy(tail_->data + tail_->size, data.data(), data.size());
      tail_->size += data.size();
    } else {
      std::size_t capacity;
      if (bytes_ == 0) {
        capacity = std::bit_ceil(std::max(small_block, sizeof(node) + data.size())) - sizeof(node);
        if (capacity > block_payload) capacity = std::max(block_payload, data.size());
      } else {
        capacity = std::max(block_payload, data.size());
      }
      // The whole allocation is used, and counted: a pool rounds a size up to its class.
      capacity = allocation_size(alloc, sizeof(node) + capacity) - sizeof(node);
      if (!budget.admit(sizeof(node) + capacity)) return false;
      void* memory = alloc.allocate(sizeof(node) + capacity);
      budget.add(sizeof(node) + capacity);
      node* n = ::new (memory) node{};
      n->data = reinterpret_cast<std::byte*>(n + 1);
      n->capacity = capacity;
      n->size = data.size();
      std::memcpy(n->data, data.data(), data.size());
      link(n);
    }
    bytes_ += data.size();
    return true;
  }

  [[nodiscard]] bool append(Allocator& alloc, Budget& budget, std::vector<std::byte>&& buffer) {
    if (buffer.empty()) return true;
    if (buffer.size() <= copy_limit) return append(alloc, budget, std::span<const std::byte>(buffer));
    const std::size_t cost = owned_cost(alloc, buffer);
    if (!budget.admit(cost)) return false;
    void* memory = alloc.allocate(sizeof(owned_node));
    budget.add(cost);
    owned_node* n = ::new (memory) owned_node{};
    n->buffer = std::move(buffer);
    n->owned = true;
    n->data = n->buffer.data();
    n->size = n->buffer.size();
    n->capacity = cost; // what release() gives back to the budget
    bytes_ += n->size;
    link(n);
    return true;
  }

  /// What a moved vector holds while queued: its node and its capacity.
  static std::size_t owned_cost(const Allocator& alloc, const std::vector<std::byte>& buffer) noexcept {
    return allocation_size(alloc, sizeof(owned_node)) + buffer.capacity();
  }

  /// The echo's case: into an empty queue, bytes of receive buffer `id`, already lent, held by the
  /// queue's own node (nothing is allocated). See append_borrowed.
  IOCP_ALWAYS_INLINE void append_lent_to_empty(std::span<const std::byte> data, std::uint16_t id) noexcept {
    node* n = ::new (&inline_node_) node{};
    n->data = const_cast<std::byte*>(data.data());
    n->capacity = n->size = data.size();
    n->borrowed = true;
    n->buffer_id = id;
    bytes_ = n->size;
    head_ = tail_ = n;
  }

  /// Queues bytes that stay where they are, in a receive buffer lent by the backend: `lend(id)`
  /// lends it (false: it would not, and nothing is queued). `give_back` (see consume and clear)
  /// returns buffer `id` once the bytes are sent or dropped. The node is allocated before the buffer
  /// is lent, so an allocation that throws leaves the buffer with the backend.
  template <class Lend>
  bool append_borrowed(Allocator& alloc, std::span<const std::byte> data, Lend&& lend) {
    // The echo case (an empty queue, one borrowed buffer) uses the queue's own node: no allocation.
    node* n = head_ ? new_node(alloc) : ::new (&inline_node_) node{};
    std::uint16_t id;
    if (!lend(id)) {
      if (n != &inline_node_) {
        n->~node();
        alloc.deallocate(n, sizeof(node));
      }
      return false;
    }
    n->data = const_cast<std::byte*>(data.data());
    n->capacity = n->size = data.size();
    n->borrowed = true;
    n->buffer_id = id;
    bytes_ += n->size;
    link(n);
    return true;
  }

  /// The unsent bytes of the first block: what the next send operation should carry.
  std::span<const std::byte> front() const noexcept {
    return {head_->data + head_->offset, head_->size - head_->offset};
  }

  /// The kernel took `n` bytes from the front. `give_back(id)` returns a lent buffer.
  template <class GiveBack>
  void consume(Allocator& alloc, Budget& budget, std::size_t n, GiveBack&& give_back) noexcept {
    bytes_ -= n;
    head_->offset += n;
    if (head_->offset == head_->size) {
      node* done = head_;
      head_ = done->next;
      if (!head_) tail_ = nullptr;
      release(alloc, budget, done, give_back);
    }
  }

  template <class GiveBack>
  void clear(Allocator& alloc, Budget& budget, GiveBack&& give_back) noexcept {
    while (head_) {
      node* next = head_->next;
      release(alloc, budget, head_, give_back);
      head_ = next;
    }
    tail_ = nullptr;
    bytes_ = 0;
  }

private:
  struct node {
    node* next = nullptr;
    std::byte* data = nullptr;
    std::size_t capacity = 0;
    std::size_t size = 0;
    std::size_t offset = 0;
    bool owned = false;    // an owned_node: a moved std::vector (capacity: what it costs the budget)
    bool borrowed = false; // a lent receive buffer: nothing to free, buffer_id to give back
    std::uint16_t buffer_id = 0;
  };
  struct owned_node : node {
    std::vector<std::byte> buffer;
  };
  static_assert(sizeof(owned_node) <= block_overhead, "a moved buffer's block costs at most block_overhead");

  // Out of line: the echo path inlines append_borrowed, and this is its rare case.
  IOCP_NOINLINE static node* new_node(Allocator& alloc) {
    return ::new (alloc.allocate(sizeof(node))) node{};
  }

  void link(node* n) noexcept {
    if (tail_)
      tail_->next = n;
    else
      head_ = n;
    tail_ = n;
  }
  template <class GiveBack>
  void release(Allocator& alloc, Budget& budget, node* n, GiveBack& give_back) noexcept {
    if (n->borrowed) {
      give_back(n->buffer_id);
      n->~node();
      if (n != &inline_node_) alloc.deallocate(n, sizeof(node));
    } else if (n->owned) {
      auto* o = static_cast<owned_node*>(n);
      budget.remove(o->capacity);
      o->~owned_node();
      alloc.deallocate(o, sizeof(owned_node));
    } else {
      std::size_t total = sizeof(node) + n->capacity;
      budget.remove(total);
      n->~node();
      alloc.deallocate(n, total);
    }
  }

  node* head_ = nullptr;
  node* tail_ = nullptr;
  std::size_t bytes_ = 0;
  // Holds a borrowed buffer appended to an empty queue. Only the head can be this node: it is used
  // only while the queue is empty, and it is unlinked when consumed or cleared.
  node inline_node_;
};

} // namespace iocp::detail
