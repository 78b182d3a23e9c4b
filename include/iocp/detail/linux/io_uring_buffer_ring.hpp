// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19+): receive buffers the kernel picks
// from when data arrives, so a connection holds no buffer while it waits. The loop hands a buffer
// back right after the handler's on_received returns, so between two waits every buffer is in the
// ring again, and running dry (-ENOBUFS) lasts at most until the next submission.

#include <linux/io_uring.h>
#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <system_error>

#include "iocp/detail/linux/io_uring_ring.hpp"

namespace iocp::detail {

class io_uring_buffer_ring {
public:
  io_uring_buffer_ring() = default;
  io_uring_buffer_ring(const io_uring_buffer_ring&) = delete;
  io_uring_buffer_ring& operator=(const io_uring_buffer_ring&) = delete;
  ~io_uring_buffer_ring() { close(); }

  /// `entries` must be a power of two (at most 32768). An error (old kernel: EINVAL) leaves the ring
  /// closed; the backend then gives each connection its own buffer instead.
  std::error_code open(int ring_fd, std::uint16_t group, unsigned entries, std::size_t buffer_size) noexcept {
    ring_fd_ = ring_fd;
    group_ = group;
    mask_ = static_cast<std::uint16_t>(entries - 1);
    buffer_size_ = buffer_size;
    ring_bytes_ = entries * sizeof(io_uring_buf);
    void* ring = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring == MAP_FAILED) return last_error();
    ring_ = static_cast<io_uring_buf_ring*>(ring);
    slab_bytes_ = entries * buffer_size;
    void* slab = ::mmap(nullptr, slab_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slab == MAP_FAILED) {
      std::error_code e = last_error();
      close();
      return e;
    }
    slab_ = static_cast<std::byte*>(slab);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(ring_);
    reg.ring_entries = entries;
    reg.bgid = group;
    if (sys_io_uring_register(ring_fd, IORING_REGISTER_PBUF_RING, &reg, 1) != 0) {
      std::error_code e = last_error();
      close();
      return e;
    }
    registered_ = true;
    for (unsigned i = 0; i < entries; ++i)
      put(static_cast<std::uint16_t>(i), buffer(static_cast<std::uint16_t>(i)));
    publish();
    return {};
  }

  bool is_open() const noexcept { return registered_; }
  std::uint16_t group() const noexcept { return group_; }
  std::byte* buffer(std::uint16_t id) const noexcept { return slab_ + std::size_t{id} * buffer_size_; }

  /// Gives buffer `id` (at `data`, which buffer(id) gave) back; the kernel sees it at the next
  /// publish().
  void recycle(std::uint16_t id, std::byte* data) noexcept { put(id, data); }

  /// Makes every recycled buffer visible to the kernel (once per batch of completions).
  void publish() noexcept {
    // The tail shares its place with the first entry's resv; the kernel reads it with acquire.
    std::atomic_ref(ring_->tail).store(local_tail_, std::memory_order_release);
  }

  /// Makes every recycled buffer visible to the kernel (once per batch of completions).
  void close() noexcept {
    if (registered_) {
      io_uring_buf_reg reg{};
      reg.bgid = group_;
      sys_io_uring_register(ring_fd_, IORING_UNREGISTER_PBUF_RING, &reg, 1);
      registered_ = false;
    }
    if (slab_) ::munmap(slab_, slab_bytes_);
    if (ring_) ::munmap(ring_, ring_bytes_);
    slab_ = nullptr;
    ring_ = nullptr;
  }

private:
  void put(std::uint16_t id, std::byte* data) noexcept {
    // Not ring_->bufs[i]: older UAPI headers declare bufs with __DECLARE_FLEX_ARRAY, whose empty
    // struct takes a byte in C++ (none in C), which moves bufs 8 bytes off the kernel's layout.
    io_uring_buf& b = reinterpret_cast<io_uring_buf*>(ring_)[local_tail_ & mask_];
    b.addr = reinterpret_cast<std::uint64_t>(data);
    b.len = static_cast<std::uint32_t>(buffer_size_);
    b.bid = id;
    ++local_tail_;
  }
  int ring_fd_ = -1;
  std::uint16_t group_ = 0;
  std::uint16_t mask_ = 0; // entries - 1
  std::size_t buffer_size_ = 0;
  io_uring_buf_ring* ring_ = nullptr;
  std::size_t ring_bytes_ = 0;
  std::byte* slab_ = nullptr;
  std::size_t slab_bytes_ = 0;
  std::uint16_t local_tail_ = 0;
  bool registered_ = false;
};

} // namespace iocp::detail

static_assert(offsetof(io_uring_buf_ring, tail) == 14, "io_uring_buf_ring: unexpected tail offset");
static_assert(sizeof(io_uring_buf) == 16, "io_uring_buf: unexpected size");
