// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A raw io_uring: io_uring_setup/io_uring_enter through syscall(2) and the mmapped rings, no
// liburing. Memory ordering follows liburing: we read the index the kernel writes (SQ head, CQ
// tail) with acquire and publish our own (SQ tail, CQ head) with release.

#include <linux/io_uring.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <thread>

#include "iocp/detail/fault_injection.hpp"
#include "iocp/detail/inline.hpp"
#include "iocp/detail/linux/socket_ops.hpp"

namespace iocp::detail {

inline int sys_io_uring_setup(unsigned entries, io_uring_params* p) noexcept {
  return static_cast<int>(::syscall(__NR_io_uring_setup, entries, p));
}
inline int sys_io_uring_enter(int fd, unsigned submit, unsigned wait, unsigned flags, const void* arg,
                              std::size_t arg_size) noexcept {
  return static_cast<int>(::syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, arg_size));
}
inline int sys_io_uring_register(int fd, unsigned op, const void* arg, unsigned n) noexcept {
  return static_cast<int>(::syscall(__NR_io_uring_register, fd, op, arg, n));
}

// What the backend cannot run without: completions never dropped, the stable-submission and
// fast-poll paths for sockets, and a wait with a timeout argument (all in Linux 5.11+).
inline constexpr std::uint32_t io_uring_required_features =
    IORING_FEAT_NODROP | IORING_FEAT_SUBMIT_STABLE | IORING_FEAT_FAST_POLL | IORING_FEAT_EXT_ARG;

class io_uring_ring {
public:
  io_uring_ring() = default;
  io_uring_ring(const io_uring_ring&) = delete;
  io_uring_ring& operator=(const io_uring_ring&) = delete;
  ~io_uring_ring() { close(); }

  /// Sets the ring up; an error (EPERM under seccomp, ENOSYS on old kernels, ENOMEM for locked
  /// memory) leaves it closed and is returned, so the caller can fall back to epoll.
  std::error_code open(unsigned entries, unsigned cq_entries) noexcept {
    // Newest first; each refusal (EINVAL from an older kernel) drops to the next. A ring is only
    // ever used by the thread that set it up, so it can be single-issuer with its completion work
    // deferred to that thread's own waits (no interrupts from the kernel to run it).
    const std::uint32_t attempts[] = {
#if !defined(IOCP_DISABLE_IO_URING_DEFER_TASKRUN)
      IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
#endif
      IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
      IORING_SETUP_CQSIZE,
    };
    int fd = -1;
    io_uring_params p{};
    for (std::uint32_t flags : attempts) {
      std::memset(&p, 0, sizeof p);
      p.flags = flags;
      p.cq_entries = cq_entries;
      fd = sys_io_uring_setup(entries, &p);
      if (fd >= 0 || errno != EINVAL) break;
    }
    if (fd < 0) return last_error();
    if ((p.features & io_uring_required_features) != io_uring_required_features) {
      ::close(fd);
      return errno_code(ENOSYS);
    }
    fd_ = fd;
    features_ = p.features;

    sq_ring_size_ = p.sq_off.array + p.sq_entries * sizeof(std::uint32_t);
    cq_ring_size_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    if (features_ & IORING_FEAT_SINGLE_MMAP)
      sq_ring_size_ = cq_ring_size_ = std::max(sq_ring_size_, cq_ring_size_);
    sq_ring_ = ::mmap(nullptr, sq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                      IORING_OFF_SQ_RING);
    if (sq_ring_ == MAP_FAILED) return fail();
    if (features_ & IORING_FEAT_SINGLE_MMAP) {
      cq_ring_ = sq_ring_;
    } else {
      cq_ring_ = ::mmap(nullptr, cq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                        IORING_OFF_CQ_RING);
      if (cq_ring_ == MAP_FAILED) return fail();
    }
    sqes_size_ = p.sq_entries * sizeof(io_uring_sqe);
    sqes_ = static_cast<io_uring_sqe*>(
        ::mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES));
    if (sqes_ == MAP_FAILED) return fail();

