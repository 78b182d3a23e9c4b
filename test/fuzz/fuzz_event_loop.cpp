// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// libFuzzer target for the connection state machine that every backend shares
// (include/iocp/detail/event_loop.hpp), driven through a real basic_iocp_server with one I/O thread.
//
// Built with IOCP_TEST_BACKEND, the loop runs on the fake backends defined here instead of io_uring
// and epoll, with fake sockets and a fake clock:
// - a completion backend with io_uring's contract: operations complete later, with any part of
//   what was started or an error; with a ring of provided buffers a receive is multishot, a send
//   may borrow the buffer the bytes arrived in, and a pause cancels the receive;
// - a readiness backend with epoll's: a send is written at once as far as the socket buffer takes
//   it, the rest when the socket turns writable, and completions found while starting operations
//   are reported at the end of the round.
// In each round (run_once) the input chooses what happens: an accept, a peer that sends,
// half-closes, resets or reads, a receive or send completing, an error, cancellations landing, the
// wake for posted work, time passing (up to the loop's next deadline), a user call from outside
// any callback, or stop() / the destructor from the fuzzer's own thread. Inside every callback the
// input may make more calls: sends (copied, string, moved vector, a span of the received bytes),
// shutdown of either side or both, disconnect, abort, pause/resume, calls by live, stale or forged
// id (carried out at once, or posted as from another thread), request_stop, stop, or a throw. When
// the input runs out, the peers finish politely, the server is stopped and time runs on until the
// loop ends. Everything runs in lock step with the fuzzer's thread, so an input is deterministic.
//
// Checked (abort() with a message), besides ASan, UBSan and LSan:
// - one on_disconnected per on_connected, no callback for a connection outside that span, ids
//   never reused, on_server_closed once and last;
// - on_received gets the peer's bytes in order, never empty, never while paused or after the
//   receive side was shut; on_peer_shutdown once, after the peer's FIN and every byte before it;
// - the peer gets exactly the bytes of the sends that were accepted, in order (a prefix while the
//   connection lives or when it ends otherwise than cleanly), nothing after our FIN, and all of them
//   before a clean close (which also needs the peer's FIN and no reset);
// - no operation is started twice, after the connection was cancelled or after it was released;
//   release comes only with nothing pending; every socket is closed once; every lent receive buffer
//   is given back once; a receive is never started after the end of stream, nor an accept after the
//   stop;
// - a send after shutdown(send)/disconnect/abort fails with connection_closing, a refused send
//   (send_queue_full) queues and sends nothing and only past a limit, queued bytes stay under both
//   limits; shutdown/disconnect fail exactly when the connection is closing; a stale or forged id
//   gets unknown_connection, a posted call server_stopping once a stop was asked for; stop() from a
//   callback returns would_deadlock;
// - every disconnect reason has a cause (an abort, a throw, a timeout that was set, an error a
//   completion gave), never a cancellation; abortive ones reset;
// - server.statistics() equals the model's counts at the end.

#include <fuzzer/FuzzedDataProvider.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "iocp/detail/linux/io_object.hpp"
#include "iocp/detail/linux/socket_ops.hpp"
#include "iocp/handler.hpp"

#include "fuzz_checks.hpp"

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

template <bool Readiness>
class fake_backend {
public:
  fake_backend(int, std::size_t receive_size, unsigned) requires Readiness : w_(*current_world),
                                                                             shared_(receive_size) {
    attach(receive_size);
  }
  fake_backend(int, std::size_t receive_size, unsigned, unsigned receive_buffers,
               bool sole_acceptor) requires(!Readiness)
      : w_(*current_world), ring_(receive_buffers) {
    check(sole_acceptor, "the fuzzed server has one I/O thread, the sole acceptor");
    for (slot& b : ring_)
      b.bytes.resize(receive_size);
    lendable_left_ = receive_buffers / 2;
    attach(receive_size);
  }
  fake_backend(const fake_backend&) = delete;
  fake_backend& operator=(const fake_backend&) = delete;
  ~fake_backend() {
    for (const slot& b : ring_)
      check(!b.lent && !b.in_use, "a lent receive buffer was never given back");
    check(lendable_left_ == ring_.size() / 2, "lent receive buffers given back more or less than once");
  }

  bool needs_receive_buffers() const noexcept { return !Readiness && ring_.empty(); }
  unsigned accepts_wanted(unsigned configured) const noexcept requires(!Readiness) {
    return w_.multishot_accept ? 1 : configured;
  }

  void start_accept(accept_context& ctx) {
    check(!w_.loop_stopping, "an accept started after the stop");
    if constexpr (Readiness) {
      ctx.pending = true;
      armed_ = &ctx;
    } else {
      if (ctx.pending) return; // a multishot accept goes on by itself
      ctx.pending = true;
      accept_cancel_[&ctx] = false;
    }
  }
  void cancel_accept(accept_context& ctx) {
    if constexpr (Readiness) {
      if (armed_ != &ctx) return;
      armed_ = nullptr;
      ready_.push_back({op::accept, nullptr, &ctx, -1, -ECANCELED});
    } else {
      if (ctx.pending) accept_cancel_[&ctx] = true;
    }
  }

  void start_receive(io_object& io) {
    fake_socket& s = sock(io);
    check(!io.receive_pending, "a receive started while one is pending");
    check(!s.cancelled, "a receive started on a closing connection");
    check(!io.receive_paused, "a receive started while receiving is paused");
    check(!s.fin_fed, "a receive started after the end of the stream");
    io.receive_pending = true;
    s.receive_cancel = false;
  }

  void pause_receive(io_object& io) {
    fake_socket& s = sock(io);
    check(io.receive_pending, "pause_receive() with no receive pending");
    check(!s.cancelled, "pause_receive() on a closing connection");
    if constexpr (Readiness) {
      io.receive_pending = false;
    } else {
      if (ring_.empty() || s.pause_cancelling) return; // single-shot: it completes, unrenewed
      s.pause_cancelling = true;
    }
  }

