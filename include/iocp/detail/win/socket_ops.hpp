// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Winsock helpers with the names and meaning of detail/linux/socket_ops.hpp, so the event loop
// is the same on both. Errors are Win32/WSA codes (they fit in an int, as errno values do), carried
// negated in completion results and reported in windows_category() (detail/win/error_category.hpp:
// real messages, and comparisons with std::errc as on Linux).

#include "iocp/detail/win/windows_headers.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>

#include "iocp/detail/fault_injection.hpp"
#include "iocp/detail/win/error_category.hpp"
#include "iocp/detail/win/io_object.hpp"
#include "iocp/endpoint.hpp"

namespace iocp::detail {

using socket_handle = SOCKET;
inline constexpr socket_handle invalid_socket = INVALID_SOCKET;

/// A native error number (a Win32 or WSA code here) as an error_code.
inline std::error_code errno_code(int e) noexcept { return {e, windows_category()}; }
inline std::error_code last_error() noexcept { return errno_code(::WSAGetLastError()); }

/// `call()`, a Win32 or Winsock call that returns `failed` on failure with the error in the thread's
/// last error (WSAGetLastError and GetLastError read the same one); unless a fault is injected at
/// `site` (IOCP_FAULT_INJECTION): then it fails that way without being made.
template <class Result, class Call>
inline Result call_unless_fault(testing::fault_site site, Result failed, Call&& call) noexcept {
  if (int e = injected_fault(site)) {
    ::SetLastError(static_cast<DWORD>(e));
    return failed;
  }
  return call();
}

[[noreturn]] inline void throw_errno(int e, const std::string& what) {
  throw std::system_error(errno_code(e), "iocp: " + what);
}

/// Cancelled by CancelIoEx, or by the socket's closing.
inline bool is_cancelled(int e) noexcept {
  return e == ERROR_OPERATION_ABORTED || e == WSA_OPERATION_ABORTED;
}

/// An accept error that would recur at once until sockets or memory are freed.
inline bool is_resource_error(int e) noexcept {
  return e == WSAEMFILE || e == WSAENOBUFS || e == WSA_NOT_ENOUGH_MEMORY || e == ERROR_NOT_ENOUGH_MEMORY ||
         e == ERROR_NO_SYSTEM_RESOURCES || e == ERROR_TOO_MANY_OPEN_FILES;
}

/// An AcceptEx failure that only means this client reset or left before the accept completed
/// (Wine: WSAENOTCONN through WSAGetOverlappedResult, 59 through the port). Such failures are
/// reported and the accept re-posted at once: they never count toward the back-off streak, so a
/// burst of them cannot slow accepting down for the clients behind them.
inline bool is_peer_gone_on_accept(int e) noexcept {
  return e == WSAENOTCONN || e == ERROR_NETNAME_DELETED || e == ERROR_UNEXP_NET_ERR || e == WSAECONNRESET ||
         e == WSAECONNABORTED || e == ERROR_CONNECTION_ABORTED;
}

/// A SOCKET does not fit in the int result: an accept that succeeded (result 0) leaves it here.
inline socket_handle accepted_socket(const accept_context& ctx, int) noexcept { return ctx.socket; }

/// Closes the socket: 0, or the Winsock error. An injected failure comes after the real close, so
/// nothing leaks.
inline int close_socket(socket_handle s) noexcept {
  int r = ::closesocket(s);
  if (int e = injected_fault(testing::fault_site::close)) return e;
  return r == 0 ? 0 : ::WSAGetLastError();
}

/// Sends the FIN; a peer that is already gone (WSAENOTCONN) is no error.
inline std::error_code shutdown_send(socket_handle s) noexcept {
  if (call_unless_fault(testing::fault_site::shutdown, SOCKET_ERROR,
                        [&] { return ::shutdown(s, SD_SEND); }) != 0) {
    int e = ::WSAGetLastError();
    if (e != WSAENOTCONN) return errno_code(e);
  }
  return {};
}

/// WSAStartup once per process before the first socket; Winsock counts the calls, and the process
/// exit releases it (a WSACleanup at static destruction could cut off sockets still in use).
inline void ensure_winsock() {
  struct starter {
    int error;
    starter() {
      WSADATA data;
      error = ::WSAStartup(MAKEWORD(2, 2), &data);
    }
  };
  static const starter started;
  if (started.error) throw_errno(started.error, "WSAStartup()");
}

inline int to_sockaddr(const endpoint& e, sockaddr_storage& out) noexcept {
  std::memset(&out, 0, sizeof out);
  if (e.is_v4()) {
    auto& a = reinterpret_cast<sockaddr_in&>(out);
    a.sin_family = AF_INET;
    a.sin_port = ::htons(e.port());
    std::memcpy(&a.sin_addr, e.bytes().data(), 4);
    return sizeof(sockaddr_in);
  }
  auto& a = reinterpret_cast<sockaddr_in6&>(out);
  a.sin6_family = AF_INET6;
  a.sin6_port = ::htons(e.port());
  a.sin6_scope_id = e.scope_id();
  std::memcpy(&a.sin6_addr, e.bytes().data(), 16);
  return sizeof(sockaddr_in6);
}

inline endpoint from_sockaddr(const sockaddr* s) noexcept {
  if (!s) return {};
  if (s->sa_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(s);
    std::array<std::uint8_t, 4> bytes;
    std::memcpy(bytes.data(), &a->sin_addr, 4);
    return endpoint::v4(bytes, ::ntohs(a->sin_port));
  }
  if (s->sa_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(s);
    std::array<std::uint8_t, 16> bytes;
    std::memcpy(bytes.data(), &a->sin6_addr, 16);
    return endpoint::v6(bytes, ::ntohs(a->sin6_port), a->sin6_scope_id);
  }
  return {};
}

inline endpoint from_sockaddr(const sockaddr_storage& s) noexcept {
  return from_sockaddr(reinterpret_cast<const sockaddr*>(&s));
}

inline endpoint local_endpoint_of(socket_handle s) noexcept {
  sockaddr_storage a{};
  int len = sizeof a;
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) return {};
  return from_sockaddr(a);
}

