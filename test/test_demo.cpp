// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The original library's demo, made a test: 300 loopback clients, all connected at once, each send
// their own pseudo-random "file" to the echo server in 1000-byte chunks while reading the echo,
// then half-close and read the rest until the server's FIN. Every echo must be byte-exact, and the
// server must report exactly one connect and one clean disconnect per client, and no error.
// A second case replays the original's "slow reader" test mode: clients with a tiny receive buffer
// that read a little at a time, so the server has to queue and hold back its echo.
#define BOOST_TEST_MODULE demo
#include "boost_test.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/recorder.hpp"

using namespace test_support;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t max_driver_threads = 6; // each drives an equal share of the sockets
constexpr std::size_t chunk_size = 1000;      // the original demo's write size

/// The tests' echo, which also notes the most bytes ever queued on a connection.
struct queue_watching_echo_handler : echo_handler {
  std::atomic<std::size_t>* max_queued;

  void on_received(auto& conn, std::span<const std::byte> data) {
    echo_handler::on_received(conn, data);
    std::size_t queued = conn.queued_bytes();
    std::size_t seen = max_queued->load(std::memory_order_relaxed);
    while (queued > seen && !max_queued->compare_exchange_weak(seen, queued, std::memory_order_relaxed)) {}
  }
};

/// How a client reads: at most `max_read` bytes per read (0: all there is), then `pause` per round.
struct read_pace {
  std::size_t max_read = 0;
  std::chrono::microseconds pause{0};
};

struct demo_client {
  socket_fd socket;
  std::vector<std::byte> file;
  std::size_t sent = 0;
  std::size_t received = 0; // echoed bytes received, each checked against `file`
  bool write_shut = false;
  bool eof = false;
  std::string failure;

  bool done() const { return eof || !failure.empty(); }
};

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) fail_errno("fcntl(O_NONBLOCK)");
}

/// A connection to 127.0.0.1:port whose receive buffer is set before connecting (so the window
/// offered in the handshake already reflects it); 0 keeps the system default.
socket_fd connect_with_receive_buffer(std::uint16_t port, int receive_buffer) {
  socket_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) fail_errno("socket");
  set_timeouts(s.get());
  if (receive_buffer > 0 &&
      ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer) != 0)
    fail_errno("setsockopt(SO_RCVBUF)");
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) fail_errno("connect");
  return s;
}

void write_some(demo_client& c) {
  // A bounded number of chunks per round, so one client cannot starve the others of this thread.
  for (int k = 0; k < 64 && c.sent < c.file.size(); ++k) {
    std::size_t length = std::min(chunk_size, c.file.size() - c.sent);
    ssize_t n = ::send(c.socket.get(), c.file.data() + c.sent, length, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      c.failure = errno_text("send") + " after " + std::to_string(c.sent) + " bytes";
      return;
    }
    c.sent += static_cast<std::size_t>(n);
  }
  if (c.sent == c.file.size() && !c.write_shut) {
    if (::shutdown(c.socket.get(), SHUT_WR) != 0) {
      c.failure = errno_text("shutdown(SHUT_WR)");
      return;
    }
    c.write_shut = true;
  }
}

void read_some(demo_client& c, const read_pace& pace, std::vector<std::byte>& buffer) {
  for (;;) {
    std::size_t want = pace.max_read ? std::min(pace.max_read, buffer.size()) : buffer.size();
    ssize_t n = ::recv(c.socket.get(), buffer.data(), want, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      c.failure = errno_text("recv") + " after " + std::to_string(c.received) + " echoed bytes";
      return;
    }
    if (n == 0) {
      c.eof = true;
      if (!c.write_shut || c.received != c.file.size())
        c.failure = "end of stream after " + std::to_string(c.received) + " of " +
                    std::to_string(c.file.size()) + " echoed bytes (" + std::to_string(c.sent) + " sent)";
      return;
    }
    auto got = std::span(buffer).first(static_cast<std::size_t>(n));
    if (c.received + got.size() > c.sent) {
      c.failure = "more bytes echoed (" + std::to_string(c.received + got.size()) + ") than sent (" +
                  std::to_string(c.sent) + ")";
      return;
    }
    auto expected = std::span(c.file).subspan(c.received, got.size());
    auto [a, b] = std::mismatch(got.begin(), got.end(), expected.begin());
    if (a != got.end()) {
      c.failure = "echo differs at offset " + std::to_string(c.received + (a - got.begin()));
      return;
    }
    c.received += got.size();
    if (pace.max_read) return; // a slow reader reads once per round
  }
}

