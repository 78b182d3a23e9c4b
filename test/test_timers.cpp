// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// User timers and posted work over real loopback connections, on every backend:
// - timers fire once, never early, in due order; periodic ones keep their schedule and can cancel
//   themselves; a cancel inside a callback takes effect at once; cancels from another thread that
//   follow the arm are never overtaken by it;
// - a connection's timers die with it, and none can be armed on a closing connection;
// - posted functions run on the connection's thread, in order, never inside the posting call; a
//   function for a connection that has gone learns it; posts and timers are refused once the
//   server stops, and everything posted is destroyed exactly once;
// - timer callbacks and posted functions that throw are handled like other callbacks.
// test_deadline_queue.cpp checks the queue and the periodic rules with a clock of its own.
#define BOOST_TEST_MODULE timers
#include "boost_test.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/recorder.hpp"

using namespace test_support;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace iocp {
// Boost.Test prints what it compares.
inline std::ostream& operator<<(std::ostream& out, timer_id t) {
  return out << "timer " << t.thread() << ':' << t.sequence();
}
} // namespace iocp

namespace {

template <class Config, class Handler>
using server_of = typename Config::template server<Handler>;

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

/// What the timer tests' handlers saw, for the test's thread to check.
struct timer_record {
  std::mutex mutex;
  std::vector<iocp::timer_id> fired;  // in firing order
  std::vector<double> fired_after_ms; // since the arm (per test: see each handler)
  std::atomic<int> fires{0};
  std::atomic<int> violations{0};
  void fire(iocp::timer_id t, double after_ms) {
    std::lock_guard l(mutex);
    fired.push_back(t);
    fired_after_ms.push_back(after_ms);
    ++fires;
  }
  std::vector<iocp::timer_id> fired_ids() {
    std::lock_guard l(mutex);
    return fired;
  }
  std::vector<double> fired_times() {
    std::lock_guard l(mutex);
    return fired_after_ms;
  }
};

/// Arms the timers a test asks for in on_connected (delays in ms; `period` for all), and sends
/// "t" to the client on every fire.
struct arming_handler : recording_handler {
  timer_record* timers;
  std::vector<int> delays_ms;
  int period_ms = 0;
  int cancel_self_after = 0; // a periodic timer cancels itself on this fire (0: never)
  struct connection_state {
    clock_type::time_point armed;
    std::vector<iocp::timer_id> ids;
    int fires = 0;
  };
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    conn.state().armed = clock_type::now(); // before the arms: a fire is never earlier than this + delay
    for (int d : delays_ms) {
      iocp::timer_id t = conn.set_timer(std::chrono::milliseconds(d), std::chrono::milliseconds(period_ms));
      if (!t) ++timers->violations;
      conn.state().ids.push_back(t);
    }
  }
  void on_timer(auto& conn, iocp::timer_id t) {
    timers->fire(t, ms_since(conn.state().armed));
    ++conn.state().fires;
    if (cancel_self_after && conn.state().fires == cancel_self_after) conn.cancel_timer(t);
    (void)conn.send(std::string_view("t"));
  }
};

/// Reads `n` bytes from the client (one per fire).
void expect_fires(socket_fd& client, std::size_t n) { BOOST_TEST(recv_exact(client.get(), n).size() == n); }

} // namespace

BOOST_AUTO_TEST_SUITE(connection_timers)

