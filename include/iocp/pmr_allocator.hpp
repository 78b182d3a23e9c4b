// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// An Allocator policy over a std::pmr::memory_resource of yours:
//
//   std::pmr::synchronized_pool_resource pool;
//   iocp::basic_iocp_server<my_handler, iocp::pmr_allocator> server(std::allocator_arg,
//                                                                   iocp::pmr_allocator(&pool), options);
//
// Every instance the server uses is a copy, and the copies are used by several threads at once,
// so the resource must be thread-safe (synchronized_pool_resource, new_delete_resource; not
// unsynchronized_pool_resource or monotonic_buffer_resource). Blocks are aligned to
// alignof(std::max_align_t), as the policy requires. The resource must outlive the server.

#include <cstddef>
#include <memory_resource>

namespace iocp {

class pmr_allocator {
public:
  /// std::pmr::new_delete_resource(): what a server gets without an allocator of its own.
  pmr_allocator() noexcept : resource_(std::pmr::new_delete_resource()) {}
  explicit pmr_allocator(std::pmr::memory_resource* resource) noexcept : resource_(resource) {}

  void* allocate(std::size_t n) { return resource_->allocate(n, alignof(std::max_align_t)); }
  void deallocate(void* p, std::size_t n) noexcept { resource_->deallocate(p, n, alignof(std::max_align_t)); }

  std::pmr::memory_resource* resource() const noexcept { return resource_; }

private:
  std::pmr::memory_resource* resource_;
};

} // namespace iocp
