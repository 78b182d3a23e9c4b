// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Policies that measure the server they are part of, to compare contention and memory in place:
//
//   using server = iocp::basic_iocp_server<my_handler, iocp::counting_allocator<iocp::pooled_allocator>,
//                                          iocp::counting_map<iocp::mutex_map>>;
//   ... server.connection_map().lock_statistics(), iocp::counting_allocator<...>::statistics()
//
// counting_map<M> is the map M with its lock counted: for mutex_map, the same map over a
// counting_mutex (every acquisition, those that found the lock held, and the time they waited);
// for a map that takes no lock (lockfree_map) it is M itself and reports zeros. A map of your own
// that counts its locks says so with a `lock_statistics()` member, which counting_map forwards.
// counting_allocator<A> counts what the Allocator policy A hands out: allocations, bytes, the bytes
// live now and their high-water mark.
//
// Neither costs anything when not used. When used: counting_mutex adds a try_lock before a
// contended lock() and two clock reads around the wait, and updates its counters under the lock it
// guards (plain loads and stores, no read-modify-write); counting_allocator adds three atomic
// read-modify-writes to each allocation.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <type_traits>

#include "iocp/allocator.hpp"
#include "iocp/connection_map.hpp"

namespace iocp {

/// What a counted lock went through, since it was constructed.
struct lock_statistics {
  std::uint64_t acquisitions = 0; // lock() and successful try_lock() calls
  std::uint64_t contended = 0;    // lock() calls that found the lock held and waited
  std::uint64_t wait_ns = 0;      // the time those calls waited, in total
};

/// A std::mutex that counts its acquisitions, its contended ones and the time spent waiting.
class counting_mutex {
public:
  void lock() {
    if (mutex_.try_lock()) {
      bump(acquisitions_, 1);
      return;
    }
    const auto began = std::chrono::steady_clock::now();
    mutex_.lock();
    const auto waited = std::chrono::steady_clock::now() - began;
    bump(acquisitions_, 1);
    bump(contended_, 1);
    bump(wait_ns_, static_cast<std::uint64_t>(std::chrono::nanoseconds(waited).count()));
  }
  bool try_lock() {
    if (!mutex_.try_lock()) return false;
    bump(acquisitions_, 1);
    return true;
  }
  void unlock() { mutex_.unlock(); }

  /// From any thread; figures read while others lock may be a few operations apart.
  iocp::lock_statistics statistics() const noexcept {
    return {acquisitions_.load(std::memory_order_relaxed), contended_.load(std::memory_order_relaxed),
            wait_ns_.load(std::memory_order_relaxed)};
  }

private:
  // Only the lock's holder writes the counters, so a load and a store do (no atomic add); they
  // are atomics for the readers.
  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }

  std::mutex mutex_;
  std::atomic<std::uint64_t> acquisitions_{0};
  std::atomic<std::uint64_t> contended_{0};
  std::atomic<std::uint64_t> wait_ns_{0};
};

namespace detail {
/// The counted form of a map: a mutex map over a counting_mutex; any other map as it is.
template <class Map>
struct counted_map {
  using type = Map;
};
template <class Mutex>
struct counted_map<basic_mutex_map<Mutex>> {
  using type = basic_mutex_map<counting_mutex>;
};
} // namespace detail

/// The ConnectionMap policy Map, with its lock counted (see the top of this file).
template <class Map>
class counting_map : public detail::counted_map<Map>::type {
  using base = typename detail::counted_map<Map>::type;
  static_assert(connection_map<base>, "iocp: counting_map<Map>: Map must be a ConnectionMap policy");

public:
  using base::base;

  /// The map's lock since the map was built; zeros for a map that takes none.
  iocp::lock_statistics lock_statistics() const noexcept {
    if constexpr (requires(const base& m) {
                    { m.lock_statistics() } -> std::same_as<iocp::lock_statistics>;
                  })
      return base::lock_statistics();
    else if constexpr (requires(const base& m) { m.mutex().statistics(); })
      return base::mutex().statistics();
    else
      return {};
  }
};

/// What a counting_allocator handed out.
struct allocation_statistics {
  std::uint64_t allocations = 0; // allocate() calls that returned
  std::uint64_t bytes = 0;       // their bytes, in total
  std::uint64_t live_bytes = 0;  // allocated and not deallocated yet
  std::uint64_t peak_live_bytes = 0;
};

/// The Allocator policy A, counted. The server builds its allocators itself (several, one or two
/// per I/O thread), so the counters are shared by every counting_allocator<A, Tag>: give two
/// servers of one program different Tag types to count them apart.
template <class A, class Tag = void>
class counting_allocator {
  static_assert(operation_allocator<A>, "iocp: counting_allocator<A>: A must be an Allocator policy");

public:
  void* allocate(std::size_t n) {
    void* p = inner_.allocate(n);
    counters& c = shared();
    c.allocations.fetch_add(1, std::memory_order_relaxed);
    c.bytes.fetch_add(n, std::memory_order_relaxed);
    const std::uint64_t live = c.live_bytes.fetch_add(n, std::memory_order_relaxed) + n;
    std::uint64_t peak = c.peak_live_bytes.load(std::memory_order_relaxed);
    while (live > peak && !c.peak_live_bytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {}
    return p;
  }
  void deallocate(void* p, std::size_t n) noexcept {
    inner_.deallocate(p, n);
    shared().live_bytes.fetch_sub(n, std::memory_order_relaxed);
  }
  std::size_t good_size(std::size_t n) const noexcept { return detail::allocation_size(inner_, n); }

  /// The counters of every counting_allocator<A, Tag>, from any thread.
  static allocation_statistics statistics() noexcept {
    const counters& c = shared();
    return {c.allocations.load(std::memory_order_relaxed), c.bytes.load(std::memory_order_relaxed),
            c.live_bytes.load(std::memory_order_relaxed), c.peak_live_bytes.load(std::memory_order_relaxed)};
  }
  /// Sets the cumulative counters and the peak back (to the bytes live now), between two runs.
  static void reset_statistics() noexcept {
    counters& c = shared();
    c.allocations.store(0, std::memory_order_relaxed);
    c.bytes.store(0, std::memory_order_relaxed);
    c.peak_live_bytes.store(c.live_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }

private:
  struct counters {
    std::atomic<std::uint64_t> allocations{0};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> live_bytes{0};
    std::atomic<std::uint64_t> peak_live_bytes{0};
  };
  static counters& shared() noexcept {
    static counters c;
    return c;
  }

  A inner_;
};

} // namespace iocp
