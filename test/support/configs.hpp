// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Named policy combinations: BOOST_AUTO_TEST_CASE_TEMPLATE over these shows each by its name.
// `server<H>` is the server type for handler H under that combination.

#include <tuple>

#include "iocp/iocp.hpp"
#include "iocp/lockfree_map.hpp"

namespace test_support {

template <iocp::backend B, class Allocator, class Map, class Threading>
struct config {
  static constexpr iocp::backend io_backend = B;
  template <class Handler>
  using server = iocp::basic_iocp_server<Handler, Allocator, Map, Threading>;
  static iocp::server_options options() {
    iocp::server_options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.io_backend = B;
    o.threads = 2;
    return o;
  }
};

#if defined(_WIN32)
// Windows has one backend, IOCP: the same combinations of the other three policies.
// clang-format off
struct iocp_mutex_pooled_single    : config<iocp::backend::iocp, iocp::pooled_allocator, iocp::mutex_map,    iocp::single_threaded> {};
struct iocp_mutex_pooled_pool      : config<iocp::backend::iocp, iocp::pooled_allocator, iocp::mutex_map,    iocp::thread_pool> {};
struct iocp_mutex_plain_single     : config<iocp::backend::iocp, iocp::plain_allocator,  iocp::mutex_map,    iocp::single_threaded> {};
struct iocp_mutex_plain_pool       : config<iocp::backend::iocp, iocp::plain_allocator,  iocp::mutex_map,    iocp::thread_pool> {};
struct iocp_lockfree_pooled_single : config<iocp::backend::iocp, iocp::pooled_allocator, iocp::lockfree_map, iocp::single_threaded> {};
struct iocp_lockfree_pooled_pool   : config<iocp::backend::iocp, iocp::pooled_allocator, iocp::lockfree_map, iocp::thread_pool> {};
struct iocp_lockfree_plain_single  : config<iocp::backend::iocp, iocp::plain_allocator,  iocp::lockfree_map, iocp::single_threaded> {};
struct iocp_lockfree_plain_pool    : config<iocp::backend::iocp, iocp::plain_allocator,  iocp::lockfree_map, iocp::thread_pool> {};
// clang-format on

using all_configs = std::tuple<iocp_mutex_pooled_single, iocp_mutex_pooled_pool, iocp_mutex_plain_single,
                               iocp_mutex_plain_pool, iocp_lockfree_pooled_single, iocp_lockfree_pooled_pool,
                               iocp_lockfree_plain_single, iocp_lockfree_plain_pool>;
/// For the behaviour tests: the thread pool (thread 0 accepts and hands connections to the other
/// threads) and one thread (thread 0 keeps every connection), with either map.
using backend_configs = std::tuple<iocp_mutex_pooled_pool, iocp_lockfree_pooled_single>;
#else
// clang-format off
struct uring_mutex_pooled_single   : config<iocp::backend::io_uring, iocp::pooled_allocator, iocp::mutex_map, iocp::single_threaded> {};
struct uring_mutex_pooled_pool     : config<iocp::backend::io_uring, iocp::pooled_allocator, iocp::mutex_map, iocp::thread_pool> {};
struct uring_mutex_plain_single    : config<iocp::backend::io_uring, iocp::plain_allocator,  iocp::mutex_map, iocp::single_threaded> {};
struct uring_mutex_plain_pool      : config<iocp::backend::io_uring, iocp::plain_allocator,  iocp::mutex_map, iocp::thread_pool> {};
struct epoll_mutex_pooled_single   : config<iocp::backend::epoll,    iocp::pooled_allocator, iocp::mutex_map, iocp::single_threaded> {};
struct epoll_mutex_pooled_pool     : config<iocp::backend::epoll,    iocp::pooled_allocator, iocp::mutex_map, iocp::thread_pool> {};
struct epoll_mutex_plain_single    : config<iocp::backend::epoll,    iocp::plain_allocator,  iocp::mutex_map, iocp::single_threaded> {};
struct epoll_mutex_plain_pool      : config<iocp::backend::epoll,    iocp::plain_allocator,  iocp::mutex_map, iocp::thread_pool> {};
struct uring_lockfree_pooled_single : config<iocp::backend::io_uring, iocp::pooled_allocator, iocp::lockfree_map, iocp::single_threaded> {};
struct uring_lockfree_pooled_pool   : config<iocp::backend::io_uring, iocp::pooled_allocator, iocp::lockfree_map, iocp::thread_pool> {};
struct uring_lockfree_plain_single  : config<iocp::backend::io_uring, iocp::plain_allocator,  iocp::lockfree_map, iocp::single_threaded> {};
struct uring_lockfree_plain_pool    : config<iocp::backend::io_uring, iocp::plain_allocator,  iocp::lockfree_map, iocp::thread_pool> {};
struct epoll_lockfree_pooled_single : config<iocp::backend::epoll,    iocp::pooled_allocator, iocp::lockfree_map, iocp::single_threaded> {};
struct epoll_lockfree_pooled_pool   : config<iocp::backend::epoll,    iocp::pooled_allocator, iocp::lockfree_map, iocp::thread_pool> {};
struct epoll_lockfree_plain_single  : config<iocp::backend::epoll,    iocp::plain_allocator,  iocp::lockfree_map, iocp::single_threaded> {};
struct epoll_lockfree_plain_pool    : config<iocp::backend::epoll,    iocp::plain_allocator,  iocp::lockfree_map, iocp::thread_pool> {};
// clang-format on

/// Every combination (backend x map x allocator x threading): for the core echo and half-close cases.
using all_configs =
    std::tuple<uring_mutex_pooled_single, uring_mutex_pooled_pool, uring_mutex_plain_single,
               uring_mutex_plain_pool, uring_lockfree_pooled_single, uring_lockfree_pooled_pool,
               uring_lockfree_plain_single, uring_lockfree_plain_pool, epoll_mutex_pooled_single,
               epoll_mutex_pooled_pool, epoll_mutex_plain_single, epoll_mutex_plain_pool,
               epoll_lockfree_pooled_single, epoll_lockfree_pooled_pool, epoll_lockfree_plain_single,
               epoll_lockfree_plain_pool>;

/// One combination per backend, multi-threaded: for the behaviour tests, which do not depend on the
/// allocator or map but must hold on every backend.
using backend_configs = std::tuple<uring_mutex_pooled_pool, epoll_mutex_pooled_pool>;

#endif

} // namespace test_support
