// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// test_connection's handlers, each made for a few cases, and the logs through which they report back.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "connection_checks.hpp"
#include "recorder.hpp"

namespace test_support::connection_tests {

/// What handlers report back to the test, under a mutex.
struct side_log {
  std::mutex mutex;
  std::string received;
  std::vector<std::error_code> results;
  std::size_t queued = 0;
  std::atomic<bool> done{false};

  void set_results(std::vector<std::error_code> r) {
    std::lock_guard l(mutex);
    results = std::move(r);
    done = true;
  }
  std::vector<std::error_code> get_results() {
    std::lock_guard l(mutex);
    return results;
  }
  std::string get_received() {
    std::lock_guard l(mutex);
    return received;
  }
};

// ---- handlers ----

/// Echoes, and keeps the connection half-open when the peer half-closes.
struct half_open_echo_handler : echo_handler {
  void on_peer_shutdown(auto&) { ++record->peer_shutdowns; }
};

/// Greets, shuts its send side at once, and keeps receiving.
struct greet_and_shut_handler : recording_handler {
  side_log* log;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    std::vector<std::error_code> r;
    r.push_back(conn.send("greeting"));
    r.push_back(conn.shutdown(iocp::shutdown_type::send));
    r.push_back(conn.send("too late"));
    log->set_results(std::move(r));
  }
  void on_received(auto&, std::span<const std::byte> data) {
    record->bytes_received += data.size();
    std::lock_guard l(log->mutex);
    log->received.append(reinterpret_cast<const char*>(data.data()), data.size());
  }
};

inline constexpr std::size_t big_vector_part = std::size_t{8} << 20;
inline constexpr std::size_t big_copied_part = std::size_t{4} << 20;

/// On connect: queues 8 MiB as a moved vector and 4 MiB as span copies of odd sizes, then disconnects.
struct send_then_disconnect_handler : recording_handler {
  const std::vector<std::byte>* payload;
  side_log* log;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    std::vector<std::error_code> r;
    r.push_back(conn.send(std::vector<std::byte>(payload->begin(), payload->begin() + big_vector_part)));
    std::span<const std::byte> rest = std::span(*payload).subspan(big_vector_part);
    static constexpr std::size_t sizes[] = {1, 100, 16319, 16320, 16321, 70000, std::size_t{1} << 20};
    for (std::size_t i = 0; !rest.empty(); ++i) {
      std::size_t n = std::min(rest.size(), sizes[i % std::size(sizes)]);
      r.push_back(conn.send(rest.first(n)));
      rest = rest.subspan(n);
    }
    std::size_t queued = conn.queued_bytes();
    r.push_back(conn.disconnect());
    r.push_back(conn.send("after disconnect"));
    {
      std::lock_guard l(log->mutex);
      log->queued = queued;
    }
    log->set_results(std::move(r));
  }
};

/// Echoes, except for one-letter commands that close the connection from inside the callback and
/// then try further operations: S = shutdown(send), D = disconnect, A = abort.
struct command_handler : recording_handler {
  side_log* log;
  void on_received(auto& conn, std::span<const std::byte> data) {
    record->bytes_received += data.size();
    std::vector<std::error_code> r;
    switch (static_cast<char>(data[0])) {
    case 'S':
      r.push_back(conn.send("before-fin"));
      r.push_back(conn.shutdown(iocp::shutdown_type::send));
      r.push_back(conn.send("x"));
      r.push_back(conn.send(bytes_of("vector")));
      r.push_back(conn.server().send(conn.id(), "by id"));
      break;
    case 'D':
      r.push_back(conn.send("bye"));
      r.push_back(conn.disconnect());
      r.push_back(conn.send("x"));
      r.push_back(conn.send(bytes_of("vector")));
      r.push_back(conn.server().send(conn.id(), "by id"));
      break;
    case 'A':
      r.push_back(conn.send("discarded"));
      conn.abort();
      r.push_back(conn.send("x"));
      r.push_back(conn.shutdown(iocp::shutdown_type::send));
      r.push_back(conn.disconnect());
      r.push_back(conn.server().send(conn.id(), "by id"));
      break;
    default: conn.send(data); return;
    }
    log->set_results(std::move(r));
  }
};

/// Keeps every connection's send queue topped up from `block` and discards what it receives.
struct streaming_handler : recording_handler {
  const std::vector<std::byte>* block;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    conn.send(std::span<const std::byte>(*block));
  }
  void on_received(auto&, std::span<const std::byte> data) { record->bytes_received += data.size(); }
  void on_sent(auto& conn, std::size_t n) {
    recording_handler::on_sent(conn, n);
    // Fails with connection_closing once a stop has shut the send side: that is expected here.
    if (conn.queued_bytes() < 2 * block->size()) conn.send(std::span<const std::byte>(*block));
  }
};

