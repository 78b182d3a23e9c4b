// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The connection a handler callback is given. It lives on the I/O thread that accepted it; a
// reference is valid only during the callback (keep id() to reach it later through the server).
// Its operations act at once, with no lookup and no lock; they must be called on the owning thread,
// which every callback runs on. From other threads, use the server's operations by id.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "iocp/connection_id.hpp"
#include "iocp/detail/backend.hpp"
#include "iocp/detail/close_state.hpp"
#include "iocp/detail/inline.hpp"
#include "iocp/detail/loop_timers.hpp"
#include "iocp/detail/send_budget.hpp"
#include "iocp/detail/send_queue.hpp"
#include "iocp/endpoint.hpp"
#include "iocp/error.hpp"
#include "iocp/handler.hpp"
#include "iocp/options.hpp"
#include "iocp/timer.hpp"

namespace iocp {

namespace detail {
template <class Server>
class event_loop;

/// What arrived while receiving was paused; its bytes and itself come from the Allocator policy.
struct held_input {
  std::byte* data = nullptr;
  std::size_t size = 0;
  std::size_t capacity = 0;
  bool eof = false; // the peer's FIN came after the bytes
};
} // namespace detail

template <class Server>
class connection : public detail::io_object {
public:
  using server_type = Server;
  using state_type = typename detail::connection_state_of<typename Server::handler_type>::type;
  using native_handle_type = detail::socket_handle; ///< int on Linux, SOCKET on Windows

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  connection_id id() const noexcept { return id_; }
  /// The socket (a file descriptor; a SOCKET on Windows), for socket options the library does not
  /// set. It belongs to the server: do not close it, and do not read or write it directly.
  native_handle_type native_handle() const noexcept { return fd; }
  const endpoint& local_endpoint() const noexcept { return local_; }
  const endpoint& remote_endpoint() const noexcept { return remote_; }

  /// Queues a copy of `data`; it goes out after everything queued before it. Fails with
  /// errc::connection_closing once the send side is shut (shutdown, disconnect, abort).
  IOCP_ALWAYS_INLINE std::error_code send(std::span<const std::byte> data) {
    if (loop_->try_send_lent(*this, data)) return {};
    return loop_->send(*this, data);
  }
  std::error_code send(std::string_view text) { return send(std::as_bytes(std::span(text))); }
  /// Queues `buffer` itself, without a copy.
  std::error_code send(std::vector<std::byte>&& buffer) { return loop_->send(*this, std::move(buffer)); }

  /// send: the FIN follows the queued data. receive: further data is discarded (the peer's
  /// half-close is still reported). both: the two.
  std::error_code shutdown(shutdown_type how) { return loop_->shutdown(*this, how); }
  /// Graceful close: queued data goes out, then the FIN; the connection closes when the peer's FIN
  /// arrives (or after server_options::linger_timeout, with a reset). Incoming data is discarded.
  std::error_code disconnect() { return loop_->disconnect(*this); }
  /// Immediate close with a reset; queued data is discarded.
  void abort() { loop_->abort(*this); }

  /// Stops on_received (and on_peer_shutdown) for this connection until resume_receiving(): the
  /// kernel's receive buffer fills and TCP flow control slows the peer down. Bytes the kernel had
  /// already handed over are kept and delivered, in order, after resume_receiving(). A graceful
  /// close (disconnect, shutdown of the receive side, stop) resumes reading to find the peer's FIN.
  void pause_receiving() { loop_->pause_receiving(*this); }
  void resume_receiving() { loop_->resume_receiving(*this); }
  bool receiving_paused() const noexcept { return receive_paused; }