/// Drives `clients` (non-blocking sockets) with poll() until each has read its echo to the end, has
/// failed, or `deadline` has passed (then each unfinished client fails).
void drive(std::span<demo_client> clients, read_pace pace, std::chrono::steady_clock::time_point deadline) {
  std::vector<pollfd> fds;
  std::vector<demo_client*> which;
  std::vector<std::byte> buffer(64 * 1024);
  for (;;) {
    fds.clear();
    which.clear();
    for (demo_client& c : clients) {
      if (c.done()) continue;
      short events = POLLIN;
      if (c.sent < c.file.size()) events |= POLLOUT;
      fds.push_back({c.socket.get(), events, 0});
      which.push_back(&c);
    }
    if (fds.empty()) return;
    if (std::chrono::steady_clock::now() > deadline) {
      for (demo_client* c : which)
        c->failure = "timed out with " + std::to_string(c->sent) + " bytes sent and " +
                     std::to_string(c->received) + " echoed, of " + std::to_string(c->file.size());
      return;
    }
    int n = ::poll(fds.data(), fds.size(), 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      for (demo_client* c : which)
        c->failure = errno_text("poll");
      return;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      demo_client& c = *which[i];
      short revents = fds[i].revents;
      if (revents & POLLNVAL) c.failure = "poll: invalid descriptor";
      if (c.done()) continue;
      if ((revents & (POLLOUT | POLLERR | POLLHUP)) && c.sent < c.file.size()) write_some(c);
      if (c.done()) continue;
      if (revents & (POLLIN | POLLERR | POLLHUP)) read_some(c, pace, buffer);
    }
    if (pace.pause.count() > 0) std::this_thread::sleep_for(pace.pause);
  }
}

struct demo_setup {
  std::size_t clients;
  std::size_t file_size;
  int receive_buffer; // client SO_RCVBUF; 0 = default
  read_pace pace;
  std::chrono::seconds limit;   // for the whole exchange
  std::uint64_t seed;           // the files' seeds are seed + client index
  std::size_t min_server_queue; // the largest queue the server must have held (0: no check)
};