  void start_send(io_object& io, const std::byte* data, std::size_t size) {
    fake_socket& s = sock(io);
    check_can_send(io, s, size);
    io.send_pending = true;
    if constexpr (Readiness) {
      if (int r = write_now(s, data, size); r != 0) {
        ready_.push_back({op::send, &io, nullptr, s.fd, r});
      } else {
        s.waiting = true;
        s.send_data = data;
        s.send_size = size;
      }
    } else {
      s.send_data = data; // read when the send completes, as the kernel may
      s.send_size = std::min<std::size_t>(size, 1u << 30);
      s.send_cancel = false;
    }
  }

  int send_now(io_object& io, const std::byte* data, std::size_t size) requires Readiness {
    fake_socket& s = sock(io);
    check_can_send(io, s, size);
    int n = write_now(s, data, size);
    if (n > 0) w_.bytes_sent += static_cast<std::uint64_t>(n);
    return n;
  }
  void report_sent_later(io_object& io, int bytes) requires Readiness {
    fake_socket& s = sock(io);
    check(bytes > 0 && !io.send_pending, "report_sent_later() without bytes, or with a send pending");
    io.send_pending = true;
    ready_.push_back({op::send_direct, &io, nullptr, s.fd, bytes});
  }

  void set_lend_limit(std::size_t n) noexcept requires(!Readiness) { lend_limit_ = n; }
  bool lend(const std::byte* data, std::size_t size, std::uint16_t& id) noexcept requires(!Readiness) {
    const auto offset =
        reinterpret_cast<std::uintptr_t>(data) - reinterpret_cast<std::uintptr_t>(current_.data);
    if (offset >= current_.size || size > current_.size - offset) return false;
    current_.size = 0;
    current_.lent = true;
    --lendable_left_;
    ring_[current_.id].lent = true;
    id = current_.id;
    return true;
  }
  void give_back(std::uint16_t id) noexcept requires(!Readiness) {
    check(id < ring_.size() && ring_[id].lent, "a receive buffer given back that was not lent");
    ring_[id].lent = false;
    ++lendable_left_;
    scribble(ring_[id].bytes); // a send still reading it would now send other bytes
  }

  void cancel(io_object& io) {
    fake_socket& s = sock(io);
    check(!s.cancelled, "a connection cancelled twice");
    s.cancelled = true;
    if constexpr (Readiness) {
      if (io.receive_pending) ready_.push_back({op::recv, &io, nullptr, s.fd, -ECANCELED});
      if (s.waiting) {
        s.waiting = false;
        ready_.push_back({op::send, &io, nullptr, s.fd, -ECANCELED});
      }
    } else {
      if (io.receive_pending) s.receive_cancel = true;
      if (io.send_pending) s.send_cancel = true;
    }
  }

  int release(io_object& io) noexcept {
    fake_socket& s = sock(io);
    check(s.cancelled, "release() of a connection that was never cancelled");
    check(!io.receive_pending && !io.send_pending, "release() with an operation pending");
    for (const ready_completion& r : ready_)
      check(r.fd != s.fd, "release() with a completion still to be reported");
    s.released = true;
    s.closed = true;
    w_.retire(s.fd);
    io.fd = -1;
    return 0;
  }

  void wake() noexcept {
    {
      std::lock_guard lock(w_.mutex);
      w_.wake_pending = true;
    }
    w_.changed.notify_all();
  }

  std::error_code shutdown_send(int fd) { return w_.shutdown_send(fd); }
  void set_linger_zero(int fd) noexcept { w_.set_linger_zero(fd); }
  long unacknowledged_bytes(int fd) noexcept { return w_.unacknowledged_bytes(fd); }
  int close_socket(int fd) noexcept { return w_.close_socket(fd); }

  template <class Sink>
  void run_once(long long timeout_ns, Sink& sink) {
    if (!started_) {
      started_ = true;
      w_.driver->attach(&sink.server()); // no waiting for the constructor to return
    }
    check(timeout_ns >= -1, "a negative wait other than -1");
    check_deadlines(timeout_ns);
    check(++w_.rounds < 2'000'000, "the loop went round too often");
    sink.begin_round(); // the wait returns: what follows comes in at the fake clock's time
    if (w_.in.remaining_bytes() == 0)
      drain(timeout_ns, sink);
    else
      event(timeout_ns, sink);
    sink.begin_round(); // time may have passed (a round of waiting only): the timers see it
    if constexpr (Readiness) deliver_ready(sink);
  }

private:
  enum class op : std::uint8_t { accept, recv, send, send_direct };
  struct ready_completion {
    op what;
    io_object* io;
    accept_context* ctx;
    int fd;
    int result;
  };
  struct slot {
    std::vector<std::byte> bytes;
    bool in_use = false; // given to the loop by the running receive completion
    bool lent = false;
  }; /// Between two rounds the loop has run its timers: whatever was due is done, and it waits no
  /// longer than until the next deadline it has.
  void check_deadlines(long long timeout_ns) {
    const std::int64_t now = w_.now.load();
    auto waits_at_most = [&](std::int64_t deadline) {
      return timeout_ns >= 0 && timeout_ns <= deadline - now;
    };
    // A connection's idle check is due at most the limit after its last activity (so after now).
    const bool idle_checked = w_.idle_limit_ns && w_.idle_limit_ns < never - now - 1;
    const bool stop_due = w_.loop_stopping && w_.stop_deadline <= now;
    if (w_.loop_stopping && !stop_due && w_.stop_deadline != never)
      check(waits_at_most(w_.stop_deadline), "the loop waits past the stop deadline");
    for (int fd : w_.live) {
      const fake_socket& s = w_.socket(fd);
      if (!s.io || s.cancelled) continue;
      check(!stop_due, "the stop deadline passed and a connection is still open");
      if (idle_checked)
        check(waits_at_most(now + w_.idle_limit_ns + 1),
              "with an idle timeout, the loop waits past a connection's idle check");
      if (!s.lingering) continue;
      check(s.linger_deadline > now, "a linger period ran out and the connection is still open");
      if (s.linger_deadline != never)
        check(waits_at_most(s.linger_deadline), "the loop waits past a linger deadline");
    }
  }

  void attach(std::size_t receive_size) {
    w_.receive_size = receive_size;
    io_thread_exit.w = &w_;
  }

  static void scribble(std::span<std::byte> bytes) { std::fill(bytes.begin(), bytes.end(), std::byte{0xA5}); }

