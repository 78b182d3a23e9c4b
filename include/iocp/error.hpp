// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The library's own error codes. System failures are reported with std::system_category() (on
// Windows: the same Win32/Winsock codes in detail::windows_category(), which has their messages and
// compares them with std::errc); these cover what the operating system has no code for.

#include <string>
#include <system_error>

namespace iocp {

enum class errc {
  unknown_connection = 1, // the id never existed or names a connection that has closed
  connection_closing,     // the connection no longer accepts this operation (its send side is shut)
  server_stopping,        // the server is stopping and refuses new work
  too_many_connections,   // the connection map is full: the accepted connection was refused
  backend_unavailable,    // the requested backend cannot run on this system
  handler_exception,      // a handler callback threw; the connection was aborted
  would_deadlock,         // a blocking call was made from one of the server's own I/O threads
  linger_timeout,         // a graceful close gave up waiting for the peer and reset the connection
  stop_timeout,           // stop() gave up waiting for the peer and reset the connection
  send_queue_full,        // the send would pass a send-queue limit (per connection or server-wide)
  idle_timeout,           // nothing was received or sent for server_options::idle_timeout
};

namespace detail {
class error_category_impl final : public std::error_category {
public:
  const char* name() const noexcept override { return "iocp"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::unknown_connection: return "unknown or closed connection id";
    case errc::connection_closing: return "connection is closing";
    case errc::server_stopping: return "server is stopping";
    case errc::too_many_connections: return "too many connections";
    case errc::backend_unavailable: return "backend unavailable on this system";
    case errc::handler_exception: return "handler callback threw an exception";
    case errc::would_deadlock: return "blocking call from an I/O thread would deadlock";
    case errc::linger_timeout: return "peer did not close in time after a graceful shutdown";
    case errc::stop_timeout: return "server stop deadline passed before the peer closed";
    case errc::send_queue_full: return "send queue limit reached: the peer is not reading fast enough";
    case errc::idle_timeout: return "connection idle for longer than the idle timeout";
    }
    return "unknown iocp error";
  }
};
} // namespace detail

inline const std::error_category& error_category() noexcept {
  static const detail::error_category_impl category;
  return category;
}

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

} // namespace iocp

template <>
struct std::is_error_code_enum<iocp::errc> : std::true_type {};
