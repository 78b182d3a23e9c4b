// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// test_connection: stale ids, sends from other threads, per-connection state, throwing callbacks.
#include "boost_test.hpp"

#include <atomic>
#include <cstdio>
#include <future>
#include <map>
#include <set>
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

// ---- stale ids ----

BOOST_AUTO_TEST_SUITE(stale_ids)

BOOST_AUTO_TEST_CASE_TEMPLATE(stale_ids_are_rejected_and_never_reach_a_new_connection, Config,
                              backend_configs) {
  event_record record;
  server_of<Config, echo_handler> server(Config::options(), echo_handler{{&record}});
  std::uint16_t port = server.local_endpoint().port();
  auto unknown = make_error_code(iocp::errc::unknown_connection);

  auto check_rejected = [&](iocp::connection_id bad, const char* what) {
    BOOST_TEST_CONTEXT(what << " id " << bad.value()) {
      BOOST_TEST(server.send(bad, "stale") == unknown);
      BOOST_TEST(server.send(bad, bytes_of("stale")) == unknown);
      BOOST_TEST(server.shutdown(bad, iocp::shutdown_type::both) == unknown);
      BOOST_TEST(server.disconnect(bad) == unknown);
      BOOST_TEST(server.abort(bad) == unknown);
    }
  };
  check_rejected(iocp::connection_id{}, "default-constructed");

  std::vector<iocp::connection_id> old_ids;
  constexpr int rounds = 20;
  for (int i = 0; i < rounds; ++i) {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, static_cast<std::size_t>(i) + 1, s);
    BOOST_TEST(static_cast<bool>(id));
    for (iocp::connection_id old : old_ids)
      check_rejected(old, "closed");
    check_rejected(iocp::connection_id(id.slot(), id.generation() + 1), "newer generation of a live slot");
    check_rejected(iocp::connection_id(id.slot() + 1000, id.generation()), "slot never used");
    // Nothing sent to an old id arrived: the first bytes are the marker sent to the new one.
    std::string marker = "marker " + std::to_string(i);
    BOOST_TEST(!server.send(id, marker));
    BOOST_TEST(text(recv_exact(s.get(), marker.size())) == marker);
    shutdown_write(s.get());
    BOOST_TEST(recv_until_eof(s.get()).empty());
    std::error_code reason = wait_reason(record, id);
    BOOST_TEST(!reason, describe(reason));
    old_ids.push_back(id);
  }
  std::set<iocp::connection_id> distinct(old_ids.begin(), old_ids.end());
  BOOST_TEST(distinct.size() == old_ids.size());
  std::set<std::uint32_t> slots;
  for (iocp::connection_id id : old_ids)
    slots.insert(id.slot());
  // One connection at a time, and still a fresh slot each: a freed slot waits in quarantine.
  BOOST_TEST(slots.size() == old_ids.size());

  // Past the quarantine: enough connections come and go for slots to be reused, and then each new
  // connection's slot had earlier occupants, whose ids must not reach it.
  constexpr std::size_t churn = iocp::slot_quarantine + 500;
  for (std::size_t i = 0; i < churn; ++i)
    socket_fd s = connect_local(port);
  const std::size_t before = rounds + churn;
  BOOST_REQUIRE(wait_until([&] { return record.disconnected_count() == before; }, 60s));
  BOOST_REQUIRE(record.connected_count() == before);
  for (int i = 0; i < 5; ++i) {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, before + static_cast<std::size_t>(i) + 1, s);
    std::vector<iocp::connection_id> earlier;
    {
      std::lock_guard l(record.mutex);
      for (iocp::connection_id old : record.connected)
        if (old.slot() == id.slot() && old != id) earlier.push_back(old);
    }
    BOOST_TEST(!earlier.empty(), "slot " << id.slot() << " was not reused");
    for (iocp::connection_id old : earlier) {
      BOOST_TEST(old.generation() < id.generation());
      check_rejected(old, "an earlier occupant of the slot");
    }
    std::string marker = "after the churn " + std::to_string(i);
    BOOST_TEST(!server.send(id, marker));
    BOOST_TEST(text(recv_exact(s.get(), marker.size())) == marker);
    shutdown_write(s.get());
    BOOST_TEST(recv_until_eof(s.get()).empty());
    BOOST_TEST(!wait_reason(record, id));
  }
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // stale_ids

// ---- sending from other threads ----

BOOST_AUTO_TEST_SUITE(cross_thread_send)