  fake_socket& sock(io_object& io) {
    check(io.fd >= 0, "an operation on a released connection");
    fake_socket& s = w_.socket(io.fd);
    check(!s.closed && !s.released, "an operation on a closed socket");
    check(s.io == nullptr || s.io == &io, "one socket, two connections");
    s.io = &io;
    return s;
  }

  void check_can_send(io_object& io, fake_socket& s, std::size_t size) {
    check(!io.send_pending, "a send started while one is pending");
    check(!s.cancelled, "a send started on a closing connection");
    check(!s.fin_sent, "a send started after our FIN");
    check(size > 0, "an empty send");
  }

  /// Readiness: what the socket buffer takes of a send, at once.
  int write_now(fake_socket& s, const std::byte* data, std::size_t size) {
    if (s.peer_reset) {
      s.errors.insert(EPIPE);
      return -EPIPE;
    }
    std::size_t n = std::min(size, s.window);
    s.window -= n;
    if (n) w_.peer_write(s, data, n);
    return static_cast<int>(n);
  }

  int pick_error(std::initializer_list<int> errors) {
    return *(errors.begin() + w_.in.ConsumeIntegralInRange<std::size_t>(0, errors.size() - 1));
  }

  // ---- what the input makes happen ----

  template <class Sink>
  void event(long long timeout_ns, Sink& sink) {
    switch (w_.in.ConsumeIntegralInRange<int>(0, 18)) {
    case 0: accept_event(sink); break;
    case 1:
    case 2:
      if (fake_socket* s = w_.pick_live(); s && !s->peer_fin && !s->peer_reset) {
        std::uint64_t n = w_.in.ConsumeIntegralInRange<std::uint64_t>(1, w_.in.ConsumeBool() ? 64 : 4096);
        n = std::min(n, w_.peer_left);
        w_.peer_left -= n;
        s->peer_sent += n;
      }
      break;
    case 3:
      if (fake_socket* s = w_.pick_live()) s->peer_fin = true;
      break;
    case 4:
      if (fake_socket* s = w_.pick_live()) s->peer_reset = true;
      break;
    case 5:
    case 6:
    case 7:
      if (fake_socket* s = w_.pick_live()) receive_event(*s, false, sink);
      break;
    case 8:
    case 9:
    case 10:
      if (fake_socket* s = w_.pick_live()) send_event(*s, false, sink);
      break;
    case 11:
      if (fake_socket* s = w_.pick_live()) {
        if (w_.in.ConsumeBool())
          receive_event(*s, true, sink);
        else
          send_event(*s, true, sink);
      }
      break;
    case 12: cancellation_event(sink); break;
    case 13:
      if (wake_pending()) deliver_wake(sink);
      break;
    case 14:
      if (w_.in.ConsumeBool())
        advance(w_.in.ConsumeIntegralInRange<std::int64_t>(1, 2'000'000'000));
      else if (timeout_ns >= 0)
        advance(timeout_ns + w_.in.ConsumeIntegralInRange<std::int64_t>(0, 1));
      break;
    case 15:
    case 16: w_.driver->outside_action(); break;
    case 17:
      if (fake_socket* s = w_.pick_live()) { // the peer reads: its window opens, acknowledgements come
        std::size_t n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 1 << 20);
        s->unacked = std::max<long>(0, s->unacked - static_cast<long>(n));
        s->window += n;
      }
      break;
    case 18:
      if (!w_.main_called && w_.in.ConsumeIntegralInRange<int>(0, 3) == 0) {
        main_call what = w_.in.ConsumeBool() ? main_call::stop : main_call::destroy;
        call_main(what, std::chrono::milliseconds(w_.in.ConsumeIntegralInRange<int>(0, 3000)), sink);
      }
      break;
    }
  }

  void advance(std::int64_t ns) {
    // Bounded, so that a deadline of "for ever" cannot overflow the clock.
    ns = std::clamp<std::int64_t>(ns, 0, std::int64_t{1} << 50);
    if (w_.now.load() < (std::int64_t{1} << 60)) w_.now.fetch_add(ns);
  }

  bool wake_pending() {
    std::lock_guard lock(w_.mutex);
    return w_.wake_pending;
  }

  template <class Sink>
  void deliver_wake(Sink& sink) {
    {
      std::lock_guard lock(w_.mutex);
      w_.wake_pending = false;
    }
    w_.driver->before_wake();
    sink.wake_completed();
    w_.driver->after_wake();
  }

  /// Tells the fuzzer's thread to call stop(timeout) or destroy the server, and waits until its
  /// stop command is posted, so that it lands at this point of the input and nowhere else.
  template <class Sink>
  void call_main(main_call what, std::chrono::milliseconds timeout, Sink& sink) {
    // With the loop's queue empty, the post wakes it: that is what this thread waits for.
    if (wake_pending()) deliver_wake(sink);
    w_.driver->main_stop_posting(what == main_call::destroy ? std::chrono::milliseconds(0) : timeout);
    std::unique_lock lock(w_.mutex);
    w_.call = what;
    w_.call_timeout = timeout;
    w_.main_called = true;
    w_.changed.notify_all();
    w_.changed.wait(lock, [&] { return w_.wake_pending; });
  }

  template <class Sink>
  void accept_event(Sink& sink) {
    accept_context* ctx = nullptr;
    bool cancelling = false;
    if constexpr (Readiness) {
      ctx = armed_;
    } else {
      std::vector<accept_context*> pending;
      for (auto& [c, cancel] : accept_cancel_)
        if (c->pending) pending.push_back(c);
      if (!pending.empty()) ctx = pending[w_.in.ConsumeIntegralInRange<std::size_t>(0, pending.size() - 1)];
      if (ctx) cancelling = accept_cancel_[ctx];
    }
    if (!ctx) return;
    int result;
    int what = w_.in.ConsumeIntegralInRange<int>(0, 17);
    if (cancelling && what % 2 == 0) {
      result = -ECANCELED;
    } else if (what < 9) {
      result = w_.new_socket();
      auto& a = reinterpret_cast<sockaddr_in&>(ctx->address);
      ctx->address = {};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<std::uint16_t>(1024 + result % 60000));
      a.sin_addr.s_addr = htonl(0x7F000001);
    } else {
      static constexpr int errors[] = {EMFILE,     ENFILE, ENOBUFS, ENOMEM,   ECONNABORTED,
                                       ECONNRESET, EPROTO, EPERM,   ETIMEDOUT};
      result = -errors[what - 9];
      w_.count_accept_error(-result);
    }
    if constexpr (Readiness) {
      armed_ = nullptr;
      ctx->pending = false;
    } else {
      ctx->pending = w_.multishot_accept && result >= 0; // a multishot accept goes on
      if (!ctx->pending) accept_cancel_[ctx] = false;
    }
    sink.accept_completed(*ctx, result);
  }

