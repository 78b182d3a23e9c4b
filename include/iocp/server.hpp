// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// basic_iocp_server: a TCP server in the Proactor style, composed from compile-time policies.
//
//   iocp::iocp_server<echo_handler> server({.address = "127.0.0.1", .port = 50000});
//
// The constructor binds, listens and starts the I/O threads, or throws std::system_error with the
// real cause. stop() drains gracefully; the destructor aborts whatever is still open. Both call
// on_disconnected for every live connection and then on_server_closed, once.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "iocp/allocator.hpp"
#include "iocp/connection.hpp"
#include "iocp/connection_id.hpp"
#include "iocp/connection_map.hpp"
#include "iocp/detail/config.hpp"
#include "iocp/detail/event_loop.hpp"
#include "iocp/endpoint.hpp"
#include "iocp/error.hpp"
#include "iocp/handler.hpp"
#include "iocp/options.hpp"
#include "iocp/statistics.hpp"
#include "iocp/threading.hpp"
#include "iocp/timer.hpp"

namespace iocp {

template <class Handler, class Allocator = pooled_allocator, class ConnectionMap = mutex_map,
          class ThreadingPolicy = thread_pool>
class basic_iocp_server {
  static_assert(server_handler<Handler>, "iocp: the Handler must be a non-const class type");
  static_assert(operation_allocator<Allocator>,
                "iocp: the Allocator policy needs a default constructor, "
                "void* allocate(std::size_t) and a noexcept deallocate(void*, std::size_t)");
  static_assert(connection_map<ConnectionMap>,
                "iocp: the ConnectionMap policy needs a constructor taking the capacity, "
                "connection_id insert(connection_entry), bool erase(connection_id), "
                "std::optional<connection_entry> find(connection_id) const and size() const");
  static_assert(threading_policy<ThreadingPolicy>,
                "iocp: the ThreadingPolicy needs a static thread_count(const server_options&) "
                "returning the number of I/O threads");

public:
  using handler_type = Handler;
  using allocator_type = Allocator;
  using connection_map_type = ConnectionMap;
  using threading_policy_type = ThreadingPolicy;
  using connection_type = connection<basic_iocp_server>;
  using connection_state_type = typename detail::connection_state_of<Handler>::type;

  static_assert(std::is_default_constructible_v<connection_state_type>,
                "iocp: Handler::connection_state must be default-constructible");

  /// Binds, listens and starts the I/O threads; the handler is constructed from `handler_args`.
  /// Throws std::system_error (bad address, port in use, permission, backend refused).
  template <class... Args>
  explicit basic_iocp_server(server_options options, Args&&... handler_args)
      : basic_iocp_server(nullptr, std::move(options), std::forward<Args>(handler_args)...) {}

  /// The same, with every instance of the Allocator policy the server uses (one or two per I/O
  /// thread) copied from `allocator`: for an allocator with state, such as pmr_allocator over a
  /// resource of yours. The copies are used by several threads at once (see allocator.hpp).
  template <class... Args>
  requires std::copy_constructible<Allocator>
  basic_iocp_server(std::allocator_arg_t, const Allocator& allocator, server_options options,
                    Args&&... handler_args)
      : basic_iocp_server(&allocator, std::move(options), std::forward<Args>(handler_args)...) {}

private:
  template <class... Args>
  basic_iocp_server(const Allocator* allocator, server_options options, Args&&... handler_args)
      : options_(std::move(options)), handler_(std::forward<Args>(handler_args)...),
        map_(options_.max_connections) {
    static_assert(detail::check_handler<Handler, connection_type>());
    std::optional<endpoint> at = endpoint::parse(options_.address, options_.port);
    if (!at)
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "iocp: not a numeric IPv4 or IPv6 address: '" + options_.address + "'");
    if (options_.receive_buffer_size == 0 || options_.receive_buffer_size > (1u << 30))
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "iocp: receive_buffer_size must be between 1 and 1 GiB");
    if (options_.max_connections == 0 || options_.max_connections > max_connection_capacity)
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "iocp: max_connections must be between 1 and " +
                                  std::to_string(max_connection_capacity));
    if (options_.send_low_water_mark > options_.send_high_water_mark)
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "iocp: send_low_water_mark must not be above send_high_water_mark");
    backend_ = choose_backend(options_.io_backend);
    listen_fd_ = detail::open_listener(*at, options_.backlog, options_.reuse_address, options_.v6_only);
    local_ = detail::local_endpoint_of(listen_fd_);
    if (options_.no_delay && detail::accepted_sockets_inherit_no_delay) detail::set_no_delay(listen_fd_);
    // io_uring waits for readiness itself; readiness-based accepting must never block.
    detail::set_nonblocking(listen_fd_, backend_ == backend::epoll);
    try {
      start_threads(ThreadingPolicy::thread_count(options_), allocator);
    } catch (...) {
      (void)detail::close_socket(listen_fd_);
      throw;
    }
  }

