// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// One I/O thread: its backend, the connections it accepted, and the connection state machine that
// every backend shares. Backends only start operations and report their completions
// (accept_completed, receive_completed, send_completed, wake_completed: names of their own, not
// the handler's callbacks); everything a connection means (half-close,
// close after the queue drains, lingering for the peer's FIN, abort, exactly one on_disconnected per
// on_connected) is decided here, once, for all of them.
//
// This header declares the loop and holds its run loop and backend ownership; the members are
// defined by room in detail/loop/ (included at the end): commands.hpp (the inbox other threads
// post to), callbacks.hpp (handler invocation, the deferred round), accept.hpp, receive.hpp,
// send.hpp, close.hpp (the close sequence, whose states are in detail/close_state.hpp) and
// deadlines.hpp (timers, linger, idle, back-off, stop). Out-of-line members keep the inlining they
// had in the class: `inline` on each definition, IOCP_ALWAYS_INLINE/IOCP_NOINLINE where a
// per-message path needs them (run the benchmark's callgrind mode before and after a change).

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
#include "iocp/detail/assert.hpp"
#include "iocp/detail/backend.hpp"
#include "iocp/detail/backend_contract.hpp"
#include "iocp/detail/clock.hpp"
#include "iocp/detail/close_state.hpp"
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

  /// `allocator`: the server's to copy into this loop's instances, or nullptr (make_allocator).
  event_loop(Server& server, std::uint32_t index, iocp::backend kind, socket_handle listen_fd,
             const server_options& options, const allocator_type* allocator)
      : server_(server), index_(index), options_(options), budget_(server.send_budget()),
        allocator_(make_allocator(allocator)),
        inbox_(server.send_budget(), inbox_limit(options, server.thread_count()), allocator) {
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

  std::error_code post_send(connection_id id, std::span<const std::byte> data);
  /// `reserved`: what the caller reserved from the send budget for the vector's memory, which the
  /// record then owns (given back by the loop when the vector's bytes are sent or dropped).
  std::error_code post_vector(connection_id id, std::vector<std::byte>&& data, std::size_t reserved);
  std::error_code post_call(command_kind what, connection_id id, shutdown_type how = shutdown_type::both);
  std::error_code post_adopt(socket_handle s, const endpoint& remote);
  /// A function for the thread (kind run) or for the connection `id` (kind call), run in order
  /// with the other posts. Counted like a send's bytes: refused past the server-wide cap.
  template <class Call, class F>
  std::error_code post_function(command_kind what, connection_id id, F&& f);
  /// A timer armed from another thread: `id` its connection's (empty: server-wide).
  std::error_code post_timer(connection_id id, timer_id t, std::int64_t due_ns, std::int64_t period_ns);
  std::error_code post_cancel_timer(timer_id t);
  /// A new timer's id, from any thread (the timer is armed by set_timer or post_timer).
  timer_id new_timer_id() noexcept;

  /// A graceful stop with this deadline (the earliest of those asked for applies). Not a record in
  /// the inbox, so that it needs no memory; what was posted before it is carried out first.
  void request_stop(std::int64_t deadline_ns) noexcept;

  // ---- on the owning thread: the connection's operations ----

  /// The echo case, on_received sending bytes of the very buffer it was given while nothing else
  /// is queued, in a few instructions and no call: the handler's on_received stays small enough for
  /// the compiler to inline it into the completion loop. False: nothing was done; send() does it.
  IOCP_ALWAYS_INLINE bool try_send_lent(connection_type& c, std::span<const std::byte> data) noexcept;

  // The operations a handler calls (through connection and the server's by-id forms) run no
  // handler callback and free no connection before they return, whatever they cause: what a
  // callback is owed then (on_send_queue_high, on_disconnected, on_server_error) runs when the
  // running callback returns, or in the loop's deferred round (run_deferred).

  // An allocation that fails closes the connection (its stream would have a gap), reported as
  // std::errc::not_enough_memory (operation::send) once the caller's callback has returned.

  // Out of line: what the handler's send() inlines is try_send_lent() and a call to this.
  IOCP_NOINLINE std::error_code send(connection_type& c, std::span<const std::byte> data);

  std::error_code send(connection_type& c, std::vector<std::byte>&& data);

  void pause_receiving(connection_type& c);

  void resume_receiving(connection_type& c);

  std::error_code shutdown(connection_type& c, shutdown_type how);

  /// The graceful close's deadline runs from now (linger_timeout): a peer that never reads cannot
  /// keep the connection, and its queue, for ever.
  std::error_code disconnect(connection_type& c);

  void abort(connection_type& c, std::error_code reason);
  /// The handler's conn.abort(): out of line, so that a callback that may abort (an echo whose send
  /// failed) stays small enough to be inlined into the completion that runs it.
  IOCP_NOINLINE void abort(connection_type& c);

  // ---- on the owning thread: timers ----

  /// A timer on `c` (cancelled when it closes): empty, with `ec` set, if c is closing or without memory.
  timer_id set_timer(connection_type& c, std::int64_t delay_ns, std::int64_t period_ns,
                     std::error_code& ec) noexcept;
  /// A server-wide timer (cancelled when the server stops).
  timer_id set_server_timer(std::int64_t delay_ns, std::int64_t period_ns, std::error_code& ec) noexcept;
  /// Cancels one of this thread's timers; nothing if it has fired (one-shot) or was cancelled.
  void cancel_timer(timer_id t) noexcept;

  // ---- the backend's completions (the Sink interface) ----

  void accept_completed(accept_context& ctx, int result);

  template <class Backend>
  IOCP_ALWAYS_INLINE void receive_completed(Backend& backend, io_object& io, int result, std::byte* data);

  template <class Backend>
  IOCP_ALWAYS_INLINE void send_completed(Backend& backend, io_object& io, int result);

  /// Bytes written at once by a send (epoll's send_now), reported a round later.
  template <class Backend>
  void send_completed_at_once(Backend& backend, io_object& io, int bytes);

  /// Carries out what other threads posted, in order, then a stop they asked for.
  void wake_completed();

  /// The backend's wait has returned, and the completions it brought are next: the loop's clock for
  /// idle_timeout is read now, once per round, so that what they bring is stamped with the time it
  /// was seen, however long the round's callbacks then take (a stale stamp reset busy connections).
  IOCP_ALWAYS_INLINE void begin_round() noexcept {
    if (idle_timeout_ns_) now_ns_ = monotonic_ns();
  }

  /// The backend could not wait or submit (e.g. a seccomp profile that refuses io_uring_enter
  /// after setup was allowed). Reported, and paced, so that a lasting failure cannot spin a core.
  void backend_failed(std::error_code e);

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

  // ---- the run loop and its backend ----

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

  // ---- the command inbox: what other threads posted (loop/commands.hpp) ----

  /// What one thread's inbox may hold: a 32nd of the send-queue cap shared by the threads, and at
  /// least 4 MiB (so that a thread of many is not throttled to a trickle). With many threads the
  /// floor lets the inboxes together reach more than a 32nd of the cap (64 threads: all of it), but
  /// never past the cap itself: inbox memory is counted in max_send_queue_total when allocated.
  static std::size_t inbox_limit(const server_options& options, std::size_t threads) noexcept;

  template <class Fill>
  std::error_code post(command_kind what, connection_id id, std::uint8_t how, std::size_t payload,
                       bool is_send, Fill&& fill);

  connection_type* find(connection_id id);

  /// A posted call for `c`, which this thread owns.
  void execute(connection_type& c, command_record& r);

  /// Runs a posted function (`c`: its connection, or nullptr). Outside a connection's callback a
  /// throw is reported; inside one (`handled` false) it propagates to invoke(), which also closes
  /// the connection, as for any callback.
  void run_posted(command_record& r, connection_type* c, bool handled = true);

  void arm_posted_timer(command_record& r, connection_type* c, timer_node*& list) noexcept;

  /// A posted call whose connection has gone (or whose thread has ended): what it holds is freed,
  /// and a vector's reservation goes to this thread's share, which gives it back.
  void discard(command_record& r) noexcept;

  void begin_stop(std::int64_t deadline_ns);

  // ---- handler callbacks and the deferred round (loop/callbacks.hpp) ----

  handler_type& handler() noexcept { return server_.handler(); }

  /// Puts c on the list of connections the loop owes work outside any callback (run_deferred).
  /// Listed, a connection is not freed: the list's pointers stay valid.
  void defer(connection_type& c) noexcept;

  /// Once a round, with no handler callback on the stack: the work deferred by operations the
  /// handler called (held input after a resume, on_send_queue_high, a failed shutdown's report) and
  /// the finalisation of connections that began closing. Connections deferred again meanwhile
  /// (their callbacks may do that) wait for the next round, which does not sleep (next_timeout_ns).
  void run_deferred();

  /// Calls a handler callback. A callback that throws aborts its connection (and is reported);
  /// it never unwinds through the loop. A send that try_send_lent() left for the callback's return
  /// starts then; on the per-message path the backend's type is known, and this inlines.
  template <class Backend, class F>
  IOCP_ALWAYS_INLINE void invoke(Backend& backend, connection_type& c, F&& f);

  /// A callback returned owing more than the echo's flush: on_send_queue_high (after the flush).
  IOCP_NOINLINE void after_callback(connection_type& c);

  template <class F>
  void invoke(connection_type& c, F&& f);

  template <class F>
  IOCP_ALWAYS_INLINE void call_handler(connection_type& c, F& f);

  void report(std::error_code e, operation where) noexcept;

  // ---- the accept path (loop/accept.hpp) ----

  static constexpr std::int64_t min_backoff_ns = 10'000'000; // 10 ms

  static constexpr std::int64_t max_backoff_ns = 1'000'000'000; // 1 s

  void start_accept(accept_context& ctx);

  bool accept_pending() const noexcept;

  std::uint32_t next_owner() noexcept;

  void open_connection(socket_handle fd, const endpoint& remote);

  /// A socket another thread accepted for this one (IOCP).
  void adopt(adopted_socket& a);

  /// The accept back-off is over (or a connection closed and freed a descriptor): try again.
  void retry_accepts();

  // ---- the receive path and its hold (loop/receive.hpp) ----

  /// Data for the handler, unless the receive side was shut (then it is read and dropped).
  template <class Backend>
  IOCP_ALWAYS_INLINE void deliver(Backend& backend, connection_type& c, std::span<const std::byte> data);

  void deliver(connection_type& c, std::span<const std::byte> data);

  IOCP_NOINLINE void on_peer_eof(connection_type& c);

  /// A receive completed while receiving was paused: keep what it brought for resume_receiving().
  /// An error still closes the connection; the end of a receive the pause cancelled is no error.
  /// Without memory to keep the bytes, the connection closes (they cannot be given back).
  IOCP_NOINLINE void hold(connection_type& c, int result, const std::byte* data);

  /// Adds bytes to what is held, growing its buffer (from the Allocator policy) by doubling.
  void append_held(held_input& h, const std::byte* data, std::size_t n);

  void free_held(held_input* h) noexcept;

  /// Receiving resumed: what was held goes to the handler, then the receive is armed again. In
  /// pieces of a receive's size: a handler that pauses again (its send queue full once more) keeps
  /// the rest held, instead of being handed all of it at once to queue.
  void deliver_held(connection_type& conn);

  template <class Backend>
  IOCP_ALWAYS_INLINE void rearm_receive(Backend& backend, connection_type& c);

  void rearm_receive(connection_type& c);

  /// The receive side is done for the handler (shutdown(receive), disconnect): bytes still arriving
  /// are read and dropped so the peer's FIN is seen, even if receiving had been paused.
  void stop_reading(connection_type& c);

  // ---- the send path (loop/send.hpp) ----

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
  bool queue_send(Backend& backend, connection_type& c, std::span<const std::byte> data);

  /// Bytes joined c's queue: the high-water mark may have been passed.
  IOCP_ALWAYS_INLINE void queued(connection_type& c);

  /// on_send_queue_high runs when the running callback returns, or (a send made outside this
  /// connection's callbacks) in the deferred round: not inside the send that crossed the mark.
  IOCP_NOINLINE void crossed_high_water(connection_type& c);

  /// The high-water mark was crossed a while ago: tell the handler, unless the queue has since
  /// fallen back to the mark (then no callback runs, and the next crossing counts anew: low after a
  /// high that was never reported would be a lie, and a high with nothing left above the mark might
  /// never be followed by a low).
  void deliver_high_water(connection_type& c);

  /// Drops whatever c still has queued (it is closing).
  void drop_queue(connection_type& c) noexcept;

  /// The kernel took `bytes` of this connection's data: tell the handler, then send what is next
  /// (or the FIN), and close if both directions are done.
  template <class Backend>
  void after_sent(Backend& backend, connection_type& c, std::size_t bytes);

  /// Starts the next send, or sends the FIN once the queue is empty and a shutdown was asked for.
  /// On the per-message paths the backend's type is known (no dispatch, and this inlines).
  template <class Backend>
  IOCP_ALWAYS_INLINE void flush(Backend& backend, connection_type& c);

  IOCP_NOINLINE void flush(connection_type& c);

  /// A send posted from another thread: its bytes join the queue (coalesced with the sends before
  /// them), and the queue is flushed once, in the deferred round, for the whole batch. Its result
  /// has no caller left to see it: a refusal by the per-connection cap (or a lack of memory) is
  /// reported; a connection whose send side has been shut since drops it, as any close would.
  template <class Data>
  void posted_send(connection_type& c, Data&& data);

  // ---- the close sequence (loop/close.hpp; its states: detail/close_state.hpp) ----

  /// A failed close() is reported, and nothing else is done: the descriptor is gone all the same
  /// (Linux frees it whatever close() says; Windows leaves nothing the server could retry).
  void close_reported(socket_handle s) noexcept;

  void finish_sending(connection_type& c);

  void send_fin(connection_type& c);

  /// Closes a connection whose two directions are finished. (After disconnect(), the linger period
  /// it started waits for the peer's FIN.)
  IOCP_ALWAYS_INLINE void check_finished(connection_type& c);

  IOCP_NOINLINE void close_finished(connection_type& c);

  /// What a graceful close still has to get to the peer: bytes queued here, and bytes sent that the
  /// peer has not acknowledged.
  std::size_t close_pending_bytes(connection_type& c) noexcept;

  /// The graceful close's first period starts at `now`. Without memory to queue its deadline, the
  /// connection is reset at once (as any allocation failure for it would).
  void start_linger(connection_type& c, std::int64_t now);

  /// Every change of a connection's close state goes through here, checked against the table of
  /// legal transitions (detail/close_state.hpp).
  static void enter(connection_type& c, close_state to) noexcept;

  /// Closing starts here; the connection is freed (and on_disconnected runs) in the deferred round,
  /// or later, when the kernel has let go of it: never inside the call that closed it.
  IOCP_NOINLINE void begin_close(connection_type& c, std::error_code reason, bool abortive);

  /// Frees a closing connection once the kernel holds no operation of it, no callback of it is on
  /// the stack and it is not on the deferred list (which finalises it itself). Callers must not
  /// touch `c` afterwards. Inline: on every completion's path, and almost always a connection that
  /// is not closing. Only the loop calls it, from completions and its own rounds.
  IOCP_ALWAYS_INLINE void maybe_finalize(connection_type& c);

  IOCP_NOINLINE void finalize_if_released(connection_type& c);

  /// Frees a connection; its socket is closed if the backend has not released it (a refused
  /// connection). `report_close`: a failed close is reported (not from the destructor).
  void destroy(connection_type& c, bool report_close = true) noexcept;

  void link(connection_type& c) noexcept;

  void unlink(connection_type& c) noexcept;

  /// An allocation for `c` failed: it closes (reset: what it was to send or receive is lost), and
  /// the failure is reported when the callback that may be running has returned.
  std::error_code out_of_memory(connection_type& c, operation where);

  // ---- the deadline queue: every timed thing of the loop (loop/deadlines.hpp) ----
  // One 4-ary heap (deadline_queue) holds the user's timers, one node per connection (the earlier of
  // its linger deadline and its idle check), the accept back-off and the stop deadline. The wait's
  // timeout is its earliest entry; a round fires what is due, by kind. Nothing walks the connections
  // on a clock: a connection's idle check is due when it may first have been idle for idle_timeout,
  // and finding it active since then only moves the check (lazily: activity itself stays a store of
  // the round's clock).

  /// Queues c's deadline node at the earlier of its linger deadline and its idle check (or takes
  /// it out if neither applies). False only without memory for the queue to grow.
  bool schedule_connection(connection_type& c) noexcept;

  /// Queues (or moves) one of the loop's deadlines. A node already queued moves without
  /// allocating; a new one may need the queue to grow: false without memory for it.
  bool schedule(deadline_node& d, std::int64_t due) noexcept;

  timer_id arm_timer(timer_id t, std::int64_t due_ns, std::int64_t period_ns, connection_type* c,
                     timer_node*& list, std::error_code& ec) noexcept;

  /// A user's timer is due: a connection's callback runs as its other callbacks do (a throw
  /// closes it), a server-wide one's throw is reported.
  void fire_user_timer(timer_node& n);

  void arm_stop_deadline();

  long long next_timeout_ns() const noexcept;

  /// Whether run_timers() has anything to look at (checked inline once per round).
  bool timers_armed() const noexcept;

  void run_timers();

  /// A connection's node is due (it is out of the queue): its linger period, its idle check, or both.
  void connection_deadline(connection_type& c, std::int64_t now);

  /// stop()'s deadline has passed: the connections left are reset.
  void stop_deadline_passed();

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

  void note_round(std::int64_t end_ns) noexcept;

  /// Until when a connection stamped `stamp` may have been active.
  std::int64_t active_until(std::int64_t stamp) const noexcept;

  /// Stamps are a round's start, so a connection may have been active up to a round later than
  /// its stamp says: it gets this much more than idle_timeout (a tenth of it, at least 1 ms).
  std::int64_t idle_slack_ns() const noexcept;

  std::int64_t idle_limit_ns() const noexcept;
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
  allocator_type allocator_; // (not [[no_unique_address]]: make_allocator returns it by value)
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

// The members' definitions, one room of the loop each.
#include "iocp/detail/loop/accept.hpp"
#include "iocp/detail/loop/callbacks.hpp"
#include "iocp/detail/loop/close.hpp"
#include "iocp/detail/loop/commands.hpp"
#include "iocp/detail/loop/deadlines.hpp"
#include "iocp/detail/loop/receive.hpp"
#include "iocp/detail/loop/send.hpp"
