// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// test_connection: a server's lifetime (constructor failures, stop, destructor, stop from a callback).
#include "boost_test.hpp"

#include <chrono>
#include <future>
#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/connection_checks.hpp"
#include "support/connection_handlers.hpp"
#include "support/recorder.hpp"

using namespace test_support;
using namespace test_support::connection_tests;
using namespace std::chrono_literals;

// ---- constructor failures ----

BOOST_AUTO_TEST_SUITE(constructor_failures)

BOOST_AUTO_TEST_CASE_TEMPLATE(constructor_failures_throw_the_real_cause, Config, backend_configs) {
  using server_t = server_of<Config, echo_handler>;
  event_record failing;
  auto construct = [&](const iocp::server_options& o) -> std::error_code {
    try {
      server_t s(o, echo_handler{{&failing}});
    } catch (const std::system_error& e) {
      BOOST_TEST_MESSAGE("constructor threw: " << e.what());
      return e.code();
    }
    return {};
  };

  event_record record;
  server_t first(Config::options(), echo_handler{{&record}});
  BOOST_TEST_CONTEXT("port in use by another server") {
    auto o = Config::options();
    o.port = first.local_endpoint().port();
    CHECK_CODE(construct(o), std::errc::address_in_use);
  }
  BOOST_TEST_CONTEXT("port in use by a plain listening socket") {
    socket_fd l = listen_local();
    auto o = Config::options();
    o.port = local_port_of(l.get());
    CHECK_CODE(construct(o), std::errc::address_in_use);
  }
  for (const char* bad : {"not-an-ip", "1.2.3", "999.1.1.1", "", "localhost", "127.0.0.1 ", "1.2.3.4.5"}) {
    BOOST_TEST_CONTEXT("address '" << bad << "'") {
      auto o = Config::options();
      o.address = bad;
      CHECK_CODE(construct(o), std::errc::invalid_argument);
    }
  }
  BOOST_TEST_CONTEXT("an address not on this machine (TEST-NET-1, bind only)") {
    auto o = Config::options();
    o.address = "192.0.2.1";
    CHECK_CODE(construct(o), std::errc::address_not_available);
  }
  for (std::size_t size : {std::size_t{0}, (std::size_t{1} << 30) + 1}) {
    BOOST_TEST_CONTEXT("receive_buffer_size " << size) {
      auto o = Config::options();
      o.receive_buffer_size = size;
      CHECK_CODE(construct(o), std::errc::invalid_argument);
    }
  }
  for (std::size_t n : {std::size_t{0}, iocp::max_connection_capacity + 1}) {
    BOOST_TEST_CONTEXT("max_connections " << n) {
      auto o = Config::options();
      o.max_connections = n;
      CHECK_CODE(construct(o), std::errc::invalid_argument);
    }
  }
  // (Only a thread pool takes options.threads; single_threaded has one thread whatever it says.)
  if constexpr (std::is_same_v<typename server_t::threading_policy_type, iocp::thread_pool>) {
    BOOST_TEST_CONTEXT("5000 threads, after the port was bound: the port is released") {
      std::uint16_t port = first.local_endpoint().port();
      BOOST_TEST(!first.stop());
      auto o = Config::options();
      o.port = port;
      o.threads = 5000;
      CHECK_CODE(construct(o), std::errc::invalid_argument);
      o.threads = 2;
      server_t again(o, echo_handler{{&record}});
      socket_fd s = connect_local(port);
      send_all(s.get(), "still works");
      BOOST_TEST(text(recv_exact(s.get(), 11)) == "still works");
    }
  }
  // A constructor that throws has no server: no callback ever runs for it.
  BOOST_TEST(failing.server_closed == 0);
  BOOST_TEST(failing.connected_count() == 0u);
}

BOOST_AUTO_TEST_SUITE_END() // constructor_failures

// ---- stop ----

BOOST_AUTO_TEST_SUITE(stop)