public:
  basic_iocp_server(const basic_iocp_server&) = delete;
  basic_iocp_server& operator=(const basic_iocp_server&) = delete;

  /// Aborts every connection still open (each gets on_disconnected), then on_server_closed.
  /// Never throws and never waits for a peer. Must not run on one of the server's own threads.
  ~basic_iocp_server() {
    if (on_io_thread()) {
      std::fputs("iocp: a server was destroyed from its own I/O thread\n", stderr);
      std::abort();
    }
    stop(std::chrono::milliseconds(0));
  }

  /// The bound address; the port is the real one when server_options::port was 0.
  const endpoint& local_endpoint() const noexcept { return local_; }
  /// The backend in use (automatic resolved).
  iocp::backend backend() const noexcept { return backend_; }
  std::size_t thread_count() const noexcept { return loops_.size(); }
  /// Connections open now.
  std::size_t connection_count() const { return map_.size(); }
  /// Counters of everything the server has done (see iocp/statistics.hpp), from any thread, at any
  /// time, also after stop(): the final figures.
  server_statistics statistics() const noexcept {
    server_statistics s;
    for (const auto& loop : loops_)
      loop->counters().add_to(s);
    return s;
  }
  const server_options& options() const noexcept { return options_; }

  Handler& handler() noexcept { return handler_; }
  const Handler& handler() const noexcept { return handler_; }
  ConnectionMap& connection_map() noexcept { return map_; }

  // ---- operations by id, from any thread ----
  // On the connection's own I/O thread they act at once; elsewhere they are posted to it and carried
  // out in the order each thread made them. An id that is unknown now gives errc::unknown_connection;
  // a connection that closes before posted work reaches it simply drops that work.

  std::error_code send(connection_id id, std::span<const std::byte> data) {
    return dispatch(
        id, [&](connection_type& c) { return c.send(data); },
        [&](loop_type& loop) {
          if (data.empty()) return std::error_code{}; // nothing to send: nothing is posted
          if (data.size() > options_.max_send_queue_per_connection)
            return make_error_code(errc::send_queue_full);
          return loop.post_send(id, data); // copied into the thread's inbox, counted against the cap
        });
  }
  std::error_code send(connection_id id, std::string_view text) {
    return send(id, std::as_bytes(std::span(text)));
  }
  std::error_code send(connection_id id, std::vector<std::byte>&& buffer) {
    return dispatch(
        id, [&](connection_type& c) { return c.send(std::move(buffer)); },
        [&](loop_type& loop) {
          if (buffer.empty()) return std::error_code{};
          // The vector's own memory counts against the cap from now on, with the node that will
          // hold it in the queue (a small one is copied into a block instead: its heap header).
          const std::size_t reserved =
              buffer.capacity() +
              (buffer.size() > detail::send_vector_copy_limit ? detail::send_block_overhead : 16);
          if (buffer.size() > options_.max_send_queue_per_connection || !send_budget_.reserve(reserved))
            return make_error_code(errc::send_queue_full);
          std::error_code e = loop.post_vector(id, std::move(buffer), reserved);
          if (e) send_budget_.release(reserved);
          return e;
        });
  }
  std::error_code shutdown(connection_id id, shutdown_type how) {
    return dispatch(
        id, [&](connection_type& c) { return c.shutdown(how); },
        [&](loop_type& loop) { return loop.post_call(command_kind::shutdown, id, how); });
  }
  std::error_code disconnect(connection_id id) {
    return dispatch(
        id, [&](connection_type& c) { return c.disconnect(); },
        [&](loop_type& loop) { return loop.post_call(command_kind::disconnect, id); });
  }
  /// See connection::pause_receiving() and resume_receiving().
  std::error_code pause_receiving(connection_id id) {
    return dispatch(
        id,
        [&](connection_type& c) {
          c.pause_receiving();
          return std::error_code{};
        },
        [&](loop_type& loop) { return loop.post_call(command_kind::pause, id); });
  }
  std::error_code resume_receiving(connection_id id) {
    return dispatch(
        id,
        [&](connection_type& c) {
          c.resume_receiving();
          return std::error_code{};
        },
        [&](loop_type& loop) { return loop.post_call(command_kind::resume, id); });
  }
  std::error_code abort(connection_id id) {
    return dispatch(
        id,
        [&](connection_type& c) {
          c.abort();
          return std::error_code{};
        },
        [&](loop_type& loop) { return loop.post_call(command_kind::abort, id); });
  }

  // ---- posted work, from any thread ----
  // A posted function runs on an I/O thread, later: never inside the call that posts it, also when
  // that call is made on the I/O thread itself. Functions posted by one thread run in the order it
  // posted them (with its calls by id), each exactly once, unless the server stops before it runs
  // (then it is destroyed without running; one posted before stop() was called still runs). The
  // callable is moved into the thread's inbox (no allocation of its own), so it must be nothrow
  // move constructible; its memory counts against max_send_queue_total like a posted send's bytes.
  // Refused with errc::server_stopping once the server is stopping, errc::send_queue_full past the
  // cap, std::errc::not_enough_memory. A throw from it is handled like a callback's.

  /// Runs f() on an I/O thread of the library's choice: the caller's own on an I/O thread, and
  /// always the same one for a given calling thread (which keeps its posts in order).
  template <class F>
  std::error_code post(F&& f) {
    using stored = std::decay_t<F>;
    static_assert(std::is_invocable_v<stored&>, "iocp: server.post(f): f must be callable as f()");
    static_assert(std::is_nothrow_constructible_v<stored, F&&>,
                  "iocp: server.post(f): f must be nothrow move (or copy) constructible");
    static_assert(alignof(stored) <= alignof(std::max_align_t), "iocp: server.post(f): f is over-aligned");
    if (stopping_.load(std::memory_order_acquire)) return make_error_code(errc::server_stopping);
    return loop_of_this_thread().template post_function<detail::call_without_argument>(
        command_kind::run, connection_id{}, std::forward<F>(f));
  }
  /// Runs f(conn) on the thread that owns the connection `id`, as if it were one of its callbacks
  /// (what it calls on conn acts at once; a throw closes the connection). If the connection has
  /// gone (closed, closing, or the id is stale) by then, f(nullptr) runs instead, on some I/O thread.
  template <class F>
  std::error_code post(connection_id id, F&& f) {
    using stored = std::decay_t<F>;
    static_assert(std::is_invocable_v<stored&, connection_type*>,
                  "iocp: server.post(id, f): f must be callable as f(connection_type*), "
                  "the pointer null when the connection has gone");
    static_assert(std::is_nothrow_constructible_v<stored, F&&>,
                  "iocp: server.post(id, f): f must be nothrow move (or copy) constructible");
    static_assert(alignof(stored) <= alignof(std::max_align_t),
                  "iocp: server.post(id, f): f is over-aligned");
    if (stopping_.load(std::memory_order_acquire)) return make_error_code(errc::server_stopping);
    std::optional<connection_entry> entry = map_.find(id);
    loop_type& loop = entry ? *loops_[entry->owner] : loop_of_this_thread();
    return loop.template post_function<detail::call_with_connection<connection_type>>(command_kind::call, id,
                                                                                      std::forward<F>(f));
  }

  // ---- timers, from any thread ----
  // set_timer returns the timer's id at once, or the empty id when refused (the std::error_code&
  // forms say why). The callback runs on the timer's thread after `delay`, never earlier, then
  // every `period` if one is given (see connection::set_timer). cancel_timer is idempotent and
  // safe from any thread and any callback: on the timer's own thread it takes effect at once (the
  // timer does not fire after it returns); from another thread it is posted, in order after that
  // thread's set_timer, and a firing that has begun on the timer's thread meanwhile still runs.

  /// A server-wide timer: Handler::on_server_timer(id). Cancelled when the server stops.
  timer_id set_timer(std::chrono::nanoseconds delay, std::chrono::nanoseconds period = {}) noexcept {
    std::error_code ec;
    return set_timer(delay, period, ec);
  }
  timer_id set_timer(std::chrono::nanoseconds delay, std::chrono::nanoseconds period,
                     std::error_code& ec) noexcept {
    static_assert(detail::has_on_server_timer<Handler>,
                  "iocp: server.set_timer(delay) needs Handler::on_server_timer(iocp::timer_id)");
    loop_type& loop = any_loop();
    if (loop.on_own_thread()) return loop.set_server_timer(positive(delay), period.count(), ec);
    return post_timer(loop, connection_id{}, delay, period, ec);
  }
  /// A timer on the connection `id`: Handler::on_timer(conn, id); cancelled when it closes.
  /// errc::unknown_connection if the id names no open connection now.
  timer_id set_timer(connection_id id, std::chrono::nanoseconds delay,
                     std::chrono::nanoseconds period = {}) noexcept {
    std::error_code ec;
    return set_timer(id, delay, period, ec);
  }
  timer_id set_timer(connection_id id, std::chrono::nanoseconds delay, std::chrono::nanoseconds period,
                     std::error_code& ec) noexcept {
    static_assert(detail::has_on_timer<Handler, connection_type>,
                  "iocp: server.set_timer(id, delay) needs Handler::on_timer(conn, iocp::timer_id)");
    std::optional<connection_entry> entry = map_.find(id);
    if (!entry) {
      ec = make_error_code(errc::unknown_connection);
      return {};
    }
    loop_type& loop = *loops_[entry->owner];
    if (loop.on_own_thread())
      return loop.set_timer(*static_cast<connection_type*>(entry->object), positive(delay), period.count(),
                            ec);
    return post_timer(loop, id, delay, period, ec);
  }
  /// Cancels a timer; nothing if it has fired (one-shot), was cancelled, or is the empty id. Fails
  /// only from another thread without memory to post the cancel.
  std::error_code cancel_timer(timer_id timer) noexcept {
    if (!timer || timer.thread() >= loops_.size()) return {};
    loop_type& loop = *loops_[timer.thread()];
    if (loop.on_own_thread()) {
      loop.cancel_timer(timer);
      return {};
    }
    return loop.post_cancel_timer(timer);
  }

  /// Graceful stop: stop accepting, shut down every connection's send side after its queued data,
  /// wait up to `timeout` (default: server_options::stop_timeout) for the peers to close, then reset
  /// the rest (milliseconds::max(): never). Returns when every thread has ended and on_server_closed
  /// has run. From one of the server's own threads it only starts the stop and returns
  /// errc::would_deadlock (the destructor finishes it).
  std::error_code stop() { return stop(options_.stop_timeout); }
  /// Thread-safe. Concurrent calls: one stops, the others wait for it (a shorter timeout among them
  /// still applies). A call from the stopping thread itself (inside on_server_closed or the
  /// on_server_error it reports) returns at once: no callback runs under the library's locks.
  std::error_code stop(std::chrono::milliseconds timeout) {
    if (on_io_thread()) {
      post_stop(timeout);
      return make_error_code(errc::would_deadlock);
    }
    std::unique_lock lock(stop_mutex_);
    if (stop_state_ == stop_state::stopped) return {};
    if (stop_state_ == stop_state::stopping) {
      if (stopping_thread_ == std::this_thread::get_id()) return {}; // re-entered from a callback
      lock.unlock();
      post_stop(timeout); // the threads take the earlier of the two deadlines
      lock.lock();
      stop_done_.wait(lock, [&] { return stop_state_ == stop_state::stopped; });
      return {};
    }
    stop_state_ = stop_state::stopping;
    stopping_thread_ = std::this_thread::get_id();
    lock.unlock();
    stop_threads(timeout.count() < 0 ? 0 : timeout.count());
    // The I/O threads have ended: a failed close of the listener is reported from this thread.
    if (int e = detail::close_socket(listen_fd_)) {
      if constexpr (detail::has_on_server_error<Handler>) {
        try {
          handler_.on_server_error(detail::errno_code(e), operation::close);
        } catch (...) {}
      }
    }
    if constexpr (detail::has_on_server_closed<Handler>) {
      try {
        handler_.on_server_closed();
      } catch (...) {}
    }
    lock.lock();
    stop_state_ = stop_state::stopped;
    // Under the lock: a waiter that sees `stopped` may return and destroy the server (and this
    // condition variable) as soon as it can take the lock.
    stop_done_.notify_all();
    return {};
  }

  /// Starts a graceful stop without waiting (safe from a callback); stop() or the destructor joins.
  void request_stop() { post_stop(options_.stop_timeout); }
  void request_stop(std::chrono::milliseconds timeout) { post_stop(timeout); }

  /// Send bytes queued now on every connection, for the server-wide limit (a few chunks of
  /// 64 KiB per thread are reserved ahead of use, so this is an upper bound).
  std::size_t send_queue_reserved() const noexcept { return send_budget_.reserved(); }