  template <class Sink>
  void receive_event(fake_socket& s, bool error, Sink& sink) {
    io_object* io = s.io;
    if (!io || !io->receive_pending) return;
    if (Readiness && s.cancelled) return; // no longer watched
    int result;
    if (error) {
      result = -pick_error({ETIMEDOUT, ECONNRESET, EHOSTUNREACH});
    } else if (s.peer_reset) {
      result = -ECONNRESET;
    } else if (s.fed < s.peer_sent) {
      std::uint64_t most = std::min<std::uint64_t>(s.peer_sent - s.fed, w_.receive_size);
      result =
          static_cast<int>(w_.in.ConsumeBool() ? most : w_.in.ConsumeIntegralInRange<std::uint64_t>(1, most));
    } else if (s.peer_fin) {
      result = 0;
    } else {
      return; // nothing to read
    }
    bool more = !Readiness && !ring_.empty() && result > 0 && w_.in.ConsumeIntegralInRange<int>(0, 7) != 0;
    deliver_receive(s, result, more, sink);
  }

  template <class Sink>
  void deliver_receive(fake_socket& s, int result, bool more, Sink& sink) {
    io_object& io = *s.io;
    std::byte* data = nullptr;
    int used = -1;
    if constexpr (Readiness) {
      data = shared_.data();
      io.receive_pending = false;
    } else {
      if (result > 0) {
        if (!ring_.empty()) {
          for (std::size_t i = 0; i < ring_.size() && used < 0; ++i)
            if (!ring_[i].in_use && !ring_[i].lent) used = static_cast<int>(i);
          if (used < 0) return; // the ring is empty: the real backend receives again, unseen
          data = ring_[static_cast<std::size_t>(used)].bytes.data();
        } else {
          data = io.receive_buffer;
          check(data != nullptr, "no receive buffer for a backend that needs one");
        }
      }
      if (!more) {
        // As io_uring_backend::receive_ended(): the end of a receive that a pause cancelled is no
        // error; if receiving resumed meanwhile, the receive is armed again and the loop never
        // hears of it.
        if (s.pause_cancelling) {
          s.pause_cancelling = false;
          if (result == -ECANCELED && !io.receive_paused && !s.cancelled) return;
        }
        io.receive_pending = false;
        s.receive_cancel = false;
      }
    }
    if (result > 0) {
      for (int i = 0; i < result; ++i)
        data[i] = peer_byte(s.fd, s.fed + static_cast<std::uint64_t>(i));
      s.fed += static_cast<std::uint64_t>(result);
      if (!s.cancelled) w_.bytes_received += static_cast<std::uint64_t>(result);
    } else if (result == 0) {
      s.fin_fed = true;
    } else if (result != -ECANCELED) {
      s.errors.insert(-result);
    }
    if constexpr (!Readiness) {
      if (used >= 0) {
        ring_[static_cast<std::size_t>(used)].in_use = true;
        current_ = {data, lendable_left_ ? (std::min)(static_cast<std::size_t>(result), lend_limit_) : 0,
                    static_cast<std::uint16_t>(used), false};
      }
    }
    sink.receive_completed(*this, io, result, data); // may free the connection
    if constexpr (Readiness) {
      scribble(shared_);
    } else if (used >= 0) {
      slot& b = ring_[static_cast<std::size_t>(used)];
      b.in_use = false;
      current_ = {};
      if (!b.lent) scribble(b.bytes);
    }
  }

  template <class Sink>
  void send_event(fake_socket& s, bool error, Sink& sink) {
    io_object* io = s.io;
    if (!io) return;
    if constexpr (Readiness) {
      if (!error) s.window += w_.in.ConsumeIntegralInRange<std::size_t>(1, 1 << 16);
      if (!s.waiting || s.cancelled) return;
      int r = error ? -pick_error({EPIPE, ECONNRESET, ETIMEDOUT}) : write_now(s, s.send_data, s.send_size);
      if (r == 0) return;
      if (r < 0) s.errors.insert(-r);
      s.waiting = false;
      io->send_pending = false;
      if (r > 0) w_.bytes_sent += static_cast<std::uint64_t>(r);
      sink.send_completed(*this, *io, r);
    } else {
      if (!io->send_pending) return;
      int result;
      if (error)
        result = -pick_error({EPIPE, ECONNRESET, ETIMEDOUT});
      else if (s.send_cancel && w_.in.ConsumeBool())
        result = -ECANCELED;
      else if (s.peer_reset)
        result = -(w_.in.ConsumeBool() ? EPIPE : ECONNRESET);
      else if (w_.in.ConsumeBool())
        result = static_cast<int>(s.send_size);
      else
        result = static_cast<int>(w_.in.ConsumeIntegralInRange<std::size_t>(1, s.send_size));
      complete_send(s, result, sink);
    }
  }

  template <class Sink>
  void complete_send(fake_socket& s, int result, Sink& sink) requires(!Readiness) {
    io_object& io = *s.io;
    if (result > 0) w_.peer_write(s, s.send_data, static_cast<std::size_t>(result));
    if (result < 0 && result != -ECANCELED) s.errors.insert(-result);
    if (result > 0 && !s.cancelled) w_.bytes_sent += static_cast<std::uint64_t>(result);
    io.send_pending = false;
    s.send_cancel = false;
    s.send_data = nullptr;
    s.send_size = 0;
    sink.send_completed(*this, io, result);
  }

