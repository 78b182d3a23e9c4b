// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// One I/O thread: its backend, the connections it accepted, and the connection state machine that
// every backend shares. Backends only start operations and report their completions
// (accept_completed, receive_completed, send_completed, wake_completed: names of their own, not
// the handler's callbacks); everything a connection means (half-close,
// close after the queue drains, lingering for the peer's FIN, abort, exactly one on_disconnected per
// on_connected) is decided here, once, for all of them.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "iocp/connection.hpp"
#include "iocp/connection_map.hpp"
#include "iocp/detail/backend.hpp"
#include "iocp/detail/backend_contract.hpp"
#include "iocp/detail/clock.hpp"
#include "iocp/detail/command_inbox.hpp"
#include "iocp/detail/config.hpp"
#include "iocp/detail/inline.hpp"
#include "iocp/detail/loop_counters.hpp"
#include "iocp/detail/loop_timers.hpp"
#include "iocp/detail/posted_function.hpp"
#include "iocp/detail/send_budget.hpp"
#include "iocp/endpoint.hpp"
#include "iocp/error.hpp"
#include "iocp/handler.hpp"
#include "iocp/options.hpp"
#include "iocp/timer.hpp"

namespace iocp::detail {

/// The event loop whose thread is running, if any: lets an operation called on the owning thread
/// act at once instead of being posted.
inline thread_local const void* current_event_loop = nullptr;

/// A socket accepted on another thread (IOCP: only thread 0's port can hold the listener).
struct adopted_socket {
  socket_handle socket;
  endpoint remote;
};

template <class Server>
class event_loop {
public:
  using connection_type = connection<Server>;
  using handler_type = typename Server::handler_type;
  using allocator_type = typename Server::allocator_type;

  event_loop(Server& server, std::uint32_t index, iocp::backend kind, socket_handle listen_fd,
             const server_options& options)
      : server_(server), index_(index), options_(options), budget_(server.send_budget()),
        inbox_(server.send_budget(), inbox_limit(options, server.thread_count())) {
#if defined(IOCP_HAS_IOCP)
    (void)kind;
    iocp_.emplace(listen_fd, options.receive_buffer_size);
    // The listener can belong to one completion port only: thread 0's accepts for every thread.
    if (index == 0) accepts_.resize((std::max)(1u, options.accepts_in_flight));
#else
    unsigned entries = 1024;
    if (kind == iocp::backend::io_uring) {
      uring_.emplace(listen_fd, options.receive_buffer_size, entries, options.receive_buffers_per_thread,
                     server.thread_count() == 1);
      // Set here, not through the constructor: that form made GCC 12 keep a frame pointer in the
      // inlined loop, which spilled the connection pointer (about 25 instructions a message more).
      uring_->set_lend_limit(lent_send_limit_);
      accepts_.resize(uring_->accepts_wanted((std::max)(1u, options.accepts_in_flight)));
    } else {
      epoll_.emplace(listen_fd, options.receive_buffer_size, entries);
      accepts_.resize(1); // readiness accepts one at a time; more contexts would add nothing
    }
#endif
  }
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  ~event_loop() {
    // The thread has ended; whatever is left (only after a failed start) is released quietly.
    while (live_)
      destroy(*live_, false);
    // Work posted after this thread had stopped: sockets handed over, moved vectors, reservations.
    inbox_.drain(budget_, [this](command_record& r) { discard(r); });
  }

  Server& server() const noexcept { return server_; }
  std::uint32_t index() const noexcept { return index_; }
  /// Any thread may read them (basic_iocp_server::statistics()).
  const loop_counters& counters() const noexcept { return counters_; }
  bool on_own_thread() const noexcept { return current_event_loop == this; }

  /// The thread body: runs until a stop command has been carried out.
  void run() {
    current_event_loop = this;
    with_backend([&](auto& b) {
      using backend_type = std::remove_reference_t<decltype(b)>;
      static_assert(backend_for<backend_type, event_loop>,
                    "iocp: a backend does not meet the loop's contract (detail/backend_contract.hpp)");
      static_assert(completion_sink<event_loop, backend_type>,
                    "iocp: the event loop does not take every completion (detail/backend_contract.hpp)");
      run_with(b);
    });
    current_event_loop = nullptr;
  }

  // ---- from any thread: calls by id posted to this thread (see command_inbox) ----
  // Each returns errc::send_queue_full past the server-wide cap (sends only) or not_enough_memory;
  // then nothing was posted. The loop takes the whole inbox at once: only the first post into an
  // empty inbox wakes it.

  std::error_code post_send(connection_id id, std::span<const std::byte> data) {
    return post(command_kind::send, id, 0, data.size(), true,
                [&](std::byte* to) noexcept { std::memcpy(to, data.data(), data.size()); });
  }
  /// `reserved`: what the caller reserved from the send budget for the vector's memory, which the
  /// record then owns (given back by the loop when the vector's bytes are sent or dropped).
  std::error_code post_vector(connection_id id, std::vector<std::byte>&& data, std::size_t reserved) {
    return post(command_kind::send_vector, id, 0, sizeof(posted_vector), true, [&](std::byte* to) noexcept {
      ::new (to) posted_vector{std::move(data), reserved};
    });
  }
  std::error_code post_call(command_kind what, connection_id id, shutdown_type how = shutdown_type::both) {
    return post(what, id, static_cast<std::uint8_t>(how), 0, false, [](std::byte*) noexcept {});
  }
  std::error_code post_adopt(socket_handle s, const endpoint& remote) {
    return post(command_kind::adopt, connection_id{}, 0, sizeof(adopted_socket), false,
                [&](std::byte* to) noexcept {
                  ::new (to) adopted_socket{s, remote};
                });
  }
  /// A function for the thread (kind run) or for the connection `id` (kind call), run in order
  /// with the other posts. Counted like a send's bytes: refused past the server-wide cap.
  template <class Call, class F>
  std::error_code post_function(command_kind what, connection_id id, F&& f) {
    using stored = std::decay_t<F>;
    return post(what, id, 0, posted_function::size_for<stored>(), true,
                [&](std::byte* to) noexcept { posted_function::construct<F, Call>(to, std::forward<F>(f)); });
  }
  /// A timer armed from another thread: `id` its connection's (empty: server-wide).
  std::error_code post_timer(connection_id id, timer_id t, std::int64_t due_ns, std::int64_t period_ns) {
    return post(command_kind::arm_timer, id, 0, sizeof(posted_timer), false, [&](std::byte* to) noexcept {
      ::new (to) posted_timer{t.sequence(), due_ns, period_ns};
    });
  }
  std::error_code post_cancel_timer(timer_id t) {
    return post(command_kind::cancel_timer, connection_id{}, 0, sizeof(posted_timer), false,
                [&](std::byte* to) noexcept {
                  ::new (to) posted_timer{t.sequence(), 0, 0};
                });
  }
  /// A new timer's id, from any thread (the timer is armed by set_timer or post_timer).
  timer_id new_timer_id() noexcept {
    return {index_, timer_sequence_.fetch_add(1, std::memory_order_relaxed)};
  }

  /// A graceful stop with this deadline (the earliest of those asked for applies). Not a record in
  /// the inbox, so that it needs no memory; what was posted before it is carried out first.
  void request_stop(std::int64_t deadline_ns) noexcept {
    std::int64_t current = stop_deadline_asked_.load(std::memory_order_relaxed);
    while (deadline_ns < current &&
           !stop_deadline_asked_.compare_exchange_weak(current, deadline_ns, std::memory_order_relaxed)) {}
    stop_asked_.store(true, std::memory_order_release);
    with_backend([](auto& b) { b.wake(); });
  }

  // ---- on the owning thread: the connection's operations ----

