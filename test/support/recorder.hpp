// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A handler base for tests that records what the server reported, thread-safely, so a test can
// wait for an event and check the invariants (one on_disconnected per on_connected).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "client.hpp"
#include "iocp/iocp.hpp"

namespace test_support {

struct event_record {
  std::mutex mutex;
  std::vector<iocp::connection_id> connected;
  std::map<iocp::connection_id, std::error_code> disconnected;
  std::vector<iocp::connection_info> infos;
  std::vector<std::pair<std::error_code, iocp::operation>> server_errors;
  std::atomic<int> peer_shutdowns{0};
  std::atomic<int> server_closed{0};
  std::atomic<std::size_t> bytes_received{0};
  std::atomic<std::size_t> bytes_sent{0};
  std::atomic<int> duplicate_disconnects{0};
  /// Broken expectations seen on I/O threads, where Boost.Test assertions must not run (it is not
  /// thread-safe): count them there, assert the count on the test's thread.
  std::atomic<int> violations{0};

  std::size_t connected_count() {
    std::lock_guard l(mutex);
    return connected.size();
  }
  std::size_t disconnected_count() {
    std::lock_guard l(mutex);
    return disconnected.size();
  }
  /// The newest connection announced. Only for a test that waited for it to be announced and
  /// makes no other: with several clients, connections are announced in any order (one I/O thread
  /// may get to its accept before another); find them by port instead (id_of).
  iocp::connection_id last_connected() {
    std::lock_guard l(mutex);
    return connected.empty() ? iocp::connection_id{} : connected.back();
  }
  /// The connection announced for the client whose own local port is `client_port` (the remote
  /// end of connection_info), if it was announced: the newest such, should a port come back (after
  /// many connections the kernel gives ports out again: wait for the new one to be counted first).
  std::optional<iocp::connection_id> id_for_port(std::uint16_t client_port) {
    std::lock_guard l(mutex);
    for (std::size_t i = infos.size(); i-- > 0;)
      if (infos[i].remote.port() == client_port) return connected[i];
    return std::nullopt;
  }
  std::optional<std::error_code> reason(iocp::connection_id id) {
    std::lock_guard l(mutex);
    auto it = disconnected.find(id);
    if (it == disconnected.end()) return std::nullopt;
    return it->second;
  }
};

/// Waits until the server has announced the connection of client socket `s` (found by the client's
/// port, whatever the order of announcements) and returns its id; an empty id if it was not
/// announced within `timeout`.
inline iocp::connection_id wait_for_connection(event_record& record, native_socket s,
                                               std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const std::uint16_t port = local_port_of(s);
  std::optional<iocp::connection_id> id;
  wait_until([&] { return (id = record.id_for_port(port)).has_value(); }, timeout);
  return id.value_or(iocp::connection_id{});
}

/// Records every event into `*record`; derive from it and add behaviour (call the base first).
struct recording_handler {
  event_record* record;

  void on_connected(auto& conn, const iocp::connection_info& info) {
    std::lock_guard l(record->mutex);
    record->connected.push_back(conn.id());
    record->infos.push_back(info);
  }
  void on_sent(auto&, std::size_t n) { record->bytes_sent += n; }
  void on_disconnected(auto& conn, std::error_code reason) {
    std::lock_guard l(record->mutex);
    if (!record->disconnected.emplace(conn.id(), reason).second) ++record->duplicate_disconnects;
  }
  void on_server_error(std::error_code e, iocp::operation where) {
    std::lock_guard l(record->mutex);
    record->server_errors.emplace_back(e, where);
  }
  void on_server_closed() { ++record->server_closed; }
};

/// The tests' echo: every receive goes back as it is (counted; an empty one is a violation), and a
/// send that fails is counted in `send_failures` when given.
struct echo_handler : recording_handler {
  std::atomic<int>* send_failures = nullptr;
  void on_received(auto& conn, std::span<const std::byte> data) {
    record->bytes_received += data.size();
    if (data.empty()) ++record->violations; // never empty
    if (conn.send(data) && send_failures) ++*send_failures;
  }
};

} // namespace test_support
