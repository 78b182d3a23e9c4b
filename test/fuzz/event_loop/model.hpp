// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The model of fuzz_event_loop.cpp: the driver follows every connection (what the user's calls
// did, what was delivered and sent) and checks each handler callback against it, what posted
// calls may have done when the wake carries them out, and at the end the server's statistics()
// and that everything was closed and reported once. The calls the input makes are in
// user_calls.hpp. Needs the server: include it after IOCP_TEST_BACKEND and iocp.hpp.

#ifndef IOCP_TEST_BACKEND
#error "include the fakes, define IOCP_TEST_BACKEND and include iocp.hpp first (fuzz_event_loop.cpp)"
#endif

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include "iocp/iocp.hpp"

#include "../fuzz_checks.hpp"
#include "fake_world.hpp"

namespace fuzz {

using iocp::connection_id;
using iocp::errc;
using iocp::make_error_code;

constexpr std::uint64_t state_canary = 0x5EED'C0DE'F00D'BEEFull;

enum class close_kind { graceful, peer_reset, aborted, handler_exception, idle, linger, stop, other, count };

/// What on_disconnected's reason counts as in statistics() (the README's table).
inline close_kind kind_of(std::error_code r) {
  if (!r) return close_kind::graceful;
  if (r.category() == iocp::error_category()) {
    switch (static_cast<errc>(r.value())) {
    case errc::handler_exception: return close_kind::handler_exception;
    case errc::idle_timeout: return close_kind::idle;
    case errc::linger_timeout: return close_kind::linger;
    case errc::stop_timeout: return close_kind::stop;
    default: return close_kind::other;
    }
  }
  if (r == std::errc::connection_reset || r == std::errc::broken_pipe) return close_kind::peer_reset;
  if (r == std::errc::connection_aborted) return close_kind::aborted;
  return close_kind::other;
}

template <class Server>
class driver final : public driver_base {
public:
  using conn_type = typename Server::connection_type;

  driver(world& w, const iocp::server_options& options) : w_(w), options_(options) {}

  Server* server = nullptr;

  // ---- the handler's callbacks ----

  void connected(conn_type& c, const iocp::connection_info& info) {
    const connection_id id = c.id();
    check(static_cast<bool>(id), "on_connected with an empty id");
    check(!models_.count(id), "an id issued twice");
    check(c.state().canary == state_canary, "connection_state not constructed");
    fake_socket& s = w_.socket(c.native_handle());
    check(!s.closed && !s.io, "on_connected for a socket that is closed or announced already");
    s.io = &c;
    check(info.local == server->local_endpoint() && info.local == c.local_endpoint(), "wrong local endpoint");
    check(info.remote == c.remote_endpoint() && info.remote.port() == 1024 + s.fd % 60000,
          "wrong remote endpoint");
    models_[id].fd = s.fd;
    ids_.push_back(id);
    ++connected_;
    act(c, models_[id], {}, true);
  }

  void received(conn_type& c, std::span<const std::byte> data) {
    model& m = live(c);
    fake_socket& s = sock(m);
    check(!data.empty(), "on_received with no bytes");
    check(!c.receiving_paused(), "on_received while receiving is paused");
    check(!m.read_shut, "on_received after the receive side was shut");
    check(data.size() <= s.fed - m.delivered, "on_received with bytes the peer never sent");
    for (std::size_t i = 0; i < data.size(); ++i)
      check(data[i] == peer_byte(s.fd, m.delivered + i), "on_received bytes out of order or not the peer's");
    m.delivered += data.size();
    act(c, m, data, true);
  }

  void sent(conn_type& c, std::size_t n) {
    model& m = live(c);
    check(n > 0, "on_sent with no bytes");
    m.sent += n;
    check(m.sent <= sock(m).received.size(), "on_sent reported more than the peer got");
    act(c, m, {}, true);
  }

  void queue_high(conn_type& c, std::size_t queued) {
    model& m = live(c);
    check(!m.high, "on_send_queue_high twice without on_send_queue_low");
    check(queued > options_.send_high_water_mark && queued == c.queued_bytes(),
          "on_send_queue_high below the mark");
    m.high = true;
    act(c, m, {}, true);
  }

  void queue_low(conn_type& c, std::size_t queued) {
    model& m = live(c);
    check(m.high, "on_send_queue_low without on_send_queue_high");
    check(queued <= options_.send_low_water_mark && queued == c.queued_bytes(),
          "on_send_queue_low above the mark");
    m.high = false;
    act(c, m, {}, true);
  }

