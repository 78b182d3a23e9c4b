// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The fake backends fuzz_event_loop.cpp runs the real event loop on, in place of io_uring
// (fake_backend<false>: completions) and epoll (fake_backend<true>: readiness): here, what the
// loop calls (the contract of detail/backend_contract.hpp, which event_loop::run() checks them
// against with static_assert) and what each call must find; the events the input makes happen
// between two rounds are defined in fake_events.hpp, which the target includes after this.
// Includes only iocp headers that do not read IOCP_TEST_BACKEND: it comes before the macro.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <span>
#include <system_error>
#include <vector>

#include "iocp/detail/linux/io_object.hpp"

#include "../fuzz_checks.hpp"
#include "fake_world.hpp"

namespace fuzz {

template <bool Readiness>
class fake_backend {
public:
  fake_backend(int, std::size_t receive_size, unsigned) requires Readiness : w_(*current_world),
                                                                             shared_(receive_size) {
    attach(receive_size);
  }
  fake_backend(int, std::size_t receive_size, unsigned, unsigned receive_buffers,
               bool sole_acceptor) requires(!Readiness)
      : w_(*current_world), ring_(receive_buffers) {
    check(sole_acceptor, "the fuzzed server has one I/O thread, the sole acceptor");
    for (slot& b : ring_)
      b.bytes.resize(receive_size);
    lendable_left_ = receive_buffers / 2;
    attach(receive_size);
  }
  fake_backend(const fake_backend&) = delete;
  fake_backend& operator=(const fake_backend&) = delete;
  ~fake_backend() {
    for (const slot& b : ring_)
      check(!b.lent && !b.in_use, "a lent receive buffer was never given back");
    check(lendable_left_ == ring_.size() / 2, "lent receive buffers given back more or less than once");
  }

  bool needs_receive_buffers() const noexcept { return !Readiness && ring_.empty(); }
  unsigned accepts_wanted(unsigned configured) const noexcept requires(!Readiness) {
    return w_.multishot_accept ? 1 : configured;
  }

  void start_accept(accept_context& ctx) {
    check(!w_.loop_stopping, "an accept started after the stop");
    if constexpr (Readiness) {
      ctx.pending = true;
      armed_ = &ctx;
    } else {
      if (ctx.pending) return; // a multishot accept goes on by itself
      ctx.pending = true;
      accept_cancel_[&ctx] = false;
    }
  }
  void cancel_accept(accept_context& ctx) {
    if constexpr (Readiness) {
      if (armed_ != &ctx) return;
      armed_ = nullptr;
      ready_.push_back({op::accept, nullptr, &ctx, -1, -ECANCELED});
    } else {
      if (ctx.pending) accept_cancel_[&ctx] = true;
    }
  }

  void start_receive(io_object& io) {
    fake_socket& s = sock(io);
    check(!io.receive_pending, "a receive started while one is pending");
    check(!s.cancelled, "a receive started on a closing connection");
    check(!io.receive_paused, "a receive started while receiving is paused");
    check(!s.fin_fed, "a receive started after the end of the stream");
    io.receive_pending = true;
    s.receive_cancel = false;
  }

  void pause_receive(io_object& io) {
    fake_socket& s = sock(io);
    check(io.receive_pending, "pause_receive() with no receive pending");
    check(!s.cancelled, "pause_receive() on a closing connection");
    if constexpr (Readiness) {
      io.receive_pending = false;
    } else {
      if (ring_.empty() || s.pause_cancelling) return; // single-shot: it completes, unrenewed
      s.pause_cancelling = true;
    }
  }

  void start_send(io_object& io, const std::byte* data, std::size_t size) {
    fake_socket& s = sock(io);
    check_can_send(io, s, size);
    io.send_pending = true;
    if constexpr (Readiness) {
      if (int r = write_now(s, data, size); r != 0) {
        ready_.push_back({op::send, &io, nullptr, s.fd, r});
      } else {
        s.waiting = true;
        s.send_data = data;
        s.send_size = size;
      }
    } else {
      s.send_data = data; // read when the send completes, as the kernel may
      s.send_size = std::min<std::size_t>(size, 1u << 30);
      s.send_cancel = false;
    }
  }

  int send_now(io_object& io, const std::byte* data, std::size_t size) requires Readiness {
    fake_socket& s = sock(io);
    check_can_send(io, s, size);
    int n = write_now(s, data, size);
    if (n > 0) w_.bytes_sent += static_cast<std::uint64_t>(n);
    return n;
  }
  void report_sent_later(io_object& io, int bytes) requires Readiness {
    fake_socket& s = sock(io);
    check(bytes > 0 && !io.send_pending, "report_sent_later() without bytes, or with a send pending");
    io.send_pending = true;
    ready_.push_back({op::send_direct, &io, nullptr, s.fd, bytes});
  }

