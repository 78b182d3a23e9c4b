// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The io_uring backend of one I/O thread: accept, receive and send as ring operations; completions go
// to the event loop (the Sink) as plain events. Each operation's user_data is the address of its
// object with the operation kind in the low bits.

#include <sys/eventfd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <new>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "iocp/detail/fault_injection.hpp"
#include "iocp/detail/inline.hpp"
#include "iocp/detail/linux/io_object.hpp"
#include "iocp/detail/linux/io_uring_buffer_ring.hpp"
#include "iocp/detail/linux/io_uring_ring.hpp"
#include "iocp/detail/linux/socket_ops.hpp"

namespace iocp::detail {

class io_uring_backend {
public:
  /// `receive_buffers`: how many buffers the thread's provided-buffer ring holds (rounded up to a
  /// power of two); 0 gives every connection a buffer of its own instead.
  /// `sole_acceptor`: no other thread accepts on this listener, so a multishot accept may be used.
  /// With several threads it must not: the kernel wakes one accept waiter per connection, and a
  /// multishot accept stays a waiter while its thread is busy in a handler (its completion work
  /// runs only when that thread waits again), so it would keep taking connections the other
  /// threads are free to serve. Single-shot accepts leave the wait queue as they complete.
  io_uring_backend(int listen_fd, std::size_t receive_size, unsigned entries, unsigned receive_buffers,
                   bool sole_acceptor)
      : multishot_accept_(sole_acceptor), listen_fd_(listen_fd),
        receive_size_(static_cast<unsigned>(receive_size)) {
    if (std::error_code e = ring_.open(entries, entries * 4))
      throw std::system_error(e, "iocp: io_uring_setup");
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) throw_errno(errno, "eventfd()");
    if (receive_buffers) {
      unsigned count = 1;
      while (count < receive_buffers && count < 32768)
        count <<= 1;
      // Refused by an older kernel: connections get their own buffers, as without the ring.
      multishot_ = !buffers_.open(ring_.fd(), buffer_group, count, receive_size);
      if (multishot_) {
        buffer_count_ = count;
        lendable_left_ = max_lent_ = count / 2;
      }
    }
    post_wake_read();
  }