  void peer_shutdown(conn_type& c) {
    model& m = live(c);
    fake_socket& s = sock(m);
    check(s.fin_fed, "on_peer_shutdown before the peer's FIN");
    check(!m.peer_shutdown, "on_peer_shutdown twice");
    check(!m.disconnect, "on_peer_shutdown after disconnect()");
    check(!c.receiving_paused(), "on_peer_shutdown while receiving is paused");
    check(m.read_shut || m.maybe_read_shut || m.delivered == s.fed,
          "on_peer_shutdown before every byte was delivered");
    check(c.peer_has_shut_down(), "peer_has_shut_down() false in on_peer_shutdown");
    m.peer_shutdown = true;
    act(c, m, {}, true);
  }

  void disconnected(conn_type& c, std::error_code reason) {
    model& m = live(c);
    m.disconnected = true;
    fake_socket& s = sock(m);
    check(s.released && s.closed && c.native_handle() == -1, "on_disconnected before release()");
    check(c.queued_bytes() == 0, "on_disconnected with bytes still queued");
    check(reason != std::errc::operation_canceled, "a cancelled operation became the disconnect reason");
    if (m.expected_reason)
      check(reason == *m.expected_reason, "the disconnect reason is not what closed it first");
    const close_kind kind = kind_of(reason);
    ++closes_[static_cast<int>(kind)];
    const bool abortive = reason && reason.category() == iocp::error_category();
    if (!reason) {
      check(s.fin_fed, "a clean close without the peer's FIN");
      check(!s.linger_zero, "a clean close that resets");
      const std::size_t got = s.received.size();
      check(got >= s.certain, "a clean close before every accepted byte was sent");
      check(got == 0 || std::find(s.ends.begin(), s.ends.end(), got) != s.ends.end(),
            "a clean close in the middle of a send");
    } else if (reason == errc::handler_exception) {
      check(m.threw, "handler_exception, and no callback threw");
    } else if (reason == errc::idle_timeout) {
      check(options_.idle_timeout.count() > 0, "idle_timeout without an idle timeout");
    } else if (reason == errc::linger_timeout) {
      check(m.disconnect || m.maybe_disconnect || w_.loop_stopping, "linger_timeout without a disconnect");
    } else if (reason == errc::stop_timeout) {
      check(w_.loop_stopping, "stop_timeout without a stop");
    } else if (reason == std::errc::connection_aborted) { // abort(): never a completion's error here
      check(m.aborted || m.maybe_aborted, "connection_aborted without an abort()");
    } else if (reason.category() == std::system_category()) {
      check(s.errors.count(reason.value()) != 0, "a disconnect reason no completion gave");
    } else {
      std::fprintf(stderr, "reason: %s: %s\n", reason.category().name(), reason.message().c_str());
      fail("a disconnect reason of an unexpected kind");
    }
    if (abortive || kind == close_kind::aborted) check(s.linger_zero, "an abortive close without a reset");
    // The id is gone from the map before on_disconnected: any call by it is refused.
    check(server->send(c.id(), std::string_view("x")) == errc::unknown_connection,
          "a call by id during on_disconnected reached the connection");
    act(c, m, {}, true);
  }

  void server_error(std::error_code e, iocp::operation where) override {
    if (where == iocp::operation::accept) {
      // A refused connection (its own codes); an accept error is the system's (ENOMEM too).
      if (e == errc::too_many_connections || e == std::make_error_code(std::errc::not_enough_memory))
        ++refused_;
      else
        ++accept_errors_reported_;
      return;
    }
    if (where == iocp::operation::handler) {
      check(e == errc::handler_exception, "a handler error other than handler_exception");
      ++handler_reports_;
      return;
    }
    if (where == iocp::operation::send && e == errc::send_queue_full) {
      check(in_wake_ && wake_send_ && !wake_send_->refused,
            "a refused posted send reported, none being carried out");
      fake_socket& s = w_.socket(wake_send_->fd);
      check(s.expected.size() == wake_send_->end && !s.ends.empty() && s.ends.back() == wake_send_->end,
            "the model lost track of a posted send");
      check(s.received.size() <= wake_send_->start, "a refused posted send put bytes on the wire");
      s.expected.resize(wake_send_->start);
      s.ends.pop_back();
      wake_send_->refused = true;
      return;
    }
    fail("an unexpected on_server_error");
  }

