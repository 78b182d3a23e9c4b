// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Plain blocking loopback clients for the tests. Every socket has send and receive timeouts, so a
// server that misbehaves makes a test fail, never hang. POSIX sockets, or Winsock on Windows: the
// few differences (handle type, error numbers, timeouts, flags) stay in this file.

#if defined(_WIN32)
#include "iocp/detail/win/error_category.hpp"
#include "iocp/detail/win/windows_headers.hpp"
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "iocp/endpoint.hpp"

namespace test_support {

inline constexpr int io_timeout_seconds = 20;

#if defined(_WIN32)
using native_socket = SOCKET;
inline constexpr native_socket no_socket = INVALID_SOCKET;
inline constexpr int msg_nosignal = 0; // Winsock raises no SIGPIPE
using io_result = int;
inline int last_socket_error() noexcept { return ::WSAGetLastError(); }
inline void close_native(native_socket s) noexcept { ::closesocket(s); }
/// Winsock's codes in the library's category: readable messages, and comparable with std::errc.
inline const std::error_category& socket_category() noexcept { return iocp::detail::windows_category(); }
/// Winsock needs WSAStartup before a client's first socket (the server may not have run it yet).
inline void ensure_sockets() {
  struct starter {
    starter() {
      WSADATA data;
      ::WSAStartup(MAKEWORD(2, 2), &data);
    }
  };
  static const starter started;
}
/// Winsock's error numbers in the POSIX terms the tests use (ECONNRESET, EAGAIN for a timeout).
inline int posix_error(int e) noexcept {
  switch (e) {
  case WSAECONNRESET: return ECONNRESET;
  case WSAECONNABORTED: return ECONNABORTED;
  case WSAETIMEDOUT: return EAGAIN;
  case WSAEINTR: return EINTR;
  default: return e;
  }
}
#else
using native_socket = int;
inline constexpr native_socket no_socket = -1;
inline constexpr int msg_nosignal = MSG_NOSIGNAL;
using io_result = ssize_t;
inline int last_socket_error() noexcept { return errno; }
inline void close_native(native_socket s) noexcept { ::close(s); }
inline const std::error_category& socket_category() noexcept { return std::system_category(); }
inline void ensure_sockets() {}
inline int posix_error(int e) noexcept { return e; }
#endif

class socket_fd {
public:
  socket_fd() = default;
  explicit socket_fd(native_socket fd) noexcept : fd_(fd) {}
  socket_fd(socket_fd&& o) noexcept : fd_(std::exchange(o.fd_, no_socket)) {}
  socket_fd& operator=(socket_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, no_socket);
    }
    return *this;
  }
  ~socket_fd() { reset(); }
  native_socket get() const noexcept { return fd_; }
  native_socket release() noexcept { return std::exchange(fd_, no_socket); }
  void reset() noexcept {
    if (fd_ != no_socket) close_native(fd_);
    fd_ = no_socket;
  }
  explicit operator bool() const noexcept { return fd_ != no_socket; }

private:
  native_socket fd_ = no_socket;
};

[[noreturn]] inline void fail_errno(const std::string& what) {
  throw std::system_error(last_socket_error(), socket_category(), what);
}

/// SO_RCVTIMEO or SO_SNDTIMEO: a blocking call on the socket fails after `timeout` (with EAGAIN, or
/// WSAETIMEDOUT on Windows: posix_error() makes it EAGAIN).
inline void set_timeout(native_socket fd, int option, std::chrono::milliseconds timeout) {
#if defined(_WIN32)
  DWORD ms = static_cast<DWORD>(timeout.count());
  ::setsockopt(fd, SOL_SOCKET, option, reinterpret_cast<const char*>(&ms), sizeof ms);
#else
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv);
#endif
}

inline void set_timeouts(native_socket fd, int seconds = io_timeout_seconds) {
  set_timeout(fd, SO_RCVTIMEO, std::chrono::seconds(seconds));
  set_timeout(fd, SO_SNDTIMEO, std::chrono::seconds(seconds));
}

/// A TCP socket of the family, not inherited by child processes.
inline socket_fd open_tcp_socket(int family) {
  ensure_sockets();
#if defined(_WIN32)
  socket_fd s(::socket(family, SOCK_STREAM, IPPROTO_TCP));
#else
  socket_fd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
#endif
  if (!s) fail_errno("socket");
  return s;
}

/// A plain socket listening on 127.0.0.1 at an ephemeral port (not a server of this library).
inline socket_fd listen_local(int backlog = 4) {
  socket_fd s = open_tcp_socket(AF_INET);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail_errno("bind");
  if (::listen(s.get(), backlog) != 0) fail_errno("listen");
  return s;
}

