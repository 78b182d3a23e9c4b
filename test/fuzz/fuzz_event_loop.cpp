// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// libFuzzer target for the connection state machine that every backend shares
// (include/iocp/detail/event_loop.hpp), driven through a real basic_iocp_server with one I/O thread.
//
// Built with IOCP_TEST_BACKEND, the loop runs on fake backends (event_loop/fake_backends.hpp) instead
// of io_uring and epoll, with fake sockets and a fake clock:
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
//
// The pieces, in test/fuzz/event_loop/: fake_world.hpp (the fake kernel, sockets and clock),
// fake_backends.hpp and fake_events.hpp (the fake io_uring and epoll, and what the input makes
// happen in them), model.hpp (the driver: the model and its checks), user_calls.hpp (the calls
// the input makes). This file: the handler, the server, and the decoding of the options.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <system_error>
#include <type_traits>

#include "fuzz_checks.hpp"

// Order matters: IOCP_TEST_BACKEND must name the fakes before any iocp header that reads it
// (detail/clock.hpp, detail/event_loop.hpp, server.hpp) is included, or the loop would run on
// the real backends and clock. So: the fakes first (they include only iocp headers that do not
// read it), then the macro and iocp.hpp, then the model and the calls, which use the server.
#include "event_loop/fake_backends.hpp"
#include "event_loop/fake_events.hpp"
#include "event_loop/fake_world.hpp"

#define IOCP_TEST_BACKEND ::fuzz::test_backends
#include "iocp/iocp.hpp"

#include "event_loop/model.hpp"
#include "event_loop/user_calls.hpp"

namespace fuzz {

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