BOOST_AUTO_TEST_CASE_TEMPLATE(a_one_shot_timer_fires_once_and_never_early, Config, backend_configs) {
  event_record record;
  timer_record timers;
  arming_handler h{{&record}, &timers, {100}};
  server_of<Config, arming_handler> server(Config::options(), h);
  socket_fd client = connect_local(server.local_endpoint().port());
  expect_fires(client, 1);
  std::this_thread::sleep_for(250ms); // a second fire would come in this time
  BOOST_TEST(timers.fires.load() == 1);
  BOOST_TEST(timers.violations.load() == 0);
  std::vector<double> at = timers.fired_times();
  BOOST_REQUIRE(at.size() == 1u);
  BOOST_TEST(at[0] >= 100.0); // never early
  BOOST_TEST(!readable_now(client.get()));
  shutdown_both(client.get()); // the graceful stop waits for the peer's FIN
  server.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(timers_fire_in_the_order_they_are_due, Config, backend_configs) {
  event_record record;
  timer_record timers;
  // Armed in this order; due in the order 2nd, 4th (same delay, armed later), 3rd, 1st.
  arming_handler h{{&record}, &timers, {160, 40, 100, 40}};
  server_of<Config, arming_handler> server(Config::options(), h);
  socket_fd client = connect_local(server.local_endpoint().port());
  expect_fires(client, 4);
  std::vector<iocp::timer_id> fired = timers.fired_ids();
  std::vector<double> at = timers.fired_times();
  BOOST_REQUIRE(fired.size() == 4u);
  // Sequences grow with each arm on a thread: the ids say which arm each fire was.
  std::vector<iocp::timer_id> armed = fired;
  std::sort(armed.begin(), armed.end());
  BOOST_TEST(fired[0] == armed[1]);
  BOOST_TEST(fired[1] == armed[3]);
  BOOST_TEST(fired[2] == armed[2]);
  BOOST_TEST(fired[3] == armed[0]);
  BOOST_TEST(at[0] >= 40.0);
  BOOST_TEST(at[2] >= 100.0);
  BOOST_TEST(at[3] >= 160.0);
  BOOST_TEST(timers.violations.load() == 0);
  shutdown_both(client.get()); // the graceful stop waits for the peer's FIN
  server.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_periodic_timer_keeps_its_schedule_and_cancels_itself, Config,
                              backend_configs) {
  event_record record;
  timer_record timers;
  arming_handler h{{&record}, &timers, {30}, 30, 5};
  server_of<Config, arming_handler> server(Config::options(), h);
  socket_fd client = connect_local(server.local_endpoint().port());
  expect_fires(client, 5);
  std::this_thread::sleep_for(200ms); // cancelled in its own fifth callback: no sixth
  BOOST_TEST(timers.fires.load() == 5);
  std::vector<double> at = timers.fired_times();
  BOOST_REQUIRE(at.size() == 5u);
  for (std::size_t k = 0; k < at.size(); ++k) {
    // The k-th fire is due at (k + 1) periods after the arm: never before, whatever came late.
    BOOST_TEST(at[k] >= 30.0 * static_cast<double>(k + 1));
    if (k) BOOST_TEST(at[k] > at[k - 1]);
  }
  BOOST_TEST(!readable_now(client.get()));
  shutdown_both(client.get()); // the graceful stop waits for the peer's FIN
  server.stop();
}

namespace {
/// Timer A's callback cancels timer B (armed just after it, same delay), and re-arms itself once.
struct cancelling_handler : recording_handler {
  timer_record* timers;
  struct connection_state {
    iocp::timer_id a, b, again;
  };
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    conn.state().a = conn.set_timer(50ms);
    conn.state().b = conn.set_timer(50ms);
  }
  void on_timer(auto& conn, iocp::timer_id t) {
    timers->fire(t, 0);
    auto& s = conn.state();
    if (t == s.a) {
      conn.cancel_timer(s.b);
      conn.cancel_timer(s.b); // idempotent
      conn.cancel_timer(t);   // its own: a one-shot that is firing
      s.again = conn.set_timer(20ms);
      if (!s.again) ++timers->violations;
    } else if (t == s.b) {
      ++timers->violations; // cancelled before it was due
    } else if (t == s.again) {
      (void)conn.send(std::string_view("done"));
    }
  }
};
} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(a_cancel_inside_a_callback_takes_effect_at_once, Config, backend_configs) {
  event_record record;
  timer_record timers;
  server_of<Config, cancelling_handler> server(Config::options(), cancelling_handler{{&record}, &timers});
  socket_fd client = connect_local(server.local_endpoint().port());
  BOOST_TEST(recv_exact(client.get(), 4).size() == 4u);
  std::this_thread::sleep_for(100ms);
  BOOST_TEST(timers.violations.load() == 0);
  BOOST_TEST(timers.fires.load() == 2); // a, then its re-arm
  shutdown_both(client.get());          // the graceful stop waits for the peer's FIN
  server.stop();
}

