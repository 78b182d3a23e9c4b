// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Part of the event loop (detail/event_loop.hpp, which declares these members and includes this
// file at its end). The accept path: accepts kept in flight, what an accepted socket becomes
// (open_connection: options, map entry, on_connected, the first receive), sockets adopted from thread 0
// (IOCP), and the back-off when the process is out of descriptors or memory. Every failure is handled and the
// accept chain never breaks.

namespace iocp::detail {

template <class Server>
inline void event_loop<Server>::accept_completed(accept_context& ctx, int result) {
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
    bool listed = false;
    try {
      backed_off_.push_back(&ctx);
      listed = true;
    } catch (const std::bad_alloc&) {}
    if (listed && schedule(backoff_deadline_, later_ns(monotonic_ns(), backoff_ns_))) return;
    // No memory to list the accept or to queue the back-off's deadline: wait here instead (paced,
    // so nothing spins), then accept again; the chain goes on either way.
    std::this_thread::sleep_for(std::chrono::nanoseconds(min_backoff_ns));
    if (listed)
      retry_accepts();
    else
      start_accept(ctx);
    return;
  }
  start_accept(ctx);
}

template <class Server>
inline void event_loop<Server>::start_accept(accept_context& ctx) {
  with_backend([&](auto& b) { b.start_accept(ctx); });
}

template <class Server>
inline bool event_loop<Server>::accept_pending() const noexcept {
  for (const accept_context& ctx : accepts_)
    if (ctx.pending) return true;
  return false;
}

template <class Server>
inline std::uint32_t event_loop<Server>::next_owner() noexcept {
  std::size_t count = server_.thread_count();
  std::uint32_t owner = static_cast<std::uint32_t>(next_owner_ % count);
  next_owner_ = (next_owner_ + 1) % count;
  return owner;
}

template <class Server>
inline void event_loop<Server>::open_connection(socket_handle fd, const endpoint& remote) {
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

template <class Server>
inline void event_loop<Server>::adopt(adopted_socket& a) {
  if (stopping_)
    close_reported(a.socket);
  else
    open_connection(a.socket, a.remote);
}

template <class Server>
inline void event_loop<Server>::retry_accepts() {
  if (stopping_) return;
  std::vector<accept_context*> retry;
  retry.swap(backed_off_);
  for (accept_context* ctx : retry)
    start_accept(*ctx);
}

} // namespace iocp::detail