template <class Config>
void run_demo(const demo_setup& setup) {
  const std::size_t client_count = setup.clients;
  const std::size_t driver_threads = std::min(max_driver_threads, client_count);
  event_record record;
  std::atomic<std::size_t> max_queued{0};
  std::atomic<int> send_failures{0};
  typename Config::template server<queue_watching_echo_handler> server(
      Config::options(), queue_watching_echo_handler{{{&record}, &send_failures}, &max_queued});
  BOOST_TEST((server.backend() == Config::io_backend));
  const std::uint16_t port = server.local_endpoint().port();

  std::vector<demo_client> clients(client_count);
  for (std::size_t i = 0; i < client_count; ++i)
    clients[i].file = random_bytes(setup.file_size, setup.seed + i);
  // Distinct files: a mixed-up echo (one client's bytes in another's stream) cannot pass.
  BOOST_TEST((clients[0].file != clients[1].file));

  // Every client connects first: all the connections are open at once before any data moves.
  for (demo_client& c : clients) {
    c.socket = connect_with_receive_buffer(port, setup.receive_buffer);
    set_nonblocking(c.socket.get());
  }
  if (setup.receive_buffer > 0) {
    int effective = 0;
    socklen_t length = sizeof effective;
    ::getsockopt(clients[0].socket.get(), SOL_SOCKET, SO_RCVBUF, &effective, &length);
    BOOST_TEST_MESSAGE("client SO_RCVBUF asked " << setup.receive_buffer << ", got " << effective);
  }
  BOOST_TEST_REQUIRE(wait_until([&] { return record.connected_count() == client_count; }));
  BOOST_TEST(server.connection_count() == client_count);

  auto start = std::chrono::steady_clock::now();
  auto deadline = start + setup.limit;
  std::vector<std::thread> threads;
  std::size_t per_thread = client_count / driver_threads;
  for (std::size_t t = 0; t < driver_threads; ++t) {
    std::size_t first = t * per_thread;
    std::size_t count = t + 1 == driver_threads ? client_count - first : per_thread;
    threads.emplace_back(
        [&, first, count] { drive(std::span(clients).subspan(first, count), setup.pace, deadline); });
  }
  for (std::thread& t : threads)
    t.join();
  auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::size_t exact = 0;
  for (std::size_t i = 0; i < client_count; ++i) {
    const demo_client& c = clients[i];
    BOOST_TEST_CONTEXT("client " << i) {
      BOOST_TEST(c.failure.empty(), c.failure);
      BOOST_TEST(c.eof);
      BOOST_TEST(c.sent == setup.file_size);
      BOOST_TEST(c.received == setup.file_size);
    }
    if (c.failure.empty() && c.eof && c.received == setup.file_size) ++exact;
  }
  BOOST_TEST_MESSAGE(to_string(server.backend())
                     << ": " << exact << " of " << client_count << " clients got a byte-exact echo of "
                     << setup.file_size << " bytes in " << elapsed << " s; largest server queue "
                     << max_queued.load() << " bytes");
  BOOST_TEST(exact == client_count);

  // Server side: one on_connected and one clean on_disconnected per client, no error, no leftover.
  BOOST_TEST(wait_until([&] { return record.disconnected_count() == client_count; }));
  BOOST_TEST(wait_until([&] { return server.connection_count() == 0; }));
  BOOST_TEST(server.connection_count() == 0u);
  BOOST_TEST(record.connected_count() == client_count);
  BOOST_TEST(record.duplicate_disconnects == 0);
  BOOST_TEST(send_failures == 0);
  BOOST_TEST(record.bytes_received == client_count * setup.file_size);
  BOOST_TEST(wait_until([&] { return record.bytes_sent == client_count * setup.file_size; }));
  if (setup.min_server_queue) BOOST_TEST(max_queued.load() >= setup.min_server_queue);
  {
    std::lock_guard l(record.mutex);
    for (const auto& [id, reason] : record.disconnected)
      BOOST_TEST(!reason, "disconnect reason: " << reason.message());
    for (const iocp::connection_id& id : record.connected)
      BOOST_TEST(record.disconnected.count(id) == 1u);
    for (const iocp::connection_info& info : record.infos) {
      BOOST_TEST(info.remote.address() == "127.0.0.1");
      BOOST_TEST(info.local.port() == port);
    }
    for (const auto& [error, where] : record.server_errors)
      BOOST_ERROR("server error in " << iocp::to_string(where) << ": " << error.message());
  }
  BOOST_TEST(!server.stop());
  BOOST_TEST(record.server_closed == 1);
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(three_hundred_clients_echo_256_KiB_files, Config, backend_configs) {
  run_demo<Config>({.clients = 300,
                    .file_size = 256 * 1024,
                    .receive_buffer = 0,
                    .pace = {},
                    .limit = 30s,
                    .seed = 0xDE30'0000,
                    .min_server_queue = 0});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(three_hundred_slow_readers_with_tiny_receive_buffers, Config, backend_configs) {
  // 2 KiB asked (the kernel doubles it), 512 bytes per read and a pause each round: every echo
  // trickles through a window of a few KiB, with all 300 connections open.
  run_demo<Config>({.clients = 300,
                    .file_size = 128 * 1024,
                    .receive_buffer = 2048,
                    .pace = {.max_read = 512, .pause = 1ms},
                    .limit = 30s,
                    .seed = 0x510'0000,
                    .min_server_queue = 0});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(slow_readers_make_the_server_queue_its_echo, Config, backend_configs) {
  // The kernel holds a few MiB per loopback connection (the server's send buffer grows to
  // tcp_wmem's maximum), so only larger files make the server itself hold the echo back: it must
  // queue megabytes per connection and send them in order as the slow readers make room.
  run_demo<Config>({.clients = 16,
                    .file_size = 4 * 1024 * 1024,
                    .receive_buffer = 2048,
                    .pace = {.max_read = 4096, .pause = 1ms},
                    .limit = 30s,
                    .seed = 0x51'0000'0000,
                    .min_server_queue = 512 * 1024});
}
