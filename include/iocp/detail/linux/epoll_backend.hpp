// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The epoll backend of one I/O thread: a Proactor emulated on a Reactor, as Asio does. It reports
// the same completions as io_uring: an operation is started, and later completes with a byte count
// or an error. A send is tried at once and only waits for EPOLLOUT when the socket buffer is full;
// a receive is carried out when the socket is readable, into one buffer the thread shares, so an
// idle connection holds no receive buffer. Interest is level-triggered and registered only while an
// operation waits, so a socket with nothing pending (even one in error) never wakes the thread.

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <system_error>
#include <vector>

#include "iocp/detail/fault_injection.hpp"
#include "iocp/detail/inline.hpp"
#include "iocp/detail/linux/io_object.hpp"
#include "iocp/detail/linux/socket_ops.hpp"

namespace iocp::detail {

class epoll_backend {
public:
  epoll_backend(int listen_fd, std::size_t receive_size, unsigned /*entries*/)
      : listen_fd_(listen_fd), receive_size_(receive_size),
        receive_buffer_(std::make_unique<std::byte[]>(receive_size)) {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) throw_errno(errno, "epoll_create1()");
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
      int e = errno;
      ::close(epoll_fd_);
      throw_errno(e, "eventfd()");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag(nullptr, op_wake);
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
      int e = errno;
      ::close(wake_fd_);
      ::close(epoll_fd_);
      throw_errno(e, "epoll_ctl(eventfd)");
    }
  }
  /// Receives land in one buffer the thread shares: connections need none of their own.
  bool needs_receive_buffers() const noexcept { return false; }

  epoll_backend(const epoll_backend&) = delete;
  epoll_backend& operator=(const epoll_backend&) = delete;
  ~epoll_backend() {
    ::close(wake_fd_);
    ::close(epoll_fd_);
  }

  void start_accept(accept_context& ctx) {
    ctx.pending = true;
    armed_accept_ = &ctx;
    if (!listener_registered_) {
      // EPOLLEXCLUSIVE: a new connection wakes one of the I/O threads, not all of them.
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLEXCLUSIVE;
      ev.data.u64 = tag(nullptr, op_accept);
      if (control(EPOLL_CTL_ADD, listen_fd_, &ev) == 0)
        listener_registered_ = true;
      else
        complete_later(op_accept, &ctx, -errno);
    }
  }

  void cancel_accept(accept_context& ctx) {
    if (armed_accept_ != &ctx) return;
    armed_accept_ = nullptr;
    unregister_listener();
    complete_later(op_accept, &ctx, -ECANCELED);
  }

  void start_receive(io_object& io) {
    io.receive_pending = true;
    update_interest(io);
  }

  /// Receiving paused: stop watching for input (the socket's buffer holds what arrives).
  void pause_receive(io_object& io) {
    io.receive_pending = false;
    update_interest(io);
  }

  void start_send(io_object& io, const std::byte* data, std::size_t size) {
    io.send_pending = true;
    if (int result = send_now(io, data, size); result != 0) {
      complete_later(op_send, &io, result);
    } else {
      io.send_waiting = true;
      io.send_data = data;
      io.send_size = size;
      update_interest(io);
    }
  }

  /// Sends from the caller's memory at once: bytes written, 0 when the socket buffer is full, or a
  /// negated errno. Nothing is pending afterwards. Never called with size 0 (nothing queues empty
  /// data), so 0 always means "would block".
  int send_now(io_object& io, const std::byte* data, std::size_t size) noexcept {
    ssize_t n = call_unless_fault(testing::fault_site::send, [&] { return raw_send(io.fd, data, size); });
    if (n >= 0) return static_cast<int>(n);
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  }

  /// Reports `bytes` sent by send_now() as a send completion in the next round, so the handler's
  /// on_sent never runs inside the call that sent. The connection counts as sending until then.
  void report_sent_later(io_object& io, int bytes) {
    complete_later(op_send_direct, &io, bytes); // first: if the list cannot grow, nothing is pending
    io.send_pending = true;
  }

  void cancel(io_object& io) {
    if (io.receive_pending) complete_later(op_receive, &io, -ECANCELED);
    if (io.send_waiting) {
      io.send_waiting = false;
      complete_later(op_send, &io, -ECANCELED);
    }
    // receive_pending stays set until the cancellation is reported; stop watching the socket now.
    if (io.registered) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, io.fd, nullptr);
      io.registered = false;
    }
    io.registered_events = 0;
    // Events already fetched in this round may name `io`; once it is released its memory may be
    // reused, so the round skips them by address (compared only, never dereferenced).
    if (dispatching_) cancelled_.push_back(&io);
  }

  /// Closes the socket: 0, or the error closing failed with.
  int release(io_object& io) noexcept {
    if (io.registered) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, io.fd, nullptr);
    io.registered = false;
    int e = 0;
    if (io.fd >= 0) e = close_socket(io.fd);
    io.fd = -1;
    return e;
  }

  void wake() noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake_fd_, &one, sizeof one);
  }

  template <class Sink>
  void run_once(long long timeout_ns, Sink& sink) {
    // Rounded up, and at most INT_MAX ms (24 days): a longer wait is cut short, never made endless.
    int timeout_ms =
        timeout_ns < 0
            ? -1
            : static_cast<int>(std::min<long long>(timeout_ns / 1'000'000 + (timeout_ns % 1'000'000 != 0),
                                                   std::numeric_limits<int>::max()));
    if (!ready_.empty()) timeout_ms = 0;
    int n = call_unless_fault(testing::fault_site::wait,
                              [&] { return ::epoll_wait(epoll_fd_, events_, max_events, timeout_ms); });
    if (n < 0 && errno != EINTR) sink.backend_failed(last_error());
    sink.begin_round();
    dispatching_ = true;
    for (int i = 0; i < n; ++i)
      dispatch(events_[i], sink);
    dispatching_ = false;
    cancelled_.clear();
    // Completions found while starting operations (a send that went out at once, a cancellation).
    // Those that these completions start wait for the next round, so one busy connection cannot
    // keep the thread from the others.
    // Two lists taking turns, both keeping their capacity: no allocation once they have grown.
    delivering_.swap(ready_);
    for (const ready_completion& c : delivering_)
      deliver(c, sink);
    delivering_.clear();
  }

