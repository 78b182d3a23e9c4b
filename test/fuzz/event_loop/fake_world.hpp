// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The simulated kernel of fuzz_event_loop.cpp: the fake sockets (what each peer sent, did and
// got, and what the model expects it to get), the fake clock, the socket calls the loop makes
// itself (shutdown, SO_LINGER, SIOCOUTQ, close) and the lock step with the fuzzer's thread. One
// `world` per input; the fake backends (fake_backends.hpp) and the driver (model.hpp) share it.
// Includes only iocp headers that do not read IOCP_TEST_BACKEND: it comes before the macro.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <vector>

#include "iocp/detail/linux/io_object.hpp"
#include "iocp/handler.hpp"

#include "../fuzz_checks.hpp"

namespace fuzz {

using iocp::detail::accept_context;
using iocp::detail::io_object;

/// What a fake peer sends: a function of the socket and the offset, so bytes out of order, repeated
/// or from another connection do not compare equal.
inline std::byte peer_byte(int fd, std::uint64_t offset) {
  std::uint64_t x = (static_cast<std::uint64_t>(fd) << 40) ^ offset;
  x *= 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  return static_cast<std::byte>(x >> 56);
}

/// What the fake kernel knows of one accepted socket, what its peer did and saw, and what the
/// driver's model expects of it.
struct fake_socket {
  int fd = -1;
  io_object* io = nullptr; // the connection, once announced
  bool closed = false;
  bool released = false;
  bool cancelled = false; // the loop called cancel(): the connection is closing
  // The peer.
  std::uint64_t peer_sent = 0; // bytes the peer wrote
  std::uint64_t fed = 0;       // of those, bytes handed to the loop by receive completions
  bool peer_fin = false;       // the peer half-closed after peer_sent bytes
  bool peer_reset = false;
  bool fin_fed = false;             // the loop was given the end of the stream
  std::vector<std::byte> received;  // what the peer got from the server
  std::size_t window = 0;           // readiness: what the socket buffer takes now
  long unacked = 0;                 // sent but not acknowledged (SIOCOUTQ)
  bool fin_sent = false;            // the loop's shutdown(SHUT_WR)
  bool lingering = false;           // the loop asked SIOCOUTQ: a linger period runs
  std::int64_t linger_deadline = 0; // when it ends
  bool linger_zero = false;         // the close will reset
  std::set<int> errors;             // errno values completions gave the loop
  // The operations, as the fake kernel sees them.
  bool receive_cancel = false;   // completion: a cancel is on its way for the receive
  bool pause_cancelling = false; // completion: the pause's cancel of the multishot receive
  bool send_cancel = false;      // completion: a cancel is on its way for the send
  bool waiting = false;          // readiness: the send waits for the socket to turn writable
  const std::byte* send_data = nullptr;
  std::size_t send_size = 0;
  // The model: the bytes of every send the server accepted (or, for a posted send, may have: its
  // fate is known only when a later send on the connection is accepted), and where each ends.
  std::vector<std::byte> expected;
  std::vector<std::size_t> ends;
  std::size_t certain = 0; // expected[0, certain) was accepted for sure
};

class driver_base {
public:
  virtual ~driver_base() = default;
  virtual void attach(void* server) = 0; // the server, from its loop's first round
  virtual void outside_action() = 0;     // a user call made outside any callback
  virtual void before_wake() = 0;        // the loop is about to carry out what was posted
  virtual void after_wake() = 0;
  virtual void main_stop_posting(std::chrono::milliseconds timeout) = 0; // the fuzzer's thread will stop()
  virtual void server_error(std::error_code, iocp::operation) = 0;
  virtual void server_closed() = 0;
};

enum class main_call { none, stop, destroy };

constexpr std::int64_t never = INT64_MAX;

/// `timeout` after `now`, saturated: what the loop's deadlines must be (a model of detail/clock.hpp).
inline std::int64_t deadline_after(std::int64_t now, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return now;
  if (timeout.count() > (never - now) / 1'000'000) return never;
  return now + timeout.count() * 1'000'000;
}
/// Everything one input's fake kernel knows.
struct world {
  explicit world(FuzzedDataProvider& input) : in(input) {}

  FuzzedDataProvider& in;
  bool multishot_accept = false;
  std::size_t receive_size = 1;
  std::atomic<std::int64_t> now{1'000'000'000'000}; // the fake monotonic clock, in ns
  driver_base* driver = nullptr;