  /// Completion: one cancellation lands (an accept's, a receive's, a pause's or a send's).
  template <class Sink>
  void cancellation_event(Sink& sink) {
    if constexpr (!Readiness) {
      std::vector<accept_context*> accepts;
      for (auto& [c, cancel] : accept_cancel_)
        if (c->pending && cancel) accepts.push_back(c);
      std::vector<int> fds;
      for (int fd : w_.live) {
        fake_socket& s = w_.socket(fd);
        if (s.io && ((s.io->receive_pending && (s.receive_cancel || s.pause_cancelling)) ||
                     (s.io->send_pending && s.send_cancel)))
          fds.push_back(fd);
      }
      std::size_t total = accepts.size() + fds.size();
      if (total == 0) return;
      std::size_t k = w_.in.ConsumeIntegralInRange<std::size_t>(0, total - 1);
      if (k < accepts.size())
        land_accept_cancel(*accepts[k], sink);
      else
        land_cancel(w_.socket(fds[k - accepts.size()]), sink);
    }
  }

  template <class Sink>
  void land_accept_cancel(accept_context& ctx, Sink& sink) {
    ctx.pending = false;
    accept_cancel_[&ctx] = false;
    sink.accept_completed(ctx, -ECANCELED);
  }

  /// Completion: the receive's cancel if one is on its way, else the send's.
  template <class Sink>
  void land_cancel(fake_socket& s, Sink& sink) {
    if (s.io->receive_pending && (s.receive_cancel || s.pause_cancelling))
      deliver_receive(s, -ECANCELED, false, sink);
    else if constexpr (!Readiness)
      complete_send(s, -ECANCELED, sink);
  }

  template <class Sink>
  void deliver_ready(Sink& sink) {
    std::vector<ready_completion> batch;
    batch.swap(ready_);
    for (const ready_completion& r : batch) {
      switch (r.what) {
      case op::accept:
        r.ctx->pending = false;
        sink.accept_completed(*r.ctx, r.result);
        break;
      case op::recv:
        r.io->receive_pending = false;
        sink.receive_completed(*this, *r.io, r.result, nullptr);
        break;
      case op::send:
        if (r.result > 0 && !w_.socket(r.fd).cancelled) w_.bytes_sent += static_cast<std::uint64_t>(r.result);
        r.io->send_pending = false;
        sink.send_completed(*this, *r.io, r.result);
        break;
      case op::send_direct:
        r.io->send_pending = false;
        sink.send_completed_at_once(*this, *r.io, r.result);
        break;
      }
    }
  }

  /// The input has run out: stop the server, let every peer finish (FIN, read everything), land
  /// every cancellation, and let time run to each deadline until the loop ends.
  template <class Sink>
  void drain(long long timeout_ns, Sink& sink) {
    check(++w_.drain_rounds < 1'000'000, "the server does not finish after the input ends");
    if (!w_.main_called) {
      call_main(main_call::stop, std::chrono::milliseconds(w_.drain_rounds % 2 ? 2000 : 0), sink);
      return;
    }
    if (wake_pending()) {
      deliver_wake(sink);
      return;
    }
    if constexpr (Readiness) {
      if (!ready_.empty()) return; // delivered at the end of this round
      if (armed_ && w_.loop_stopping) fail("the stop left an accept armed");
    } else {
      for (auto& [c, cancel] : accept_cancel_)
        if (c->pending && cancel) {
          land_accept_cancel(*c, sink);
          return;
        }
      for (int fd : w_.live) {
        fake_socket& s = w_.socket(fd);
        if (s.io && ((s.io->receive_pending && (s.receive_cancel || s.pause_cancelling)) ||
                     (s.io->send_pending && s.send_cancel))) {
          land_cancel(s, sink);
          return;
        }
      }
    }
    for (int fd : w_.live) {
      fake_socket& s = w_.socket(fd);
      if (!s.peer_fin && !s.peer_reset) s.peer_fin = true;
      s.window = std::size_t{1} << 31;
      s.unacked = 0;
      if (!s.io) continue;
      if constexpr (Readiness) {
        if (s.waiting && !s.cancelled) {
          send_event(s, false, sink);
          return;
        }
      } else {
        if (s.io->send_pending) {
          complete_send(s, s.peer_reset ? -EPIPE : static_cast<int>(s.send_size), sink);
          return;
        }
      }
      if (s.io->receive_pending && !(Readiness && s.cancelled)) {
        int result = s.peer_reset ? -ECONNRESET
                     : s.fed < s.peer_sent
                         ? static_cast<int>(std::min<std::uint64_t>(s.peer_sent - s.fed, w_.receive_size))
                         : 0;
        deliver_receive(s, result, false, sink);
        return;
      }
    }
    if (timeout_ns >= 0) {
      advance(timeout_ns);
      return;
    }
    fail("the loop would wait for ever, with nothing left that could wake it");
  }

  world& w_;
  bool started_ = false;
  // Readiness.
  std::vector<std::byte> shared_; // the thread's one receive buffer
  accept_context* armed_ = nullptr;
  std::vector<ready_completion> ready_;
  // Completion.
  std::map<accept_context*, bool> accept_cancel_; // every context started; whether a cancel is due
  std::vector<slot> ring_;                        // provided buffers (none: one per connection)
  std::size_t lendable_left_ = 0;
  std::size_t lend_limit_ = 0; // the loop's: at most this much of a buffer is lent
  struct {
    std::byte* data = nullptr;
    std::size_t size = 0; // what may be lent: 0 outside on_received, once lent, or with none left
    std::uint16_t id = 0;
    bool lent = false;
  } current_;
};

/// Stands in for the platform's backends, sockets and clock (see detail/event_loop.hpp).
struct test_backends {
  using completion_backend = fake_backend<false>;
  using readiness_backend = fake_backend<true>;
  static std::int64_t now_ns() noexcept { return current_world->now.load(); }
};

} // namespace fuzz

#define IOCP_TEST_BACKEND ::fuzz::test_backends
#include "iocp/iocp.hpp"