BOOST_AUTO_TEST_CASE_TEMPLATE(stop_with_busy_connections_is_bounded, Config, backend_configs) {
  event_record record;
  const std::vector<std::byte> block(64 * 1024, std::byte{0x5a});
  server_of<Config, streaming_handler> server(Config::options(), streaming_handler{{&record}, &block});
  std::uint16_t port = server.local_endpoint().port();
  constexpr int count = 20;
  auto clients = start_busy_clients(port, count);
  BOOST_REQUIRE(wait_until([&] {
    return record.connected_count() == count && record.bytes_received >= count * block.size() &&
           record.bytes_sent >= count * block.size();
  }));

  auto t0 = clock_type::now();
  std::error_code e = server.stop(300ms);
  auto took = clock_type::now() - t0;
  BOOST_TEST(!e, describe(e));
  BOOST_TEST(took >= 300ms); // nobody closed: it waited the whole timeout
  BOOST_TEST(took < 5s);
  BOOST_TEST(record.server_closed == 1);
  BOOST_TEST(server.connection_count() == 0u);
  check_balanced(record);
  {
    std::lock_guard l(record.mutex);
    for (auto& [id, reason] : record.disconnected)
      CHECK_CODE(reason, iocp::errc::stop_timeout);
  }
  CHECK_CODE(connect_error(port), std::errc::connection_refused);
  check_busy_clients_were_reset(clients);
  BOOST_TEST(!server.stop()); // again: nothing left to do
  BOOST_TEST(record.server_closed == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stop_with_idle_clients_that_close_on_eof_is_graceful, Config, backend_configs) {
  event_record record;
  server_of<Config, echo_handler> server(Config::options(), echo_handler{{&record}});
  std::uint16_t port = server.local_endpoint().port();
  constexpr int count = 10;
  std::vector<std::future<int>> clients;
  for (int i = 0; i < count; ++i) {
    auto s = std::make_shared<socket_fd>(connect_local(port));
    clients.push_back(std::async(std::launch::async, [s] {
      int end = read_until_closed(s->get());
      s->reset();
      return end;
    }));
  }
  wait_connected(record, count);
  auto t0 = clock_type::now();
  std::error_code e = server.stop(10s);
  auto took = clock_type::now() - t0;
  BOOST_TEST(!e, describe(e));
  BOOST_TEST(took < 5s);
  for (auto& c : clients) {
    int end = c.get();
    BOOST_TEST(end == 0, errno_name(end));
  }
  BOOST_TEST(record.server_closed == 1);
  check_balanced(record);
  std::lock_guard l(record.mutex);
  for (auto& [id, reason] : record.disconnected)
    BOOST_TEST(!reason, describe(reason));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stop_resets_a_client_that_ignores_the_fin, Config, backend_configs) {
  // The polite client closes as soon as it reads the FIN, and must do so within the stop's 200 ms:
  // should the machine keep it from running that long, the server is right to reset it too, and
  // that attempt cannot tell; a fresh server tries again.
  bool decided = false;
  for (int attempt = 1; attempt <= 3 && !decided; ++attempt) {
    BOOST_TEST_CONTEXT("attempt " << attempt) {
      event_record record;
      server_of<Config, echo_handler> server(Config::options(), echo_handler{{&record}});
      std::uint16_t port = server.local_endpoint().port();
      socket_fd stubborn = connect_local(port);
      iocp::connection_id stubborn_id = wait_connected(record, 1, stubborn);
      auto polite_socket = std::make_shared<socket_fd>(connect_local(port));
      iocp::connection_id polite_id = wait_connected(record, 2, *polite_socket);
      auto polite = std::async(std::launch::async, [s = polite_socket] {
        int end = read_until_closed(s->get());
        s->reset();
        return std::pair{end, clock_type::now()};
      });

      auto t0 = clock_type::now();
      std::error_code e = server.stop(200ms);
      auto took = clock_type::now() - t0;
      BOOST_TEST(!e, describe(e));
      BOOST_TEST(took >= 200ms);
      BOOST_TEST(took < 5s);
      const auto [polite_end, polite_closed] = polite.get();
      CHECK_CODE(wait_reason(record, stubborn_id), iocp::errc::stop_timeout);
      int end = read_until_closed(stubborn.get());
      BOOST_TEST(end == 0, errno_name(end)); // the FIN came first
      BOOST_TEST(saw_reset(stubborn.get()), "TCP state " << tcp_state(stubborn.get()));
      BOOST_TEST(record.server_closed == 1);
      check_balanced(record);
      if (polite_closed - t0 >= 200ms) {
        BOOST_TEST_MESSAGE(
            "the polite client closed "
            << std::chrono::duration_cast<std::chrono::milliseconds>(polite_closed - t0).count()
            << " ms after the stop began: this attempt cannot tell");
        continue;
      }
      decided = true;
      BOOST_TEST(polite_end == 0, errno_name(polite_end));
      std::error_code polite_reason = wait_reason(record, polite_id);
      BOOST_TEST(!polite_reason, describe(polite_reason));
    }
  }
  BOOST_TEST(decided, "in every attempt the machine kept the polite client from closing in time");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stop_closes_half_open_connections_at_once, Config, backend_configs) {
  event_record record;
  server_of<Config, half_open_echo_handler> server(Config::options(), half_open_echo_handler{{&record}});
  socket_fd s = connect_local(server.local_endpoint().port());
  iocp::connection_id id = wait_connected(record, 1, s);
  send_all(s.get(), "x");
  shutdown_write(s.get());
  BOOST_TEST(text(recv_exact(s.get(), 1)) == "x");
  BOOST_REQUIRE(wait_until([&] { return record.peer_shutdowns == 1; }));
  // The peer has already sent its FIN: our FIN completes the close, with no waiting.
  auto t0 = clock_type::now();
  std::error_code e = server.stop(10s);
  auto took = clock_type::now() - t0;
  BOOST_TEST(!e, describe(e));
  BOOST_TEST((took < 5s));
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  int end = read_until_closed(s.get());
  BOOST_TEST(end == 0, errno_name(end));
  BOOST_TEST(record.server_closed == 1);
  check_balanced(record);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stop_from_two_threads_at_once_closes_once, Config, backend_configs) {
  event_record record;
  server_of<Config, echo_handler> server(Config::options(), echo_handler{{&record}});
  std::uint16_t port = server.local_endpoint().port();
  std::vector<std::future<int>> clients;
  for (int i = 0; i < 4; ++i) {
    auto s = std::make_shared<socket_fd>(connect_local(port));
    clients.push_back(std::async(std::launch::async, [s] {
      int end = read_until_closed(s->get());
      s->reset();
      return end;
    }));
  }
  wait_connected(record, 4);
  auto a = std::async(std::launch::async, [&] { return server.stop(10s); });
  auto b = std::async(std::launch::async, [&] { return server.stop(10s); });
  std::error_code ea = a.get(), eb = b.get();
  BOOST_TEST(!ea, describe(ea));
  BOOST_TEST(!eb, describe(eb));
  BOOST_TEST(record.server_closed == 1);
  for (auto& c : clients)
    BOOST_TEST(c.get() == 0);
  check_balanced(record);
  CHECK_CODE(connect_error(port), std::errc::connection_refused);
}

BOOST_AUTO_TEST_SUITE_END() // stop

// ---- destructor ----

BOOST_AUTO_TEST_SUITE(destructor)

BOOST_AUTO_TEST_CASE_TEMPLATE(destructor_with_busy_connections_is_bounded, Config, backend_configs) {
  event_record record;
  const std::vector<std::byte> block(64 * 1024, std::byte{0x6b});
  auto server = std::make_unique<server_of<Config, streaming_handler>>(Config::options(),
                                                                       streaming_handler{{&record}, &block});
  std::uint16_t port = server->local_endpoint().port();
  constexpr int count = 10;
  auto clients = start_busy_clients(port, count);
  BOOST_REQUIRE(wait_until([&] {
    return record.connected_count() == count && record.bytes_received >= count * block.size() &&
           record.bytes_sent >= count * block.size();
  }));

  auto t0 = clock_type::now();
  server.reset();
  auto took = clock_type::now() - t0;
  BOOST_TEST(took < 5s);
  BOOST_TEST(record.server_closed == 1);
  check_balanced(record);
  {
    std::lock_guard l(record.mutex);
    for (auto& [id, reason] : record.disconnected)
      BOOST_TEST((reason == iocp::errc::stop_timeout || reason == std::errc::connection_aborted),
                 describe(reason));
  }
  CHECK_CODE(connect_error(port), std::errc::connection_refused);
  check_busy_clients_were_reset(clients);
}

BOOST_AUTO_TEST_SUITE_END() // destructor

// ---- stopping from inside a callback ----

BOOST_AUTO_TEST_SUITE(stop_from_callback)

BOOST_AUTO_TEST_CASE_TEMPLATE(stop_from_a_callback_is_would_deadlock, Config, backend_configs) {
  event_record record;
  stop_log log;
  server_of<Config, stopping_handler> server(Config::options(), stopping_handler{{&record}, &log});
  std::uint16_t port = server.local_endpoint().port();
  socket_fd s = connect_local(port);
  iocp::connection_id id = wait_connected(record, 1, s);
  send_all(s.get(), "X");
  BOOST_REQUIRE(wait_until([&] { return log.called.load(std::memory_order_acquire); }));
  CHECK_CODE(log.result, iocp::errc::would_deadlock);
  BOOST_TEST(log.took < 1s); // it did not wait for anything
  // The stop it started goes on: the client gets the FIN.
  int end = read_until_closed(s.get());
  BOOST_TEST(end == 0, errno_name(end));
  s.reset();
  auto t0 = clock_type::now();
  std::error_code e = server.stop();
  BOOST_TEST(!e, describe(e));
  BOOST_TEST((clock_type::now() - t0 < 5s));
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  BOOST_TEST(record.server_closed == 1);
  BOOST_TEST(!server.stop());
  BOOST_TEST(record.server_closed == 1);
  CHECK_CODE(connect_error(port), std::errc::connection_refused);
  check_balanced(record);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(request_stop_from_a_callback_then_destructor_completes, Config,
                              backend_configs) {
  event_record record;
  stop_log log;
  auto server = std::make_unique<server_of<Config, stopping_handler>>(Config::options(),
                                                                      stopping_handler{{&record}, &log});
  std::uint16_t port = server->local_endpoint().port();
  socket_fd s = connect_local(port);
  iocp::connection_id id = wait_connected(record, 1, s);
  send_all(s.get(), "R");
  BOOST_REQUIRE(wait_until([&] { return log.called.load(std::memory_order_acquire); }));
  BOOST_TEST(log.took < 1s);
  int end = read_until_closed(s.get());
  BOOST_TEST(end == 0, errno_name(end)); // the FIN of the graceful stop
  // Stopping: new work from other threads is refused while the connection is still open.
  CHECK_CODE(server->send(id, "late"), iocp::errc::server_stopping);
  s.reset();
  auto t0 = clock_type::now();
  server.reset();
  BOOST_TEST((clock_type::now() - t0 < 5s));
  std::error_code reason = wait_reason(record, id);
  BOOST_TEST(!reason, describe(reason));
  BOOST_TEST(record.server_closed == 1);
  CHECK_CODE(connect_error(port), std::errc::connection_refused);
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // stop_from_callback