  /// Arms a timer on this connection: Handler::on_timer(conn, id) runs after `delay` (never
  /// earlier), then every `period` if one is given (no drift: at multiples of the period from the
  /// first due time; periods missed while the thread was busy are skipped, not fired in a burst).
  /// Cancelled when the connection closes: no on_timer runs once its close has begun. Returns the
  /// empty id if the connection is closing (errc::connection_closing) or without memory.
  timer_id set_timer(std::chrono::nanoseconds delay, std::chrono::nanoseconds period = {}) noexcept {
    std::error_code ec;
    return set_timer(delay, period, ec);
  }
  timer_id set_timer(std::chrono::nanoseconds delay, std::chrono::nanoseconds period,
                     std::error_code& ec) noexcept {
    static_assert(detail::has_on_timer<typename Server::handler_type, connection>,
                  "iocp: conn.set_timer() needs Handler::on_timer(conn, iocp::timer_id)");
    return loop_->set_timer(*this, delay.count() > 0 ? delay.count() : 0, period.count(), ec);
  }
  /// Cancels a timer (any of the server's: see basic_iocp_server::cancel_timer). On this thread it
  /// takes effect at once: the timer does not fire after this returns, even from its own callback.
  void cancel_timer(timer_id timer) noexcept { (void)server().cancel_timer(timer); }

  /// Bytes queued and not yet taken by the kernel.
  std::size_t queued_bytes() const noexcept { return queue_.bytes(); }
  /// The peer has half-closed: no more data will arrive.
  bool peer_has_shut_down() const noexcept { return peer_eof_; }

  /// The handler's per-connection state (Handler::connection_state), constructed with the
  /// connection and destroyed after on_disconnected.
  state_type& state() noexcept { return state_; }
  const state_type& state() const noexcept { return state_; }

  Server& server() const noexcept { return loop_->server(); }

private:
  friend class detail::event_loop<Server>;
  using allocator_type = typename Server::allocator_type;

  static constexpr std::uint8_t flush_owed = 1;      // a send queued in a callback: start it on return
  static constexpr std::uint8_t high_water_owed = 2; // the queue crossed the high-water mark

  explicit connection(detail::event_loop<Server>* loop) : loop_(loop) {}
  ~connection() = default;

  detail::event_loop<Server>* loop_;
  connection_id id_;
  endpoint local_;
  endpoint remote_;
  detail::send_queue<allocator_type, detail::local_send_budget> queue_;
  std::error_code close_reason_;
  // The loop's list of live connections.
  connection* prev_ = nullptr;
  connection* next_ = nullptr;
  // The connection's place in the loop's deadline queue: due at the earlier of its linger
  // deadline (while lingering) and its next idle check (with idle_timeout); see event_loop.
  detail::deadline_node deadline_{detail::never_ns, 0, detail::loop_deadlines::not_queued,
                                  detail::deadline_kind::connection, this};
  std::int64_t linger_deadline_ns_ = detail::never_ns;
  std::int64_t idle_check_ns_ = detail::never_ns; // when it may next be idle for idle_timeout
  std::size_t linger_pending_ = 0;                // bytes queued or unacknowledged when the last period began
  std::int64_t last_active_ns_ = 0; // the loop's clock when data last came in or went out (idle_timeout)
  // What arrived while receiving was paused, for resume_receiving() to deliver.
  detail::held_input* held_ = nullptr;
  std::uint8_t callback_depth_ = 0;
  bool announced_ = false; // on_connected was called: on_disconnected is owed
  // Where the close sequence is (detail/close_state.hpp: its states and legal transitions).
  detail::close_state close_ = detail::close_state::open;
  bool peer_eof_ = false;         // the peer's FIN arrived
  bool read_shut_ = false;        // incoming data is discarded
  bool above_high_water_ = false; // on_send_queue_high ran or is owed; on_send_queue_low is owed
  // Work the loop owes when the running callback returns (event_loop::invoke), or, outside a
  // callback, in its deferred round (event_loop::run_deferred): never inside a call the user made.
  std::uint8_t after_callback_ = 0; // flush_owed | high_water_owed
  bool held_delivery_owed_ = false; // resumed with held input: deliver it, then the FIN if held
  // A failure that closed the connection inside a call the user made, reported in the deferred
  // round (0: none; else the operation + 1; the error is close_reason_).
  std::uint8_t report_owed_ = 0;
  // On the loop's list of connections with deferred work (which frees none of them meanwhile).
  bool deferred_ = false;
  connection* deferred_next_ = nullptr;
  detail::timer_node* timers_ = nullptr; // the user's timers on this connection (loop_timers)
  [[no_unique_address]] state_type state_{};
};

} // namespace iocp