namespace fuzz {

using iocp::connection_id;
using iocp::errc;
using iocp::make_error_code;

struct injected_exception {};

/// Makes a call on the I/O thread take the path of a call from any other thread (posted, carried
/// out at the loop's next wake): the loop tells the two apart only by this thread-local.
struct as_another_thread {
  const void* saved = iocp::detail::current_event_loop;
  as_another_thread() { iocp::detail::current_event_loop = nullptr; }
  ~as_another_thread() { iocp::detail::current_event_loop = saved; }
  as_another_thread(const as_another_thread&) = delete;
  as_another_thread& operator=(const as_another_thread&) = delete;
};

constexpr std::uint64_t state_canary = 0x5EED'C0DE'F00D'BEEFull;

std::chrono::milliseconds pick_duration(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
  case 0: return std::chrono::milliseconds(0);
  case 1:
  case 2:
  case 3: return std::chrono::milliseconds(in.ConsumeIntegralInRange<int>(1, 50));
  case 4:
  case 5: return std::chrono::milliseconds(in.ConsumeIntegralInRange<int>(51, 5000));
  case 6: return std::chrono::milliseconds(in.ConsumeIntegralInRange<std::int64_t>(5001, 3'600'000'000));
  default: return std::chrono::milliseconds::max(); // "for ever", as a user may write it
  }
}

enum class close_kind { graceful, peer_reset, aborted, handler_exception, idle, linger, stop, other, count };

/// What on_disconnected's reason counts as in statistics() (the README's table).
close_kind kind_of(std::error_code r) {
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

  std::size_t pick_size() {
    std::size_t n;
    switch (w_.in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: n = 0; break;
    case 1:
    case 2:
    case 3:
    case 4: n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 64); break;
    case 5: n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 2048); break;
    case 6: n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 70'000); break;
    default: n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 300'000); break;
    }
    n = std::min(n, w_.out_left);
    w_.out_left -= n;
    return n;
  }
  /// Bytes no other send carries (a running 64-bit counter, mixed): sends out of order, repeated
  /// or mixed up between connections do not compare equal.
  std::vector<std::byte> out_bytes(std::size_t n) {
    std::vector<std::byte> v(n);
    for (std::size_t at = 0; at < n; at += 8) {
      std::uint64_t x = (w_.out_seed += 0x9E3779B97F4A7C15ull);
      x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
      x ^= x >> 27;
      std::memcpy(v.data() + at, &x, std::min<std::size_t>(8, n - at));
    }
    return v;
  }

  /// A send whose result the caller sees: `bytes` are what it carries.
  template <class Call>
  void send_checked(conn_type& c, model& m, std::span<const std::byte> bytes, Call&& call) {
    fake_socket& s = sock(m);
    const bool shut = s.cancelled || m.write_shut;
    const std::size_t queued_before = c.queued_bytes();
    const std::size_t reserved_before = server->send_queue_reserved();
    // The bytes are expected before the call: a readiness backend writes them during it.
    const std::size_t start = s.expected.size();
    s.expected.insert(s.expected.end(), bytes.begin(), bytes.end());
    const std::size_t end = s.expected.size();
    const std::error_code r = call();
    if (!r) {
      check(!shut, "a send succeeded after the send side was shut");
      check(bytes.size() <= options_.max_send_queue_per_connection - queued_before,
            "a send passed max_send_queue_per_connection");
      if (end > start) s.ends.insert(std::lower_bound(s.ends.begin(), s.ends.end(), end), end);
      s.certain = std::max(s.certain, end);
    } else {
      check(s.expected.size() == end, "the model lost track of a refused send");
      check(s.received.size() <= start, "a refused send put bytes on the wire");
      s.expected.resize(start);
      if (r == errc::connection_closing) {
        check(shut || m.maybe_write_shut || s.fin_fed,
              "connection_closing on a connection whose send side is open");
      } else if (r == errc::send_queue_full) {
        check(!shut, "send_queue_full where connection_closing was due");
        check(bytes.size() > options_.max_send_queue_per_connection - queued_before ||
                  reserved_before + bytes.size() + 128 * 1024 > options_.max_send_queue_total,
              "send_queue_full below both limits");
      } else {
        fail("send() failed with an unexpected error");
      }
    }
    check(server->send_queue_reserved() <= options_.max_send_queue_total + cap_slack(),
          "max_send_queue_total passed");
    if (!m.disconnected)
      check(conn_of(m).queued_bytes() <= options_.max_send_queue_per_connection,
            "max_send_queue_per_connection passed");
  }

  template <class Call>
  void shutdown_checked(model& m, iocp::shutdown_type how, Call&& call) {
    const bool closing = sock(m).cancelled;
    const std::error_code r = call();
    check(r == (closing ? make_error_code(errc::connection_closing) : std::error_code{}),
          "shutdown(): connection_closing exactly when the connection is closing");
    if (!r) {
      if (how != iocp::shutdown_type::receive) m.write_shut = true;
      if (how != iocp::shutdown_type::send) m.read_shut = true;
    }
  }
  template <class Call>
  void disconnect_checked(model& m, Call&& call) {
    const bool closing = sock(m).cancelled;
    const std::error_code r = call();
    check(r == (closing ? make_error_code(errc::connection_closing) : std::error_code{}),
          "disconnect(): connection_closing exactly when the connection is closing");
    if (!r) m.write_shut = m.read_shut = m.disconnect = true;
  }
  template <class Call>
  void abort_checked(model& m, Call&& call) {
    // Recorded first: outside a callback the connection may be gone (on_disconnected run) on return.
    if (!sock(m).cancelled) m.expected_reason = make_error_code(std::errc::connection_aborted);
    m.aborted = true;
    call();
    check(sock(m).cancelled, "abort() left the connection open");
  }

  /// A stop command with this timeout is (about to be) posted.
  void stop_posted(std::chrono::milliseconds timeout) {
    stop_requested_ = true;
    batch_.push_back({posted::stop, {}, {}, deadline_after(w_.now.load(), timeout)});
  }
  void request_stop() {
    if (w_.in.ConsumeBool()) {
      server->request_stop();
      stop_posted(options_.stop_timeout);
    } else {
      const std::chrono::milliseconds timeout = pick_duration(w_.in);
      server->request_stop(timeout);
      stop_posted(timeout);
    }
  }
  void stop_from_io_thread() {
    const std::chrono::milliseconds timeout = pick_duration(w_.in);
    std::error_code r = server->stop(timeout);
    check(r == errc::would_deadlock, "stop() on an I/O thread did not return would_deadlock");
    stop_posted(timeout);
  }