namespace {
/// Counts fires per timer id (timers armed by id from the test's thread).
struct counting_handler : recording_handler {
  timer_record* timers;
  void on_timer(auto&, iocp::timer_id t) { timers->fire(t, 0); }
};
} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(cancels_from_another_thread_follow_its_arms, Config, backend_configs) {
  event_record record;
  timer_record timers;
  server_of<Config, counting_handler> server(Config::options(), counting_handler{{&record}, &timers});
  socket_fd client = connect_local(server.local_endpoint().port());
  const iocp::connection_id id = wait_for_connection(record, client.get());
  BOOST_REQUIRE(id);
  // Long enough that the test thread's own pauses cannot let a timer fire before its cancel is
  // posted: cancel after arm from one thread is ordered, so the cancelled ones never fire.
  std::set<iocp::timer_id> kept, cancelled;
  for (int i = 0; i < 100; ++i) {
    iocp::timer_id t = server.set_timer(id, 1500ms);
    BOOST_REQUIRE(t);
    if (i % 2) {
      BOOST_TEST(!server.cancel_timer(t));
      BOOST_TEST(!server.cancel_timer(t)); // idempotent
      cancelled.insert(t);
    } else {
      kept.insert(t);
    }
  }
  BOOST_TEST(wait_until([&] { return timers.fires.load() >= 50; }));
  std::this_thread::sleep_for(200ms);
  std::vector<iocp::timer_id> fired = timers.fired_ids();
  BOOST_TEST(fired.size() == 50u);
  BOOST_TEST((std::set<iocp::timer_id>(fired.begin(), fired.end()) == kept));
  // Bad and empty ids are no-ops; so is cancelling one that fired.
  BOOST_TEST(!server.cancel_timer(iocp::timer_id{}));
  BOOST_TEST(!server.cancel_timer(iocp::timer_id(4095, 12345)));
  BOOST_TEST(!server.cancel_timer(*kept.begin()));
  shutdown_both(client.get()); // the graceful stop waits for the peer's FIN
  server.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(timers_raced_by_cancels_from_other_threads_fire_at_most_once, Config,
                              backend_configs) {
  event_record record;
  timer_record timers;
  server_of<Config, counting_handler> server(Config::options(), counting_handler{{&record}, &timers});
  std::vector<socket_fd> clients;
  std::vector<iocp::connection_id> ids;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(connect_local(server.local_endpoint().port()));
    ids.push_back(wait_for_connection(record, clients.back().get()));
    BOOST_REQUIRE(ids.back());
  }
  // Two threads arm short timers on every connection and cancel some of them at once, while they
  // fire: every fire is of a timer armed, and none fires twice.
  std::mutex armed_mutex;
  std::set<iocp::timer_id> armed;
  auto churn = [&](int seed) {
    for (int i = 0; i < 500; ++i) {
      iocp::timer_id t = server.set_timer(ids[static_cast<std::size_t>(i + seed) % ids.size()],
                                          std::chrono::microseconds((i * 37 + seed) % 2000));
      if (!t) continue;
      {
        std::lock_guard l(armed_mutex);
        armed.insert(t);
      }
      if (i % 3 == 0) (void)server.cancel_timer(t);
    }
  };
  std::thread a(churn, 1), b(churn, 2);
  a.join();
  b.join();
  std::this_thread::sleep_for(100ms);
  BOOST_TEST(wait_until([&] {
    const int before = timers.fires.load();
    std::this_thread::sleep_for(50ms);
    return timers.fires.load() == before;
  }));
  std::vector<iocp::timer_id> fired = timers.fired_ids();
  std::set<iocp::timer_id> unique(fired.begin(), fired.end());
  BOOST_TEST(unique.size() == fired.size());
  BOOST_TEST(std::includes(armed.begin(), armed.end(), unique.begin(), unique.end()));
  BOOST_TEST(fired.size() >= armed.size() * 2 / 3 - 2); // the ones never cancelled all fired
  for (auto& c : clients)
    shutdown_both(c.get()); // the graceful stop waits for each peer's FIN
  server.stop();
  BOOST_TEST(record.server_errors.empty());
}

