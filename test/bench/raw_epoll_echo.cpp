// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Reference echo server for the benchmarks: the classic single-thread epoll loop, non-blocking
// sockets, level-triggered. One read per readiness event into a shared 16 KiB buffer, written
// straight back; what the socket does not take waits in a per-connection buffer, and the
// connection stops reading (EPOLLOUT instead of EPOLLIN) until it has gone.
//
//   raw_epoll_echo [--port P] [--address A]
//
// Prints "listening on A:P" when ready and runs until SIGINT or SIGTERM.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

volatile std::sig_atomic_t stop_requested = 0;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "raw_epoll_echo: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

struct connection {
  int fd = -1;
  std::vector<char> pending; // bytes the socket did not take yet
  std::size_t pending_offset = 0;
};

constexpr std::uint64_t listener_key = ~std::uint64_t(0);

} // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1";
  int port = 50001;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i + 1 < argc && a == "--port")
      port = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--address")
      address = argv[++i];
    else {
      std::fprintf(stderr, "usage: raw_epoll_echo [--port P] [--address A]\n");
      return 2;
    }
  }

  struct sigaction sa {};
  sa.sa_handler = [](int) { stop_requested = 1; };
  sigaction(SIGINT, &sa, nullptr); // no SA_RESTART: epoll_wait returns EINTR
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket");
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY from the listener (as the library sets it per connection).
  ::setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &sin.sin_addr) != 1) die("inet_pton");
  if (::bind(listener, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) die("bind");
  if (::listen(listener, SOMAXCONN) != 0) die("listen");

  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = listener_key;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0) die("epoll_ctl");

  std::printf("listening on %s:%d\n", address.c_str(), port);
  std::fflush(stdout);

  std::vector<connection*> by_fd; // the connection of each descriptor
  std::vector<char> buffer(16 * 1024);
  std::vector<epoll_event> events(512);

  auto close_connection = [&](connection* c) {
    ::close(c->fd); // also leaves the epoll set
    by_fd[std::size_t(c->fd)] = nullptr;
    delete c;
  };
  auto set_events = [&](connection* c, std::uint32_t e) {
    epoll_event ce{};
    ce.events = e;
    ce.data.u64 = std::uint64_t(c->fd);
    ::epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce);
  };

  while (!stop_requested) {
    int n = ::epoll_wait(ep, events.data(), int(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int k = 0; k < n; ++k) {
      if (events[k].data.u64 == listener_key) {
        for (;;) {
          int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            if (errno == ECONNABORTED) continue;
            std::fprintf(stderr, "raw_epoll_echo: accept: %s\n", std::strerror(errno));
            break;
          }
          if (by_fd.size() <= std::size_t(fd)) by_fd.resize(std::size_t(fd) * 2 + 16, nullptr);
          auto* c = new connection;
          c->fd = fd;
          by_fd[std::size_t(fd)] = c;
          epoll_event ce{};
          ce.events = EPOLLIN;
          ce.data.u64 = std::uint64_t(fd);
          if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce) != 0) close_connection(c);
        }
        continue;
      }
      connection* c = by_fd[std::size_t(events[k].data.u64)];
      if (!c) continue;
      if (!c->pending.empty()) { // writable again: send what waits, then read again
        ssize_t w = ::send(c->fd, c->pending.data() + c->pending_offset,
                           c->pending.size() - c->pending_offset, MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          close_connection(c);
          continue;
        }
        c->pending_offset += std::size_t(w);
        if (c->pending_offset == c->pending.size()) {
          c->pending.clear();
          c->pending_offset = 0;
          set_events(c, EPOLLIN);
        }
        continue;
      }
      ssize_t r = ::recv(c->fd, buffer.data(), buffer.size(), 0);
      if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        close_connection(c); // EOF or error
        continue;
      }
      ssize_t w = ::send(c->fd, buffer.data(), std::size_t(r), MSG_NOSIGNAL);
      if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
          close_connection(c);
          continue;
        }
        w = 0;
      }
      if (w < r) {
        c->pending.assign(buffer.data() + w, buffer.data() + r);
        c->pending_offset = 0;
        set_events(c, EPOLLOUT);
      }
    }
  }
  for (connection* c : by_fd)
    if (c) close_connection(c);
  ::close(ep);
  ::close(listener);
  return 0;
}