  /// Whether each connection needs a buffer of its own to receive into (no provided-buffer ring).
  bool needs_receive_buffers() const noexcept { return !buffers_.is_open(); }
  io_uring_backend(const io_uring_backend&) = delete;
  io_uring_backend& operator=(const io_uring_backend&) = delete;
  ~io_uring_backend() {
    buffers_.close();
    ring_.close(); // before the eventfd: the ring's pending read holds a reference to it
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  /// How many accept operations to keep posted: a multishot accept (Linux 5.19+) goes on accepting
  /// by itself, so one is enough; single-shot accepts are re-posted as each completes.
  unsigned accepts_wanted(unsigned configured) const noexcept { return multishot_accept_ ? 1 : configured; }

  /// Posts the accept, unless a multishot accept is still armed (then it goes on by itself).
  void start_accept(accept_context& ctx) {
    if (ctx.pending) {
      // A multishot accept that an injected failure ended is still in the kernel until its cancel
      // lands: the accept the loop asks for now is posted then.
      if constexpr (fault_injection_enabled) ctx.restart_when_ended |= ctx.fault_ending;
      return;
    }
    ctx.pending = true;
    io_uring_sqe* sqe = sqe_for_submit();
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = listen_fd_;
    if (multishot_accept_) {
      // One address buffer cannot serve every accept of a multishot operation (the kernel may
      // accept several before the first completion is read): the peer's address comes from
      // getpeername() instead (see dispatch), one cheap system call against the re-armed accept
      // operation this saves.
      sqe->ioprio = IORING_ACCEPT_MULTISHOT;
    } else {
      ctx.address_length = sizeof ctx.address;
      sqe->addr = reinterpret_cast<std::uint64_t>(&ctx.address);
      sqe->addr2 = reinterpret_cast<std::uint64_t>(&ctx.address_length);
    }
    sqe->accept_flags = SOCK_CLOEXEC;
    sqe->user_data = tag(&ctx, op_accept);
  }

  void cancel_accept(accept_context& ctx) {
    if constexpr (fault_injection_enabled) ctx.restart_when_ended = false;
    if (ctx.pending) cancel_user_data(tag(&ctx, op_accept));
  }

  /// With the buffer ring, one multishot receive stays armed for the connection's whole life
  /// (receive_pending stays set while the kernel says more will come).
  void start_receive(io_object& io) {
    io.receive_pending = true;
    io.cancel_requested = false;
    io_uring_sqe* sqe = sqe_for_submit();
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = io.fd;
    sqe->user_data = tag(&io, op_receive);
    if (buffers_.is_open()) {
      // len 0: each buffer's own length (multishot receive refuses any other before Linux 6.x).
      sqe->flags = IOSQE_BUFFER_SELECT;
      sqe->buf_group = buffers_.group();
      if (multishot_ && !io.receive_single_shot) sqe->ioprio = IORING_RECV_MULTISHOT;
    } else {
      sqe->addr = reinterpret_cast<std::uint64_t>(io.receive_buffer);
      sqe->len = receive_size_;
    }
  }

  IOCP_ALWAYS_INLINE void start_send(io_object& io, const std::byte* data, std::size_t size) {
    io.send_pending = true;
    io_uring_sqe* sqe = sqe_for_submit();
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = io.fd;
    sqe->addr = reinterpret_cast<std::uint64_t>(data);
    // One operation carries at most 1 GiB; the loop sends the rest when this completes.
    sqe->len = static_cast<std::uint32_t>(std::min<std::size_t>(size, 1u << 30));
    sqe->msg_flags = MSG_NOSIGNAL;
    sqe->user_data = tag(&io, op_send);
  }

  /// Zero-copy echo: while on_received runs, a send of bytes inside the buffer it was given can
  /// keep that buffer instead of copying it, until the send is done (give_back). At most half the
  /// ring is lent at once, so receiving never starves; a second send of the same bytes copies.
  /// The most bytes of a receive buffer that lend() lends (the loop's limit, see try_send_lent).
  void set_lend_limit(std::size_t n) noexcept { lend_limit_ = n; }

  bool lend(const std::byte* data, std::size_t size, std::uint16_t& id) noexcept {
    // Inside [current_.data, current_.data + current_.size), compared as addresses; a size of 0
    // means the buffer cannot be lent (outside on_received, lent already, or half the ring out).
    // An empty span is never lent (size - 1 wraps): there is nothing to send.
    const auto offset =
        reinterpret_cast<std::uintptr_t>(data) - reinterpret_cast<std::uintptr_t>(current_.data);
    if (offset >= current_.size || size - 1 >= current_.size - offset) return false;
    current_.size = 0;
    current_.lent = true;
    --lendable_left_;
    id = current_.id;
    return true;
  }

  void give_back(std::uint16_t id) noexcept {
    ++lendable_left_;
    buffers_.recycle(id, buffers_.buffer(id)); // published before the next submission
  }

  /// Receiving paused: a receive from the buffer ring (multishot or single-shot) is cancelled (what
  /// it brings until then still completes); one into the connection's own buffer (no ring) is left
  /// to complete, and is not re-armed.
  void pause_receive(io_object& io) {
    // A starved receive is in no kernel queue: rearm_starved() ends it while it is paused.
    if (!io.receive_pending || !buffers_.is_open() || io.receive_pause_cancelling || io.receive_starved)
      return;
    io.receive_pause_cancelling = true;
    cancel_user_data(tag(&io, op_receive));
  }

  /// Every pending operation of `io` completes soon, with -ECANCELED if it had not finished. (A
  /// receive waiting for buffers is in no kernel queue: the next round reports it cancelled.)
  void cancel(io_object& io) {
    io.cancel_requested = true;
    if (io.receive_pending && !io.receive_starved) cancel_user_data(tag(&io, op_receive));
    if (io.send_pending) cancel_user_data(tag(&io, op_send));
  }

  /// The kernel holds nothing of `io` any more: close its socket. 0, or the error closing failed with.
  int release(io_object& io) noexcept {
    int e = 0;
    if (io.fd >= 0) e = close_socket(io.fd);
    io.fd = -1;
    return e;
  }

  /// Thread-safe: makes a waiting run_once() return and report wake_completed().
  void wake() noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake_fd_, &one, sizeof one);
  }

  /// Submits what was queued, waits up to timeout_ns (negative: no limit, 0: just look) and
  /// reports the completions to the sink (at most a ring's worth: then the loop has its turn).
  template <class Sink>
  void run_once(long long timeout_ns, Sink& sink) {
    // A starved receive that ended here was reported to the loop, which must look at its state
    // before sleeping; those still waiting for buffers are re-armed next round: no sleep either.
    const bool reported = starved_head_ && rearm_starved(sink);
    const bool wait = timeout_ns != 0 && !starved_head_ && !reported;
    int r = submit(wait ? 1 : 0, wait ? timeout_ns : 0);
    sink.begin_round();
    const unsigned reaped = ring_.for_each_completion([&](const io_uring_cqe& cqe) { dispatch(cqe, sink); },
                                                      ring_.completion_entries());
    if (int e = std::exchange(deferred_submit_error_, 0)) sink.backend_failed(errno_code(e));
    // -EBUSY/-EAGAIN with completions to reap: the kernel wanted room, and now has it. Any other
    // failure, and those with nothing reaped, is reported and paced (a lasting one must not spin).
    if (r < 0 && r != -ETIME && r != -EINTR && !((r == -EBUSY || r == -EAGAIN) && reaped))
      sink.backend_failed(errno_code(-r));
  }