    auto* sq = static_cast<char*>(sq_ring_);
    sq_head_ = reinterpret_cast<std::uint32_t*>(sq + p.sq_off.head);
    sq_tail_ = reinterpret_cast<std::uint32_t*>(sq + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<std::uint32_t*>(sq + p.sq_off.ring_mask);
    sq_entries_ = p.sq_entries;
    auto* array = reinterpret_cast<std::uint32_t*>(sq + p.sq_off.array);
    for (std::uint32_t i = 0; i < p.sq_entries; ++i)
      array[i] = i; // SQE i always sits in slot i
    auto* cq = static_cast<char*>(cq_ring_);
    cq_head_ = reinterpret_cast<std::uint32_t*>(cq + p.cq_off.head);
    cq_tail_ = reinterpret_cast<std::uint32_t*>(cq + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<std::uint32_t*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
    local_sq_tail_ = cached_sq_head_ = *sq_tail_;
    return {};
  }

  bool is_open() const noexcept { return fd_ >= 0; }
  int fd() const noexcept { return fd_; }
  unsigned completion_entries() const noexcept { return cq_mask_ + 1; }
  std::uint32_t features() const noexcept { return features_; }

  /// A zeroed SQE to fill, or nullptr when the submission queue is full (submit, then retry).
  IOCP_ALWAYS_INLINE io_uring_sqe* get_sqe() noexcept {
    // The kernel's head only matters when the queue looks full: read it then, not every time.
    if (local_sq_tail_ - cached_sq_head_ >= sq_entries_) {
      cached_sq_head_ = std::atomic_ref(*sq_head_).load(std::memory_order_acquire);
      if (local_sq_tail_ - cached_sq_head_ >= sq_entries_) return nullptr;
    }
    io_uring_sqe* sqe = &sqes_[local_sq_tail_ & sq_mask_];
    ++local_sq_tail_;
    std::memset(sqe, 0, sizeof *sqe);
    return sqe;
  }

  /// SQEs the kernel has not taken yet: those filled since the last submission, and those that a
  /// failed io_uring_enter() left in the queue after they were published. The kernel's head (which
  /// it moves only inside io_uring_enter without SQPOLL) says where it stopped; our published tail
  /// would forget them, and they would wait for a later submission that may never come.
  unsigned unsubmitted() const noexcept {
    return local_sq_tail_ - std::atomic_ref(*sq_head_).load(std::memory_order_acquire);
  }

  /// Publishes the new SQEs and enters the kernel: submits them and, if wait_nr > 0, waits for that
  /// many completions or `timeout_ns` (negative: no limit). Returns 0 or a negative errno;
  /// -ETIME and -EINTR are ordinary outcomes of a wait. -EAGAIN also when the kernel took none of
  /// the SQEs (the caller paces its retries: entering again at once would spin).
  /// `get_events` false (only with wait_nr 0): submit only. With deferred task work the kernel then
  /// runs no completion work, so a submission made while completions are being handled adds none.
  int submit_and_wait(unsigned wait_nr, long long timeout_ns, bool get_events = true) noexcept {
    unsigned to_submit = unsubmitted();
    std::atomic_ref(*sq_tail_).store(local_sq_tail_, std::memory_order_release);
    unsigned flags = get_events || wait_nr ? IORING_ENTER_GETEVENTS : 0u;
    __kernel_timespec ts;       // filled only for a wait with a timeout: the common wait has none
    io_uring_getevents_arg arg; // ditto
    const void* argp = nullptr;
    std::size_t arg_size = 0;
    if (wait_nr && timeout_ns >= 0) {
      ts = {};
      ts.tv_sec = timeout_ns / 1'000'000'000;
      ts.tv_nsec = timeout_ns % 1'000'000'000;
      arg = {};
      arg.ts = reinterpret_cast<std::uint64_t>(&ts);
      flags |= IORING_ENTER_EXT_ARG;
      argp = &arg;
      arg_size = sizeof arg;
    }
    for (;;) {
      // An injected failure comes after the new SQEs were published, as the kernel's can.
      int r = call_unless_fault(testing::fault_site::submit, [&] {
        return sys_io_uring_enter(fd_, to_submit, wait_nr, flags, argp, arg_size);
      });
      if (r >= 0) {
        if (static_cast<unsigned>(r) >= to_submit) return 0;
        if (r == 0) return -EAGAIN;            // nothing taken: the same call would take nothing again
        to_submit -= static_cast<unsigned>(r); // partial submission: enter again for the rest
        continue;
      }
      return -errno;
    }
  }

  /// Calls f(const io_uring_cqe&) for every completion ready now, but at most `limit` of them (the
  /// ones that f's own work adds could otherwise keep the caller here for ever); returns how many.
  template <class F>
  IOCP_ALWAYS_INLINE unsigned for_each_completion(F&& f, unsigned limit = ~0u) {
    const std::uint32_t first = *cq_head_;
    std::uint32_t head = first;
    for (;;) {
      std::uint32_t tail = std::atomic_ref(*cq_tail_).load(std::memory_order_acquire);
      // The limit bounds this batch's end, so the per-completion loop has one test only.
      if (tail - first > limit) tail = first + limit;
      if (head == tail) break;
      while (head != tail) {
        io_uring_cqe cqe = cqes_[head & cq_mask_]; // copied: the slot is the kernel's once released
        ++head;
        std::atomic_ref(*cq_head_).store(head, std::memory_order_release);
        f(cqe);
      }
    }
    return head - first;
  }

  void close() noexcept {
    if (sqes_ && sqes_ != MAP_FAILED) ::munmap(sqes_, sqes_size_);
    if (cq_ring_ && cq_ring_ != MAP_FAILED && cq_ring_ != sq_ring_) ::munmap(cq_ring_, cq_ring_size_);
    if (sq_ring_ && sq_ring_ != MAP_FAILED) ::munmap(sq_ring_, sq_ring_size_);
    sqes_ = nullptr;
    cq_ring_ = sq_ring_ = nullptr;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

private:
  std::error_code fail() noexcept {
    std::error_code e = last_error();
    close();
    return e;
  }

  int fd_ = -1;
  std::uint32_t features_ = 0;
  void* sq_ring_ = nullptr;
  void* cq_ring_ = nullptr;
  std::size_t sq_ring_size_ = 0, cq_ring_size_ = 0, sqes_size_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  std::uint32_t* sq_head_ = nullptr;
  std::uint32_t* sq_tail_ = nullptr;
  std::uint32_t sq_mask_ = 0, sq_entries_ = 0;
  std::uint32_t local_sq_tail_ = 0;
  std::uint32_t cached_sq_head_ = 0;
  std::uint32_t* cq_head_ = nullptr;
  std::uint32_t* cq_tail_ = nullptr;
  std::uint32_t cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
};

/// The probe itself, on the calling thread: a ring opens, and a no-op goes through
/// io_uring_enter and completes (a seccomp profile may allow io_uring_setup but refuse the rest).
inline std::error_code probe_io_uring_on_this_thread() noexcept {
  io_uring_ring ring;
  if (std::error_code e = ring.open(4, 8)) return e;
  io_uring_sqe* sqe = ring.get_sqe();
  sqe->opcode = IORING_OP_NOP;
  sqe->user_data = 1;
  if (int r = ring.submit_and_wait(1, 1'000'000'000); r < 0 && r != -EINTR) return errno_code(-r);
  int result = -ETIME;
  ring.for_each_completion([&](const io_uring_cqe& cqe) { result = cqe.res; });
  return result < 0 ? errno_code(-result) : std::error_code{};
}

/// Whether this process may use io_uring with the features the backend needs (it may not under a
/// container's seccomp profile, or on an old kernel). The error says why not.
///
/// It runs on a thread of its own: the kernel signals the thread that set a ring up when the ring
/// is torn down, which would interrupt the caller's next blocking call with EINTR.
inline std::error_code probe_io_uring() {
  std::error_code result;
  std::thread([&] { result = probe_io_uring_on_this_thread(); }).join();
  return result;
}

} // namespace iocp::detail