  /// A call by id, as any thread may make it; `self` is the connection whose callback runs, if any.
  void by_id(const conn_type* self) {
    connection_id id;
    if (ids_.empty() || w_.in.ConsumeIntegralInRange<int>(0, 5) == 0)
      id = connection_id(w_.in.ConsumeIntegralInRange<std::uint32_t>(0, 7),
                         w_.in.ConsumeIntegralInRange<std::uint32_t>(0, 3)); // forged: may match one
    else
      id = ids_[w_.in.ConsumeIntegralInRange<std::size_t>(0, ids_.size() - 1)];
    auto it = models_.find(id);
    model* m = it == models_.end() || it->second.disconnected ? nullptr : &it->second;
    const bool posted_path = w_.in.ConsumeBool();
    const int what = w_.in.ConsumeIntegralInRange<int>(0, 8);
    const bool is_send = what <= 1;
    std::vector<std::byte> bytes;
    if (is_send) bytes = out_bytes(pick_size());
    std::span<const std::byte> span(bytes);

    auto call = [&]() -> std::error_code {
      switch (what) {
      case 0: return server->send(id, span);
      case 1: return server->send(id, std::vector<std::byte>(bytes));
      case 2: return server->shutdown(id, iocp::shutdown_type::send);
      case 3: return server->shutdown(id, iocp::shutdown_type::receive);
      case 4: return server->shutdown(id, iocp::shutdown_type::both);
      case 5: return server->disconnect(id);
      case 6: return server->abort(id);
      case 7: return server->pause_receiving(id);
      default: return server->resume_receiving(id);
      }
    };

    if (!m) {
      std::error_code r;
      if (posted_path) {
        as_another_thread other;
        r = call();
      } else {
        r = call();
      }
      check(r == errc::unknown_connection, "a call by a stale or forged id did not get unknown_connection");
      return;
    }
    if (posted_path) {
      if (is_send && batch_has_send_) return; // one posted send per wake, so a refusal names it
      const std::size_t reserved_before = server->send_queue_reserved();
      std::error_code r;
      {
        as_another_thread other;
        r = call();
      }
      if (stop_requested_) {
        check(r == errc::server_stopping, "a posted call after a stop did not get server_stopping");
        return;
      }
      // A posted send reserves the inbox chunk its record goes into (64 KiB, or its own size), or
      // a moved vector's memory and a block's overhead, from the total at once; and one that could
      // never fit one connection's queue is refused at once.
      if (is_send && r == errc::send_queue_full) {
        check(bytes.size() > options_.max_send_queue_per_connection ||
                  reserved_before + bytes.size() + inbox_chunk + 512 > options_.max_send_queue_total,
              "a posted send was refused within the limits");
        return;
      }
      check(!r, "a posted call by a live id failed");
      static constexpr typename posted::kind kinds[] = {
          posted::send,          posted::send,       posted::shutdown_send, posted::shutdown_receive,
          posted::shutdown_both, posted::disconnect, posted::abort,         posted::other,
          posted::other};
      batch_.push_back({kinds[what], id, std::move(bytes)});
      if (is_send) batch_has_send_ = true;
      return;
    }
    // On the owning thread the call is carried out at once, as the connection's own would be.
    conn_type& c = conn_of(*m);
    // While posted work is carried out, only the target's own callbacks may send to it: the model
    // placed the posted send's bytes at the start of the wake.
    if (is_send && in_wake_ && wake_send_ && wake_send_->fd == m->fd && self != &c) return;
    switch (what) {
    case 0:
    case 1: send_checked(c, *m, bytes, call); break;
    case 2: shutdown_checked(*m, iocp::shutdown_type::send, call); break;
    case 3: shutdown_checked(*m, iocp::shutdown_type::receive, call); break;
    case 4: shutdown_checked(*m, iocp::shutdown_type::both, call); break;
    case 5: disconnect_checked(*m, call); break;
    case 6: abort_checked(*m, call); break;
    case 7: {
      const bool closing = sock(*m).cancelled;
      check(!call(), "pause_receiving() by a live id failed");
      if (!closing) check(c.receiving_paused(), "pause_receiving() did not pause");
      break;
    }
    default:
      check(!call(), "resume_receiving() by a live id failed");
      check(!c.receiving_paused(), "resume_receiving() did not resume");
      break;
    }
  }

  /// The calls the input chooses, inside a callback of `c` (`data`: what on_received was given).
  void act(conn_type& c, model& m, std::span<const std::byte> data, bool may_throw) {
    if (depth_ >= 3) return;
    ++depth_;
    struct leave {
      int& depth;
      ~leave() { --depth; }
    } guard{depth_};
    const unsigned n = w_.in.ConsumeIntegralInRange<unsigned>(0, 3);
    for (unsigned i = 0; i < n; ++i) {
      switch (w_.in.ConsumeIntegralInRange<int>(0, 19)) {
      case 0:
      case 1: {
        std::vector<std::byte> bytes = out_bytes(pick_size());
        send_checked(c, m, bytes, [&] { return c.send(std::span<const std::byte>(bytes)); });
        break;
      }
      case 2: {
        std::vector<std::byte> bytes = out_bytes(pick_size());
        std::vector<std::byte> moved = bytes;
        send_checked(c, m, bytes, [&] { return c.send(std::move(moved)); });
        break;
      }
      case 3: {
        std::vector<std::byte> bytes = out_bytes(pick_size());
        std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        send_checked(c, m, bytes, [&] { return c.send(text); });
        break;
      }
      case 4:
      case 5:
        if (!data.empty()) { // the bytes as they lie in the receive buffer (io_uring may lend it)
          std::size_t at = w_.in.ConsumeIntegralInRange<std::size_t>(0, data.size() - 1);
          std::span<const std::byte> part =
              data.subspan(at, w_.in.ConsumeIntegralInRange<std::size_t>(1, data.size() - at));
          std::vector<std::byte> bytes(part.begin(), part.end());
          send_checked(c, m, bytes, [&] { return c.send(part); });
        }
        break;
      case 6:
        shutdown_checked(m, iocp::shutdown_type::send, [&] { return c.shutdown(iocp::shutdown_type::send); });
        break;
      case 7:
        shutdown_checked(m, iocp::shutdown_type::receive,
                         [&] { return c.shutdown(iocp::shutdown_type::receive); });
        break;
      case 8:
        shutdown_checked(m, iocp::shutdown_type::both, [&] { return c.shutdown(iocp::shutdown_type::both); });
        break;
      case 9: disconnect_checked(m, [&] { return c.disconnect(); }); break;
      case 10: abort_checked(m, [&] { c.abort(); }); break;
      case 11: {
        const bool closing = sock(m).cancelled;
        c.pause_receiving();
        if (!closing) check(c.receiving_paused(), "pause_receiving() did not pause");
        break;
      }
      case 12:
        c.resume_receiving();
        check(!c.receiving_paused(), "resume_receiving() did not resume");
        break;
      case 13:
      case 14:
      case 15: by_id(&c); break;
      case 16: request_stop(); break;
      case 17: stop_from_io_thread(); break;
      case 18:
        if (may_throw) {
          if (!sock(m).cancelled) m.expected_reason = make_error_code(errc::handler_exception);
          m.threw = true;
          ++throws_;
          throw injected_exception{};
        }
        break;
      default:
        check(&c.server() == server, "conn.server() is another server");
        check(c.queued_bytes() <= options_.max_send_queue_per_connection, "queued_bytes() past the limit");
        break;
      }
    }
  }

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

/// Every callback, when Full; without it, the defaults (no on_sent, no water marks, and the
/// peer's FIN finishes our side) and the loop's paths for a handler that lacks them.
template <bool Full>
struct fuzz_handler {
  driver_base* d;

