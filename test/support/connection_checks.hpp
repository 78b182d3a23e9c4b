// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// test_connection's checks and helpers: error and TCP-state descriptions, waits, busy clients.

#include "boost_test.hpp"

#if defined(_WIN32)
#include "iocp/detail/win/windows_headers.hpp"
#include <iphlpapi.h> // GetTcpTable: a connection's TCP state
#else
#include <netinet/tcp.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "client.hpp"
#include "recorder.hpp"

namespace test_support::connection_tests {

using namespace std::chrono_literals;

template <class Config, class Handler>
using server_of = typename Config::template server<Handler>;

using clock_type = std::chrono::steady_clock;

inline std::string describe(std::error_code e) {
  if (!e) return "success";
  return std::string(e.category().name()) + ":" + std::to_string(e.value()) + " (" + e.message() + ")";
}

/// What a client call ended with: 0 (the FIN), an errno value, or (Windows) a Winsock code that
/// posix_error() left as it was.
inline std::string errno_name(int e) {
  if (e == 0) return "EOF";
#if defined(_WIN32)
  if (e >= WSABASEERR) return std::to_string(e) + " (" + socket_category().message(e) + ")";
#endif
  return std::to_string(e) + " (" + std::strerror(e) + ")";
}

// `actual` (a std::error_code) equals `expected` (an iocp::errc or std::errc), with both in the log.
#define CHECK_CODE(actual, expected)                                                                         \
  BOOST_TEST(((actual) == (expected)),                                                                       \
             "got " << describe(actual) << ", expected " << describe(make_error_code(expected)))

inline std::string text(const std::vector<std::byte>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}
inline std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = std::as_bytes(std::span(s));
  return {b.begin(), b.end()};
}
inline bool contains(std::span<const std::byte> data, char c) {
  return std::find(data.begin(), data.end(), static_cast<std::byte>(c)) != data.end();
}

#if defined(_WIN32)
inline constexpr int tcp_closed = MIB_TCP_STATE_CLOSED;

/// The TCP state of a client socket (MIB_TCP_STATE_ESTAB, _CLOSE_WAIT, _CLOSED, ...). Windows has no
/// TCP_INFO: a socket whose connection has ended is no longer connected (getpeername fails with
/// WSAENOTCONN, as Linux's fails with ENOTCONN in TCP_CLOSE) and has left the TCP table; a live one
/// is found in the table (GetTcpTable; Wine reads the host's) by its four-tuple.
inline int tcp_state(native_socket fd) {
  sockaddr_in local{}, remote{};
  int len = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return -1;
  len = sizeof remote;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &len) != 0)
    return ::WSAGetLastError() == WSAENOTCONN ? MIB_TCP_STATE_CLOSED : -1;
  std::vector<char> buffer;
  ULONG size = 0;
  DWORD rc;
  do {
    buffer.resize(size + sizeof(MIB_TCPTABLE));
    size = static_cast<ULONG>(buffer.size());
    rc = ::GetTcpTable(reinterpret_cast<MIB_TCPTABLE*>(buffer.data()), &size, FALSE);
  } while (rc == ERROR_INSUFFICIENT_BUFFER);
  if (rc != NO_ERROR) return -1;
  const auto& table = *reinterpret_cast<const MIB_TCPTABLE*>(buffer.data());
  for (DWORD i = 0; i < table.dwNumEntries; ++i) {
    const MIB_TCPROW& row = table.table[i];
    if (row.dwLocalAddr == local.sin_addr.s_addr && static_cast<u_short>(row.dwLocalPort) == local.sin_port &&
        row.dwRemoteAddr == remote.sin_addr.s_addr &&
        static_cast<u_short>(row.dwRemotePort) == remote.sin_port)
      return static_cast<int>(row.dwState);
  }
  return MIB_TCP_STATE_CLOSED;
}
#else
inline constexpr int tcp_closed = TCP_CLOSE;

/// The kernel's TCP state of a client socket (TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_CLOSE, ...).
inline int tcp_state(native_socket fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -1;
  return info.tcpi_state;
}
#endif

/// The client socket received a reset: only a reset takes a socket that has not closed itself to
/// the closed state (a FIN alone leaves it in CLOSE_WAIT).
inline bool saw_reset(native_socket fd) {
  return wait_until([&] { return tcp_state(fd) == tcp_closed; }, 5s);
}

