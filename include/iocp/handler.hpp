// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The Handler: a plain struct, no base class, no virtual functions. Every callback is optional and
// called on the handler's concrete type, so it inlines into the completion that triggers it.
//
//   struct my_handler {
//     struct connection_state { ... };  // optional: kept beside each connection, conn.state()
//     void on_connected(auto& conn, const iocp::connection_info& info);
//     void on_received(auto& conn, std::span<const std::byte> data);  // never empty
//     void on_sent(auto& conn, std::size_t bytes);
//     void on_send_queue_high(auto& conn, std::size_t queued);  // above send_high_water_mark
//     void on_send_queue_low(auto& conn, std::size_t queued);   // back to send_low_water_mark
//     void on_peer_shutdown(auto& conn);          // default: finish sends, then close our side
//     void on_disconnected(auto& conn, std::error_code reason);  // once per on_connected
//     void on_timer(auto& conn, iocp::timer_id timer);  // conn.set_timer / server.set_timer(id, ...)
//     void on_server_timer(iocp::timer_id timer);       // server.set_timer(delay, ...)
//     void on_server_error(std::error_code error, iocp::operation where);
//     void on_server_closed();
//   };
//
// `conn` is an iocp::connection<Server>&; valid only during the call (keep conn.id() instead).
// Callbacks for one connection never run concurrently; with several I/O threads, callbacks for
// different connections, and on_server_error, may.
//
// No callback runs inside a call the handler makes. A call from a callback (conn.send(), abort(),
// the server's calls by id) only records what it did: an on_disconnected, an on_send_queue_high or
// an error report it causes runs after the calling callback has returned, on the same thread, so a
// handler may iterate its own containers while it aborts their members. on_send_queue_high runs
// once the callback has returned, and only if the queue is still above the mark then.

#include <concepts>
#include <cstddef>
#include <span>
#include <system_error>
#include <type_traits>

#include "iocp/endpoint.hpp"
#include "iocp/timer.hpp"

namespace iocp {

/// What a new connection is: both ends, as numeric addresses (never a name lookup).
struct connection_info {
  endpoint local;
  endpoint remote;
};

/// Where a server error (reported through on_server_error) happened.
enum class operation {
  accept, // accepting a connection (the chain is re-armed; the server goes on)
  setup,  // configuring an accepted socket
  receive,
  send,
  shutdown,
  close,
  submit,  // handing work to the kernel
  wake,    // cross-thread signalling
  handler, // a handler callback threw
  timer,   // arming a timer posted from another thread (for lack of memory)
};

inline constexpr const char* to_string(operation op) noexcept {
  switch (op) {
  case operation::accept: return "accept";
  case operation::setup: return "setup";
  case operation::receive: return "receive";
  case operation::send: return "send";
  case operation::shutdown: return "shutdown";
  case operation::close: return "close";
  case operation::submit: return "submit";
  case operation::wake: return "wake";
  case operation::handler: return "handler";
  case operation::timer: return "timer";
  }
  return "?";
}

/// Any class type can be a handler; what it declares decides which callbacks run.
template <class H>
concept server_handler = std::is_class_v<H> && !std::is_const_v<H>;

namespace detail {

struct no_connection_state {};

template <class H>
struct connection_state_of {
  using type = no_connection_state;
};
template <class H>
requires requires { typename H::connection_state; }
struct connection_state_of<H> {
  using type = typename H::connection_state;
};

template <class H, class C>
concept has_on_connected = requires(H& h, C& c, const connection_info& i) {
  h.on_connected(c, i);
};
template <class H, class C>
concept has_on_received = requires(H& h, C& c, std::span<const std::byte> d) {
  h.on_received(c, d);
};
template <class H, class C>
concept has_on_sent = requires(H& h, C& c, std::size_t n) {
  h.on_sent(c, n);
};
template <class H, class C>
concept has_on_send_queue_high = requires(H& h, C& c, std::size_t n) {
  h.on_send_queue_high(c, n);
};
template <class H, class C>
concept has_on_send_queue_low = requires(H& h, C& c, std::size_t n) {
  h.on_send_queue_low(c, n);
};
template <class H, class C>
concept has_on_peer_shutdown = requires(H& h, C& c) {
  h.on_peer_shutdown(c);
};
template <class H, class C>
concept has_on_disconnected = requires(H& h, C& c, std::error_code e) {
  h.on_disconnected(c, e);
};
template <class H, class C>
concept has_on_timer = requires(H& h, C& c, timer_id t) {
  h.on_timer(c, t);
};
template <class H>
concept has_on_server_timer = requires(H& h, timer_id t) {
  h.on_server_timer(t);
};
template <class H>
concept has_on_server_error = requires(H& h, std::error_code e, operation op) {
  h.on_server_error(e, op);
};
template <class H>
concept has_on_server_closed = requires(H& h) {
  h.on_server_closed();
};

// A callback declared as a plain (non-template, non-overloaded) member whose parameters do not fit
// is a typo the compiler would otherwise ignore silently: the callback would just never run.
#define IOCP_DETAIL_CHECK_CALLBACK(name, has)                                                                \
  static_assert(                                                                                             \
      !requires { &H::name; } || has,                                                                        \
      "iocp: Handler::" #name " is declared but cannot be called with the arguments the "                    \
      "server passes; see the callback list in iocp/handler.hpp")

template <class H, class C>
constexpr bool check_handler() {
  IOCP_DETAIL_CHECK_CALLBACK(on_connected, (has_on_connected<H, C>));
  IOCP_DETAIL_CHECK_CALLBACK(on_received, (has_on_received<H, C>));
  IOCP_DETAIL_CHECK_CALLBACK(on_sent, (has_on_sent<H, C>));
  IOCP_DETAIL_CHECK_CALLBACK(on_send_queue_high, (has_on_send_queue_high<H, C>));
  IOCP_DETAIL_CHECK_CALLBACK(on_send_queue_low, (has_on_send_queue_low<H, C>));
  IOCP_DETAIL_CHECK_CALLBACK(on_peer_shutdown, (has_on_peer_shutdown<H, C>));
  IOCP_DETAIL_CHECK_CALLBACK(on_disconnected, (has_on_disconnected<H, C>));
  IOCP_DETAIL_CHECK_CALLBACK(on_timer, (has_on_timer<H, C>));
  IOCP_DETAIL_CHECK_CALLBACK(on_server_timer, (has_on_server_timer<H>));
  IOCP_DETAIL_CHECK_CALLBACK(on_server_error, (has_on_server_error<H>));
  IOCP_DETAIL_CHECK_CALLBACK(on_server_closed, (has_on_server_closed<H>));
  return true;
}
#undef IOCP_DETAIL_CHECK_CALLBACK

} // namespace detail
} // namespace iocp