  /// The echo case, on_received sending bytes of the very buffer it was given while nothing else
  /// is queued, in a few instructions and no call: the handler's on_received stays small enough for
  /// the compiler to inline it into the completion loop. False: nothing was done; send() does it.
  IOCP_ALWAYS_INLINE bool try_send_lent(connection_type& c, std::span<const std::byte> data) noexcept {
#if defined(IOCP_HAS_IOCP)
    (void)c;
    (void)data;
    return false;
#else
    // (The backend lends at most lent_send_limit_ bytes.)
    if (!uring_ || !c.callback_depth_ || !c.queue_.empty() || c.closing_ || c.write_shut_requested_)
      return false;
    std::uint16_t lent_buffer;
    if (!uring_->lend(data.data(), data.size(), lent_buffer)) return false;
    c.queue_.append_lent_to_empty(data, lent_buffer); // its own node: nothing is allocated
    c.after_callback_ |= connection_type::flush_owed; // started when the callback returns (invoke)
    return true;
#endif
  }

  // The operations a handler calls (through connection and the server's by-id forms) run no
  // handler callback and free no connection before they return, whatever they cause: what a
  // callback is owed then (on_send_queue_high, on_disconnected, on_server_error) runs when the
  // running callback returns, or in the loop's deferred round (run_deferred).

  // An allocation that fails closes the connection (its stream would have a gap), reported as
  // std::errc::not_enough_memory (operation::send) once the caller's callback has returned.

  // Out of line: what the handler's send() inlines is try_send_lent() and a call to this.
  IOCP_NOINLINE std::error_code send(connection_type& c, std::span<const std::byte> data) {
    if (c.closing_ || c.write_shut_requested_) return make_error_code(errc::connection_closing);
    if (data.empty()) return {}; // nothing to send: no operation, no on_sent
    if (data.size() > options_.max_send_queue_per_connection - c.queue_.bytes())
      return make_error_code(errc::send_queue_full);
    try {
      bool queued = with_backend([&](auto& backend) { return queue_send(backend, c, data); });
      return queued ? std::error_code{} : make_error_code(errc::send_queue_full);
    } catch (const std::bad_alloc&) {
      return out_of_memory(c, operation::send);
    }
  }

  std::error_code send(connection_type& c, std::vector<std::byte>&& data) {
    if (c.closing_ || c.write_shut_requested_) return make_error_code(errc::connection_closing);
    if (data.empty()) return {};
    if (data.size() > options_.max_send_queue_per_connection - c.queue_.bytes())
      return make_error_code(errc::send_queue_full);
    try {
      if (!c.queue_.append(allocator_, budget_, std::move(data)))
        return make_error_code(errc::send_queue_full);
    } catch (const std::bad_alloc&) {
      return out_of_memory(c, operation::send);
    }
    queued(c);
    flush(c);
    return {};
  }

  void pause_receiving(connection_type& c) {
    if (c.closing_ || c.receive_paused) return;
    c.receive_paused = true;
    // Until its send queue has drained, a connection paused with sends queued (a slow reader's
    // backpressure) receives one buffer at a time: a multishot receive takes up to 32 buffers per
    // wake-up, all of which a pause must then hold (about 100 KiB a connection, a thousand slow
    // readers 100 MiB more). A pause with nothing queued (the handler's own reasons) keeps
    // multishot: nothing would ever end single-shot receiving for a connection that never sends.
    if (!c.queue_.empty()) c.receive_single_shot = true;
    if (c.receive_pending) with_backend([&](auto& b) { b.pause_receive(c); });
  }

  void resume_receiving(connection_type& c) {
    if (!c.receive_paused) return;
    c.receive_paused = false;
    if (c.closing_) return;
    if (c.held_) {
      // Delivered from the loop, not from inside this call (which may be in another callback).
      c.held_delivery_owed_ = true;
      defer(c);
      return;
    }
    rearm_receive(c);
  }

  std::error_code shutdown(connection_type& c, shutdown_type how) {
    if (c.closing_) return make_error_code(errc::connection_closing);
    if (how != shutdown_type::send) stop_reading(c);
    if (how != shutdown_type::receive) {
      c.write_shut_requested_ = true;
      flush(c);
      check_finished(c);
    }
    return {};
  }

  /// The graceful close's deadline runs from now (linger_timeout): a peer that never reads cannot
  /// keep the connection, and its queue, for ever.
  std::error_code disconnect(connection_type& c) {
    if (c.closing_) return make_error_code(errc::connection_closing);
    c.disconnect_requested_ = c.write_shut_requested_ = true;
    stop_reading(c);
    flush(c);
    check_finished(c);
    if (!c.closing_ && !c.lingering_) {
      c.linger_pending_ = close_pending_bytes(c);
      start_linger(c, monotonic_ns());
    }
    return {};
  }

  void abort(connection_type& c, std::error_code reason) { begin_close(c, reason, true); }
  /// The handler's conn.abort(): out of line, so that a callback that may abort (an echo whose send
  /// failed) stays small enough to be inlined into the completion that runs it.
  IOCP_NOINLINE void abort(connection_type& c) {
    begin_close(c, make_error_code(std::errc::connection_aborted), true);
  }

  // ---- on the owning thread: timers ----

  /// A timer on `c` (cancelled when it closes): empty, with `ec` set, if c is closing or without memory.
  timer_id set_timer(connection_type& c, std::int64_t delay_ns, std::int64_t period_ns,
                     std::error_code& ec) noexcept {
    if (c.closing_) {
      ec = make_error_code(errc::connection_closing);
      return {};
    }
    return arm_timer(new_timer_id(), later_ns(monotonic_ns(), delay_ns), period_ns, &c, c.timers_, ec);
  }
  /// A server-wide timer (cancelled when the server stops).
  timer_id set_server_timer(std::int64_t delay_ns, std::int64_t period_ns, std::error_code& ec) noexcept {
    if (stopping_) {
      ec = make_error_code(errc::server_stopping);
      return {};
    }
    return arm_timer(new_timer_id(), later_ns(monotonic_ns(), delay_ns), period_ns, nullptr, server_timers_,
                     ec);
  }
  /// Cancels one of this thread's timers; nothing if it has fired (one-shot) or was cancelled.
  void cancel_timer(timer_id t) noexcept { timers_.cancel(t.sequence()); }

  // ---- the backend's completions (the Sink interface) ----

  void accept_completed(accept_context& ctx, int result) {
    if (result >= 0) {
      consecutive_accept_errors_ = 0;
      backoff_ns_ = 0;
      socket_handle s = accepted_socket(ctx, result);
      if (stopping_) {
        close_reported(s);
        return;
      }
      start_accept(ctx); // first: whatever happens to this connection, the chain goes on
#if defined(IOCP_HAS_IOCP)
      // Thread 0 accepts for all: the connections are spread over the threads in turn.
      if (std::uint32_t owner = next_owner(); owner != index_) {
        if (std::error_code e = server_.loop(owner).post_adopt(s, from_sockaddr(ctx.address))) {
          close_reported(s); // no memory to hand it over: refused, as any accept without memory
          loop_counters::add(counters_.refused);
          report(e, operation::accept);
        }
        return;
      }
#endif
      open_connection(s, from_sockaddr(ctx.address));
      return;
    }
    int e = -result;
    if (is_cancelled(e) && stopping_) return;
    const std::error_code error = errno_code(e);
    counters_.count_accept_error(
        is_resource_error(e), is_peer_gone_on_accept(e) || error == std::errc::connection_aborted ||
                                  error == std::errc::connection_reset || error == std::errc::protocol_error);
    report(error, operation::accept);
    if (stopping_) return;
    // Running out of descriptors or memory would fail again at once: wait, then retry. So would a
    // broken listener; a long run of other errors is treated the same way, so nothing can spin.
    // A client that reset before its accept completed (IOCP) says nothing about the listener.
    if (is_resource_error(e) || (!is_peer_gone_on_accept(e) && ++consecutive_accept_errors_ > 64)) {
      backoff_ns_ = backoff_ns_ ? std::min<std::int64_t>(backoff_ns_ * 2, max_backoff_ns) : min_backoff_ns;
      try {
        backed_off_.push_back(&ctx);
      } catch (const std::bad_alloc&) { // no memory to list it: wait here instead (paced, no spin)
        std::this_thread::sleep_for(std::chrono::nanoseconds(min_backoff_ns));
        start_accept(ctx);
        return;
      }
      if (!schedule(backoff_deadline_, later_ns(monotonic_ns(), backoff_ns_))) {
        std::this_thread::sleep_for(std::chrono::nanoseconds(min_backoff_ns)); // no memory: wait here
        retry_accepts();
      }
      return;
    }
    start_accept(ctx);
  }

