// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The bytes a connection has queued but the kernel has not yet taken. Copied sends are coalesced
// into blocks from the Allocator policy, so many small messages become one send operation; a moved
// std::vector is queued as it is, without a copy. Appending to the block a send is in flight from is
// safe: the kernel only reads the range it was given, and the block never moves.
//
// The memory a queue allocates (blocks and moved vectors, not lent receive buffers, which belong to
// the backend's fixed ring) is counted against a Budget (local_send_budget): an append that the
// budget refuses returns false and queues nothing.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <utility>
#include <vector>

#include "iocp/detail/inline.hpp"

namespace iocp::detail {

template <class Allocator, class Budget>
class send_queue {
public:
  /// Payload of a copy block opened while data is already queued: a backlog coalesces into blocks
  /// this large. A larger message gets a block of its own size.
  static constexpr std::size_t block_payload = 16 * 1024 - 64;
  /// Into an empty queue (the usual case: the last send went out), a block just fits the message,
  /// rounded up to a pool class, so a request-response connection never holds 16 KiB.
  static constexpr std::size_t small_block = 256;
  /// What a block costs beyond its payload, at most (its header, and rounding up to a pool class).
  static constexpr std::size_t block_overhead = small_block;

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
    if (!budget.admit(sizeof(owned_node) + buffer.size())) return false;
    void* memory = alloc.allocate(sizeof(owned_node));
    budget.add(sizeof(owned_node) + buffer.size());
    owned_node* n = ::new (memory) owned_node{};
    n->buffer = std::move(buffer);
    n->owned = true;
    n->data = n->buffer.data();
    n->capacity = n->size = n->buffer.size();
    bytes_ += n->size;
    link(n);
    return true;
  }

  /// Queues bytes that stay where they are, in a receive buffer lent by the backend; `give_back`
  /// (see consume and clear) returns buffer `id` once they are sent or dropped.
  void append_borrowed(Allocator& alloc, std::span<const std::byte> data, std::uint16_t id) {
    // The echo case (an empty queue, one borrowed buffer) uses the queue's own node: no allocation.
    node* n = head_ ? new_node(alloc) : ::new (&inline_node_) node{};
    n->data = const_cast<std::byte*>(data.data());
    n->capacity = n->size = data.size();
    n->borrowed = true;
    n->buffer_id = id;
    bytes_ += n->size;
    link(n);
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
    bool owned = false;    // an owned_node: a moved std::vector
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
      budget.remove(sizeof(owned_node) + o->capacity);
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