  void set_lend_limit(std::size_t n) noexcept requires(!Readiness) { lend_limit_ = n; }
  bool lend(const std::byte* data, std::size_t size, std::uint16_t& id) noexcept requires(!Readiness) {
    const auto offset =
        reinterpret_cast<std::uintptr_t>(data) - reinterpret_cast<std::uintptr_t>(current_.data);
    if (offset >= current_.size || size > current_.size - offset) return false;
    current_.size = 0;
    current_.lent = true;
    --lendable_left_;
    ring_[current_.id].lent = true;
    id = current_.id;
    return true;
  }
  void give_back(std::uint16_t id) noexcept requires(!Readiness) {
    check(id < ring_.size() && ring_[id].lent, "a receive buffer given back that was not lent");
    ring_[id].lent = false;
    ++lendable_left_;
    scribble(ring_[id].bytes); // a send still reading it would now send other bytes
  }

  void cancel(io_object& io) {
    fake_socket& s = sock(io);
    check(!s.cancelled, "a connection cancelled twice");
    s.cancelled = true;
    if constexpr (Readiness) {
      if (io.receive_pending) ready_.push_back({op::recv, &io, nullptr, s.fd, -ECANCELED});
      if (s.waiting) {
        s.waiting = false;
        ready_.push_back({op::send, &io, nullptr, s.fd, -ECANCELED});
      }
    } else {
      if (io.receive_pending) s.receive_cancel = true;
      if (io.send_pending) s.send_cancel = true;
    }
  }

  int release(io_object& io) noexcept {
    fake_socket& s = sock(io);
    check(s.cancelled, "release() of a connection that was never cancelled");
    check(!io.receive_pending && !io.send_pending, "release() with an operation pending");
    for (const ready_completion& r : ready_)
      check(r.fd != s.fd, "release() with a completion still to be reported");
    s.released = true;
    s.closed = true;
    w_.retire(s.fd);
    io.fd = -1;
    return 0;
  }

  void wake() noexcept {
    {
      std::lock_guard lock(w_.mutex);
      w_.wake_pending = true;
    }
    w_.changed.notify_all();
  }

  std::error_code shutdown_send(int fd) { return w_.shutdown_send(fd); }
  void set_linger_zero(int fd) noexcept { w_.set_linger_zero(fd); }
  long unacknowledged_bytes(int fd) noexcept { return w_.unacknowledged_bytes(fd); }
  int close_socket(int fd) noexcept { return w_.close_socket(fd); }

  template <class Sink>
  void run_once(long long timeout_ns, Sink& sink) {
    if (!started_) {
      started_ = true;
      w_.driver->attach(&sink.server()); // no waiting for the constructor to return
    }
    check(timeout_ns >= -1, "a negative wait other than -1");
    check_deadlines(timeout_ns);
    check(++w_.rounds < 2'000'000, "the loop went round too often");
    sink.begin_round(); // the wait returns: what follows comes in at the fake clock's time
    if (w_.in.remaining_bytes() == 0)
      drain(timeout_ns, sink);
    else
      event(timeout_ns, sink);
    sink.begin_round(); // time may have passed (a round of waiting only): the timers see it
    if constexpr (Readiness) deliver_ready(sink);
  }

private:
  enum class op : std::uint8_t { accept, recv, send, send_direct };
  struct ready_completion {
    op what;
    io_object* io;
    accept_context* ctx;
    int fd;
    int result;
  };
  struct slot {
    std::vector<std::byte> bytes;
    bool in_use = false; // given to the loop by the running receive completion
    bool lent = false;
  };