private:
  using loop_type = detail::event_loop<basic_iocp_server>;
  using command_kind = detail::command_kind;
  friend loop_type; // hands accepted sockets to the other loops (loop()), shares the send budget

  detail::shared_send_budget& send_budget() noexcept { return send_budget_; }

  loop_type& loop(std::size_t index) noexcept { return *loops_[index]; }

  static iocp::backend choose_backend(iocp::backend wanted) {
#if defined(IOCP_HAS_IOCP)
    if (wanted == backend::automatic || wanted == backend::iocp) return backend::iocp;
#else
#if defined(IOCP_TEST_BACKEND)
    // A test build's fake backends (see detail/event_loop.hpp) need no probe.
    if (wanted == backend::io_uring || wanted == backend::epoll) return wanted;
#endif
    switch (wanted) {
    case backend::io_uring:
      if (std::error_code e = detail::probe_io_uring())
        throw std::system_error(e, "iocp: the io_uring backend is unavailable");
      return backend::io_uring;
    case backend::epoll: return backend::epoll;
    case backend::automatic:
      // Refused (seccomp: EPERM; old kernel: ENOSYS or missing features): epoll serves instead.
      return detail::probe_io_uring() ? backend::epoll : backend::io_uring;
    case backend::iocp: break;
    }
#endif
    throw std::system_error(make_error_code(errc::backend_unavailable),
                            std::string("iocp: backend '") + std::string(to_string(wanted)) +
                                "' does not exist on this platform");
  }

  bool on_io_thread() const noexcept {
    for (const auto& loop : loops_)
      if (loop->on_own_thread()) return true;
    return false;
  }

  /// Acts at once on the connection's own thread; elsewhere posts the call to that thread, unless
  /// the server is stopping. A post may fail: errc::send_queue_full past the server-wide cap (a
  /// send's bytes, with the records that hold them, are counted from the moment they are posted, so
  /// sends from other threads meet the same cap as those the connection's thread makes), or
  /// std::errc::not_enough_memory; nothing was posted then.
  template <class Direct, class Post>
  std::error_code dispatch(connection_id id, Direct&& direct, Post&& post) {
    std::optional<connection_entry> entry = map_.find(id);
    if (!entry) return make_error_code(errc::unknown_connection);
    loop_type& loop = *loops_[entry->owner];
    if (loop.on_own_thread()) return direct(*static_cast<connection_type*>(entry->object));
    if (stopping_.load(std::memory_order_acquire)) return make_error_code(errc::server_stopping);
    return post(loop);
  }

  /// The caller's own loop on an I/O thread; otherwise the next in turn.
  loop_type& any_loop() noexcept {
    for (auto& loop : loops_)
      if (loop->on_own_thread()) return *loop;
    return *loops_[next_loop_.fetch_add(1, std::memory_order_relaxed) % loops_.size()];
  }

  /// Where this thread's server.post(f) go: always the same loop, so that they run in order
  /// (the caller's own, on an I/O thread; others are spread by thread).
  loop_type& loop_of_this_thread() noexcept {
    for (auto& loop : loops_)
      if (loop->on_own_thread()) return *loop;
    return *loops_[std::hash<std::thread::id>{}(std::this_thread::get_id()) % loops_.size()];
  }

  static std::int64_t positive(std::chrono::nanoseconds d) noexcept { return d.count() > 0 ? d.count() : 0; }

  timer_id post_timer(loop_type& loop, connection_id id, std::chrono::nanoseconds delay,
                      std::chrono::nanoseconds period, std::error_code& ec) noexcept {
    if (stopping_.load(std::memory_order_acquire)) {
      ec = make_error_code(errc::server_stopping);
      return {};
    }
    const timer_id t = loop.new_timer_id();
    try {
      ec = loop.post_timer(id, t, detail::later_ns(detail::monotonic_ns(), positive(delay)), period.count());
    } catch (...) {
      ec = make_error_code(std::errc::not_enough_memory);
    }
    return ec ? timer_id{} : t;
  }

  void post_stop(std::chrono::milliseconds timeout) {
    const std::int64_t deadline = detail::later_ns(detail::monotonic_ns(), detail::timeout_ns(timeout));
    stopping_.store(true, std::memory_order_release);
    for (auto& loop : loops_)
      loop->request_stop(deadline);
  }

  /// Each I/O thread builds its own loop (and so its ring: the kernel ties a ring to the thread
  /// that set it up, and signals that thread when the ring goes away; the user's thread must not be
  /// it). The constructor waits until every loop is built, and rethrows the first failure.
  /// `allocator`: the one given to the constructor, which each loop copies (or nullptr).
  void start_threads(std::size_t count, const Allocator* allocator) {
    if (count == 0 || count > 4096)
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "iocp: thread count must be between 1 and 4096");
    struct startup {
      std::mutex mutex;
      std::condition_variable changed;
      std::size_t built = 0;
      bool go = false;
      bool abandon = false;
      std::exception_ptr error;
    };
    // Shared: a woken thread still re-locks the mutex after the constructor may have returned.
    auto shared_start = std::make_shared<startup>();
    startup& start = *shared_start;
    loops_.resize(count);
    threads_.reserve(count);
    auto abandon = [&] {
      {
        std::lock_guard lock(start.mutex);
        start.abandon = true;
      }
      start.changed.notify_all();
      for (auto& t : threads_)
        t.join();
      threads_.clear();
      loops_.clear();
    };
    try {
      for (std::size_t i = 0; i < count; ++i) {
        // `allocator` outlives the loops' construction: this function waits until every loop is built.
        threads_.emplace_back([this, i, shared_start, allocator] {
          startup& start = *shared_start;
          std::unique_ptr<loop_type> loop;
          std::exception_ptr error;
          try {
            loop = std::make_unique<loop_type>(*this, static_cast<std::uint32_t>(i), backend_, listen_fd_,
                                               options_, allocator);
          } catch (...) {
            error = std::current_exception();
          }
          {
            std::unique_lock lock(start.mutex);
            if (error && !start.error) start.error = error;
            loops_[i] = std::move(loop);
            ++start.built;
            start.changed.notify_all();
            start.changed.wait(lock, [&] { return start.go || start.abandon; });
            if (start.abandon) return;
          }
          loops_[i]->run();
        });
      }
    } catch (...) {
      abandon(); // a thread could not be created
      throw;
    }
    std::unique_lock lock(start.mutex);
    start.changed.wait(lock, [&] { return start.built == count; });
    if (start.error) {
      lock.unlock();
      std::exception_ptr error = start.error;
      abandon();
      std::rethrow_exception(error);
    }
    start.go = true;
    lock.unlock();
    start.changed.notify_all();
  }

  void stop_threads(std::int64_t timeout_ms) {
    post_stop(std::chrono::milliseconds(timeout_ms));
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  server_options options_;
  Handler handler_;
  ConnectionMap map_;
  detail::shared_send_budget send_budget_{options_.max_send_queue_total};
  iocp::backend backend_ = backend::automatic;
  detail::socket_handle listen_fd_ = detail::invalid_socket;
  endpoint local_;
  std::vector<std::unique_ptr<loop_type>> loops_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> next_loop_{0}; // any_loop()'s turn
  enum class stop_state { running, stopping, stopped };
  std::mutex stop_mutex_; // guards the three below; held by no callback
  std::condition_variable stop_done_;
  stop_state stop_state_ = stop_state::running;
  std::thread::id stopping_thread_;
};

/// The common case: pooled per-operation memory, the mutex map, one I/O thread per core.
template <class Handler>
using iocp_server = basic_iocp_server<Handler>;

} // namespace iocp