  void server_closed() override {
    ++server_closed_;
    for (const auto& [id, m] : models_)
      check(m.disconnected, "on_server_closed with a connection not yet disconnected");
  }

  // ---- from the fake backend ----

  void attach(void* s) override { server = static_cast<Server*>(s); }

  void outside_action() override {
    switch (w_.in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0:
    case 1:
    case 2: by_id(nullptr); break;
    case 3: request_stop(); break;
    default: stop_from_io_thread(); break;
    }
  }

  void before_wake() override {
    executing_.swap(batch_);
    batch_.clear();
    batch_has_send_ = false;
    in_wake_ = true;
    wake_send_.reset();
    for (const posted& p : executing_) {
      if (p.what == posted::stop) {
        w_.loop_stopping = true; // begin_stop: every connection is disconnected
        w_.stop_deadline = std::min(w_.stop_deadline, p.deadline);
        for (auto& [id, m] : models_)
          m.maybe_write_shut = m.maybe_read_shut = m.maybe_disconnect = true;
        continue;
      }
      auto it = models_.find(p.id);
      if (it == models_.end() || it->second.disconnected) continue;
      model& m = it->second;
      switch (p.what) {
      case posted::send:
        if (!p.bytes.empty()) {
          fake_socket& s = sock(m);
          const std::size_t start = s.expected.size();
          s.expected.insert(s.expected.end(), p.bytes.begin(), p.bytes.end());
          s.ends.push_back(s.expected.size());
          wake_send_ = wake_send{m.fd, start, s.expected.size(), false};
        }
        break;
      case posted::shutdown_send: m.maybe_write_shut = true; break;
      case posted::shutdown_receive: m.maybe_read_shut = true; break;
      case posted::shutdown_both: m.maybe_write_shut = m.maybe_read_shut = true; break;
      case posted::disconnect: m.maybe_write_shut = m.maybe_read_shut = m.maybe_disconnect = true; break;
      case posted::abort: m.maybe_aborted = true; break;
      case posted::other:
      case posted::stop: break;
      }
    }
  }

  void after_wake() override {
    in_wake_ = false;
    wake_send_.reset();
    executing_.clear();
  }
  void main_stop_posting(std::chrono::milliseconds timeout) override { stop_posted(timeout); }

  // ---- at the end ----

  /// With the server stopped (not yet destroyed): the counters against the model.
  void check_stopped() {
    check(server->connection_count() == 0, "connections left in the map after stop()");
    check(server->send_queue_reserved() <= 4 * iocp::detail::local_send_budget::chunk,
          "send memory still reserved after stop()");
    const iocp::server_statistics st = server->statistics();
    check(st.accepted == connected_, "statistics: accepted");
    check(st.active == 0, "statistics: active after stop()");
    check(st.refused == refused_, "statistics: refused");
    auto closes = [&](close_kind k) { return closes_[static_cast<int>(k)]; };
    check(st.closed.graceful == closes(close_kind::graceful), "statistics: closed.graceful");
    check(st.closed.peer_reset == closes(close_kind::peer_reset), "statistics: closed.peer_reset");
    check(st.closed.aborted == closes(close_kind::aborted), "statistics: closed.aborted");
    check(st.closed.handler_exception == closes(close_kind::handler_exception),
          "statistics: closed.handler_exception");
    check(st.closed.idle_timeout == closes(close_kind::idle), "statistics: closed.idle_timeout");
    check(st.closed.linger_timeout == closes(close_kind::linger), "statistics: closed.linger_timeout");
    check(st.closed.stop_timeout == closes(close_kind::stop), "statistics: closed.stop_timeout");
    check(st.closed.other_error == closes(close_kind::other), "statistics: closed.other_error");
    check(st.bytes_received == w_.bytes_received, "statistics: bytes_received");
    check(st.bytes_sent == w_.bytes_sent, "statistics: bytes_sent");
    check(st.accept_errors.peer_gone == w_.accept_errors[0], "statistics: accept_errors.peer_gone");
    check(st.accept_errors.out_of_resources == w_.accept_errors[1],
          "statistics: accept_errors.out_of_resources");
    check(st.accept_errors.other == w_.accept_errors[2], "statistics: accept_errors.other");
  }

