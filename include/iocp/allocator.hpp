// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The Allocator policy: where per-operation memory comes from (connection contexts, send buffers,
// receive buffers the kernel does not provide, and the records of work posted to an I/O thread).
// Each I/O thread owns two instances: one only it uses, and one for what other threads post to it,
// used under that thread's inbox lock; so an allocator needs no locks of its own. The second is
// called from whichever thread posts (and frees on the I/O thread), one thread at a time: an
// allocator bound to one thread (a thread-local arena, a mimalloc heap) must not rely on being
// called on the thread that constructed it. Memory must be
// aligned to alignof(std::max_align_t). allocate() may throw std::bad_alloc: the server then closes
// the connection it was for (or refuses the accept, or the posted call) and reports it.
//
// An allocator that holds state (a memory resource, an arena) is given to the server's constructor,
// `basic_iocp_server(std::allocator_arg, allocator, options, ...)`, and every instance the server
// uses is a copy of it; the copies are used by different threads at once, so what they share
// must be thread-safe (iocp::pmr_allocator over a std::pmr::synchronized_pool_resource, say).
// Without it, the instances are default-constructed.
//
// Optional: `std::size_t good_size(std::size_t n) const`, how many bytes an allocation of n really
// takes (a size class, say). The send queues then use the whole allocation and count that size
// against server_options::max_send_queue_total, so the cap counts the memory really held.

#include <bit>
#include <concepts>
#include <cstddef>
#include <new>
#include <vector>

namespace iocp {

namespace detail {
/// Sized delete where the compiler has it (clang needs -fsized-deallocation for it).
inline void delete_bytes(void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(__cpp_sized_deallocation)
  ::operator delete(p, n);
#else
  ::operator delete(p);
#endif
}
} // namespace detail

template <class A>
concept operation_allocator = std::default_initializable<A> && requires(A& a, std::size_t n, void* p) {
  { a.allocate(n) } -> std::same_as<void*>;
  { a.deallocate(p, n) }
  noexcept;
};

namespace detail {
/// The bytes an allocation of n takes from `a`: its good_size(n) if it says, else n.
template <class A>
constexpr std::size_t allocation_size(const A& a, std::size_t n) noexcept {
  if constexpr (requires {
                  { a.good_size(n) } -> std::convertible_to<std::size_t>;
                })
    return a.good_size(n);
  else
    return n;
}

/// One of the server's instances of A: a copy of the instance given to the server's constructor
/// (`prototype`, for a copyable A), else a default-constructed one.
template <class A>
A make_allocator([[maybe_unused]] const A* prototype) {
  if constexpr (std::copy_constructible<A>) {
    if (prototype) return *prototype;
  }
  return A{};
}
} // namespace detail

/// Every allocation straight from the global heap (operator new).
struct plain_allocator {
  void* allocate(std::size_t n) { return ::operator new(n); }
  void deallocate(void* p, std::size_t n) noexcept { detail::delete_bytes(p, n); }
};

/// Recycles blocks in power-of-two size classes (64 B to 64 KiB), so the steady-state I/O path
/// reuses memory instead of calling the global heap. Larger blocks go to the heap. At most
/// `max_cached_bytes` of free blocks are kept (over all classes), so a burst does not pin memory for
/// ever, and what the send-queue cap bounds is most of what a thread holds.
class pooled_allocator {
public:
  static constexpr std::size_t min_block = 64;
  static constexpr std::size_t max_block = 64 * 1024;
  static constexpr std::size_t max_cached_bytes = 2 * 1024 * 1024;

  pooled_allocator() = default;
  pooled_allocator(const pooled_allocator&) = delete;
  pooled_allocator& operator=(const pooled_allocator&) = delete;
  ~pooled_allocator() {
    for (std::size_t c = 0; c < class_count; ++c) {
      while (free_[c]) {
        free_block* next = free_[c]->next;
        detail::delete_bytes(static_cast<void*>(free_[c]), class_size(c));
        free_[c] = next;
      }
    }
  }

  void* allocate(std::size_t n) {
    if (n > max_block) return ::operator new(n);
    std::size_t c = class_of(n);
    if (free_block* b = free_[c]) {
      free_[c] = b->next;
      --cached_[c];
      cached_bytes_ -= class_size(c);
      return b;
    }
    return ::operator new(class_size(c));
  }

  void deallocate(void* p, std::size_t n) noexcept {
    if (n > max_block) {
      detail::delete_bytes(p, n);
      return;
    }
    std::size_t c = class_of(n);
    if (cached_bytes_ + class_size(c) > max_cached_bytes) {
      detail::delete_bytes(p, class_size(c));
      return;
    }
    free_[c] = ::new (p) free_block{free_[c]};
    ++cached_[c];
    cached_bytes_ += class_size(c);
  }

  /// An allocation of n bytes takes its whole size class.
  static constexpr std::size_t good_size(std::size_t n) noexcept {
    return n > max_block ? n : class_size(class_of(n));
  }

  /// Free blocks currently held for reuse (for tests and statistics).
  std::size_t cached_blocks() const noexcept {
    std::size_t total = 0;
    for (std::size_t c = 0; c < class_count; ++c)
      total += cached_[c];
    return total;
  }

private:
  struct free_block {
    free_block* next;
  };
  static constexpr std::size_t class_count = 11; // 64 << 0 ... 64 << 10
  static constexpr std::size_t class_size(std::size_t c) noexcept { return min_block << c; }
  static constexpr std::size_t class_of(std::size_t n) noexcept {
    // The smallest c with (64 << c) >= n, without a loop: this runs twice per message.
    return n <= min_block ? 0 : static_cast<std::size_t>(std::bit_width((n - 1) / min_block));
  }

  free_block* free_[class_count] = {};
  std::size_t cached_[class_count] = {};
  std::size_t cached_bytes_ = 0;
};

} // namespace iocp