/// A client read that ended with `end` (read_until_closed) ended in a reset, not in the FIN of a
/// graceful close. Under Wine (8) a recv reports the reset (WSAECONNRESET) only if it was already
/// waiting when the reset came; once the reset has arrived, recv reads an end of stream (Wine's own
/// polling of the socket seems to take the error first; WSAPoll then says POLLHUP | POLLERR). The
/// reset still shows in the socket's state (no connection left, where a FIN leaves CLOSE_WAIT), so
/// on Windows that counts too; what Wine cannot show then is whether a FIN came before the reset.
inline bool ended_in_reset(native_socket fd, int end) {
#if defined(_WIN32)
  return end == ECONNRESET || (end == 0 && saw_reset(fd));
#else
  (void)fd;
  return end == ECONNRESET;
#endif
}

/// Nothing to read and no EOF yet, right now.
inline bool nothing_pending(native_socket fd) { return !readable_now(fd); }

/// How connecting to the port fails (success if it does not): ECONNREFUSED once nobody listens.
inline std::error_code connect_error(std::uint16_t port) {
  try {
    socket_fd s = connect_local(port);
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

/// Every on_connected had exactly one on_disconnected.
inline void check_balanced(event_record& record) {
  std::lock_guard l(record.mutex);
  BOOST_TEST(record.duplicate_disconnects == 0);
  BOOST_TEST(record.disconnected.size() == record.connected.size());
  for (iocp::connection_id id : record.connected)
    BOOST_TEST(record.disconnected.count(id) == 1u, "no on_disconnected for id " << id.value());
}

/// Waits for `count` connections to have been announced.
inline void wait_connected(event_record& record, std::size_t count) {
  BOOST_REQUIRE(wait_until([&] { return record.connected_count() == count; }));
}

/// Waits for the connection of client socket `s` (found by the client's port, whatever the order
/// of announcements) and for `count` connections in all; returns the id of `s`'s.
inline iocp::connection_id wait_connected(event_record& record, std::size_t count, const socket_fd& s) {
  // The count first: then the latest connection of the client's port is this one, even where the
  // kernel gave the port out before (the churn in the stale-id case).
  wait_connected(record, count);
  const iocp::connection_id id = wait_for_connection(record, s.get());
  BOOST_REQUIRE_MESSAGE(static_cast<bool>(id),
                        "no on_connected for the client on port " << local_port_of(s.get()));
  return id;
}

inline std::error_code wait_reason(event_record& record, iocp::connection_id id) {
  BOOST_REQUIRE_MESSAGE(wait_until([&] { return record.reason(id).has_value(); }),
                        "no on_disconnected for id " << id.value());
  return *record.reason(id);
}
/// A client that writes as fast as it can on one thread and reads until the end on another.
struct busy_client {
  socket_fd socket;
  std::thread writer;
  std::atomic<int> writer_errno{0};
  std::future<int> reader;

  ~busy_client() {
    // Only if the test ended early: unblock both threads.
    if (writer.joinable()) {
      shutdown_both(socket.get());
      writer.join();
    }
    if (reader.valid()) reader.wait();
  }
};

inline std::vector<std::unique_ptr<busy_client>> start_busy_clients(std::uint16_t port, int count) {
  std::vector<std::unique_ptr<busy_client>> clients;
  for (int i = 0; i < count; ++i) {
    auto c = std::make_unique<busy_client>();
    c->socket = connect_local(port);
    native_socket fd = c->socket.get();
    c->writer = std::thread([fd, p = c.get()] {
      std::vector<std::byte> chunk(16384, std::byte{0x42});
      for (;;) {
        if (send_some(fd, chunk.data(), chunk.size()) < 0) {
          int e = posix_error(last_socket_error());
          if (e == EINTR) continue;
          p->writer_errno = e;
          return;
        }
      }
    });
    c->reader = std::async(std::launch::async, [fd] { return read_until_closed(fd); });
    clients.push_back(std::move(c));
  }
  return clients;
}

/// After the server reset them: every writer failed with a reset or broken pipe (not a timeout), every
/// reader ended with the FIN or the reset, and every socket saw the reset.
inline void check_busy_clients_were_reset(std::vector<std::unique_ptr<busy_client>>& clients) {
  for (auto& c : clients) {
    c->writer.join();
    int w = c->writer_errno;
    BOOST_TEST((w == EPIPE || w == ECONNRESET), "writer ended with " << errno_name(w));
    int r = c->reader.get();
    BOOST_TEST((r == 0 || r == ECONNRESET), "reader ended with " << errno_name(r));
    BOOST_TEST(saw_reset(c->socket.get()), "TCP state " << tcp_state(c->socket.get()));
  }
}
} // namespace test_support::connection_tests