BOOST_AUTO_TEST_CASE_TEMPLATE(send_by_id_from_one_thread_keeps_order, Config, backend_configs) {
  event_record record;
  server_of<Config, quiet_handler> server(Config::options(), quiet_handler{{&record}});
  socket_fd s = connect_local(server.local_endpoint().port());
  iocp::connection_id id = wait_connected(record, 1, s);

  constexpr int count = 1000;
  std::string expected;
  int failures = 0;
  for (int i = 0; i < count; ++i) {
    char message[16];
    int n = std::snprintf(message, sizeof message, "msg %06d\n", i);
    std::string_view m(message, static_cast<std::size_t>(n));
    expected += m;
    std::error_code e;
    switch (i % 3) { // every overload
    case 0: e = server.send(id, m); break;
    case 1: e = server.send(id, std::as_bytes(std::span(m))); break;
    case 2: e = server.send(id, bytes_of(m)); break;
    }
    if (e) ++failures;
    if (i % 100 == 50) { // empty sends are accepted and change nothing
      if (server.send(id, std::string_view())) ++failures;
      if (server.send(id, std::span<const std::byte>())) ++failures;
      if (server.send(id, std::vector<std::byte>())) ++failures;
    }
  }
  BOOST_TEST(failures == 0);
  BOOST_TEST(text(recv_exact(s.get(), expected.size())) == expected);
  BOOST_TEST(wait_until([&] { return record.bytes_sent == expected.size(); }));
  BOOST_TEST(nothing_pending(s.get()));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(send_by_id_from_many_threads_to_many_connections, Config, backend_configs) {
  event_record record;
  server_of<Config, quiet_handler> server(Config::options(), quiet_handler{{&record}});
  std::uint16_t port = server.local_endpoint().port();
  constexpr int connections = 4, threads = 4, messages = 500;
  constexpr std::size_t message_size = 9; // "t%d:%05d\n"
  std::vector<socket_fd> sockets;
  std::vector<iocp::connection_id> ids;
  for (int c = 0; c < connections; ++c) {
    sockets.push_back(connect_local(port));
    ids.push_back(wait_connected(record, static_cast<std::size_t>(c) + 1, sockets.back()));
  }
  std::vector<std::future<std::string>> readers;
  for (auto& s : sockets)
    readers.push_back(std::async(std::launch::async, [fd = s.get()] {
      return text(recv_exact(fd, threads * messages * message_size));
    }));
  std::atomic<int> failures{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t)
    senders.emplace_back([&, t] {
      for (int i = 0; i < messages; ++i)
        for (iocp::connection_id id : ids) {
          char m[16];
          std::snprintf(m, sizeof m, "t%d:%05d\n", t, i);
          if (server.send(id, std::string_view(m, message_size))) ++failures;
        }
    });
  for (auto& t : senders)
    t.join();
  BOOST_TEST(failures == 0);
  for (int c = 0; c < connections; ++c) {
    BOOST_TEST_CONTEXT("connection " << c) {
      std::string got = readers[static_cast<std::size_t>(c)].get();
      int next[threads] = {};
      bool well_formed = true, ordered = true;
      for (std::size_t at = 0; at + message_size <= got.size(); at += message_size) {
        int t = -1, i = -1;
        if (std::sscanf(got.c_str() + at, "t%d:%05d\n", &t, &i) != 2 || t < 0 || t >= threads ||
            got[at + message_size - 1] != '\n') {
          well_formed = false;
          break;
        }
        if (i != next[t]) ordered = false;
        next[t] = i + 1;
      }
      BOOST_TEST(well_formed);
      BOOST_TEST(ordered, "a sending thread's messages arrived out of order");
      for (int t = 0; t < threads; ++t)
        BOOST_TEST(next[t] == messages);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END() // cross_thread_send

// ---- per-connection state ----

BOOST_AUTO_TEST_SUITE(connection_state)

BOOST_AUTO_TEST_CASE_TEMPLATE(connection_state_is_fresh_for_every_connection, Config, backend_configs) {
  states_alive = 0;
  states_constructed = 0;
  event_record record;
  state_log log;
  std::vector<std::pair<iocp::connection_id, std::size_t>> sent; // what each client sent
  {
    server_of<Config, counting_handler> server(Config::options(), counting_handler{{&record}, &log});
    std::uint16_t port = server.local_endpoint().port();
    // One at a time, so freed connection memory is handed to the next connection.
    constexpr int sequential = 16;
    for (int i = 0; i < sequential; ++i) {
      socket_fd s = connect_local(port);
      iocp::connection_id id = wait_connected(record, static_cast<std::size_t>(i) + 1, s);
      std::size_t n = 1000 * static_cast<std::size_t>(i + 1);
      send_all(s.get(), random_bytes(n, static_cast<std::uint64_t>(i)));
      shutdown_write(s.get());
      BOOST_TEST(recv_until_eof(s.get()).empty());
      wait_reason(record, id);
      sent.emplace_back(id, n);
    }
    // And several at once.
    constexpr int concurrent = 8;
    std::vector<socket_fd> sockets;
    std::map<std::uint16_t, std::size_t> by_port;
    for (int i = 0; i < concurrent; ++i) {
      sockets.push_back(connect_local(port));
      by_port[local_port_of(sockets.back().get())] = 777 * static_cast<std::size_t>(i + 1);
    }
    wait_connected(record, sequential + concurrent);
    for (auto& s : sockets) {
      send_all(s.get(), random_bytes(by_port[local_port_of(s.get())], 99));
      shutdown_write(s.get());
    }
    for (auto& s : sockets)
      BOOST_TEST(recv_until_eof(s.get()).empty());
    BOOST_REQUIRE(wait_until([&] { return record.disconnected_count() == sequential + concurrent; }));
    {
      std::lock_guard l(record.mutex);
      for (std::size_t i = sequential; i < record.connected.size(); ++i)
        sent.emplace_back(record.connected[i], by_port[record.infos[i].remote.port()]);
    }
    BOOST_TEST(!server.stop());
  }
  std::lock_guard l(log.mutex);
  BOOST_TEST(log.stale == 0, "on_connected saw a state left over from an earlier connection");
  for (auto& [id, n] : sent)
    BOOST_TEST(log.counted[id] == n, "connection " << id.value());
  // The pooled allocator hands freed connection memory to the next connection on the same thread:
  // with 16 sequential connections over 2 threads, some state memory was reused.
  BOOST_TEST(log.addresses.size() < sent.size());
  BOOST_TEST(states_constructed == static_cast<int>(sent.size()));
  BOOST_TEST(states_alive == 0); // every state destroyed
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // connection_state

// ---- a throwing callback ----

BOOST_AUTO_TEST_SUITE(throwing_callback)

BOOST_AUTO_TEST_CASE_TEMPLATE(throwing_callback_aborts_only_its_connection, Config, backend_configs) {
  event_record record;
  std::atomic<bool> throw_on_connect{false};
  server_of<Config, throwing_handler> server(Config::options(),
                                             throwing_handler{{&record}, &throw_on_connect});
  std::uint16_t port = server.local_endpoint().port();

  socket_fd bystander = connect_local(port);
  wait_connected(record, 1);
  send_all(bystander.get(), "hello");
  BOOST_TEST(text(recv_exact(bystander.get(), 5)) == "hello");

  BOOST_TEST_CONTEXT("on_received throws") {
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, 2, s);
    send_all(s.get(), "boom!");
    int end = read_until_closed(s.get());
    BOOST_TEST(ended_in_reset(s.get(), end), errno_name(end));
    CHECK_CODE(wait_reason(record, id), iocp::errc::handler_exception);
  }
  BOOST_TEST_CONTEXT("on_connected throws") {
    throw_on_connect = true;
    socket_fd s = connect_local(port);
    iocp::connection_id id = wait_connected(record, 3, s);
    int end = read_until_closed(s.get());
    BOOST_TEST(ended_in_reset(s.get(), end), errno_name(end));
    CHECK_CODE(wait_reason(record, id), iocp::errc::handler_exception);
    // Only now: on_connected is recorded before it reads the flag, so clearing the flag as soon as
    // the connection was seen could beat the throw.
    throw_on_connect = false;
  }
  {
    std::lock_guard l(record.mutex);
    BOOST_TEST(record.server_errors.size() == 2u);
    for (auto& [e, where] : record.server_errors) {
      CHECK_CODE(e, iocp::errc::handler_exception);
      BOOST_TEST((where == iocp::operation::handler), iocp::to_string(where));
    }
  }
  // The server goes on: the old connection and a new one still work.
  send_all(bystander.get(), "still here");
  BOOST_TEST(text(recv_exact(bystander.get(), 10)) == "still here");
  socket_fd fresh = connect_local(port);
  send_all(fresh.get(), "new");
  BOOST_TEST(text(recv_exact(fresh.get(), 3)) == "new");
  BOOST_TEST(record.disconnected_count() == 2u);
  bystander.reset();
  fresh.reset();
  BOOST_TEST(!server.stop());
  check_balanced(record);
}

BOOST_AUTO_TEST_SUITE_END() // throwing_callback