namespace {
/// Arms timers on a connection and closes it in the same callback (or on the client's byte).
struct closing_handler : recording_handler {
  timer_record* timers;
  std::atomic<int>* refused;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    (void)conn.set_timer(1000ms);
    (void)conn.set_timer(20ms, 20ms);
  }
  void on_received(auto& conn, std::span<const std::byte>) {
    (void)conn.set_timer(1ms);
    conn.abort();
    std::error_code ec;
    iocp::timer_id t = conn.set_timer(1ms, {}, ec);
    if (!t && ec == iocp::errc::connection_closing) ++*refused;
  }
  void on_timer(auto&, iocp::timer_id t) { timers->fire(t, 0); }
};
} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(a_connections_timers_die_with_it, Config, backend_configs) {
  event_record record;
  timer_record timers;
  std::atomic<int> refused{0};
  server_of<Config, closing_handler> server(Config::options(), closing_handler{{&record}, &timers, &refused});
  socket_fd client = connect_local(server.local_endpoint().port());
  const iocp::connection_id id = wait_for_connection(record, client.get());
  BOOST_REQUIRE(id);
  BOOST_TEST(wait_until([&] { return timers.fires.load() >= 2; })); // the periodic one runs
  send_all(client.get(), "x");
  BOOST_TEST(read_until_closed(client.get()) != 0); // reset by the abort
  BOOST_TEST(wait_until([&] { return record.disconnected_count() == 1; }));
  const int after_close = timers.fires.load();
  std::this_thread::sleep_for(1200ms); // the one-shot of 1 s and the periodic one would have fired
  BOOST_TEST(timers.fires.load() == after_close);
  BOOST_TEST(refused.load() == 1);
  // By id: an id that has closed is refused, and says why.
  std::error_code ec;
  BOOST_TEST(!server.set_timer(id, 1ms, {}, ec));
  BOOST_TEST(ec == iocp::errc::unknown_connection);
  shutdown_both(client.get()); // the graceful stop waits for the peer's FIN
  server.stop();
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(posted_work)

namespace {
/// Posted functions check where and when they run: on the connection's thread, in order, never
/// inside the callback that posted them.
struct posting_handler : recording_handler {
  std::atomic<int>* violations;
  std::atomic<int>* ran;
  struct connection_state {
    int last[2] = {-1, -1}; // the last number run from each of two posting threads
    bool in_callback = false;
  };
  void on_received(auto& conn, std::span<const std::byte> data) {
    // A byte from the client: post to ourselves from inside the callback.
    conn.state().in_callback = true;
    for (std::byte b : data) {
      (void)b;
      std::error_code e = conn.server().post(conn.id(), [v = violations, r = ran](auto* c) noexcept {
        if (!c || c->state().in_callback) ++*v;
        ++*r;
      });
      if (e) ++*violations;
    }
    conn.state().in_callback = false;
  }
};
} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(posted_functions_run_on_the_connections_thread_in_order, Config,
                              backend_configs) {
  event_record record;
  std::atomic<int> violations{0}, ran{0};
  using server_type = server_of<Config, posting_handler>;
  server_type server(Config::options(), posting_handler{{&record}, &violations, &ran});
  socket_fd client = connect_local(server.local_endpoint().port());
  const iocp::connection_id id = wait_for_connection(record, client.get());
  BOOST_REQUIRE(id);
  const std::thread::id test_thread = std::this_thread::get_id();
  // From two threads, each in its own order (the connection state's counter checks it per thread).
  auto poster = [&](int which) {
    for (int i = 0; i < 2000; ++i) {
      std::error_code e = server.post(id, [&, which, i](typename server_type::connection_type* c) noexcept {
        if (!c || c->id() != id || std::this_thread::get_id() == test_thread) {
          ++violations;
        } else {
          int& last = c->state().last[which]; // this posting thread's order
          if (i != last + 1) ++violations;
          last = i;
        }
        ++ran;
      });
      if (e) ++violations;
    }
  };
  std::thread t0(poster, 0), t1(poster, 1);
  t0.join();
  t1.join();
  BOOST_TEST(wait_until([&] { return ran.load() == 4000; }));
  // From inside a callback: run later, not inside it.
  send_all(client.get(), "abc");
  BOOST_TEST(wait_until([&] { return ran.load() == 4003; }));
  BOOST_TEST(violations.load() == 0);
  shutdown_both(client.get()); // the graceful stop waits for the peer's FIN
  server.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_function_for_a_closed_connection_learns_it_has_gone, Config,
                              backend_configs) {
  event_record record;
  std::atomic<int> violations{0}, ran{0};
  using server_type = server_of<Config, posting_handler>;
  server_type server(Config::options(), posting_handler{{&record}, &violations, &ran});
  iocp::connection_id id;
  {
    socket_fd client = connect_local(server.local_endpoint().port());
    id = wait_for_connection(record, client.get());
    BOOST_REQUIRE(id);
  }
  BOOST_TEST(wait_until([&] { return record.disconnected_count() == 1; }));
  std::atomic<int> gone{0};
  BOOST_TEST(
      !server.post(id, [&](typename server_type::connection_type* c) noexcept { gone += c ? 100 : 1; }));
  BOOST_TEST(!server.post(iocp::connection_id{},
                          [&](typename server_type::connection_type* c) noexcept { gone += c ? 100 : 1; }));
  BOOST_TEST(wait_until([&] { return gone.load() >= 2; }));
  std::this_thread::sleep_for(20ms);
  BOOST_TEST(gone.load() == 2);
  // Server-wide: runs on an I/O thread, in order for this thread.
  const std::thread::id test_thread = std::this_thread::get_id();
  std::atomic<int> next{0};
  for (int i = 0; i < 1000; ++i)
    BOOST_TEST(!server.post([&, i]() noexcept {
      if (std::this_thread::get_id() == test_thread || next.load() != i) ++violations;
      ++next;
    }));
  BOOST_TEST(wait_until([&] { return next.load() == 1000; }));
  BOOST_TEST(violations.load() == 0);
  server.stop();
}

namespace {
/// A server-wide periodic timer and a connection timer, running when stop() is called.
struct stopping_handler : recording_handler {
  timer_record* timers;
  std::atomic<int>* refused_in_stop;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    (void)conn.set_timer(5ms, 5ms);
  }
  void on_timer(auto&, iocp::timer_id t) { timers->fire(t, 0); }
  void on_server_timer(iocp::timer_id t) { timers->fire(t, 0); }
  void on_disconnected(auto& conn, std::error_code reason) {
    recording_handler::on_disconnected(conn, reason);
    // The server is stopping: posts and server-wide timers are refused now.
    std::error_code ec;
    if (conn.server().post([]() noexcept {}) == iocp::errc::server_stopping) ++*refused_in_stop;
    if (!conn.server().set_timer(1ms, {}, ec) && ec == iocp::errc::server_stopping) ++*refused_in_stop;
  }
};

/// Counts how many copies of it exist: every posted function must be destroyed exactly once.
struct tracked {
  std::shared_ptr<int> token;
  std::atomic<int>* ran;
  void operator()() noexcept { ++*ran; }
};
} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(timers_and_posts_during_stop, Config, backend_configs) {
  event_record record;
  timer_record timers;
  std::atomic<int> refused_in_stop{0}, ran{0};
  auto token = std::make_shared<int>(0);
  {
    server_of<Config, stopping_handler> server(Config::options(),
                                               stopping_handler{{&record}, &timers, &refused_in_stop});
    socket_fd client = connect_local(server.local_endpoint().port());
    BOOST_REQUIRE(wait_for_connection(record, client.get()));
    BOOST_TEST(server.set_timer(5ms, 5ms));
    BOOST_TEST(wait_until([&] { return timers.fires.load() >= 6; }));
    for (int i = 0; i < 100; ++i)
      BOOST_TEST(!server.post(tracked{token, &ran}));
    std::thread closer([&] {
      std::this_thread::sleep_for(50ms);
      shutdown_both(client.get()); // the graceful stop waits for the peer's FIN
    });
    BOOST_TEST(!server.stop());
    closer.join();
    const int after_stop = timers.fires.load();
    std::this_thread::sleep_for(50ms);
    BOOST_TEST(timers.fires.load() == after_stop);
    BOOST_TEST(server.post(tracked{token, &ran}) == iocp::errc::server_stopping);
    std::error_code ec;
    BOOST_TEST(!server.set_timer(1ms, {}, ec));
    BOOST_TEST(ec == iocp::errc::server_stopping);
    BOOST_TEST(refused_in_stop.load() == 2);
    BOOST_TEST(ran.load() == 100); // posted before stop(): all ran
  }
  BOOST_TEST(token.use_count() == 1); // every copy destroyed
}

