// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The ThreadingPolicy: how many I/O threads run the server. Every I/O thread has its own backend
// (ring, epoll set or completion port) and owns the connections it accepted for their whole life, so
// one connection's callbacks never run concurrently. Calls for a connection made on another thread
// are posted to its owner, in order per calling thread.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <thread>

#include "iocp/options.hpp"

namespace iocp {

// (A policy needs no more than its thread count: one I/O thread still takes calls by id from
// other threads, so it cannot do without the map's synchronization or the command queue. The
// `multi_threaded` flag the policies had was never read, and is gone.)
template <class T>
concept threading_policy = requires(const server_options& options) {
  { T::thread_count(options) } -> std::convertible_to<std::size_t>;
};

/// One I/O thread: every callback runs on it, so a handler needs no synchronization of its own
/// (except for data it shares with threads outside the server).
struct single_threaded {
  static std::size_t thread_count(const server_options&) noexcept { return 1; }
};

/// server_options::threads I/O threads (0: one per hardware thread). The threads share the listening
/// socket; whichever is free accepts, so new connections go where there is capacity.
struct thread_pool {
  static std::size_t thread_count(const server_options& options) noexcept {
    if (options.threads) return options.threads;
    return std::max<std::size_t>(1, std::thread::hardware_concurrency());
  }
};

} // namespace iocp