  /// Between two rounds the loop has run its timers: whatever was due is done, and it waits no
  /// longer than until the next deadline it has.
  void check_deadlines(long long timeout_ns) {
    const std::int64_t now = w_.now.load();
    auto waits_at_most = [&](std::int64_t deadline) {
      return timeout_ns >= 0 && timeout_ns <= deadline - now;
    };
    // A connection's idle check is due at most the limit after its last activity (so after now).
    const bool idle_checked = w_.idle_limit_ns && w_.idle_limit_ns < never - now - 1;
    const bool stop_due = w_.loop_stopping && w_.stop_deadline <= now;
    if (w_.loop_stopping && !stop_due && w_.stop_deadline != never)
      check(waits_at_most(w_.stop_deadline), "the loop waits past the stop deadline");
    for (int fd : w_.live) {
      const fake_socket& s = w_.socket(fd);
      if (!s.io || s.cancelled) continue;
      check(!stop_due, "the stop deadline passed and a connection is still open");
      if (idle_checked)
        check(waits_at_most(now + w_.idle_limit_ns + 1),
              "with an idle timeout, the loop waits past a connection's idle check");
      if (!s.lingering) continue;
      check(s.linger_deadline > now, "a linger period ran out and the connection is still open");
      if (s.linger_deadline != never)
        check(waits_at_most(s.linger_deadline), "the loop waits past a linger deadline");
    }
  }

  void attach(std::size_t receive_size) {
    w_.receive_size = receive_size;
    io_thread_exit.w = &w_;
  }

  static void scribble(std::span<std::byte> bytes) { std::fill(bytes.begin(), bytes.end(), std::byte{0xA5}); }

  fake_socket& sock(io_object& io) {
    check(io.fd >= 0, "an operation on a released connection");
    fake_socket& s = w_.socket(io.fd);
    check(!s.closed && !s.released, "an operation on a closed socket");
    check(s.io == nullptr || s.io == &io, "one socket, two connections");
    s.io = &io;
    return s;
  }

  void check_can_send(io_object& io, fake_socket& s, std::size_t size) {
    check(!io.send_pending, "a send started while one is pending");
    check(!s.cancelled, "a send started on a closing connection");
    check(!s.fin_sent, "a send started after our FIN");
    check(size > 0, "an empty send");
  }

  /// Readiness: what the socket buffer takes of a send, at once.
  int write_now(fake_socket& s, const std::byte* data, std::size_t size) {
    if (s.peer_reset) {
      s.errors.insert(EPIPE);
      return -EPIPE;
    }
    std::size_t n = std::min(size, s.window);
    s.window -= n;
    if (n) w_.peer_write(s, data, n);
    return static_cast<int>(n);
  }

  int pick_error(std::initializer_list<int> errors) {
    return *(errors.begin() + w_.in.ConsumeIntegralInRange<std::size_t>(0, errors.size() - 1));
  }

  // ---- what the input makes happen (fake_events.hpp) ----

  template <class Sink>
  void event(long long timeout_ns, Sink& sink);
  void advance(std::int64_t ns);
  bool wake_pending();
  template <class Sink>
  void deliver_wake(Sink& sink);
  template <class Sink>
  void call_main(main_call what, std::chrono::milliseconds timeout, Sink& sink);
  template <class Sink>
  void accept_event(Sink& sink);
  template <class Sink>
  void receive_event(fake_socket& s, bool error, Sink& sink);
  template <class Sink>
  void deliver_receive(fake_socket& s, int result, bool more, Sink& sink);
  template <class Sink>
  void send_event(fake_socket& s, bool error, Sink& sink);
  template <class Sink>
  void complete_send(fake_socket& s, int result, Sink& sink) requires(!Readiness);
  template <class Sink>
  void cancellation_event(Sink& sink);
  template <class Sink>
  void land_accept_cancel(accept_context& ctx, Sink& sink);
  template <class Sink>
  void land_cancel(fake_socket& s, Sink& sink);
  template <class Sink>
  void deliver_ready(Sink& sink);
  template <class Sink>
  void drain(long long timeout_ns, Sink& sink);

  world& w_;
  bool started_ = false;
  // Readiness.
  std::vector<std::byte> shared_; // the thread's one receive buffer
  accept_context* armed_ = nullptr;
  std::vector<ready_completion> ready_;
  // Completion.
  std::map<accept_context*, bool> accept_cancel_; // every context started; whether a cancel is due
  std::vector<slot> ring_;                        // provided buffers (none: one per connection)
  std::size_t lendable_left_ = 0;
  std::size_t lend_limit_ = 0; // the loop's: at most this much of a buffer is lent
  struct {
    std::byte* data = nullptr;
    std::size_t size = 0; // what may be lent: 0 outside on_received, once lent, or with none left
    std::uint16_t id = 0;
    bool lent = false;
  } current_;
};

/// Stands in for the platform's backends, sockets and clock (see detail/event_loop.hpp).
struct test_backends {
  using completion_backend = fake_backend<false>;
  using readiness_backend = fake_backend<true>;
  static std::int64_t now_ns() noexcept { return current_world->now.load(); }
};

} // namespace fuzz