private:
  enum : std::uint64_t { op_none = 0, op_accept = 1, op_receive = 2, op_send = 3, op_wake = 4 };
  static constexpr std::uint64_t tag_mask = 7;

  static std::uint64_t tag(void* object, std::uint64_t op) noexcept {
    return reinterpret_cast<std::uint64_t>(object) | op;
  }

  /// Receives and sends first: they are nearly every completion.
  template <class Sink>
  IOCP_ALWAYS_INLINE void dispatch(const io_uring_cqe& cqe, Sink& sink) {
    void* object = reinterpret_cast<void*>(cqe.user_data & ~tag_mask);
    const std::uint64_t op = cqe.user_data & tag_mask;
    if (op == op_receive) {
      on_receive_completion(*static_cast<io_object*>(object), cqe, sink);
    } else if (op == op_send) {
      auto& io = *static_cast<io_object*>(object);
      io.send_pending = false;
      int result = cqe.res;
      if (int e = injected_fault(testing::fault_site::send)) [[unlikely]]
        result = -e;
      sink.send_completed(*this, io, result);
    } else if (op == op_accept) {
      on_accept_completion(*static_cast<accept_context*>(object), cqe, sink);
    } else if (op == op_wake) {
      post_wake_read();
      sink.wake_completed();
    } // else op_none: a cancel request's own completion
  }

  template <class Sink>
  IOCP_ALWAYS_INLINE void on_receive_completion(io_object& io, const io_uring_cqe& cqe, Sink& sink) {
    int result = cqe.res;
    const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
    if (!more) [[unlikely]] {
      if (!receive_ended(io, result)) return; // armed again, unseen by the loop
    }
    // Failed with its multishot receive still armed: the loop's close cancels it.
    if (int e = injected_fault(testing::fault_site::receive)) [[unlikely]]
      result = -e;
    io.receive_pending = more;
    // One call site, so that the loop's on_received inlines here.
    if (cqe.flags & IORING_CQE_F_BUFFER) {
      const auto id = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
      std::byte* data = buffers_.buffer(id);
      current_.data = data;
      // Lendable: the first lend_limit_ bytes (the loop's limit, checked here once per receive
      // rather than in the send the handler inlines).
      current_.size =
          result > 0 && lendable_left_ ? (std::min)(static_cast<std::size_t>(result), lend_limit_) : 0;
      current_.id = id;
      current_.lent = false;
      sink.receive_completed(*this, io, result, data); // may free `io`: do not touch it after
      current_.size = 0;
      if (!current_.lent) buffers_.recycle(id, data);
    } else {
      sink.receive_completed(*this, io, result, io.receive_buffer);
    }
  }

  template <class Sink>
  void on_accept_completion(accept_context& ctx, const io_uring_cqe& cqe, Sink& sink) {
    ctx.pending = (cqe.flags & IORING_CQE_F_MORE) != 0;
    if constexpr (fault_injection_enabled) {
      if (ctx.fault_ending && !ctx.pending && ended_by_fault(ctx, cqe.res)) return;
    }
    if (multishot_accept_) {
      if (cqe.res == -EINVAL && !ctx.pending) {
        // This kernel has no multishot accept (before 5.19): single-shot accepts from now on.
        multishot_accept_ = false;
        start_accept(ctx);
        return;
      }
      if (cqe.res >= 0) {
        ctx.address_length = sizeof ctx.address;
        if (::getpeername(cqe.res, reinterpret_cast<sockaddr*>(&ctx.address), &ctx.address_length) != 0)
          ctx.address = {}; // the client is gone already; its first receive will say so
      }
    }
    if (int e = injected_fault(testing::fault_site::accept)) [[unlikely]] {
      sink.accept_completed(ctx, fail_accept(ctx, cqe.res, e));
      return;
    }
    sink.accept_completed(ctx, cqe.res);
  }

  /// An accept made to fail (fault injection) ends as a real failure does: the descriptor it
  /// brought, if any, is closed (the client sees its connection closed), and a multishot accept
  /// stops, through a cancel whose completion the loop never sees; ctx stays pending until then.
  IOCP_NOINLINE int fail_accept(accept_context& ctx, int result, int error) {
    if (result >= 0) ::close(result);
    if (ctx.pending && !ctx.fault_ending) {
      ctx.fault_ending = true;
      ctx.restart_when_ended = false;
      cancel_user_data(tag(&ctx, op_accept));
    }
    return -error;
  }

  /// The last completion of a multishot accept that fail_accept() ended. True: it was the cancel's,
  /// which the loop need not hear of (it heard of the failure); the accept it asked for meanwhile is
  /// posted now. False: it ended otherwise (a last accept, or a real error), which the loop hears of.
  bool ended_by_fault(accept_context& ctx, int result) {
    ctx.fault_ending = false;
    const bool restart = std::exchange(ctx.restart_when_ended, false);
    if (result != -ECANCELED) return false;
    if (restart) start_accept(ctx);
    return true;
  }

  /// A receive completed without IORING_CQE_F_MORE: the kernel holds it no longer. False: it will
  /// be armed again, and the loop need not hear of it; `result` may become -ECANCELED (a paused
  /// receive's cancel is no error).
  IOCP_NOINLINE bool receive_ended(io_object& io, int& result) {
    if (io.receive_pause_cancelling) {
      // The multishot receive ended, by the pause's cancel or otherwise. If receiving resumed
      // meanwhile, carry on receiving; if not, its end is no error (-ECANCELED tells the loop).
      io.receive_pause_cancelling = false;
      if (result == -ECANCELED || result == -ENOBUFS) {
        if (!io.receive_paused && !io.cancel_requested) {
          if (result == -ENOBUFS)
            starve(io);
          else
            start_receive(io);
          return false;
        }
        result = -ECANCELED;
      }
    }
    if (buffers_.is_open() && !io.cancel_requested && !io.receive_paused) {
      // The ring ran dry: the receive waits until buffers are back (see starve). Or this kernel has
      // buffer rings but not multishot receive: single-shot receives from now on.
      if (result == -ENOBUFS) {
        starve(io);
        return false;
      }
      if (result == -EINVAL && multishot_) {
        multishot_ = false;
        start_receive(io);
        return false;
      }
    }
    return true;
  }

  /// A receive ended with -ENOBUFS: every buffer of the ring was taken. Re-armed at once, it would
  /// fail again at once (the buffers given back meanwhile are published only before the next
  /// submission), and again, for as long as the burst lasts: it waits in a FIFO instead, still
  /// pending for the loop, and rearm_starved() starts it once buffers are back in the ring.
  void starve(io_object& io) noexcept {
    io.receive_starved = true;
    io.starved_next = nullptr;
    if (starved_tail_)
      starved_tail_->starved_next = &io;
    else
      starved_head_ = &io;
    starved_tail_ = &io;
  }

  /// Before a submission, once the ring has its buffers back: re-arms the starved receives, in the
  /// order they ran dry, at most as many as the ring has buffers not lent to sends (a receive that
  /// finds data takes one; more would only run dry again). The rest wait for the next round, which
  /// does not sleep (run_once). A starved receive that the loop cancelled or paused meanwhile ends
  /// now, with -ECANCELED, as a kernel receive would. True: it reported such an end to the sink.
  template <class Sink>
  bool rearm_starved(Sink& sink) {
    bool reported = false;
    unsigned room = buffer_count_ - (max_lent_ - lendable_left_);
    while (starved_head_) {
      io_object& io = *starved_head_;
      const bool ended = io.cancel_requested || io.receive_paused;
      if (!ended && room == 0) break;
      starved_head_ = io.starved_next;
      if (!starved_head_) starved_tail_ = nullptr;
      io.starved_next = nullptr;
      io.receive_starved = false;
      if (ended) {
        io.receive_pending = false;
        io.receive_pause_cancelling = false;
        reported = true;
        sink.receive_completed(*this, io, -ECANCELED, nullptr); // may free `io`
      } else {
        --room;
        start_receive(io);
      }
    }
    return reported;
  }

  void post_wake_read() {
    io_uring_sqe* sqe = sqe_for_submit();
    sqe->opcode = IORING_OP_READ;
    sqe->fd = wake_fd_;
    sqe->addr = reinterpret_cast<std::uint64_t>(&wake_value_);
    sqe->len = sizeof wake_value_;
    sqe->user_data = op_wake;
  }

  void cancel_user_data(std::uint64_t user_data) {
    io_uring_sqe* sqe = sqe_for_submit();
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = user_data;
    sqe->user_data = op_none;
  }

  /// Enters the kernel: first every buffer given back is published (a receive the kernel runs
  /// now must find it), then the SQEs waiting in user space move into the queue, then the queue is
  /// submitted, waiting as asked. 0 or a negated errno, as io_uring_ring::submit_and_wait.
  int submit(unsigned wait_nr, long long timeout_ns, bool get_events = true) noexcept {
    if (buffers_.is_open()) buffers_.publish();
    while (backlog_used_) {
      move_backlog();
      if (!backlog_used_) break;
      if (int r = ring_.submit_and_wait(0, 0, false); r < 0) {
        move_backlog(); // what the kernel took before failing left room: keep the queue full
        return r;
      }
    }
    return ring_.submit_and_wait(wait_nr, timeout_ns, get_events);
  }

  /// An SQE, submitting the full queue first if needed. The kernel copies SQEs at submission
  /// (FEAT_SUBMIT_STABLE), so submitting early never changes what an operation means. While SQEs
  /// wait in user space the queue is full (move_backlog), so taking from it keeps them in order.
  IOCP_ALWAYS_INLINE io_uring_sqe* sqe_for_submit() noexcept {
    if (io_uring_sqe* sqe = ring_.get_sqe()) return sqe;
    return sqe_after_submitting();
  }

  /// The queue is full, as completions are handled (each may start operations). It is submitted
  /// without running completion work (which would add completions to the batch being handled). If
  /// the kernel takes nothing (-EAGAIN, -EBUSY, an error), the SQE waits in user space, in order,
  /// for the next submission, and the failure is reported (paced) when the round ends: nothing
  /// throws or spins here. Only without memory for that backlog does the thread wait, 1 ms at a
  /// time, for the kernel to take its queue.
  IOCP_NOINLINE io_uring_sqe* sqe_after_submitting() noexcept {
    for (;;) {
      int r = submit(0, 0, false);
      if (!backlog_used_)
        if (io_uring_sqe* sqe = ring_.get_sqe()) return sqe;
      if (r < 0) deferred_submit_error_ = -r;
      if (io_uring_sqe* sqe = backlog_sqe()) return sqe;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  /// A zeroed SQE at the end of the user-space backlog, or nullptr without memory for one.
  io_uring_sqe* backlog_sqe() noexcept {
    if (backlog_used_ == backlog_.size()) {
      try {
        backlog_.resize(backlog_.empty() ? 256 : backlog_.size() * 2);
      } catch (const std::bad_alloc&) {
        return nullptr;
      }
    }
    io_uring_sqe* sqe = &backlog_[backlog_used_++];
    std::memset(sqe, 0, sizeof *sqe);
    return sqe;
  }

  /// Moves SQEs from the backlog into the queue, oldest first, as far as there is room.
  void move_backlog() noexcept {
    std::size_t moved = 0;
    while (moved < backlog_used_) {
      io_uring_sqe* sqe = ring_.get_sqe();
      if (!sqe) break;
      std::memcpy(sqe, &backlog_[moved], sizeof *sqe);
      ++moved;
    }
    if (!moved) return;
    std::memmove(backlog_.data(), backlog_.data() + moved, (backlog_used_ - moved) * sizeof(io_uring_sqe));
    backlog_used_ -= moved;
  }

  static constexpr std::uint16_t buffer_group = 0;

  io_uring_ring ring_;
  io_uring_buffer_ring buffers_;
  unsigned buffer_count_ = 0; // in the ring
  // Buffers that may still be lent: at most half the ring is, so receiving never starves.
  unsigned max_lent_ = 0;
  unsigned lendable_left_ = 0;
  // Receives that ran dry (-ENOBUFS), waiting for buffers, oldest first.
  io_object* starved_head_ = nullptr;
  io_object* starved_tail_ = nullptr;
  // SQEs the kernel could not take yet (the queue was full and submitting failed), oldest first.
  std::vector<io_uring_sqe> backlog_;
  std::size_t backlog_used_ = 0;
  int deferred_submit_error_ = 0; // such a failure, reported when the round ends
  // The buffer the running on_received was given.
  struct {
    std::byte* data = nullptr;
    std::size_t size = 0; // what may be lent: 0 outside on_received, once lent, or with none left
    std::uint16_t id = 0;
    bool lent = false;
  } current_;
  std::size_t lend_limit_ = ~std::size_t{0};
  bool multishot_ = false;
  bool multishot_accept_; // for a sole acceptor, until the kernel refuses it
  int listen_fd_;
  unsigned receive_size_;
  int wake_fd_ = -1;
  std::uint64_t wake_value_ = 0;
};

} // namespace iocp::detail