private:
  enum : std::uint64_t {
    op_accept = 1,
    op_receive = 2,
    op_send = 3,
    op_wake = 4,
    op_io = 5,
    op_send_direct = 6
  };
  static constexpr std::uint64_t tag_mask = 7;
  static constexpr int max_events = 256;
  // Accepts per wake-up before the thread turns to its other sockets.
  static constexpr int accept_batch = 64;

  struct ready_completion {
    std::uint64_t op;
    void* object;
    int result;
  };

  static std::uint64_t tag(void* object, std::uint64_t op) noexcept {
    return reinterpret_cast<std::uint64_t>(object) | op;
  }

  void complete_later(std::uint64_t op, void* object, int result) { ready_.push_back({op, object, result}); }

  template <class Sink>
  void deliver(const ready_completion& c, Sink& sink) {
    switch (c.op) {
    case op_accept: {
      auto& ctx = *static_cast<accept_context*>(c.object);
      ctx.pending = false;
      sink.accept_completed(ctx, c.result);
      break;
    }
    case op_receive: {
      auto& io = *static_cast<io_object*>(c.object);
      io.receive_pending = false;
      sink.receive_completed(*this, io, c.result, nullptr);
      break;
    }
    case op_send: {
      auto& io = *static_cast<io_object*>(c.object);
      io.send_pending = false;
      sink.send_completed(*this, io, c.result);
      break;
    }
    case op_send_direct: {
      auto& io = *static_cast<io_object*>(c.object);
      io.send_pending = false;
      sink.send_completed_at_once(*this, io, c.result);
      break;
    }
    }
  }

  /// Usually nothing changes (a receive re-armed on a registered socket): that check stays inline.
  IOCP_ALWAYS_INLINE void update_interest(io_object& io) {
    std::uint32_t wanted =
        (io.receive_pending ? EPOLLIN | EPOLLRDHUP : 0u) | (io.send_waiting ? EPOLLOUT : 0u);
    if (io.registered && wanted == io.registered_events) return;
    change_interest(io, wanted);
  }

  void change_interest(io_object& io, std::uint32_t wanted) {
    if (wanted == 0) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, io.fd, nullptr);
      io.registered = false;
      io.registered_events = 0;
      return;
    }
    epoll_event ev{};
    ev.events = wanted;
    ev.data.u64 = tag(&io, op_io);
    if (control(io.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io.fd, &ev) != 0) {
      int e = errno;
      // The socket cannot be watched: fail what waits on it rather than leave it hanging.
      if (io.receive_pending) complete_later(op_receive, &io, -e);
      if (io.send_waiting) {
        io.send_waiting = false;
        complete_later(op_send, &io, -e);
      }
      return;
    }
    io.registered = true;
    io.registered_events = wanted;
  }

  /// epoll_ctl() to watch a descriptor, or change what is watched: the calls whose failure the
  /// backend handles, and so the ones a fault can be injected into. EPOLL_CTL_DEL of a descriptor we
  /// registered and have not closed cannot fail (its only errors are EBADF, EINVAL and ENOENT).
  int control(int op, int fd, epoll_event* ev) noexcept {
    return call_unless_fault(testing::fault_site::submit, [&] { return ::epoll_ctl(epoll_fd_, op, fd, ev); });
  }

  void unregister_listener() {
    if (!listener_registered_) return;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    listener_registered_ = false;
  }

  bool was_cancelled(io_object* io) const noexcept {
    for (io_object* c : cancelled_)
      if (c == io) return true;
    return false;
  }

  template <class Sink>
  void dispatch(const epoll_event& ev, Sink& sink) {
    std::uint64_t op = ev.data.u64 & tag_mask;
    if (op == op_wake) {
      std::uint64_t value;
      while (::read(wake_fd_, &value, sizeof value) > 0) {}
      sink.wake_completed();
      return;
    }
    if (op == op_accept) {
      accept_ready(sink);
      return;
    }
    auto* io = reinterpret_cast<io_object*>(ev.data.u64 & ~tag_mask);
    // An event fetched before the object was cancelled in this same round: its socket may be closed.
    if (!cancelled_.empty() && was_cancelled(io)) return;
    if (io->send_waiting && (ev.events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
      if (int result = send_now(*io, io->send_data, io->send_size); result != 0) {
        io->send_waiting = false;
        io->send_pending = false;
        update_interest(*io);
        sink.send_completed(*this, *io, result);
        if (!cancelled_.empty() && was_cancelled(io)) return;
      }
    }
    if (io->receive_pending && (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) {
      ssize_t n = call_unless_fault(testing::fault_site::receive, [&] {
        return raw_receive(io->fd, receive_buffer_.get(), receive_size_);
      });
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      io->receive_pending = false;
      int result = n >= 0 ? static_cast<int>(n) : -errno;
      sink.receive_completed(*this, *io, result, receive_buffer_.get());
      // The sink re-arms the receive in the usual case; if it did not, stop watching for input.
      if (!(!cancelled_.empty() && was_cancelled(io)) && !io->receive_pending) update_interest(*io);
    }
  }

  template <class Sink>
  void accept_ready(Sink& sink) {
    for (int i = 0; i < accept_batch && armed_accept_; ++i) {
      accept_context& ctx = *armed_accept_;
      ctx.address_length = sizeof ctx.address;
      // An injected failure takes nothing from the accept queue.
      int fd = call_unless_fault(testing::fault_site::accept, [&] {
        return ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ctx.address), &ctx.address_length,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      });
      if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return; // another thread took it
      armed_accept_ = nullptr;
      ctx.pending = false;
      sink.accept_completed(ctx, fd >= 0 ? fd : -errno); // usually re-arms through start_accept()
    }
    // Not re-armed (the loop is backing off or stopping): a level-triggered listener would wake us
    // for nothing until then.
    if (!armed_accept_) unregister_listener();
  }

  int listen_fd_;
  std::size_t receive_size_;
  std::unique_ptr<std::byte[]> receive_buffer_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  bool listener_registered_ = false;
  accept_context* armed_accept_ = nullptr;
  bool dispatching_ = false;
  epoll_event events_[max_events];
  std::vector<ready_completion> ready_;
  std::vector<ready_completion> delivering_; // the previous round's ready_, being delivered
  std::vector<io_object*> cancelled_;
};

} // namespace iocp::detail
