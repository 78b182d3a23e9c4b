// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// POSIX socket helpers shared by the Linux backends.

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <system_error>
#include <unistd.h>

#include "iocp/detail/fault_injection.hpp"
#include "iocp/endpoint.hpp"

namespace iocp::detail {

inline std::error_code errno_code(int e) noexcept { return {e, std::system_category()}; }
inline std::error_code last_error() noexcept { return errno_code(errno); }

/// `call()`, a system call that fails with -1 and errno; unless a fault is injected at `site`
/// (IOCP_FAULT_INJECTION): then it fails that way without being made.
template <class Call>
inline auto call_unless_fault(testing::fault_site site, Call&& call) noexcept -> decltype(call()) {
  if (int e = injected_fault(site)) [[unlikely]] {
    errno = e;
    return -1;
  }
  return call();
}

struct accept_context;

// The platform-neutral names the event loop uses (detail/win/socket_ops.hpp has the same ones).
using socket_handle = int;
inline constexpr socket_handle invalid_socket = -1;

/// A completion's error (the negated result) says the operation was cancelled.
inline bool is_cancelled(int e) noexcept { return e == ECANCELED; }
/// An accept error that would recur at once until descriptors or memory are freed.
inline bool is_resource_error(int e) noexcept {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}
/// An accept error that only means this client is gone. accept() hands over reset connections
/// (their first read fails), so on Linux every accept error counts toward the back-off streak.
inline bool is_peer_gone_on_accept(int) noexcept { return false; }
/// The socket an accept completion with a non-negative result delivered.
inline socket_handle accepted_socket(const accept_context&, int result) noexcept { return result; }
/// Closes the descriptor, which Linux frees whatever close() returns (an injected failure too):
/// 0, or the error number. EINTR only means that the kernel finishes the close in the background.
inline int close_socket(socket_handle fd) noexcept {
  int r = ::close(fd);
  if (int e = injected_fault(testing::fault_site::close)) [[unlikely]]
    return e;
  return r == 0 || errno == EINTR ? 0 : errno;
}
/// Sends the FIN; a peer that is already gone (ENOTCONN) is no error.
inline std::error_code shutdown_send(socket_handle fd) noexcept {
  int r = call_unless_fault(testing::fault_site::shutdown, [&] { return ::shutdown(fd, SHUT_WR); });
  if (r != 0 && errno != ENOTCONN) return errno_code(errno);
  return {};
}

[[noreturn]] inline void throw_errno(int e, const std::string& what) {
  throw std::system_error(errno_code(e), "iocp: " + what);
}

// send/recv through syscall(2): glibc's send() and recv() are thread-cancellation points, and their
// bookkeeping costs more user-space instructions than the rest of an echo. I/O threads are never
// cancelled, so nothing is lost. Both return -1 and set errno like the wrappers.
inline ssize_t raw_send(int fd, const void* data, std::size_t size) noexcept {
  return ::syscall(SYS_sendto, fd, data, size, MSG_NOSIGNAL, nullptr, 0);
}
inline ssize_t raw_receive(int fd, void* data, std::size_t size) noexcept {
  return ::syscall(SYS_recvfrom, fd, data, size, 0, nullptr, nullptr);
}

inline socklen_t to_sockaddr(const endpoint& e, sockaddr_storage& out) noexcept {
  std::memset(&out, 0, sizeof out);
  if (e.is_v4()) {
    auto& a = reinterpret_cast<sockaddr_in&>(out);
    a.sin_family = AF_INET;
    a.sin_port = htons(e.port());
    std::memcpy(&a.sin_addr, e.bytes().data(), 4);
    return sizeof(sockaddr_in);
  }
  auto& a = reinterpret_cast<sockaddr_in6&>(out);
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(e.port());
  a.sin6_scope_id = e.scope_id();
  std::memcpy(&a.sin6_addr, e.bytes().data(), 16);
  return sizeof(sockaddr_in6);
}

inline endpoint from_sockaddr(const sockaddr_storage& s) noexcept {
  if (s.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(s);
    std::array<std::uint8_t, 4> bytes;
    std::memcpy(bytes.data(), &a.sin_addr, 4);
    return endpoint::v4(bytes, ntohs(a.sin_port));
  }
  if (s.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(s);
    std::array<std::uint8_t, 16> bytes;
    std::memcpy(bytes.data(), &a.sin6_addr, 16);
    return endpoint::v6(bytes, ntohs(a.sin6_port), a.sin6_scope_id);
  }
  return {};
}

inline endpoint local_endpoint_of(int fd) noexcept {
  sockaddr_storage s{};
  socklen_t len = sizeof s;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len) != 0) return {};
  return from_sockaddr(s);
}

inline void set_nonblocking(int fd, bool on) noexcept {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

inline void set_no_delay(int fd) noexcept {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
/// Linux copies TCP_NODELAY from the listener to the sockets it accepts: set once on the listener,
/// it costs no system call per connection.
inline constexpr bool accepted_sockets_inherit_no_delay = true;

/// Bytes sent but not yet acknowledged by the peer (SIOCOUTQ), or -1 if unknown.
inline long unacknowledged_bytes(int fd) noexcept {
  int bytes = 0;
  return ::ioctl(fd, SIOCOUTQ, &bytes) == 0 ? bytes : -1;
}

/// Makes the next close() send a reset instead of a FIN (an abortive close).
inline void set_linger_zero(int fd) noexcept {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

/// A bound, listening socket, or std::system_error with the real cause.
inline int open_listener(const endpoint& at, int backlog, bool reuse_address, bool v6_only) {
  int fd = ::socket(at.is_v4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "socket()");
  int one = 1;
  if (reuse_address) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (at.is_v6()) {
    int v6 = v6_only ? 1 : 0;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6);
  }
  sockaddr_storage address;
  socklen_t length = to_sockaddr(at, address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    int e = errno;
    ::close(fd);
    throw_errno(e, "bind(" + at.to_string() + ")");
  }
  if (::listen(fd, backlog) != 0) {
    int e = errno;
    ::close(fd);
    throw_errno(e, "listen(" + at.to_string() + ")");
  }
  return fd;
}

} // namespace iocp::detail