namespace {
/// Callbacks that throw: a connection's timer or posted function closes it; server-wide ones are
/// reported and the server goes on.
struct throwing_handler : recording_handler {
  timer_record* timers;
  void on_received(auto& conn, std::span<const std::byte> data) {
    if (data[0] == std::byte{'t'}) (void)conn.set_timer(1ms);
    if (data[0] == std::byte{'p'})
      (void)conn.server().post(conn.id(), [](auto*) { throw std::runtime_error("posted"); });
  }
  void on_timer(auto&, iocp::timer_id) { throw std::runtime_error("timer"); }
  void on_server_timer(iocp::timer_id t) {
    timers->fire(t, 0);
    throw std::runtime_error("server timer");
  }
};
} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(throwing_timer_callbacks_and_functions_are_handled_like_callbacks, Config,
                              backend_configs) {
  event_record record;
  timer_record timers;
  server_of<Config, throwing_handler> server(Config::options(), throwing_handler{{&record}, &timers});
  for (const char* what : {"t", "p"}) {
    socket_fd client = connect_local(server.local_endpoint().port());
    const iocp::connection_id id = wait_for_connection(record, client.get());
    BOOST_REQUIRE(id);
    send_all(client.get(), what);
    BOOST_TEST(read_until_closed(client.get()) != 0); // reset
    BOOST_TEST(wait_until([&] { return record.reason(id).has_value(); }));
    BOOST_TEST(record.reason(id).value_or(std::error_code{}) == iocp::errc::handler_exception);
  }
  // A periodic server-wide timer whose callback throws goes on firing.
  BOOST_TEST(server.set_timer(2ms, 2ms));
  BOOST_TEST(wait_until([&] { return timers.fires.load() >= 3; }));
  BOOST_TEST(!server.post([]() { throw std::runtime_error("posted"); }));
  server.stop();
  std::size_t handler_errors = 0;
  for (auto& [e, where] : record.server_errors)
    if (e == iocp::errc::handler_exception && where == iocp::operation::handler) ++handler_errors;
  BOOST_TEST(handler_errors >= 6u); // 2 connections, 3+ server timer fires, 1 server-wide post
}

BOOST_AUTO_TEST_SUITE_END()