  struct connection_state {
    std::uint64_t canary = state_canary;
  };

  template <class C>
  static auto& drv(driver_base* d) {
    return static_cast<driver<typename std::remove_cvref_t<C>::server_type>&>(*d);
  }

  void on_connected(auto& c, const iocp::connection_info& info) { drv<decltype(c)>(d).connected(c, info); }
  void on_received(auto& c, std::span<const std::byte> data) { drv<decltype(c)>(d).received(c, data); }
  void on_sent(auto& c, std::size_t n) requires Full { drv<decltype(c)>(d).sent(c, n); }
  void on_send_queue_high(auto& c, std::size_t queued) requires Full {
    drv<decltype(c)>(d).queue_high(c, queued);
  }
  void on_send_queue_low(auto& c, std::size_t queued) requires Full {
    drv<decltype(c)>(d).queue_low(c, queued);
  }
  void on_peer_shutdown(auto& c) requires Full { drv<decltype(c)>(d).peer_shutdown(c); }
  void on_disconnected(auto& c, std::error_code reason) { drv<decltype(c)>(d).disconnected(c, reason); }
  void on_server_error(std::error_code e, iocp::operation where) { d->server_error(e, where); }
  void on_server_closed() { d->server_closed(); }
};

template <bool Full>
void run(world& w, const iocp::server_options& options) {
  using server_type = iocp::basic_iocp_server<fuzz_handler<Full>, checked_allocator<iocp::plain_allocator>,
                                              iocp::mutex_map, iocp::single_threaded>;
  driver<server_type> d(w, options);
  w.driver = &d;
  auto server = std::make_unique<server_type>(options, fuzz_handler<Full>{&d});
  std::unique_lock lock(w.mutex);
  w.changed.wait(lock, [&] { return w.call != main_call::none || w.io_exited; });
  const main_call call = w.call;
  const std::chrono::milliseconds timeout = w.call_timeout;
  lock.unlock();
  if (call == main_call::destroy) {
    server.reset();
  } else {
    // Without a call (the loop ended by itself after a request_stop), stop() only joins.
    check(!server->stop(call == main_call::stop ? timeout : std::chrono::milliseconds(0)),
          "stop() from the fuzzer's thread failed");
    check(!server->stop(), "a second stop() failed");
    d.check_stopped();
    server.reset();
  }
  d.server = nullptr;
  d.check_gone();
}

} // namespace fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  fuzz::world w(in);
  const bool readiness = in.ConsumeBool();
  const bool full_handler = in.ConsumeBool();
  w.multishot_accept = in.ConsumeBool();
  iocp::server_options o;
  o.address = "127.0.0.1";
  o.io_backend = readiness ? iocp::backend::epoll : iocp::backend::io_uring;
  o.receive_buffer_size = in.ConsumeBool() ? in.ConsumeIntegralInRange<std::size_t>(1, 64)
                                           : in.ConsumeIntegralInRange<std::size_t>(1, 16384);
  o.receive_buffers_per_thread = in.ConsumeIntegralInRange<unsigned>(0, 8);
  o.accepts_in_flight = in.ConsumeIntegralInRange<unsigned>(0, 4);
  o.max_connections = in.ConsumeIntegralInRange<std::size_t>(1, 6);
  o.no_delay = in.ConsumeBool();
  o.send_high_water_mark = in.ConsumeIntegralInRange<std::size_t>(0, 256 * 1024);
  o.send_low_water_mark = in.ConsumeIntegralInRange<std::size_t>(0, o.send_high_water_mark);
  o.max_send_queue_per_connection = in.ConsumeIntegralInRange<std::size_t>(1, 512 * 1024);
  o.max_send_queue_total = in.ConsumeIntegralInRange<std::size_t>(0, 1u << 20);
  o.linger_timeout = fuzz::pick_duration(in);
  o.idle_timeout = in.ConsumeBool() ? std::chrono::milliseconds(0) : fuzz::pick_duration(in);
  o.stop_timeout = fuzz::pick_duration(in);
  w.linger_timeout = o.linger_timeout;
  if (o.idle_timeout.count() > 0)
    if (o.idle_timeout.count() > 0) {
      const std::int64_t t = fuzz::deadline_after(0, o.idle_timeout);
      const std::int64_t slack = std::max<std::int64_t>(t / 10, 1'000'000);
      w.idle_limit_ns =
          t >= fuzz::never - slack ? fuzz::never : t + slack; // a model of event_loop::idle_limit_ns
    }
  fuzz::current_world = &w;
  fuzz::check(iocp::detail::monotonic_ns() == w.now.load(), "the loop's clock is not the fake one");
  if (full_handler)
    fuzz::run<true>(w, o);
  else
    fuzz::run<false>(w, o);
  fuzz::current_world = nullptr;
  return 0;
}
