// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Echo correctness over every named policy combination and both Linux backends: messages from 1 byte
// to 16 MiB come back byte-exact, and the peer's half-close gets the default treatment (the rest is
// sent, then our FIN).
#define BOOST_TEST_MODULE echo
#include "boost_test.hpp"

#include <future>
#include <map>
#include <thread>

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/recorder.hpp"

using namespace test_support;

namespace {

// Sends the bytes of each receive several ways from on_received: back as they are (io_uring lends
// the receive buffer to that send, whose start waits for the callback's return), their first half
// again (a copy: a buffer is lent once), and as a moved vector; and relays them to the first
// connection accepted, the listener (on this thread with one I/O thread: a send by id that acts at
// once, and may be the one that borrows the buffer; else posted to the listener's thread).
struct fan_out_handler : recording_handler {
  fan_out_handler(event_record* r, bool relay) : recording_handler{r}, relay_first(relay) {}
  const bool relay_first;
  std::atomic<std::uint64_t> listener{0}; // the first connection's id
  std::mutex sizes_mutex;
  std::vector<std::size_t> receive_sizes; // of the sender's receives, in order

  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    std::uint64_t none = 0;
    listener.compare_exchange_strong(none, conn.id().value());
  }
  void on_received(auto& conn, std::span<const std::byte> data) {
    record->bytes_received += data.size();
    const iocp::connection_id to(listener.load());
    if (conn.id() == to) return; // the listener only listens
    {
      std::lock_guard l(sizes_mutex);
      receive_sizes.push_back(data.size());
    }
    if (relay_first && conn.server().send(to, data)) ++record->violations;
    if (conn.send(data) || conn.send(data.first((data.size() + 1) / 2)) ||
        conn.send(std::vector<std::byte>(data.begin(), data.end())))
      ++record->violations;
    if (!relay_first && conn.server().send(to, data)) ++record->violations;
  }
};

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(each_receive_sent_several_ways_and_relayed, Config, all_configs) {
  for (bool relay_first : {false, true}) {
    BOOST_TEST_CONTEXT((relay_first ? "relayed first" : "echoed first")) {
      event_record record;
      typename Config::template server<fan_out_handler> server(Config::options(), &record, relay_first);
      std::uint16_t port = server.local_endpoint().port();
      socket_fd listener = connect_local(port);
      BOOST_REQUIRE(wait_until([&] { return record.connected_count() == 1; }));
      socket_fd s = connect_local(port);
      std::vector<std::byte> message = random_bytes(300'000, relay_first ? 3 : 4);
      auto writer = std::async(std::launch::async, [&] {
        // In pieces of every size, so that receives of many sizes are sent on.
        std::size_t at = 0;
        for (std::size_t piece = 1; at < message.size(); piece = piece * 3 % 20011 + 1) {
          std::size_t n = std::min(piece, message.size() - at);
          send_all(s.get(), std::span<const std::byte>(message).subspan(at, n));
          at += n;
        }
        shutdown_write(s.get());
      });
      std::vector<std::byte> answer = recv_until_eof(s.get()); // the default half-close: then our FIN
      writer.get();
      std::vector<std::byte> relayed = recv_exact(listener.get(), message.size());

      std::vector<std::byte> expected;
      std::size_t at = 0;
      {
        std::lock_guard l(server.handler().sizes_mutex);
        for (std::size_t n : server.handler().receive_sizes) {
          BOOST_REQUIRE(at + n <= message.size());
          auto part = std::span<const std::byte>(message).subspan(at, n);
          expected.insert(expected.end(), part.begin(), part.end());
          expected.insert(expected.end(), part.begin(),
                          part.begin() + static_cast<std::ptrdiff_t>((n + 1) / 2));
          expected.insert(expected.end(), part.begin(), part.end());
          at += n;
        }
      }
      BOOST_TEST(at == message.size());
      BOOST_TEST(answer.size() == expected.size());
      BOOST_TEST((answer == expected));
      BOOST_TEST((relayed == message));
      BOOST_TEST(record.violations == 0);
    }
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(echo_sizes_from_1_byte_to_16_MiB, Config, all_configs) {
  event_record record;
  typename Config::template server<echo_handler> server(Config::options(), echo_handler{{&record}});
  BOOST_TEST((server.backend() == Config::io_backend));
  std::uint16_t port = server.local_endpoint().port();

  for (std::size_t size :
       {std::size_t{1}, std::size_t{2}, std::size_t{1000}, std::size_t{16384}, std::size_t{16385},
        std::size_t{100'000}, std::size_t{1} << 20, std::size_t{16} << 20}) {
    BOOST_TEST_CONTEXT("message of " << size << " bytes") {
      socket_fd s = connect_local(port);
      std::vector<std::byte> message = random_bytes(size, size);
      // Write from another thread: a 16 MiB echo cannot fit in the socket buffers one way.
      auto writer = std::async(std::launch::async, [&] {
        send_all(s.get(), message);
        shutdown_write(s.get());
      });
      std::vector<std::byte> echoed = recv_until_eof(s.get());
      writer.get();
      BOOST_TEST(echoed.size() == message.size());
      BOOST_TEST((echoed == message));
    }
  }
  // Every connection closed gracefully, so each got exactly one on_disconnected with success.
  BOOST_TEST(wait_until([&] { return record.disconnected_count() == 8; }));
  BOOST_TEST(record.connected_count() == 8u);
  BOOST_TEST(record.duplicate_disconnects == 0);
  BOOST_TEST(record.violations == 0);
  {
    std::lock_guard l(record.mutex);
    for (auto& [id, reason] : record.disconnected)
      BOOST_TEST(!reason, "reason: " << reason.message());
  }
  BOOST_TEST(!server.stop());
  BOOST_TEST(record.server_closed == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(many_concurrent_clients_ping_pong, Config, all_configs) {
  event_record record;
  typename Config::template server<echo_handler> server(Config::options(), echo_handler{{&record}});
  std::uint16_t port = server.local_endpoint().port();
  constexpr int clients = 32, rounds = 50;
  std::vector<std::future<bool>> results;
  for (int c = 0; c < clients; ++c) {
    results.push_back(std::async(std::launch::async, [port, c] {
      socket_fd s = connect_local(port);
      for (int r = 0; r < rounds; ++r) {
        std::vector<std::byte> message =
            random_bytes(64 + static_cast<std::size_t>(r * 37 % 4000), c * 1000 + r);
        send_all(s.get(), message);
        if (recv_exact(s.get(), message.size()) != message) return false;
      }
      shutdown_write(s.get());
      return recv_until_eof(s.get()).empty();
    }));
  }
  for (auto& r : results)
    BOOST_TEST(r.get());
  BOOST_TEST(wait_until([&] { return record.disconnected_count() == clients; }));
  BOOST_TEST(server.connection_count() == 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(echo_over_ipv6_loopback, Config, backend_configs) {
  event_record record;
  auto options = Config::options();
  options.address = "::1";
  std::unique_ptr<typename Config::template server<echo_handler>> server;
  try {
    server =
        std::make_unique<typename Config::template server<echo_handler>>(options, echo_handler{{&record}});
  } catch (const std::system_error& e) {
    // A machine without IPv6 (EADDRNOTAVAIL) cannot run this case; anything else is a failure.
    BOOST_REQUIRE_MESSAGE(e.code() == std::errc::address_not_available, e.what());
    BOOST_TEST_MESSAGE("no IPv6 loopback here: " << e.what());
    return;
  }
  BOOST_TEST(server->local_endpoint().is_v6());
  socket_fd s = connect_to(server->local_endpoint());
  send_all(s.get(), "hello over IPv6");
  shutdown_write(s.get());
  std::vector<std::byte> echoed = recv_until_eof(s.get());
  BOOST_TEST(std::string(reinterpret_cast<const char*>(echoed.data()), echoed.size()) == "hello over IPv6");
  BOOST_TEST(wait_until([&] { return record.connected_count() == 1; }));
  std::lock_guard l(record.mutex);
  BOOST_TEST(record.infos[0].remote.address() == "::1");
  BOOST_TEST(record.infos[0].local.port() == server->local_endpoint().port());
}

// The local endpoint handed to on_connected: the listener's own for a listener bound to one
// address (no system call per connection), the address the client reached for a wildcard listener.
BOOST_AUTO_TEST_CASE_TEMPLATE(local_endpoint_of_a_wildcard_listener_is_the_address_reached, Config,
                              backend_configs) {
  event_record record;
  auto options = Config::options();
  options.address = "0.0.0.0";
  typename Config::template server<echo_handler> server(options, echo_handler{{&record}});
  BOOST_TEST(server.local_endpoint().is_unspecified());
  std::uint16_t port = server.local_endpoint().port();
  socket_fd s = connect_local(port); // 127.0.0.1
  send_all(s.get(), "x");
  BOOST_TEST(recv_exact(s.get(), 1).size() == 1u);
  BOOST_TEST(wait_until([&] { return record.connected_count() == 1; }));
  std::lock_guard l(record.mutex);
  BOOST_TEST(record.infos[0].local.address() == "127.0.0.1");
  BOOST_TEST(record.infos[0].local.port() == port);
  BOOST_TEST(!record.infos[0].local.is_unspecified());
}

// Clients that reset at once: on Windows the AcceptEx itself may fail (WSAENOTCONN,
// ERROR_NETNAME_DELETED...), on Linux the accepted connection reads a reset. Either way every
// attempt is accounted for (announced, or reported as an accept error) and the server goes on
// accepting: the original's broken accept chain cannot come back.
BOOST_AUTO_TEST_CASE_TEMPLATE(accepting_survives_clients_that_reset_at_once, Config, backend_configs) {
  event_record record;
  typename Config::template server<echo_handler> server(Config::options(), echo_handler{{&record}});
  std::uint16_t port = server.local_endpoint().port();
  constexpr std::size_t resets = 300;
  for (std::size_t i = 0; i < resets; ++i) {
    socket_fd s = connect_local(port);
    set_linger_zero(s.get());
  }
  auto accept_errors = [&] {
    std::lock_guard l(record.mutex);
    std::size_t n = 0;
    for (auto& [e, where] : record.server_errors)
      n += where == iocp::operation::accept;
    return n;
  };
  BOOST_TEST(wait_until([&] { return record.connected_count() + accept_errors() == resets; }));
  BOOST_TEST_MESSAGE("announced " << record.connected_count() << ", failed accepts " << accept_errors());
  {
    std::lock_guard l(record.mutex);
    std::map<int, int> codes;
    for (auto& [e, where] : record.server_errors)
      ++codes[e.value()];
    for (auto [code, n] : codes)
      BOOST_TEST_MESSAGE("  error " << code << ": " << n);
  }
  for (int i = 0; i < 20; ++i) {
    socket_fd s = connect_local(port);
    send_all(s.get(), "still accepting");
    shutdown_write(s.get());
    std::vector<std::byte> echoed = recv_until_eof(s.get());
    BOOST_TEST(echoed.size() == std::string_view("still accepting").size());
  }
  BOOST_TEST(wait_until([&] { return record.disconnected_count() == record.connected_count(); }));
  BOOST_TEST(record.duplicate_disconnects == 0);
}