/// The local port a socket is bound to.
inline std::uint16_t local_port_of(native_socket fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

/// A connected blocking socket to `to` (127.0.0.1 or ::1), optionally bound to a source address
/// such as 127.0.0.7 first (spreads many connections over distinct four-tuples).
inline socket_fd connect_to(const iocp::endpoint& to, const char* source_v4 = nullptr) {
  socket_fd s = open_tcp_socket(to.is_v4() ? AF_INET : AF_INET6);
  set_timeouts(s.get());
  if (source_v4) {
#if defined(IP_BIND_ADDRESS_NO_PORT)
    int one = 1;
    ::setsockopt(s.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, source_v4, &src.sin_addr);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) fail_errno("bind");
  }
  sockaddr_storage addr{};
  int len;
  if (to.is_v4()) {
    auto& a = reinterpret_cast<sockaddr_in&>(addr);
    a.sin_family = AF_INET;
    a.sin_port = htons(to.port());
    std::memcpy(&a.sin_addr, to.bytes().data(), 4);
    len = sizeof a;
  } else {
    auto& a = reinterpret_cast<sockaddr_in6&>(addr);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(to.port());
    std::memcpy(&a.sin6_addr, to.bytes().data(), 16);
    len = sizeof a;
  }
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), static_cast<socklen_t>(len)) != 0)
    fail_errno("connect");
  return s;
}

/// Connects to 127.0.0.1:port.
inline socket_fd connect_local(std::uint16_t port) {
  return connect_to(*iocp::endpoint::parse("127.0.0.1", port));
}

/// One send()/recv() call; the length is capped where Winsock takes an int.
inline io_result send_some(native_socket fd, const std::byte* data, std::size_t n) {
#if defined(_WIN32)
  return ::send(fd, reinterpret_cast<const char*>(data),
                static_cast<int>((std::min)(n, std::size_t{1} << 30)), 0);
#else
  return ::send(fd, data, n, msg_nosignal);
#endif
}
inline io_result recv_some(native_socket fd, std::byte* data, std::size_t n) {
#if defined(_WIN32)
  return ::recv(fd, reinterpret_cast<char*>(data), static_cast<int>((std::min)(n, std::size_t{1} << 30)), 0);
#else
  return ::recv(fd, data, n, 0);
#endif
}

inline void send_all(native_socket fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    io_result n = send_some(fd, data.data(), data.size());
    if (n < 0) {
      if (posix_error(last_socket_error()) == EINTR) continue;
      fail_errno("send");
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
}
inline void send_all(native_socket fd, std::string_view text) {
  send_all(fd, std::as_bytes(std::span(text)));
}

/// Exactly n bytes; throws on timeout, error or an early end of stream.
inline std::vector<std::byte> recv_exact(native_socket fd, std::size_t n) {
  std::vector<std::byte> out(n);
  std::size_t got = 0;
  while (got < n) {
    io_result r = recv_some(fd, out.data() + got, n - got);
    if (r < 0) {
      if (posix_error(last_socket_error()) == EINTR) continue;
      fail_errno("recv");
    }
    if (r == 0)
      throw std::runtime_error("recv_exact: end of stream after " + std::to_string(got) + " of " +
                               std::to_string(n) + " bytes");
    got += static_cast<std::size_t>(r);
  }
  return out;
}

/// Everything until the peer's FIN; throws on timeout or error (a reset included).
inline std::vector<std::byte> recv_until_eof(native_socket fd) {
  std::vector<std::byte> out;
  std::byte buffer[65536];
  for (;;) {
    io_result r = recv_some(fd, buffer, sizeof buffer);
    if (r < 0) {
      if (posix_error(last_socket_error()) == EINTR) continue;
      fail_errno("recv");
    }
    if (r == 0) return out;
    out.insert(out.end(), buffer, buffer + r);
  }
}

/// What a read ends with: 0 for a FIN, or the errno (ECONNRESET for a reset), discarding data.
/// EAGAIN means the timeout passed with the connection still open.
inline int read_until_closed(native_socket fd) {
  std::byte buffer[65536];
  for (;;) {
    io_result r = recv_some(fd, buffer, sizeof buffer);
    if (r == 0) return 0;
    if (r < 0) {
      int e = posix_error(last_socket_error());
      if (e == EINTR) continue;
      return e;
    }
  }
}

inline void shutdown_write(native_socket fd) {
#if defined(_WIN32)
  if (::shutdown(fd, SD_SEND) != 0) fail_errno("shutdown");
#else
  if (::shutdown(fd, SHUT_WR) != 0) fail_errno("shutdown");
#endif
}

/// Shuts both directions (wakes this socket's blocked readers and writers); errors are ignored.
inline void shutdown_both(native_socket fd) noexcept {
#if defined(_WIN32)
  ::shutdown(fd, SD_BOTH);
#else
  ::shutdown(fd, SHUT_RDWR);
#endif
}

/// Whether a read would return at once (data, the FIN or an error is waiting), without reading.
inline bool readable_now(native_socket fd) {
#if defined(_WIN32)
  WSAPOLLFD p{fd, POLLRDNORM, 0};
  int r = ::WSAPoll(&p, 1, 0);
#else
  pollfd p{fd, POLLIN, 0};
  int r = ::poll(&p, 1, 0);
#endif
  if (r < 0) fail_errno("poll");
  return r > 0;
}

/// Makes close() send a reset.
inline void set_linger_zero(native_socket fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, reinterpret_cast<const char*>(&l), sizeof l);
}

inline std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> out(n);
  std::mt19937_64 rng(seed);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (; i < n; ++i)
    out[i] = static_cast<std::byte>(rng());
  return out;
}

inline std::span<const std::byte> as_bytes(std::string_view s) { return std::as_bytes(std::span(s)); }

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
template <class F>
bool wait_until(F&& condition, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

} // namespace test_support
