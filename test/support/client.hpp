// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Plain blocking loopback clients for the tests. Every socket has send and receive timeouts, so a
// server that misbehaves makes a test fail, never hang.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

class socket_fd {
public:
  socket_fd() = default;
  explicit socket_fd(int fd) noexcept : fd_(fd) {}
  socket_fd(socket_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  socket_fd& operator=(socket_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~socket_fd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  explicit operator bool() const noexcept { return fd_ >= 0; }

private:
  int fd_ = -1;
};

[[noreturn]] inline void fail_errno(const std::string& what) {
  throw std::system_error(errno, std::system_category(), what);
}

inline void set_timeouts(int fd, int seconds = io_timeout_seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/// A connected blocking socket to `to` (127.0.0.1 or ::1), optionally bound to a source address
/// such as 127.0.0.7 first (spreads many connections over distinct four-tuples).
inline socket_fd connect_to(const iocp::endpoint& to, const char* source_v4 = nullptr) {
  int family = to.is_v4() ? AF_INET : AF_INET6;
  socket_fd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) fail_errno("socket");
  set_timeouts(s.get());
  if (source_v4) {
    int one = 1;
    ::setsockopt(s.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, source_v4, &src.sin_addr);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) fail_errno("bind");
  }
  sockaddr_storage addr{};
  socklen_t len;
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
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) fail_errno("connect");
  return s;
}

/// Connects to 127.0.0.1:port.
inline socket_fd connect_local(std::uint16_t port) {
  return connect_to(*iocp::endpoint::parse("127.0.0.1", port));
}

inline void send_all(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("send");
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
}
inline void send_all(int fd, std::string_view text) { send_all(fd, std::as_bytes(std::span(text))); }

/// Exactly n bytes; throws on timeout, error or an early end of stream.
inline std::vector<std::byte> recv_exact(int fd, std::size_t n) {
  std::vector<std::byte> out(n);
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::recv(fd, out.data() + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
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
inline std::vector<std::byte> recv_until_eof(int fd) {
  std::vector<std::byte> out;
  std::byte buffer[65536];
  for (;;) {
    ssize_t r = ::recv(fd, buffer, sizeof buffer, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail_errno("recv");
    }
    if (r == 0) return out;
    out.insert(out.end(), buffer, buffer + r);
  }
}

/// What a read ends with: 0 for a FIN, or the errno (ECONNRESET for a reset), discarding data.
/// EAGAIN means the timeout passed with the connection still open.
inline int read_until_closed(int fd) {
  std::byte buffer[65536];
  for (;;) {
    ssize_t r = ::recv(fd, buffer, sizeof buffer, 0);
    if (r == 0) return 0;
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
  }
}

inline void shutdown_write(int fd) {
  if (::shutdown(fd, SHUT_WR) != 0) fail_errno("shutdown");
}

/// Makes close() send a reset.
inline void set_linger_zero(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
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