  std::map<int, fake_socket> sockets;
  std::vector<int> live; // sockets handed over and not yet closed, in that order
  int next_fd = 1'000'000;
  bool loop_stopping = false;         // the loop has carried out a stop
  std::int64_t stop_deadline = never; // the earliest deadline of the stops it carried out
  std::chrono::milliseconds linger_timeout{0};
  std::int64_t idle_limit_ns = 0;  // with an idle timeout: how long a connection may look idle
  std::size_t out_left = 1u << 20; // bytes the handler may still send in this input
  std::uint64_t out_seed = 0;
  std::uint64_t peer_left = 16 * 1024; // bytes the peers may still send
  std::uint64_t rounds = 0;
  std::uint64_t drain_rounds = 0;

  // The model's counts, for statistics().
  std::uint64_t bytes_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t accept_errors[3] = {}; // peer gone, out of resources, other

  // The lock step with the fuzzer's thread.
  std::mutex mutex;
  std::condition_variable changed;
  bool wake_pending = false; // wake() was called and wake_completed not yet delivered
  main_call call = main_call::none;
  std::chrono::milliseconds call_timeout{0};
  bool main_called = false; // the I/O thread's view: the fuzzer's thread was told to stop
  bool io_exited = false;

  fake_socket& socket(int fd) {
    auto it = sockets.find(fd);
    check(it != sockets.end(), "a socket call with a descriptor the fake kernel never handed over");
    return it->second;
  }
  fake_socket* pick_live() {
    if (live.empty()) return nullptr;
    return &socket(live[in.ConsumeIntegralInRange<std::size_t>(0, live.size() - 1)]);
  }
  void retire(int fd) { live.erase(std::remove(live.begin(), live.end(), fd), live.end()); }

  int new_socket() {
    int fd = next_fd++;
    fake_socket& s = sockets[fd];
    s.fd = fd;
    live.push_back(fd);
    return fd;
  }

  void count_accept_error(int e) {
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
      ++accept_errors[1];
    else if (e == ECONNABORTED || e == ECONNRESET || e == EPROTO)
      ++accept_errors[0];
    else
      ++accept_errors[2];
  }

  /// The peer takes `n` bytes the server sent, which must continue what it has, as expected.
  void peer_write(fake_socket& s, const std::byte* data, std::size_t n) {
    check(!s.closed && !s.released, "bytes sent on a closed socket");
    check(!s.fin_sent, "bytes sent after our FIN");
    check(data != nullptr, "a send from a null pointer");
    const std::size_t at = s.received.size();
    check(n <= s.expected.size() - at, "the peer got more bytes than the server accepted to send");
    check(std::memcmp(data, s.expected.data() + at, n) == 0,
          "the peer got bytes other than those of the accepted sends, in order");
    s.received.insert(s.received.end(), data, data + n);
    s.unacked += static_cast<long>(n);
  }

  // ---- the socket calls the loop makes itself ----

  std::error_code shutdown_send(int fd) {
    fake_socket& s = socket(fd);
    check(!s.closed && !s.released, "shutdown(SHUT_WR) on a closed socket");
    check(!s.fin_sent, "our FIN sent twice");
    s.fin_sent = true;
    return {};
  }
  void set_linger_zero(int fd) {
    fake_socket& s = socket(fd);
    check(!s.closed, "SO_LINGER on a closed socket");
    s.linger_zero = true;
  }
  long unacknowledged_bytes(int fd) {
    fake_socket& s = socket(fd);
    check(!s.closed, "SIOCOUTQ on a closed socket");
    // The loop asks when a linger period begins, and when one ends (to grant another to a peer
    // still reading): either way a period from now runs, unless it resets the connection.
    s.lingering = true;
    s.linger_deadline = deadline_after(now.load(), linger_timeout);
    return s.unacked;
  }
  int close_socket(int fd) {
    fake_socket& s = socket(fd);
    check(!s.closed, "a socket closed twice");
    check(!s.io || s.released, "the socket of an announced connection closed without release()");
    s.closed = true;
    retire(fd);
    return 0; // a close that fails is test_faults.cpp's business
  }
};

inline world* current_world = nullptr;

/// Tells the fuzzer's thread when the I/O thread ends (the loop may end by itself after a
/// request_stop, with nobody waiting in stop()).
struct exit_watch {
  world* w = nullptr;
  ~exit_watch() {
    if (!w) return;
    {
      std::lock_guard lock(w->mutex);
      w->io_exited = true;
    }
    w->changed.notify_all();
  }
};
inline thread_local exit_watch io_thread_exit;

} // namespace fuzz