  /// With the server gone.
  void check_gone() {
    check(server_closed_ == 1, "on_server_closed not called exactly once");
    for (const auto& [id, m] : models_)
      check(m.disconnected, "a connection never got on_disconnected");
    for (const auto& [fd, s] : w_.sockets)
      check(s.closed, "a socket left open after the server is gone");
    check(handler_reports_ == throws_, "a throw from a callback not reported (or reported twice)");
    check(accept_errors_reported_ == w_.accept_errors[0] + w_.accept_errors[1] + w_.accept_errors[2],
          "accept errors reported other than once each");
  }

private:
  struct model {
    int fd = -1;
    bool disconnected = false;
    // What the user's calls did (those that returned success), and what posted ones may have.
    bool write_shut = false;
    bool read_shut = false;
    bool disconnect = false;
    bool aborted = false;
    bool threw = false;
    bool maybe_write_shut = false;
    bool maybe_read_shut = false;
    bool maybe_disconnect = false;
    bool maybe_aborted = false;
    std::optional<std::error_code> expected_reason; // what closed it first, when a call of ours did
    std::uint64_t delivered = 0;                    // bytes given to on_received
    std::uint64_t sent = 0;                         // bytes on_sent reported
    bool high = false;
    bool peer_shutdown = false;
  };
  struct posted {
    enum kind { send, shutdown_send, shutdown_receive, shutdown_both, disconnect, abort, stop, other } what;
    connection_id id;
    std::vector<std::byte> bytes;
    std::int64_t deadline = never; // stop
  };
  struct wake_send {
    int fd;
    std::size_t start, end;
    bool refused;
  };

  model& live(conn_type& c) {
    auto it = models_.find(c.id());
    check(it != models_.end(), "a callback for a connection never announced");
    check(!it->second.disconnected, "a callback after on_disconnected");
    check(c.state().canary == state_canary, "connection_state lost");
    return it->second;
  }
  fake_socket& sock(const model& m) { return w_.socket(m.fd); }
  conn_type& conn_of(const model& m) { return *static_cast<conn_type*>(sock(m).io); }

  // ---- the calls the input makes, and what each must return (user_calls.hpp) ----

  std::size_t pick_size();
  std::vector<std::byte> out_bytes(std::size_t n);
  template <class Call>
  void send_checked(conn_type& c, model& m, std::span<const std::byte> bytes, Call&& call);
  template <class Call>
  void shutdown_checked(model& m, iocp::shutdown_type how, Call&& call);
  template <class Call>
  void disconnect_checked(model& m, Call&& call);
  template <class Call>
  void abort_checked(model& m, Call&& call);
  void stop_posted(std::chrono::milliseconds timeout);
  void request_stop();
  void stop_from_io_thread();
  void by_id(const conn_type* self);
  void act(conn_type& c, model& m, std::span<const std::byte> data, bool may_throw);

  world& w_;
  const iocp::server_options& options_;
  std::map<connection_id, model> models_;
  std::vector<connection_id> ids_; // every id announced, in order
  std::uint64_t connected_ = 0;
  std::uint64_t refused_ = 0;
  std::uint64_t closes_[static_cast<int>(close_kind::count)] = {};
  std::uint64_t accept_errors_reported_ = 0;
  std::uint64_t handler_reports_ = 0;
  std::uint64_t throws_ = 0;
  int server_closed_ = 0;
  int depth_ = 0;
  bool stop_requested_ = false;   // post_stop ran: posted calls get server_stopping
  std::vector<posted> batch_;     // posted since the last wake
  std::vector<posted> executing_; // being carried out by wake_completed
  bool batch_has_send_ = false;

  static constexpr std::size_t inbox_chunk = 64 * 1024;
  /// How far the total may pass max_send_queue_total: sends posted (counted by their inbox chunk)
  /// are not refused when their thread queues them, and the block each opens in a connection's
  /// queue may need a chunk of the thread's budget (64 KiB) more than the record was counted for;
  /// calls other than sends are never refused, and their chunk counts too.
  std::size_t cap_slack() const {
    std::size_t open = 0;
    for (const auto& [id, m] : models_)
      open += !m.disconnected;
    return (open + 2) * inbox_chunk;
  }
  bool in_wake_ = false;
  std::optional<wake_send> wake_send_;
};

} // namespace fuzz