  template <class Backend>
  IOCP_ALWAYS_INLINE void receive_completed(Backend& backend, io_object& io, int result, std::byte* data) {
    connection_type& c = static_cast<connection_type&>(io);
    if (c.closing_) {
      maybe_finalize(c);
      return;
    }
    // Paused, or resumed with held input not yet delivered (an io_uring multishot receive may go on
    // until the pause's cancel lands): new bytes go behind the held ones, never ahead of them.
    if (c.receive_paused || c.held_) [[unlikely]] {
      hold(c, result, data);
    } else if (result > 0) {
      c.last_active_ns_ = now_ns_;
      loop_counters::add(counters_.bytes_received, static_cast<std::uint64_t>(result));
      deliver(backend, c, std::span<const std::byte>(data, static_cast<std::size_t>(result)));
      rearm_receive(backend, c);
    } else if (result == 0) {
      on_peer_eof(c);
    } else {
      begin_close(c, errno_code(-result), false);
    }
    maybe_finalize(c);
  }

  template <class Backend>
  IOCP_ALWAYS_INLINE void send_completed(Backend& backend, io_object& io, int result) {
    connection_type& c = static_cast<connection_type&>(io);
    if (c.closing_) {
      maybe_finalize(c);
      return;
    }
    if (result >= 0) {
      loop_counters::add(counters_.bytes_sent, static_cast<std::uint64_t>(result));
      c.queue_.consume(allocator_, budget_, static_cast<std::size_t>(result), give_back(backend));
      after_sent(backend, c, static_cast<std::size_t>(result));
    } else {
      begin_close(c, errno_code(-result), false);
    }
    maybe_finalize(c);
  }

  /// Bytes written at once by a send (epoll's send_now), reported a round later.
  template <class Backend>
  void send_completed_at_once(Backend& backend, io_object& io, int bytes) {
    connection_type& c = static_cast<connection_type&>(io);
    if (!c.closing_) after_sent(backend, c, static_cast<std::size_t>(bytes));
    maybe_finalize(c);
  }

  /// Carries out what other threads posted, in order, then a stop they asked for.
  void wake_completed() {
    const bool stop = stop_asked_.load(std::memory_order_acquire);
    // Consecutive records for one connection (a burst of sends) look it up once: no connection is
    // freed while the inbox is drained (that waits for the deferred round).
    connection_id last_id;
    connection_type* last = nullptr;
    inbox_.drain(budget_, [&](command_record& r) {
      switch (r.what) {
      case command_kind::adopt: adopt(*std::launder(reinterpret_cast<adopted_socket*>(r.payload()))); return;
      case command_kind::run: run_posted(r, nullptr); return;
      case command_kind::cancel_timer:
        timers_.cancel(std::launder(reinterpret_cast<posted_timer*>(r.payload()))->sequence);
        return;
      case command_kind::arm_timer:
        if (!r.id) {
          if (!stopping_) arm_posted_timer(r, nullptr, server_timers_);
          return;
        }
        break;
      default: break;
      }
      if (r.id != last_id) {
        last_id = r.id;
        last = find(r.id);
      }
      if (last && !(r.what == command_kind::call && last->closing_))
        execute(*last, r);
      else if (r.what == command_kind::call)
        run_posted(r, nullptr); // the function learns that its connection has gone
      else
        discard(r); // closed since the call was posted: an ordinary race, nothing to do
    });
    if (stop) begin_stop(stop_deadline_asked_.load(std::memory_order_relaxed));
  }

  /// The backend's wait has returned, and the completions it brought are next: the loop's clock for
  /// idle_timeout is read now, once per round, so that what they bring is stamped with the time it
  /// was seen, however long the round's callbacks then take (a stale stamp reset busy connections).
  IOCP_ALWAYS_INLINE void begin_round() noexcept {
    if (idle_timeout_ns_) now_ns_ = monotonic_ns();
  }

