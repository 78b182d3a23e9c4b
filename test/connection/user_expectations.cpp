// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// test_connection: more of what a user relies on, and socket options.
#include "boost_test.hpp"

#include <atomic>
#include <future>
#include <memory>
#include <vector>

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/connection_checks.hpp"
#include "support/connection_handlers.hpp"
#include "support/recorder.hpp"

using namespace test_support;
using namespace test_support::connection_tests;
using namespace std::chrono_literals;

// ---- more of what a user relies on ----

BOOST_AUTO_TEST_SUITE(user_expectations)

BOOST_AUTO_TEST_CASE_TEMPLATE(the_constructing_thread_is_not_interrupted_by_the_server, Config,
                              backend_configs) {
  // An application thread that creates and destroys a server goes on with its own blocking calls.
  // A timed recv() on an idle loopback connection that has nothing to do with the server must end
  // with its timeout (EAGAIN), never with EINTR: no signal is ever sent to this thread. (Windows:
  // the timeout is WSAETIMEDOUT, an interruption WSAEINTR; client.hpp's posix_error() names them.)
  socket_fd listener = listen_local();
  socket_fd idle = connect_local(local_port_of(listener.get()));
  socket_fd idle_peer(::accept(listener.get(), nullptr, nullptr));
  BOOST_REQUIRE(static_cast<bool>(idle_peer));
  set_timeout(idle.get(), SO_RCVTIMEO, 150ms);
  auto timed_recv = [&] {
    std::byte b;
    return recv_some(idle.get(), &b, 1) < 0 ? posix_error(last_socket_error()) : 0;
  };

  // Servers of earlier cases may still disturb this thread for a moment: start from a quiet one, so
  // what follows measures this case's server only.
  bool quiet = false;
  for (int i = 0; i < 20 && !quiet; ++i)
    quiet = timed_recv() == EAGAIN;
  BOOST_REQUIRE_MESSAGE(quiet, "this thread keeps being interrupted before the case even starts");

  event_record record;
  int while_running_eintr = 0, after_destruction_eintr = 0, other = 0;
  for (int i = 0; i < 3; ++i) {
    auto server =
        std::make_unique<server_of<Config, quiet_handler>>(Config::options(), quiet_handler{{&record}});
    int e = timed_recv();
    if (e == EINTR)
      ++while_running_eintr;
    else if (e != EAGAIN)
      ++other;
    server.reset();
    e = timed_recv();
    if (e == EINTR)
      ++after_destruction_eintr;
    else if (e != EAGAIN)
      ++other;
  }
  BOOST_TEST(while_running_eintr == 0, "recv() failed with EINTR "
                                           << while_running_eintr
                                           << " of 3 times while a server this thread made was running");
  BOOST_TEST(after_destruction_eintr == 0, "recv() failed with EINTR "
                                               << after_destruction_eintr
                                               << " of 3 times after this thread destroyed a server");
  BOOST_TEST(other == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(shutdown_receive_discards_data_but_reports_peer_shutdown, Config,
                              backend_configs) {
  event_record record;
  side_log log;
  server_of<Config, receive_shutdown_handler> server(Config::options(),
                                                     receive_shutdown_handler{{&record}, &log});
  socket_fd s = connect_local(server.local_endpoint().port());
  iocp::connection_id id = wait_connected(record, 1, s);
  send_all(s.get(), "abc|");
  BOOST_REQUIRE(wait_until([&] { return log.done.load(); }));
  BOOST_TEST(!log.get_results().at(0));
  std::size_t before = record.bytes_received;
  BOOST_TEST(before == 4u);
  send_all(s.get(), std::string(200'000, 'z')); // discarded, but still read: the client never blocks
  shutdown_write(s.get());
  BOOST_TEST(text(recv_until_eof(s.get())) == "done");
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  BOOST_TEST(record.peer_shutdowns == 1);
  BOOST_TEST(record.bytes_received == before); // no on_received after shutdown(receive)
  check_balanced(record);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(tiny_receive_buffers_deliver_every_byte_in_order, Config, backend_configs) {
  // Receives of 100 bytes, from a shared buffer ring of one buffer per thread (io_uring: most
  // receives find the ring empty and must be retried) or from one buffer per connection (0).
  for (unsigned ring_buffers : {1u, 0u}) {
    BOOST_TEST_CONTEXT("receive_buffers_per_thread " << ring_buffers) {
      event_record record;
      auto options = Config::options();
      options.receive_buffer_size = 100;
      options.receive_buffers_per_thread = ring_buffers;
      server_of<Config, echo_handler> server(options, echo_handler{{&record}});
      std::uint16_t port = server.local_endpoint().port();
      constexpr int clients = 12;
      constexpr std::size_t size = 60'000;
      std::vector<std::future<bool>> results;
      for (int c = 0; c < clients; ++c)
        results.push_back(std::async(std::launch::async, [port, c] {
          socket_fd s = connect_local(port);
          std::vector<std::byte> message = random_bytes(size, 700 + static_cast<std::uint64_t>(c));
          auto writer = std::async(std::launch::async, [&] {
            send_all(s.get(), message);
            shutdown_write(s.get());
          });
          std::vector<std::byte> echoed = recv_until_eof(s.get());
          writer.get();
          return echoed == message;
        }));
      for (auto& r : results)
        BOOST_TEST(r.get());
      BOOST_TEST(wait_until([&] { return record.disconnected_count() == clients; }));
      BOOST_TEST(record.bytes_received == clients * size);
      std::lock_guard l(record.mutex);
      BOOST_TEST(record.server_errors.empty());
      for (auto& [id, reason] : record.disconnected)
        BOOST_TEST(!reason, describe(reason));
    }
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(peer_reset_is_reported_as_connection_reset, Config, backend_configs) {
  event_record record;
  server_of<Config, echo_handler> server(Config::options(), echo_handler{{&record}});
  std::uint16_t port = server.local_endpoint().port();
  BOOST_TEST_CONTEXT("idle connection") {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, 1, s);
    send_all(s.get(), "hi");
    BOOST_TEST(text(recv_exact(s.get(), 2)) == "hi");
    set_linger_zero(s.get());
    s.reset();
#if defined(_WIN32)
    // Wine may show a reset that arrived before the server's receive was posted as an end of
    // stream (see ended_in_reset above; test_statistics allows the same).
    const std::error_code reason = wait_reason(record, id);
    BOOST_TEST((!reason || reason == std::errc::connection_reset), describe(reason));
#else
    CHECK_CODE(wait_reason(record, id), std::errc::connection_reset);
#endif
  }
  BOOST_TEST_CONTEXT("connection with a full send queue") {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, 2, s);
    // The echo of 8 MiB that is never read fills both socket buffers and the server's queue.
    std::size_t before = record.bytes_received;
    send_all(s.get(), random_bytes(8 << 20, 5));
    BOOST_REQUIRE(wait_until([&] { return record.bytes_received == before + (8u << 20); }));
    set_linger_zero(s.get());
    s.reset();
    std::error_code reason = wait_reason(record, id);
    BOOST_TEST((reason == std::errc::connection_reset || reason == std::errc::broken_pipe), describe(reason));
  }
  BOOST_TEST(server.connection_count() == 0u);
  check_balanced(record);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(connection_info_matches_the_client_socket, Config, backend_configs) {
  event_record record;
  std::atomic<int> mismatches{0};
  server_of<Config, endpoint_handler> server(Config::options(), endpoint_handler{{&record}, &mismatches});
  std::uint16_t port = server.local_endpoint().port();
  socket_fd s = connect_local(port);
  wait_connected(record, 1);
  BOOST_TEST(mismatches == 0);
  std::lock_guard l(record.mutex);
  BOOST_TEST(record.infos[0].remote.address() == "127.0.0.1");
  BOOST_TEST(record.infos[0].remote.port() == local_port_of(s.get()));
  BOOST_TEST(record.infos[0].local.address() == "127.0.0.1");
  BOOST_TEST(record.infos[0].local.port() == port);
}

BOOST_AUTO_TEST_SUITE_END() // user_expectations

// ---- socket options ----

namespace {
/// TCP_NODELAY of a socket: 1, 0, or -1 if it cannot be read.
int no_delay_of(native_socket fd) {
  int value = 0;
#if defined(_WIN32)
  int length = sizeof value;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<char*>(&value), &length) != 0) return -1;
#else
  socklen_t length = sizeof value;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &length) != 0) return -1;
#endif
  return value != 0 ? 1 : 0;
}

/// Records TCP_NODELAY of each accepted socket, read through conn.native_handle().
struct no_delay_probe : recording_handler {
  std::atomic<int>* seen_on = nullptr;
  std::atomic<int>* seen_off = nullptr;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    ++*(no_delay_of(conn.native_handle()) == 1 ? seen_on : seen_off);
  }
};
} // namespace

BOOST_AUTO_TEST_SUITE(socket_options)

// server_options::no_delay reaches every accepted socket (on Linux through the listener, whose
// TCP_NODELAY accepted sockets inherit), and is absent when turned off.
BOOST_AUTO_TEST_CASE_TEMPLATE(no_delay_is_on_every_accepted_socket_when_asked, Config, backend_configs) {
  for (bool no_delay : {true, false}) {
    BOOST_TEST_CONTEXT("no_delay = " << no_delay) {
      event_record record;
      std::atomic<int> on{0}, off{0};
      auto options = Config::options();
      options.no_delay = no_delay;
      server_of<Config, no_delay_probe> server(options, no_delay_probe{{&record}, &on, &off});
      std::vector<socket_fd> clients;
      for (int i = 0; i < 8; ++i)
        clients.push_back(connect_local(server.local_endpoint().port()));
      // Counted just after the connection is recorded: wait for the counts themselves.
      BOOST_REQUIRE(wait_until([&] { return on.load() + off.load() == 8; }));
      BOOST_TEST((no_delay ? on.load() : off.load()) == 8);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END() // socket_options
