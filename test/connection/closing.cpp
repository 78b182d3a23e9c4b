// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// test_connection: closing a connection (half-close, disconnect, linger timeout, abort, shut send side).
#include "boost_test.hpp"

#include <chrono>
#include <cstddef>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/connection_checks.hpp"
#include "support/connection_handlers.hpp"
#include "support/recorder.hpp"

using namespace test_support;
using namespace test_support::connection_tests;
using namespace std::chrono_literals;

// ---- half-close ----

BOOST_AUTO_TEST_SUITE(half_close)

// ---- half-close by the client ----

BOOST_AUTO_TEST_SUITE(by_client)

BOOST_AUTO_TEST_CASE_TEMPLATE(client_half_close_default_echoes_everything_then_closes, Config,
                              backend_configs) {
  event_record record;
  server_of<Config, echo_handler> server(Config::options(), echo_handler{{&record}});
  socket_fd s = connect_local(server.local_endpoint().port());
  std::vector<std::byte> message = random_bytes(300'000, 11);
  auto writer = std::async(std::launch::async, [&] {
    send_all(s.get(), message);
    shutdown_write(s.get());
  });
  std::vector<std::byte> echoed = recv_until_eof(s.get()); // throws on a reset
  writer.get();
  BOOST_TEST(echoed.size() == message.size());
  BOOST_TEST((echoed == message));
  iocp::connection_id id = wait_connected(record, 1, s);
  // The server closed both directions without waiting for the client's close.
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  BOOST_TEST(record.bytes_received == message.size());
  BOOST_TEST(record.bytes_sent == message.size());
  BOOST_TEST(server.connection_count() == 0u);
  check_balanced(record);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(client_half_close_with_on_peer_shutdown_stays_half_open, Config,
                              backend_configs) {
  event_record record;
  server_of<Config, half_open_echo_handler> server(Config::options(), half_open_echo_handler{{&record}});
  std::uint16_t port = server.local_endpoint().port();

  // Ended by server.disconnect(id), then by server.shutdown(id, send).
  for (bool by_disconnect : {true, false}) {
    BOOST_TEST_CONTEXT((by_disconnect ? "ended by disconnect" : "ended by shutdown(send)")) {
      std::size_t n = record.connected_count();
      socket_fd s = connect_local(port);
      iocp::connection_id id = wait_connected(record, n + 1, s);
      int shutdowns = record.peer_shutdowns;
      send_all(s.get(), "ping");
      shutdown_write(s.get());
      BOOST_TEST(text(recv_exact(s.get(), 4)) == "ping");
      BOOST_REQUIRE(wait_until([&] { return record.peer_shutdowns == shutdowns + 1; }));

      // Half-open: the server still sends, the client still receives, nothing has closed.
      for (int i = 0; i < 3; ++i) {
        std::string late = "late data " + std::to_string(i);
        BOOST_TEST(!server.send(id, late));
        BOOST_TEST(text(recv_exact(s.get(), late.size())) == late);
      }
      BOOST_TEST(nothing_pending(s.get()), "the client saw an EOF or data it should not have");
      BOOST_TEST(!record.reason(id).has_value());
      BOOST_TEST(server.connection_count() == 1u);

      std::error_code e =
          by_disconnect ? server.disconnect(id) : server.shutdown(id, iocp::shutdown_type::send);
      BOOST_TEST(!e, describe(e));
      int end = read_until_closed(s.get());
      BOOST_TEST(end == 0, "client read ended with " << errno_name(end));
      std::error_code reason = wait_reason(record, id);
      BOOST_TEST(!reason, describe(reason));
    }
  }
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // by_client

// ---- half-close by the server ----

BOOST_AUTO_TEST_SUITE(by_server)

BOOST_AUTO_TEST_CASE_TEMPLATE(server_half_close_still_receives, Config, backend_configs) {
  event_record record;
  side_log log;
  server_of<Config, greet_and_shut_handler> server(Config::options(),
                                                   greet_and_shut_handler{{&record}, &log});
  socket_fd s = connect_local(server.local_endpoint().port());
  iocp::connection_id id = wait_connected(record, 1, s);
  BOOST_REQUIRE(wait_until([&] { return log.done.load(); }));
  std::vector<std::error_code> r = log.get_results();
  BOOST_REQUIRE(r.size() == 3u);
  BOOST_TEST(!r[0], describe(r[0]));
  BOOST_TEST(!r[1], describe(r[1]));
  CHECK_CODE(r[2], iocp::errc::connection_closing);

  BOOST_TEST(text(recv_until_eof(s.get())) == "greeting"); // then the FIN, not a reset

  // The client can still send, and the server still receives.
  std::string after = std::string(100'000, 'a') + "after the FIN";
  send_all(s.get(), after);
  BOOST_TEST(wait_until([&] { return log.get_received().size() >= after.size(); }));
  BOOST_TEST(log.get_received() == after);
  BOOST_TEST(!record.reason(id).has_value(), "closed before the client did");

  s.reset();
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  BOOST_TEST(record.disconnected_count() == 1u);
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // by_server

BOOST_AUTO_TEST_SUITE_END() // half_close

// ---- disconnect after queued data ----

BOOST_AUTO_TEST_SUITE(disconnect)

BOOST_AUTO_TEST_CASE_TEMPLATE(disconnect_in_callback_after_large_queued_payload, Config, backend_configs) {
  event_record record;
  side_log log;
  const std::vector<std::byte> payload = random_bytes(big_vector_part + big_copied_part, 33);
  server_of<Config, send_then_disconnect_handler> server(
      Config::options(), send_then_disconnect_handler{{&record}, &payload, &log});
  socket_fd s = connect_local(server.local_endpoint().port());
  std::vector<std::byte> got = recv_until_eof(s.get()); // throws on a reset
  BOOST_TEST(got.size() == payload.size());
  BOOST_TEST((got == payload));

  iocp::connection_id id = wait_connected(record, 1, s);
  BOOST_REQUIRE(log.done.load());
  std::vector<std::error_code> r = log.get_results();
  BOOST_REQUIRE(r.size() >= 3u);
  for (std::size_t i = 0; i + 1 < r.size(); ++i)
    BOOST_TEST(!r[i], "operation " << i << ": " << describe(r[i])); // the sends and the disconnect
  CHECK_CODE(r.back(), iocp::errc::connection_closing);
  {
    std::lock_guard l(log.mutex);
    BOOST_TEST(log.queued > 0u);
    BOOST_TEST(log.queued <= payload.size());
  }
  // The server waits for the client's FIN (the linger timeout is 5 s).
  BOOST_TEST(!record.reason(id).has_value());
  s.reset();
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  BOOST_TEST(record.bytes_sent == payload.size());
  check_balanced(record);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(disconnect_by_id_after_large_queued_payload, Config, backend_configs) {
  event_record record;
  server_of<Config, quiet_handler> server(Config::options(), quiet_handler{{&record}});
  socket_fd s = connect_local(server.local_endpoint().port());
  iocp::connection_id id = wait_connected(record, 1, s);

  std::vector<std::byte> moved = random_bytes(big_vector_part, 44);
  std::vector<std::byte> copied = random_bytes(std::size_t{1} << 20, 45);
  std::vector<std::byte> expected = moved;
  expected.insert(expected.end(), copied.begin(), copied.end());
  for (char c : std::string_view("tail"))
    expected.push_back(static_cast<std::byte>(c));

  BOOST_TEST(!server.send(id, std::move(moved)));
  BOOST_TEST(!server.send(id, std::span<const std::byte>(copied)));
  BOOST_TEST(!server.send(id, "tail"));
  BOOST_TEST(!server.disconnect(id));
  // Posted after the disconnect from the same thread: must never reach the client. (The call itself
  // cannot know yet that the connection is closing.)
  server.send(id, "must not arrive");

  std::vector<std::byte> got = recv_until_eof(s.get()); // throws on a reset
  BOOST_TEST(got.size() == expected.size());
  BOOST_TEST((got == expected));
  // Data the client sends now is read and discarded, never passed to on_received.
  send_all(s.get(), std::string(100'000, 'd'));
  s.reset();
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  BOOST_TEST(record.bytes_received == 0u);
  BOOST_TEST(record.bytes_sent == expected.size());
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // disconnect

// ---- linger timeout ----

BOOST_AUTO_TEST_SUITE(linger_timeout)

BOOST_AUTO_TEST_CASE_TEMPLATE(linger_timeout_resets_a_peer_that_never_closes, Config, backend_configs) {
  event_record record;
  auto options = Config::options();
  options.linger_timeout = 200ms;
  server_of<Config, echo_handler> server(options, echo_handler{{&record}});
  socket_fd s = connect_local(server.local_endpoint().port());
  iocp::connection_id id = wait_connected(record, 1, s);

  auto t0 = clock_type::now();
  BOOST_TEST(!server.disconnect(id));
  int end = read_until_closed(s.get());
  BOOST_TEST(end == 0, "client read ended with " << errno_name(end)); // the FIN first
  // The client does not close: the server gives up after the linger timeout.
  std::error_code reason = wait_reason(record, id);
  auto waited = clock_type::now() - t0;
  CHECK_CODE(reason, iocp::errc::linger_timeout);
  BOOST_TEST(waited >= 200ms);
  BOOST_TEST(waited < 5s);
  BOOST_TEST(saw_reset(s.get()), "TCP state " << tcp_state(s.get()));
  // A reset socket refuses to send.
  io_result n = send_some(s.get(), bytes_of("x").data(), 1);
  int e = posix_error(last_socket_error());
  BOOST_TEST(n < 0);
  BOOST_TEST((e == EPIPE || e == ECONNRESET), errno_name(e));
  check_balanced(record);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(slow_reader_gets_all_queued_data_despite_short_linger_timeout, Config,
                              backend_configs) {
  // The linger timeout runs from the disconnect() (options.hpp), and a peer that takes data in a
  // period gets another: a slow reader that keeps reading gets everything, however long it takes.
  event_record record;
  auto options = Config::options();
  // 1 s: the client must take something in every period, also under a sanitizer.
  options.linger_timeout = 1s;
  server_of<Config, quiet_handler> server(options, quiet_handler{{&record}});
  socket_fd s = connect_local(server.local_endpoint().port());
  int small = 64 * 1024; // the kernel buffers little for the client: the server queues the rest
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, reinterpret_cast<const char*>(&small), sizeof small);
  iocp::connection_id id = wait_connected(record, 1, s);
  std::vector<std::byte> payload = random_bytes(std::size_t{8} << 20, 66);
  BOOST_TEST(!server.send(id, std::span<const std::byte>(payload)));
  BOOST_TEST(!server.disconnect(id));
  // About 3 s of slow reading (256 KiB every 100 ms), three linger periods and more; then the rest.
  std::vector<std::byte> got;
  std::vector<std::byte> chunk(256 * 1024);
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 3s && got.size() < payload.size()) {
    std::size_t want = std::min(chunk.size(), payload.size() - got.size());
    std::vector<std::byte> part = recv_exact(s.get(), want); // throws on a reset
    got.insert(got.end(), part.begin(), part.end());
    std::this_thread::sleep_for(100ms);
  }
  BOOST_TEST(!record.reason(id).has_value(), "reset while the peer was reading");
  std::vector<std::byte> rest = recv_until_eof(s.get()); // throws on a reset
  got.insert(got.end(), rest.begin(), rest.end());
  // Closed before the comparison, which takes most of a linger period under ThreadSanitizer
  // (element by element, instrumented): the client answers the FIN as soon as it has read it.
  s.reset();
  BOOST_TEST(got.size() == payload.size());
  BOOST_TEST((got == payload));
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // linger_timeout

// ---- abort ----

BOOST_AUTO_TEST_SUITE(abort_connection)

BOOST_AUTO_TEST_CASE_TEMPLATE(abort_resets_the_peer, Config, backend_configs) {
  event_record record;
  side_log log;
  auto options = Config::options();
  options.max_send_queue_per_connection = 64 << 20; // the 32 MiB send below is queued whole
  server_of<Config, command_handler> server(options, command_handler{{&record}, &log});
  std::uint16_t port = server.local_endpoint().port();

  BOOST_TEST_CONTEXT("conn.abort() in a callback") {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, 1, s);
    send_all(s.get(), "A");
    int end = read_until_closed(s.get());
    BOOST_TEST(ended_in_reset(s.get(), end), errno_name(end));
    CHECK_CODE(wait_reason(record, id), std::errc::connection_aborted);
    BOOST_REQUIRE(log.done.load());
    std::vector<std::error_code> r = log.get_results();
    BOOST_REQUIRE(r.size() == 5u);
    BOOST_TEST(!r[0]);
    for (std::size_t i = 1; i < r.size(); ++i)
      CHECK_CODE(r[i], iocp::errc::connection_closing);
  }
  BOOST_TEST_CONTEXT("server.abort(id) from another thread") {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, 2, s);
    send_all(s.get(), "hello");
    BOOST_TEST(text(recv_exact(s.get(), 5)) == "hello");
    BOOST_TEST(!server.abort(id));
    int end = read_until_closed(s.get());
    BOOST_TEST(ended_in_reset(s.get(), end), errno_name(end));
    CHECK_CODE(wait_reason(record, id), std::errc::connection_aborted);
    CHECK_CODE(server.abort(id), iocp::errc::unknown_connection);
  }
  BOOST_TEST_CONTEXT("server.abort(id) while lingering after a disconnect") {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, 3, s);
    BOOST_TEST(!server.disconnect(id));
    int end = read_until_closed(s.get());
    BOOST_TEST(end == 0, errno_name(end)); // the FIN; the linger timeout is 5 s
    BOOST_TEST(!record.reason(id).has_value());
    BOOST_TEST(!server.abort(id));
    CHECK_CODE(wait_reason(record, id), std::errc::connection_aborted);
    BOOST_TEST(saw_reset(s.get()), "TCP state " << tcp_state(s.get()));
  }
  BOOST_TEST_CONTEXT("server.abort(id) while a large send waits for a client that does not read") {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, 4, s);
    std::size_t sent_before = record.bytes_sent;
    BOOST_TEST(!server.send(id, std::vector<std::byte>(std::size_t{32} << 20, std::byte{1})));
    // The kernel took part of it; the rest cannot go anywhere until the client reads.
    BOOST_REQUIRE(wait_until([&] { return record.bytes_sent > sent_before; }));
    BOOST_TEST(!server.abort(id));
    CHECK_CODE(wait_reason(record, id), std::errc::connection_aborted);
    BOOST_TEST(record.bytes_sent < sent_before + (std::size_t{32} << 20));
    int end = read_until_closed(s.get());
    BOOST_TEST(ended_in_reset(s.get(), end), errno_name(end));
  }
  BOOST_TEST(server.connection_count() == 0u);
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // abort_connection

// ---- operations once the send side is shut ----

BOOST_AUTO_TEST_SUITE(send_side_shut)

BOOST_AUTO_TEST_CASE_TEMPLATE(send_after_shutdown_or_disconnect_is_connection_closing, Config,
                              backend_configs) {
  event_record record;
  side_log log;
  server_of<Config, command_handler> server(Config::options(), command_handler{{&record}, &log});
  std::uint16_t port = server.local_endpoint().port();

  for (char command : {'S', 'D'}) {
    BOOST_TEST_CONTEXT((command == 'S' ? "after shutdown(send)" : "after disconnect()")) {
      log.done = false;
      std::size_t n = record.connected_count();
      socket_fd s = connect_local(port);
      iocp::connection_id id = wait_connected(record, n + 1, s);
      send_all(s.get(), std::string(1, command));
      // What was queued before goes out, then the FIN; nothing after.
      BOOST_TEST(text(recv_until_eof(s.get())) == (command == 'S' ? "before-fin" : "bye"));
      BOOST_REQUIRE(wait_until([&] { return log.done.load(); }));
      std::vector<std::error_code> r = log.get_results();
      BOOST_REQUIRE(r.size() == 5u);
      BOOST_TEST(!r[0], describe(r[0]));
      BOOST_TEST(!r[1], describe(r[1]));
      CHECK_CODE(r[2], iocp::errc::connection_closing);
      CHECK_CODE(r[3], iocp::errc::connection_closing);
      CHECK_CODE(r[4], iocp::errc::connection_closing); // server().send(id) on the owning thread
      s.reset();
      std::error_code reason = wait_reason(record, id);
      BOOST_TEST(!reason, describe(reason));
    }
  }
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // send_side_shut