inline void set_nonblocking(socket_handle s, bool on) noexcept {
  u_long mode = on ? 1 : 0;
  ::ioctlsocket(s, FIONBIO, &mode);
}

inline void set_no_delay(socket_handle s) noexcept {
  BOOL one = TRUE;
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&one), sizeof one);
}
/// Whether an AcceptEx socket takes TCP_NODELAY over with SO_UPDATE_ACCEPT_CONTEXT is not
/// documented: set it on each accepted socket.
inline constexpr bool accepted_sockets_inherit_no_delay = false;

/// Makes the next closesocket() send a reset instead of a FIN (an abortive close).
/// Bytes sent but not yet acknowledged by the peer: Windows has no cheap way to tell (-1).
inline long unacknowledged_bytes(socket_handle) noexcept { return -1; }

inline void set_linger_zero(socket_handle s) noexcept {
  linger l{1, 0};
  ::setsockopt(s, SOL_SOCKET, SO_LINGER, reinterpret_cast<const char*>(&l), sizeof l);
}

/// An overlapped TCP socket of the family, not inherited by child processes.
inline socket_handle open_overlapped_socket(int family) noexcept {
  return ::WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, nullptr, 0,
                      WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
}

/// A bound, listening socket, or std::system_error with the real cause.
inline socket_handle open_listener(const endpoint& at, int backlog, bool reuse_address, bool v6_only) {
  ensure_winsock();
  socket_handle s = open_overlapped_socket(at.is_v4() ? AF_INET : AF_INET6);
  if (s == INVALID_SOCKET) throw_errno(::WSAGetLastError(), "WSASocket()");
  // Windows' SO_REUSEADDR would let another socket steal the bound port. A restarted server binds
  // over its TIME_WAITs without it, so `reuse_address` needs nothing here, and the port is always
  // held exclusively.
  (void)reuse_address;
  BOOL one = TRUE;
  ::setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, reinterpret_cast<const char*>(&one), sizeof one);
  if (at.is_v6()) {
    DWORD v6 = v6_only ? 1 : 0;
    ::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, reinterpret_cast<const char*>(&v6), sizeof v6);
  }
  sockaddr_storage address;
  int length = to_sockaddr(at, address);
  if (::bind(s, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    int e = ::WSAGetLastError();
    ::closesocket(s);
    throw_errno(e, "bind(" + at.to_string() + ")");
  }
  if (::listen(s, backlog) != 0) {
    int e = ::WSAGetLastError();
    ::closesocket(s);
    throw_errno(e, "listen(" + at.to_string() + ")");
  }
  return s;
}

} // namespace iocp::detail
