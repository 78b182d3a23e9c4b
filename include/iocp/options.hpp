// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iocp {

/// Which operating-system mechanism runs the server's I/O.
enum class backend {
  automatic, ///< io_uring where the kernel allows it, else epoll (Linux); IOCP on Windows
  io_uring,  ///< Linux io_uring through raw system calls; the constructor throws if refused
  epoll,     ///< Linux epoll, completions emulated in user space
  iocp,      ///< Windows I/O completion ports
};

inline constexpr std::string_view to_string(backend b) noexcept {
  switch (b) {
  case backend::automatic: return "auto";
  case backend::io_uring: return "io_uring";
  case backend::epoll: return "epoll";
  case backend::iocp: return "iocp";
  }
  return "?";
}

inline constexpr std::optional<backend> parse_backend(std::string_view s) noexcept {
  if (s == "auto" || s == "automatic") return backend::automatic;
  if (s == "io_uring" || s == "uring") return backend::io_uring;
  if (s == "epoll") return backend::epoll;
  if (s == "iocp") return backend::iocp;
  return std::nullopt;
}

/// How the server listens and runs. Every field has a default that serves a typical server.
struct server_options {
  /// Numeric IPv4 or IPv6 address to bind ("0.0.0.0", "::", "127.0.0.1", "::1").
  std::string address = "0.0.0.0";
  /// Port to bind; 0 binds an ephemeral port (see basic_iocp_server::local_endpoint()).
  std::uint16_t port = 0;
  /// Listen backlog.
  int backlog = 1024;
  backend io_backend = backend::automatic;
  /// I/O threads for the thread_pool policy; 0 means std::thread::hardware_concurrency().
  std::size_t threads = 0;
  /// Bytes read per receive operation (and per buffer where the backend needs one per connection).
  std::size_t receive_buffer_size = 16 * 1024;
  /// io_uring: receive buffers shared by the connections of one I/O thread (a provided-buffer ring,
  /// Linux 5.19+), so an idle connection holds none. 0, or an older kernel: one buffer per connection.
  unsigned receive_buffers_per_thread = 256;
  /// Accept operations kept in flight: per I/O thread on io_uring (except with a single I/O thread
  /// on Linux 5.19 or later, where one multishot accept goes on by itself), and on thread 0 with
  /// IOCP.
  unsigned accepts_in_flight = 4;
  /// Most connections open at once; further ones are refused and reported. Also sizes the map.
  /// Between 1 and iocp::max_connection_capacity (2^24 - 4096); the constructor refuses others.
  std::size_t max_connections = 1 << 20;
  /// TCP_NODELAY on accepted connections.
  bool no_delay = true;
  /// SO_REUSEADDR on the listening socket (lets a restarted server bind while TIME_WAITs remain).
  bool reuse_address = true;
  /// On an IPv6 listener, refuse IPv4-mapped clients (IPV6_V6ONLY).
  bool v6_only = false;
  /// A graceful close (disconnect(), and stop()'s) has this long, from when it was asked, to send
  /// what is queued and our FIN and to get the peer's; then the connection is reset
  /// (errc::linger_timeout). A peer still taking data gets another period each time it took some in
  /// the last one; one that takes nothing for a period is reset with what is still queued for it.
  /// Here and in the other timeouts, std::chrono::milliseconds::max() (or anything too long for the
  /// clock to count) means for ever.
  std::chrono::milliseconds linger_timeout{5000};

  // ---- backpressure and limits ----

  /// When a connection's queued send bytes rise above the high mark, the handler's
  /// on_send_queue_high(conn, queued) runs; when they fall back to the low mark or below,
  /// on_send_queue_low(conn, queued). Pausing and resuming receiving there keeps a connection's
  /// memory bounded without refusing sends (example/echo_server.cpp does). The defaults are Netty's:
  /// a connection that keeps 64 KiB queued has what a fast peer needs to be kept busy, and a
  /// thousand that never read hold about 100 MiB (README, "Memory with the defaults").
  std::size_t send_high_water_mark = 64 * 1024;
  std::size_t send_low_water_mark = 32 * 1024;
  /// Hard limits on queued send bytes: a send that would pass either queues nothing and fails with
  /// errc::send_queue_full. With the defaults, clients that never read cannot exhaust memory: the
  /// total bounds what every send queue of the server holds, posted sends included, and no one
  /// connection can take more than a sixteenth of it.
  std::size_t max_send_queue_per_connection = std::size_t{16} << 20;
  std::size_t max_send_queue_total = std::size_t{256} << 20;
  /// A connection that receives nothing and whose sends make no progress for this long is reset
  /// (on_disconnected with errc::idle_timeout). Zero or less: no idle timeout. Checked about every
  /// tenth of the timeout, so a connection may live up to 10% longer.
  std::chrono::milliseconds idle_timeout{0};
  /// The graceful stop's deadline: stop() without an argument and request_stop() use it.
  std::chrono::milliseconds stop_timeout{5000};
};

/// Directions for basic_iocp_server::shutdown(), as in the original library's SD_* values.
enum class shutdown_type { receive, send, both };

} // namespace iocp