  /// The backend could not wait or submit (e.g. a seccomp profile that refuses io_uring_enter
  /// after setup was allowed). Reported, and paced, so that a lasting failure cannot spin a core.
  void backend_failed(std::error_code e) {
    report(e, operation::submit);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

private:
#if defined(IOCP_TEST_BACKEND) && !defined(IOCP_HAS_IOCP)
  // A test build on Linux (test/fuzz/fuzz_event_loop.cpp): IOCP_TEST_BACKEND names a class,
  // defined before the library's headers are included, whose fake backends stand in for io_uring
  // and epoll, and whose sockets and clock (detail/clock.hpp) are not the kernel's. These members
  // hide the free socket functions of the same names, so the state machine's own socket calls reach
  // the fake. Without the macro only the two aliases below exist: nothing changes, nothing costs.
  using uring_backend_type = typename IOCP_TEST_BACKEND::completion_backend;
  using epoll_backend_type = typename IOCP_TEST_BACKEND::readiness_backend;
  std::error_code shutdown_send(socket_handle fd) {
    return with_backend([&](auto& b) { return b.shutdown_send(fd); });
  }
  void set_linger_zero(socket_handle fd) noexcept {
    with_backend([&](auto& b) { b.set_linger_zero(fd); });
  }
  long unacknowledged_bytes(socket_handle fd) noexcept {
    return with_backend([&](auto& b) { return b.unacknowledged_bytes(fd); });
  }
  int close_socket(socket_handle fd) noexcept {
    return with_backend([&](auto& b) { return b.close_socket(fd); });
  }
#elif !defined(IOCP_HAS_IOCP)
  using uring_backend_type = io_uring_backend;
  using epoll_backend_type = epoll_backend;
#endif

  /// What one thread's inbox may hold: a 32nd of the send-queue cap shared by the threads, and at
  /// least 4 MiB (so that a thread of many is not throttled to a trickle). With many threads the
  /// floor lets the inboxes together reach more than a 32nd of the cap (64 threads: all of it), but
  /// never past the cap itself: inbox memory is counted in max_send_queue_total when allocated.
  static std::size_t inbox_limit(const server_options& options, std::size_t threads) noexcept {
    return (std::max)(options.max_send_queue_total / 32 / (std::max)(threads, std::size_t{1}),
                      std::size_t{4} << 20);
  }

  template <class Fill>
  std::error_code post(command_kind what, connection_id id, std::uint8_t how, std::size_t payload,
                       bool is_send, Fill&& fill) {
    bool wake = false;
    std::error_code e;
    try {
      e = inbox_.push(what, id, how, payload, is_send, fill, wake);
    } catch (const std::system_error& failure) { // the inbox's mutex could not be locked
      return failure.code();
    }
    if (wake) with_backend([](auto& b) { b.wake(); });
    return e;
  }

  static constexpr std::int64_t min_backoff_ns = 10'000'000;    // 10 ms
  static constexpr std::int64_t max_backoff_ns = 1'000'000'000; // 1 s

  handler_type& handler() noexcept { return server_.handler(); }

  /// Returns a receive buffer that a send borrowed (io_uring's zero-copy echo) to its ring.
  auto give_back() noexcept {
    return
        [this](std::uint16_t id) noexcept { with_backend([&](auto& backend) { give_back(backend)(id); }); };
  }
  template <class Backend>
  static auto give_back(Backend& backend) noexcept {
    return [&backend](std::uint16_t id) noexcept {
      if constexpr (requires { backend.give_back(id); })
        backend.give_back(id);
      else
        (void)backend; // a backend that lends nothing (clang warns of an unused capture)
    };
  }

  /// A copying send, with what the backend offers to avoid the copy: a readiness backend writes
  /// from the caller's memory at once when nothing is queued (as muduo and libuv do), a completion
  /// backend with a buffer ring can keep the very receive buffer the bytes are in.
  /// False: the server-wide limit refused the bytes, and nothing was sent or queued.
  template <class Backend>
  bool queue_send(Backend& backend, connection_type& c, std::span<const std::byte> data) {
    if constexpr (requires { backend.send_now(c, data.data(), data.size()); }) {
      if (c.queue_.empty() && !c.send_pending && !data.empty()) {
        // Whatever send_now leaves must be queued: make sure it may be before sending any of it.
        if (!budget_.admit(data.size() + c.queue_.block_overhead)) return false;
        int n = backend.send_now(c, data.data(), data.size());
        if (n < 0) {
          budget_.settle();
          begin_close(c, errno_code(-n), false); // reported through on_disconnected, like a
          return true;                           // send that fails later
        }
        loop_counters::add(counters_.bytes_sent, static_cast<std::uint64_t>(n));
        if (n > 0) c.last_active_ns_ = now_ns_; // progress, whether or not on_sent reports it
        if constexpr (has_on_sent<handler_type, connection_type>)
          if (n > 0) backend.report_sent_later(c, n);
        data = data.subspan(static_cast<std::size_t>(n));
        if (data.empty()) {
          budget_.settle(); // nothing queued: what was admitted for it is not held on to
          return true;
        }
      }
    }
    if constexpr (requires(std::uint16_t id) { backend.lend(data.data(), data.size(), id); }) {
      if (c.queue_.append_borrowed(allocator_, data, [&](std::uint16_t& id) noexcept {
            return backend.lend(data.data(), data.size(), id);
          })) {
        queued(c);
        flush(backend, c);
        return true;
      }
    }
    if (!c.queue_.append(allocator_, budget_, data)) return false;
    queued(c);
    flush(backend, c);
    return true;
  }

  /// Bytes joined c's queue: the high-water mark may have been passed.
  IOCP_ALWAYS_INLINE void queued(connection_type& c) {
    if constexpr (has_on_send_queue_high<handler_type, connection_type> ||
                  has_on_send_queue_low<handler_type, connection_type>) {
      if (!c.above_high_water_ && c.queue_.bytes() > options_.send_high_water_mark) [[unlikely]]
        crossed_high_water(c);
    }
  }
  /// on_send_queue_high runs when the running callback returns, or (a send made outside this
  /// connection's callbacks) in the deferred round: not inside the send that crossed the mark.
  IOCP_NOINLINE void crossed_high_water(connection_type& c) {
    c.above_high_water_ = true;
    if constexpr (has_on_send_queue_high<handler_type, connection_type>) {
      c.after_callback_ |= connection_type::high_water_owed;
      if (!c.callback_depth_) defer(c);
    }
  }

  /// The high-water mark was crossed a while ago: tell the handler, unless the queue has since
  /// fallen back to the mark (then no callback runs, and the next crossing counts anew: low after a
  /// high that was never reported would be a lie, and a high with nothing left above the mark might
  /// never be followed by a low).
  void deliver_high_water(connection_type& c) {
    c.after_callback_ &= static_cast<std::uint8_t>(~connection_type::high_water_owed);
    if (c.closing_ || !c.above_high_water_) return;
    if (c.queue_.bytes() <= options_.send_high_water_mark) {
      c.above_high_water_ = false;
      return;
    }
    if constexpr (has_on_send_queue_high<handler_type, connection_type>)
      invoke(c, [&] { handler().on_send_queue_high(c, c.queue_.bytes()); });
  }

  /// Drops whatever c still has queued (it is closing).
  void drop_queue(connection_type& c) noexcept { c.queue_.clear(allocator_, budget_, give_back()); }

  /// Data for the handler, unless the receive side was shut (then it is read and dropped).
  template <class Backend>
  IOCP_ALWAYS_INLINE void deliver(Backend& backend, connection_type& c, std::span<const std::byte> data) {
    if (c.read_shut_) return;
    invoke(backend, c, [&] {
      if constexpr (has_on_received<handler_type, connection_type>) handler().on_received(c, data);
    });
  }
  void deliver(connection_type& c, std::span<const std::byte> data) {
    with_backend([&](auto& backend) { deliver(backend, c, data); });
  }

  IOCP_NOINLINE void on_peer_eof(connection_type& c) {
    c.peer_eof_ = true;
    if constexpr (has_on_peer_shutdown<handler_type, connection_type>) {
      if (!c.disconnect_requested_)
        invoke(c, [&] { handler().on_peer_shutdown(c); });
      else
        finish_sending(c);
    } else {
      finish_sending(c); // the original's default: send what is queued, then close our side
    }
    check_finished(c);
  }

  /// A receive completed while receiving was paused: keep what it brought for resume_receiving().
  /// An error still closes the connection; the end of a receive the pause cancelled is no error.
  /// Without memory to keep the bytes, the connection closes (they cannot be given back).
  IOCP_NOINLINE void hold(connection_type& c, int result, const std::byte* data) {
    if (result < 0) {
      if (result != -ECANCELED) begin_close(c, errno_code(-result), false);
      return;
    }
    loop_counters::add(counters_.bytes_received, static_cast<std::uint64_t>(result));
    try {
      if (!c.held_) c.held_ = ::new (allocator_.allocate(sizeof(held_input))) held_input{};
      if (result == 0)
        c.held_->eof = true;
      else
        append_held(*c.held_, data, static_cast<std::size_t>(result));
    } catch (const std::bad_alloc&) {
      out_of_memory(c, operation::receive);
    }
  }

  /// Adds bytes to what is held, growing its buffer (from the Allocator policy) by doubling.
  void append_held(held_input& h, const std::byte* data, std::size_t n) {
    if (h.capacity - h.size < n) {
      const std::size_t capacity = allocation_size(allocator_, (std::max)(h.size + n, 2 * h.capacity));
      auto* grown = static_cast<std::byte*>(allocator_.allocate(capacity));
      if (h.size) std::memcpy(grown, h.data, h.size);
      if (h.data) allocator_.deallocate(h.data, h.capacity);
      h.data = grown;
      h.capacity = capacity;
    }
    std::memcpy(h.data + h.size, data, n);
    h.size += n;
  }

  void free_held(held_input* h) noexcept {
    if (!h) return;
    if (h->data) allocator_.deallocate(h->data, h->capacity);
    h->~held_input();
    allocator_.deallocate(h, sizeof(held_input));
  }

  /// Receiving resumed: what was held goes to the handler, then the receive is armed again. In
  /// pieces of a receive's size: a handler that pauses again (its send queue full once more) keeps
  /// the rest held, instead of being handed all of it at once to queue.
  void deliver_held(connection_type& conn) {
    if (conn.closing_ || conn.receive_paused || !conn.held_) return;
    ++conn.callback_depth_; // conn stays while its held input is handed over
    held_input* held = std::exchange(conn.held_, nullptr);
    std::size_t at = 0;
    while (at < held->size && !conn.closing_ && !conn.receive_paused) {
      const std::size_t n = (std::min)(options_.receive_buffer_size, held->size - at);
      conn.last_active_ns_ = now_ns_;
      deliver(conn, std::span<const std::byte>(held->data + at, n));
      at += n;
    }
    if (!conn.closing_ && (at < held->size || (held->eof && conn.receive_paused))) {
      // Paused again: the rest (and the FIN, if it came) waits for the next resume.
      std::memmove(held->data, held->data + at, held->size - at);
      held->size -= at;
      conn.held_ = std::exchange(held, nullptr);
    } else if (held->eof && !conn.closing_) {
      on_peer_eof(conn);
    }
    free_held(held);
    --conn.callback_depth_;
    if (!conn.closing_) rearm_receive(conn);
  }

  /// Puts c on the list of connections the loop owes work outside any callback (run_deferred).
  /// Listed, a connection is not freed: the list's pointers stay valid.
  void defer(connection_type& c) noexcept {
    if (c.deferred_) return;
    c.deferred_ = true;
    c.deferred_next_ = nullptr;
    if (deferred_tail_)
      deferred_tail_->deferred_next_ = &c;
    else
      deferred_head_ = &c;
    deferred_tail_ = &c;
  }

  /// Once a round, with no handler callback on the stack: the work deferred by operations the
  /// handler called (held input after a resume, on_send_queue_high, a failed shutdown's report) and
  /// the finalisation of connections that began closing. Connections deferred again meanwhile
  /// (their callbacks may do that) wait for the next round, which does not sleep (next_timeout_ns).
  void run_deferred() {
    connection_type* next = std::exchange(deferred_head_, nullptr);
    deferred_tail_ = nullptr;
    while (next) {
      connection_type& c = *next;
      next = std::exchange(c.deferred_next_, nullptr);
      c.deferred_ = false;
      if (std::exchange(c.held_delivery_owed_, false)) deliver_held(c);
      if (c.after_callback_ & connection_type::flush_owed) { // sends posted from other threads
        c.after_callback_ &= static_cast<std::uint8_t>(~connection_type::flush_owed);
        flush(c);
      }
      if (c.after_callback_ & connection_type::high_water_owed) deliver_high_water(c);
      if (std::uint8_t owed = std::exchange(c.report_owed_, 0))
        report(c.close_reason_, static_cast<operation>(owed - 1));
      maybe_finalize(c);
    }
  }

  template <class Backend>
  IOCP_ALWAYS_INLINE void rearm_receive(Backend& backend, connection_type& c) {
    // receive_pending first: a multishot receive stays armed, so this is usually all there is to check.
    if (!c.receive_pending && !c.closing_ && !c.peer_eof_ && !c.receive_paused && !c.held_) {
      // A throttled connection (see pause_receiving) receives single-shot until the peer has taken
      // everything queued; checked here, where a receive is armed, not on the per-message path.
      if (c.receive_single_shot && c.queue_.empty()) c.receive_single_shot = false;
      backend.start_receive(c);
    }
  }
  void rearm_receive(connection_type& c) {
    with_backend([&](auto& backend) { rearm_receive(backend, c); });
  }

  /// The receive side is done for the handler (shutdown(receive), disconnect): bytes still arriving
  /// are read and dropped so the peer's FIN is seen, even if receiving had been paused.
  void stop_reading(connection_type& c) {
    c.read_shut_ = true;
    c.receive_paused = false;
    if (c.held_) {
      c.held_->size = 0;
      if (c.held_->eof) { // the FIN was held: it is reported from the loop, as after a resume
        c.held_delivery_owed_ = true;
        defer(c);
        return;
      }
      free_held(std::exchange(c.held_, nullptr));
    }
    rearm_receive(c);
  }
  auto& map() noexcept { return server_.connection_map(); }

  template <class Backend>
  void run_with(Backend& backend) {
    for (accept_context& ctx : accepts_)
      backend.start_accept(ctx);
    for (;;) {
      backend.run_once(next_timeout_ns(), *this);
      // Deferred work first (held input after a resume may start a linger period, due at once with
      // a zero linger_timeout), then the timers, then what they closed.
      if (deferred_head_) run_deferred();
      if (timers_armed()) {
        run_timers();
        if (deferred_head_) run_deferred();
      }
      if (stopping_ && !live_ && !accept_pending()) break;
    }
  }

  template <class F>
  IOCP_ALWAYS_INLINE decltype(auto) with_backend(F&& f) {
#if defined(IOCP_HAS_IOCP)
    return f(*iocp_);
#else
    if (uring_) return f(*uring_);
    return f(*epoll_);
#endif
  }

  void start_accept(accept_context& ctx) {
    with_backend([&](auto& b) { b.start_accept(ctx); });
  }

  bool accept_pending() const noexcept {
    for (const accept_context& ctx : accepts_)
      if (ctx.pending) return true;
    return false;
  }

  std::uint32_t next_owner() noexcept {
    std::size_t count = server_.thread_count();
    std::uint32_t owner = static_cast<std::uint32_t>(next_owner_ % count);
    next_owner_ = (next_owner_ + 1) % count;
    return owner;
  }

  void open_connection(socket_handle fd, const endpoint& remote) {
    void* memory = nullptr;
    std::byte* buffer = nullptr;
    try {
      memory = allocator_.allocate(sizeof(connection_type));
      if (with_backend([](auto& b) { return b.needs_receive_buffers(); }))
        buffer = static_cast<std::byte*>(allocator_.allocate(options_.receive_buffer_size));
      // Room in the deadline queue for every connection's node: queueing one then never allocates
      // (unless the user's timers took the room since: see schedule()).
      deadlines_.reserve(live_count_ + timers_.size() + 3);
    } catch (const std::bad_alloc&) {
      if (buffer) allocator_.deallocate(buffer, options_.receive_buffer_size);
      if (memory) allocator_.deallocate(memory, sizeof(connection_type));
      close_reported(fd);
      loop_counters::add(counters_.refused);
      report(make_error_code(std::errc::not_enough_memory), operation::accept);
      return;
    }
    connection_type& c = *::new (memory) connection_type(this);
    c.fd = fd;
    c.receive_buffer = buffer;
    std::error_code refused;
    try {
      c.id_ = map().insert(connection_entry{index_, &c});
      if (!c.id_) refused = make_error_code(errc::too_many_connections);
    } catch (const std::bad_alloc&) { // a map that grows (mutex_map's slot vector)
      refused = make_error_code(std::errc::not_enough_memory);
    }
    if (refused) {
      loop_counters::add(counters_.refused);
      report(refused, operation::accept);
      destroy(c);
      return;
    }
    if (options_.no_delay && !accepted_sockets_inherit_no_delay) set_no_delay(fd); // else the listener has it
    c.remote_ = remote;
    c.last_active_ns_ = now_ns_;
    if (idle_timeout_ns_) {
      c.idle_check_ns_ = later_ns(now_ns_, idle_limit_ns());
      (void)schedule(c.deadline_, c.idle_check_ns_); // room was reserved above
    }
    // A listener bound to one address accepts only there: no getsockname for every connection.
    const endpoint& listener = server_.local_endpoint();
    c.local_ = listener.is_unspecified() ? local_endpoint_of(fd) : listener;
    link(c);
    c.announced_ = true;
    loop_counters::add(counters_.accepted);
    if constexpr (has_on_connected<handler_type, connection_type>) {
      connection_info info{c.local_, c.remote_};
      invoke(c, [&] { handler().on_connected(c, info); });
    }
    rearm_receive(c);
    maybe_finalize(c);
  }

  /// Calls a handler callback. A callback that throws aborts its connection (and is reported);
  /// it never unwinds through the loop. A send that try_send_lent() left for the callback's return
  /// starts then; on the per-message path the backend's type is known, and this inlines.
  template <class Backend, class F>
  IOCP_ALWAYS_INLINE void invoke(Backend& backend, connection_type& c, F&& f) {
    call_handler(c, f);
    if (c.after_callback_) {
      if (c.after_callback_ == connection_type::flush_owed) {
        c.after_callback_ = 0;
        flush(backend, c);
      } else {
        after_callback(c);
      }
    }
  }
  /// A callback returned owing more than the echo's flush: on_send_queue_high (after the flush).
  IOCP_NOINLINE void after_callback(connection_type& c) {
    if (c.after_callback_ & connection_type::flush_owed) {
      c.after_callback_ &= static_cast<std::uint8_t>(~connection_type::flush_owed);
      flush(c);
    }
    if (c.after_callback_ & connection_type::high_water_owed) deliver_high_water(c);
  }
  template <class F>
  void invoke(connection_type& c, F&& f) {
    with_backend([&](auto& backend) { invoke(backend, c, f); });
  }
  template <class F>
  IOCP_ALWAYS_INLINE void call_handler(connection_type& c, F& f) {
    ++c.callback_depth_;
    try {
      f();
    } catch (...) {
      report(make_error_code(errc::handler_exception), operation::handler);
      begin_close(c, make_error_code(errc::handler_exception), true);
    }
    --c.callback_depth_;
  }

  void report(std::error_code e, operation where) noexcept {
    if constexpr (has_on_server_error<handler_type>) {
      try {
        handler().on_server_error(e, where);
      } catch (...) {}
    }
  }

  /// A failed close() is reported, and nothing else is done: the descriptor is gone all the same
  /// (Linux frees it whatever close() says; Windows leaves nothing the server could retry).
  void close_reported(socket_handle s) noexcept {
    if (int e = close_socket(s)) report(errno_code(e), operation::close);
  }

  /// The kernel took `bytes` of this connection's data: tell the handler, then send what is next
  /// (or the FIN), and close if both directions are done.
  template <class Backend>
  void after_sent(Backend& backend, connection_type& c, std::size_t bytes) {
    c.last_active_ns_ = now_ns_;
    if constexpr (has_on_sent<handler_type, connection_type>) invoke(c, [&] { handler().on_sent(c, bytes); });
    if constexpr (has_on_send_queue_high<handler_type, connection_type> ||
                  has_on_send_queue_low<handler_type, connection_type>) {
      // Not while on_send_queue_high is still owed: deliver_high_water() decides then.
      if (c.above_high_water_ && c.queue_.bytes() <= options_.send_low_water_mark && !c.closing_ &&
          !(c.after_callback_ & connection_type::high_water_owed)) {
        c.above_high_water_ = false;
        if constexpr (has_on_send_queue_low<handler_type, connection_type>)
          invoke(c, [&] { handler().on_send_queue_low(c, c.queue_.bytes()); });
      }
    }
    flush(backend, c);
    check_finished(c);
  }

  void finish_sending(connection_type& c) {
    c.write_shut_requested_ = true;
    flush(c);
  }

  /// Starts the next send, or sends the FIN once the queue is empty and a shutdown was asked for.
  /// On the per-message paths the backend's type is known (no dispatch, and this inlines).
  template <class Backend>
  IOCP_ALWAYS_INLINE void flush(Backend& backend, connection_type& c) {
    if (c.closing_ || c.send_pending) return;
    if (!c.queue_.empty()) {
      std::span<const std::byte> next = c.queue_.front();
      backend.start_send(c, next.data(), next.size());
    } else if (c.write_shut_requested_ && !c.write_shut_done_) {
      send_fin(c);
    }
  }
  IOCP_NOINLINE void flush(connection_type& c) {
    with_backend([&](auto& backend) { flush(backend, c); });
  }

  void send_fin(connection_type& c) {
    c.write_shut_done_ = true;
    // The peer's FIN is in and everything before it was read, so the close that check_finished()
    // starts next sends our FIN (not a reset): one system call fewer per connection.
    if (c.peer_eof_) return;
    if (std::error_code e = shutdown_send(c.fd)) {
      c.report_owed_ = static_cast<std::uint8_t>(operation::shutdown) + 1; // maybe inside a user's call
      begin_close(c, e, false);
    }
  }

  /// Closes a connection whose two directions are finished. (After disconnect(), the linger period
  /// it started waits for the peer's FIN.)
  IOCP_ALWAYS_INLINE void check_finished(connection_type& c) {
    if (c.write_shut_done_ && c.peer_eof_ && !c.closing_) [[unlikely]]
      close_finished(c); // out of line: the send completion that checks this is per message
  }
  IOCP_NOINLINE void close_finished(connection_type& c) { begin_close(c, {}, false); }

  /// What a graceful close still has to get to the peer: bytes queued here, and bytes sent that the
  /// peer has not acknowledged.
  std::size_t close_pending_bytes(connection_type& c) noexcept {
    const long unacked = unacknowledged_bytes(c.fd);
    return c.queue_.bytes() + (unacked > 0 ? static_cast<std::size_t>(unacked) : 0);
  }

  /// (Re)starts the linger period. Every period has the same length, so appending keeps the list
  /// ordered by deadline.
  /// The graceful close's period starts (again) at `now`. Without memory to queue its deadline,
  /// the connection is reset at once (as any allocation failure for it would).
  void start_linger(connection_type& c, std::int64_t now) {
    c.lingering_ = true;
    c.linger_deadline_ns_ = later_ns(now, linger_timeout_ns_);
    if (!schedule_connection(c)) (void)out_of_memory(c, operation::close);
  }

  /// Queues c's deadline node at the earlier of its linger deadline and its idle check (or takes
  /// it out if neither applies). False only without memory for the queue to grow.
  bool schedule_connection(connection_type& c) noexcept {
    std::int64_t due = c.lingering_ ? c.linger_deadline_ns_ : never_ns;
    if (idle_timeout_ns_) due = (std::min)(due, c.idle_check_ns_);
    if (due == never_ns) {
      if (deadlines_.contains(c.deadline_)) deadlines_.remove(c.deadline_);
      return true;
    }
    if (deadlines_.contains(c.deadline_) && c.deadline_.due_ns == due) return true;
    return schedule(c.deadline_, due);
  }

  /// Queues (or moves) one of the loop's deadlines. A node already queued moves without
  /// allocating; a new one may need the queue to grow: false without memory for it.
  bool schedule(deadline_node& d, std::int64_t due) noexcept {
    try {
      deadlines_.update(d, due);
      return true;
    } catch (const std::bad_alloc&) {
      return false;
    }
  }

  /// Closing starts here; the connection is freed (and on_disconnected runs) in the deferred round,
  /// or later, when the kernel has let go of it: never inside the call that closed it.
  IOCP_NOINLINE void begin_close(connection_type& c, std::error_code reason, bool abortive) {
    if (c.closing_) return;
    c.closing_ = true;
    c.close_reason_ = reason;
    timers_.cancel_all(c.timers_);
    if (abortive && c.fd != invalid_socket) set_linger_zero(c.fd);
    c.lingering_ = false;
    if (deadlines_.contains(c.deadline_)) deadlines_.remove(c.deadline_); // no deadline once closing
    with_backend([&](auto& b) { b.cancel(c); });
    defer(c);
  }

  /// Frees a closing connection once the kernel holds no operation of it, no callback of it is on
  /// the stack and it is not on the deferred list (which finalises it itself). Callers must not
  /// touch `c` afterwards. Inline: on every completion's path, and almost always a connection that
  /// is not closing. Only the loop calls it, from completions and its own rounds.
  IOCP_ALWAYS_INLINE void maybe_finalize(connection_type& c) {
    if (c.closing_) [[unlikely]]
      finalize_if_released(c);
  }
  IOCP_NOINLINE void finalize_if_released(connection_type& c) {
    if (c.receive_pending || c.send_pending || c.callback_depth_ || c.deferred_) return;
    map().erase(c.id_);
    if (int e = with_backend([&](auto& b) { return b.release(c); })) report(errno_code(e), operation::close);
    unlink(c);
    drop_queue(c);
    if (c.announced_) {
      c.announced_ = false;
      counters_.count_close(c.close_reason_);
      if constexpr (has_on_disconnected<handler_type, connection_type>) {
        ++c.callback_depth_;
        try {
          handler().on_disconnected(c, c.close_reason_);
        } catch (...) {
          report(make_error_code(errc::handler_exception), operation::handler);
        }
        --c.callback_depth_;
      }
    }
    destroy(c);
    // A descriptor was freed: an accept waiting out EMFILE may succeed now.
    if (deadlines_.contains(backoff_deadline_))
      deadlines_.update(backoff_deadline_, 0); // queued: no allocation
  }

  /// Frees a connection; its socket is closed if the backend has not released it (a refused
  /// connection). `report_close`: a failed close is reported (not from the destructor).
  void destroy(connection_type& c, bool report_close = true) noexcept {
    if (c.fd != invalid_socket) {
      if (report_close)
        close_reported(c.fd);
      else
        (void)close_socket(c.fd);
      c.fd = invalid_socket;
    }
    if (c.prev_ || c.next_ || live_ == &c) unlink(c);
    if (deadlines_.contains(c.deadline_)) deadlines_.remove(c.deadline_);
    drop_queue(c);
    free_held(std::exchange(c.held_, nullptr));
    if (c.receive_buffer) allocator_.deallocate(c.receive_buffer, options_.receive_buffer_size);
    c.~connection_type();
    allocator_.deallocate(&c, sizeof(connection_type));
  }

  void link(connection_type& c) noexcept {
    c.prev_ = nullptr;
    c.next_ = live_;
    if (live_) live_->prev_ = &c;
    live_ = &c;
    ++live_count_;
  }
  void unlink(connection_type& c) noexcept {
    if (c.prev_)
      c.prev_->next_ = c.next_;
    else if (live_ == &c)
      live_ = c.next_;
    if (c.next_) c.next_->prev_ = c.prev_;
    c.prev_ = c.next_ = nullptr;
    --live_count_;
  }

  connection_type* find(connection_id id) {
    std::optional<connection_entry> entry = map().find(id);
    if (!entry || entry->owner != index_) return nullptr;
    return static_cast<connection_type*>(entry->object);
  }

  /// A posted call for `c`, which this thread owns.
  void execute(connection_type& c, command_record& r) {
    switch (r.what) {
    case command_kind::send: posted_send(c, std::span<const std::byte>(r.payload(), r.payload_size)); break;
    case command_kind::send_vector: {
      // Its memory was reserved from the shared budget when it was posted: this thread's share
      // takes the reservation over, the queue admits the vector from it, settle() gives back the rest.
      auto& posted = *std::launder(reinterpret_cast<posted_vector*>(r.payload()));
      budget_.adopt(std::exchange(posted.reserved, 0));
      posted_send(c, std::move(posted.data));
      posted.~posted_vector();
      budget_.settle();
      break;
    }
    case command_kind::shutdown: shutdown(c, static_cast<shutdown_type>(r.how)); break;
    case command_kind::disconnect: disconnect(c); break;
    case command_kind::abort: abort(c, make_error_code(std::errc::connection_aborted)); break;
    case command_kind::pause: pause_receiving(c); break;
    case command_kind::resume: resume_receiving(c); break;
    case command_kind::call: invoke(c, [&] { run_posted(r, &c, false); }); break;
    case command_kind::arm_timer:
      if (!c.closing_) arm_posted_timer(r, &c, c.timers_);
      break;
    case command_kind::adopt:
    case command_kind::run:
    case command_kind::cancel_timer: break; // not a connection's
    }
  }

  /// Runs a posted function (`c`: its connection, or nullptr). Outside a connection's callback a
  /// throw is reported; inside one (`handled` false) it propagates to invoke(), which also closes
  /// the connection, as for any callback.
  void run_posted(command_record& r, connection_type* c, bool handled = true) {
    auto& f = *std::launder(reinterpret_cast<posted_function*>(r.payload()));
    if (!handled) return f.invoke(&f, c, true);
    try {
      f.invoke(&f, c, true);
    } catch (...) {
      report(make_error_code(errc::handler_exception), operation::handler);
    }
  }

  void arm_posted_timer(command_record& r, connection_type* c, timer_node*& list) noexcept {
    const auto& p = *std::launder(reinterpret_cast<posted_timer*>(r.payload()));
    std::error_code ec;
    (void)arm_timer(timer_id(index_, p.sequence), p.due_ns, p.period_ns, c, list, ec);
    if (ec) report(ec, operation::timer); // nobody is left to see the failure
  }

  timer_id arm_timer(timer_id t, std::int64_t due_ns, std::int64_t period_ns, connection_type* c,
                     timer_node*& list, std::error_code& ec) noexcept {
    try {
      timers_.arm(t.sequence(), due_ns, period_ns, c, list);
    } catch (const std::bad_alloc&) {
      ec = make_error_code(std::errc::not_enough_memory);
      return {};
    }
    ec = {};
    return t;
  }

  /// A user's timer is due: a connection's callback runs as its other callbacks do (a throw
  /// closes it), a server-wide one's throw is reported.
  void fire_user_timer(timer_node& n) {
    const bool requeued = timers_.fire(
        n,
        [&](timer_node& due) {
          const timer_id t(index_, due.order);
          if (due.owner) {
            if constexpr (has_on_timer<handler_type, connection_type>) {
              connection_type& c = *static_cast<connection_type*>(due.owner);
              invoke(c, [&] { handler().on_timer(c, t); });
            }
          } else if constexpr (has_on_server_timer<handler_type>) {
            try {
              handler().on_server_timer(t);
            } catch (...) {
              report(make_error_code(errc::handler_exception), operation::handler);
            }
          }
        },
        [] { return monotonic_ns(); });
    if (!requeued) report(make_error_code(std::errc::not_enough_memory), operation::timer);
  }

  /// A posted call whose connection has gone (or whose thread has ended): what it holds is freed,
  /// and a vector's reservation goes to this thread's share, which gives it back.
  void discard(command_record& r) noexcept {
    if (r.what == command_kind::send_vector) {
      auto& posted = *std::launder(reinterpret_cast<posted_vector*>(r.payload()));
      budget_.adopt(std::exchange(posted.reserved, 0));
      posted.~posted_vector();
    } else if (r.what == command_kind::adopt) {
      (void)close_socket(std::launder(reinterpret_cast<adopted_socket*>(r.payload()))->socket);
    } else if (r.what == command_kind::call || r.what == command_kind::run) {
      auto& f = *std::launder(reinterpret_cast<posted_function*>(r.payload()));
      try {
        f.invoke(&f, nullptr, false); // destroyed, not run: the server stopped first
      } catch (...) {}
    }
  }

  /// A send posted from another thread: its bytes join the queue (coalesced with the sends before
  /// them), and the queue is flushed once, in the deferred round, for the whole batch. Its result
  /// has no caller left to see it: a refusal by the per-connection cap (or a lack of memory) is
  /// reported; a connection whose send side has been shut since drops it, as any close would.
  template <class Data>
  void posted_send(connection_type& c, Data&& data) {
    if (c.closing_ || c.write_shut_requested_) return;
    if (data.size() > options_.max_send_queue_per_connection - c.queue_.bytes()) {
      report(make_error_code(errc::send_queue_full), operation::send);
      return;
    }
    try {
      // Counted when it was posted: the cap does not refuse it now (see allow_over_limit).
      local_send_budget::allow_over_limit counted(budget_);
      if (!c.queue_.append(allocator_, budget_, std::forward<Data>(data))) {
        report(make_error_code(errc::send_queue_full), operation::send);
        return;
      }
    } catch (const std::bad_alloc&) {
      out_of_memory(c, operation::send);
      return;
    }
    queued(c);
    if (!c.send_pending) {
      c.after_callback_ |= connection_type::flush_owed;
      defer(c);
    }
  }

  /// A socket another thread accepted for this one (IOCP).
  void adopt(adopted_socket& a) {
    if (stopping_)
      close_reported(a.socket);
    else
      open_connection(a.socket, a.remote);
  }

  /// An allocation for `c` failed: it closes (reset: what it was to send or receive is lost), and
  /// the failure is reported when the callback that may be running has returned.
  std::error_code out_of_memory(connection_type& c, operation where) {
    const std::error_code e = make_error_code(std::errc::not_enough_memory);
    if (!c.closing_) c.report_owed_ = static_cast<std::uint8_t>(static_cast<int>(where) + 1);
    begin_close(c, e, true);
    return e;
  }

  void begin_stop(std::int64_t deadline_ns) {
    if (stopping_) {
      if (deadline_ns < stop_deadline_ns_) { // the earliest deadline asked for applies
        stop_deadline_ns_ = deadline_ns;
        arm_stop_deadline();
      }
      return;
    }
    stopping_ = true;
    stop_deadline_ns_ = deadline_ns;
    timers_.cancel_all(server_timers_);
    arm_stop_deadline();
    for (accept_context& ctx : accepts_)
      if (ctx.pending) with_backend([&](auto& b) { b.cancel_accept(ctx); });
    backed_off_.clear();
    if (deadlines_.contains(backoff_deadline_)) deadlines_.remove(backoff_deadline_);
    // disconnect() frees nothing and runs no callback, so the list stays as it is meanwhile.
    for (connection_type* c = live_; c; c = c->next_)
      disconnect(*c);
  }
  void arm_stop_deadline() {
    if (stop_deadline_ns_ == never_ns) return;
    if (!schedule(stop_deadline_, stop_deadline_ns_)) stop_deadline_passed(); // no memory: reset now
  }

  // ---- the deadline queue: every timed thing of the loop ----
  // One 4-ary heap (deadline_queue) holds the user's timers, one node per connection (the earlier of
  // its linger deadline and its idle check), the accept back-off and the stop deadline. The wait's
  // timeout is its earliest entry; a round fires what is due, by kind. Nothing walks the connections
  // on a clock: a connection's idle check is due when it may first have been idle for idle_timeout,
  // and finding it active since then only moves the check (lazily: activity itself stays a store of
  // the round's clock).

  long long next_timeout_ns() const noexcept {
    if (deferred_head_) return 0;
    if (deadlines_.empty()) return -1;
    const std::int64_t deadline = deadlines_.top_due();
    if (deadline == never_ns) return -1;
    return std::max<std::int64_t>(0, deadline - monotonic_ns());
  }

  /// Whether run_timers() has anything to look at (checked inline once per round).
  bool timers_armed() const noexcept { return idle_timeout_ns_ || !deadlines_.empty(); }

  void run_timers() {
    // The clock is read only when something is timed: a round of an echo costs no clock read.
    if (!idle_timeout_ns_ && deadlines_.empty()) return;
    const std::int64_t now = monotonic_ns();
    if (idle_timeout_ns_) note_round(now);
    while (!deadlines_.empty() && deadlines_.top_due() <= now) {
      deadline_node& d = deadlines_.pop();
      switch (d.kind) {
      case deadline_kind::user_timer: fire_user_timer(static_cast<timer_node&>(d)); break;
      case deadline_kind::connection:
        connection_deadline(*static_cast<connection_type*>(d.owner), now);
        break;
      case deadline_kind::accept_backoff: retry_accepts(); break;
      case deadline_kind::stop: stop_deadline_passed(); break;
      }
    }
    timers_.trim();
  }

  /// A connection's node is due (it is out of the queue): its linger period, its idle check, or both.
  void connection_deadline(connection_type& c, std::int64_t now) {
    if (c.closing_) return;
    if (c.lingering_ && c.linger_deadline_ns_ <= now) {
      // The period runs from the disconnect(), but a slow reader may still be taking the data.
      // While it makes progress, it gets another period; a reset now would throw that data away.
      // A peer that took nothing in a whole period is reset, with what is queued for it.
      const std::size_t pending = close_pending_bytes(c);
      if (pending >= c.linger_pending_) {
        abort(c, make_error_code(errc::linger_timeout));
        return;
      }
      c.linger_pending_ = pending;
      c.linger_deadline_ns_ = later_ns(now, linger_timeout_ns_);
    }
    if (idle_timeout_ns_ && c.idle_check_ns_ <= now) {
      // Judged by the round's clock (now_ns_), as activity is stamped: time this round's callbacks
      // took is not held against a connection whose data waits to be seen in the next one. Active
      // until the end of the round that stamped it, if that round was long (note_round).
      const std::int64_t idle_since = (std::max)(c.last_active_ns_, active_until(c.last_active_ns_));
      const std::int64_t limit = idle_limit_ns();
      if (now_ns_ - idle_since > limit) {
        abort(c, make_error_code(errc::idle_timeout));
        return;
      }
      // Not before the next round (whose clock is later): it is not due again in this one.
      c.idle_check_ns_ = limit == never_ns ? never_ns : (std::max)(later_ns(idle_since, limit + 1), now + 1);
    }
    if (!schedule_connection(c)) (void)out_of_memory(c, operation::close);
  }

  /// The accept back-off is over (or a connection closed and freed a descriptor): try again.
  void retry_accepts() {
    if (stopping_) return;
    std::vector<accept_context*> retry;
    retry.swap(backed_off_);
    for (accept_context* ctx : retry)
      start_accept(*ctx);
  }

  /// stop()'s deadline has passed: the connections left are reset.
  void stop_deadline_passed() {
    for (connection_type* c = live_; c; c = c->next_) // abort() frees nothing: see begin_close
      abort(*c, make_error_code(errc::stop_timeout));
  }

  // Activity is stamped with the time its round began (now_ns_), but a round whose callbacks take
  // long (a handler that blocks, a thread the machine starves) has activity until it ends: the
  // rounds that lasted more than half the idle slack are remembered with their ends, for as long
  // as a stamp of theirs could matter, so that the idle check counts such a connection idle from the
  // end of the round. (Shorter rounds are within the slack.)
  struct long_round {
    std::int64_t start_ns = -1;
    std::int64_t end_ns = -1;
  };
  static constexpr std::size_t long_rounds_kept = 32; // (timeout + slack) / (slack / 2) = 22
  void note_round(std::int64_t end_ns) noexcept {
    if (end_ns - now_ns_ <= idle_slack_ns() / 2) return;
    long_rounds_[long_round_next_++ % long_rounds_kept] = {now_ns_, end_ns};
  }
  /// Until when a connection stamped `stamp` may have been active.
  std::int64_t active_until(std::int64_t stamp) const noexcept {
    for (const long_round& r : long_rounds_)
      if (r.start_ns == stamp) return r.end_ns;
    return stamp;
  }
  /// Stamps are a round's start, so a connection may have been active up to a round later than
  /// its stamp says: it gets this much more than idle_timeout (a tenth of it, at least 1 ms).
  std::int64_t idle_slack_ns() const noexcept {
    return (std::max)(idle_timeout_ns_ / 10, std::int64_t{1'000'000});
  }
  std::int64_t idle_limit_ns() const noexcept { return later_ns(idle_timeout_ns_, idle_slack_ns()); }

  Server& server_;
  std::uint32_t index_;
  const server_options& options_;
  local_send_budget budget_;
  loop_counters counters_;
  // try_send_lent() into an empty queue: at most this much, so that neither the per-connection
  // limit nor the high-water mark can be passed (send() handles those).
  const std::size_t lent_send_limit_ =
      (std::min)(options_.max_send_queue_per_connection, has_on_send_queue_high<handler_type, connection_type>
                                                             ? options_.send_high_water_mark
                                                             : options_.max_send_queue_per_connection);
  const std::int64_t idle_timeout_ns_ = timeout_ns(options_.idle_timeout);
  const std::int64_t linger_timeout_ns_ = timeout_ns(options_.linger_timeout);
  std::int64_t now_ns_ = idle_timeout_ns_ ? monotonic_ns() : 0;
  long_round long_rounds_[long_rounds_kept];
  std::size_t long_round_next_ = 0;
#if defined(IOCP_HAS_IOCP)
  std::optional<iocp_backend> iocp_;
#else
  std::optional<uring_backend_type> uring_;
  std::optional<epoll_backend_type> epoll_;
#endif
  [[no_unique_address]] allocator_type allocator_;
  std::vector<accept_context> accepts_;
  std::vector<accept_context*> backed_off_;
  std::int64_t backoff_ns_ = 0;
  unsigned consecutive_accept_errors_ = 0;
  std::size_t next_owner_ = 0;
  connection_type* live_ = nullptr;
  connection_type* deferred_head_ = nullptr; // see defer()
  connection_type* deferred_tail_ = nullptr;
  std::size_t live_count_ = 0; // connections on the live_ list
  bool stopping_ = false;
  std::int64_t stop_deadline_ns_ = never_ns; // the earliest asked for
  command_inbox<allocator_type> inbox_;
  loop_deadlines deadlines_;
  deadline_node backoff_deadline_{never_ns, 0, loop_deadlines::not_queued, deadline_kind::accept_backoff,
                                  nullptr};
  deadline_node stop_deadline_{never_ns, 0, loop_deadlines::not_queued, deadline_kind::stop, nullptr};
  loop_timers timers_{deadlines_};
  timer_node* server_timers_ = nullptr;          // the server-wide timers this thread owns
  std::atomic<std::uint64_t> timer_sequence_{1}; // the next timer's sequence (0 names none)
  std::atomic<bool> stop_asked_{false};
  std::atomic<std::int64_t> stop_deadline_asked_{never_ns};
};

} // namespace iocp::detail