/// Receives and ignores.
struct quiet_handler : recording_handler {
  void on_received(auto&, std::span<const std::byte> data) { record->bytes_received += data.size(); }
};

inline std::atomic<int> states_alive{0};
inline std::atomic<int> states_constructed{0};

struct state_log {
  std::mutex mutex;
  int stale = 0;                                      // on_connected saw a state that was not fresh
  std::set<const void*> addresses;                    // where states lived
  std::map<iocp::connection_id, std::size_t> counted; // bytes per connection, at on_disconnected
};

/// Counts bytes per connection in its state; poisons the state at on_disconnected so that a state
/// left over in reused memory would show.
struct counting_handler : recording_handler {
  struct connection_state {
    std::size_t bytes = 0;
    std::uint32_t magic = 0x5eed;
    std::string note;
    connection_state() {
      ++states_alive;
      ++states_constructed;
    }
    ~connection_state() { --states_alive; }
    connection_state(const connection_state&) = delete;
    connection_state& operator=(const connection_state&) = delete;
  };
  state_log* log;

  void on_connected(auto& conn, const iocp::connection_info& info) {
    connection_state& s = conn.state();
    {
      std::lock_guard l(log->mutex);
      if (s.bytes != 0 || s.magic != 0x5eed || !s.note.empty()) ++log->stale;
      log->addresses.insert(&s);
    }
    s.note = "connected";
    recording_handler::on_connected(conn, info);
  }
  void on_received(auto& conn, std::span<const std::byte> data) {
    record->bytes_received += data.size();
    conn.state().bytes += data.size();
  }
  void on_disconnected(auto& conn, std::error_code reason) {
    connection_state& s = conn.state();
    {
      std::lock_guard l(log->mutex);
      log->counted[conn.id()] = s.bytes;
    }
    s.bytes = 0xdeadbeef;
    s.magic = 0;
    s.note = "poisoned by on_disconnected";
    recording_handler::on_disconnected(conn, reason);
  }
};

/// Throws from on_received when the data holds '!', and from on_connected while told to; echoes.
struct throwing_handler : recording_handler {
  std::atomic<bool>* throw_on_connect;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    if (throw_on_connect->load()) throw std::runtime_error("on_connected throws");
  }
  void on_received(auto& conn, std::span<const std::byte> data) {
    record->bytes_received += data.size();
    if (contains(data, '!')) throw std::runtime_error("on_received throws");
    conn.send(data);
  }
};

struct stop_log {
  std::atomic<bool> called{false};
  std::error_code result;
  clock_type::duration took{};
};

/// 'X': calls server().stop() from the callback; 'R': calls server().request_stop().
struct stopping_handler : recording_handler {
  stop_log* log;
  void on_received(auto& conn, std::span<const std::byte> data) {
    record->bytes_received += data.size();
    auto t0 = clock_type::now();
    if (contains(data, 'X')) {
      log->result = conn.server().stop(std::chrono::seconds(2));
    } else if (contains(data, 'R')) {
      conn.server().request_stop(std::chrono::seconds(2));
    } else {
      return;
    }
    log->took = clock_type::now() - t0;
    log->called.store(true, std::memory_order_release);
  }
};

/// Calls shutdown(receive) on the first data holding '|'; on the peer's half-close answers "done"
/// and shuts its own side.
struct receive_shutdown_handler : recording_handler {
  side_log* log;
  void on_received(auto& conn, std::span<const std::byte> data) {
    record->bytes_received += data.size();
    if (contains(data, '|')) log->set_results({conn.shutdown(iocp::shutdown_type::receive)});
  }
  void on_peer_shutdown(auto& conn) {
    ++record->peer_shutdowns;
    conn.send("done");
    conn.shutdown(iocp::shutdown_type::send);
  }
};

/// Checks the endpoints it is given against the connection's own.
struct endpoint_handler : recording_handler {
  std::atomic<int>* mismatches;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    if (!(conn.remote_endpoint() == info.remote) || !(conn.local_endpoint() == info.local)) ++*mismatches;
    if (!(conn.server().local_endpoint().port() == info.local.port())) ++*mismatches;
    recording_handler::on_connected(conn, info);
  }
};
} // namespace test_support::connection_tests
