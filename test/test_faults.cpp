// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Injected system-call failures (IOCP_FAULT_INJECTION, iocp/testing/fault_injection.hpp) on every
// backend, at every site it has: on the n-th call, and at random with a fixed seed over a run of
// many connections. Whatever fails, the server reports it (on_server_error with the site's
// operation, or the reason of the affected connection's on_disconnected), only the affected
// connection closes (every connection whose reason is clean had its whole conversation, byte-exact,
// and connections open meanwhile echo afterwards), it goes on accepting, no descriptor leaks, every
// on_connected has exactly one on_disconnected, and statistics() agrees. A wait (or io_uring
// submission) that keeps failing is reported once per failure, paced, and recovered from.
#define BOOST_TEST_MODULE faults
#include "boost_test.hpp"

#include "iocp/testing/fault_injection.hpp"

#if defined(_WIN32)
#include "iocp/detail/win/windows_headers.hpp"
#else
#include <time.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/client.hpp"
#include "support/configs.hpp"

using namespace test_support;
using namespace std::chrono_literals;
using iocp::testing::fault_rule;
using iocp::testing::fault_site;

namespace {

template <class Config, class Handler>
using server_of = typename Config::template server<Handler>;

// The errors injected, in the platform's own numbers: a plain I/O failure (not a reset, so a
// connection it closes counts as closed.other_error), and for accepts a client that left (no
// back-off) or a lack of descriptors (back-off).
#if defined(_WIN32)
constexpr int io_error = WSAENETDOWN;
constexpr int accept_gone = WSAECONNRESET;
constexpr int accept_no_descriptors = WSAEMFILE;
#else
constexpr int io_error = EIO;
constexpr int accept_gone = ECONNABORTED;
constexpr int accept_no_descriptors = EMFILE;
#endif

/// How the library reports a native error number.
std::error_code reported(int e) { return iocp::detail::errno_code(e); }

/// The sites each backend has (the others are never consulted there).
std::vector<fault_site> sites_of(iocp::backend b) {
  switch (b) {
  case iocp::backend::io_uring:
    return {fault_site::accept,   fault_site::receive, fault_site::send,
            fault_site::shutdown, fault_site::close,   fault_site::submit};
  case iocp::backend::epoll:
    return {fault_site::accept, fault_site::receive, fault_site::send, fault_site::shutdown,
            fault_site::close,  fault_site::submit,  fault_site::wait};
  default:
    return {fault_site::accept,     fault_site::accept_start,  fault_site::accept_context,
            fault_site::receive,    fault_site::receive_start, fault_site::send,
            fault_site::send_start, fault_site::shutdown,      fault_site::close,
            fault_site::submit,     fault_site::wait};
  }
}

/// The call that waits for the kernel: io_uring_enter() submits and waits in one.
fault_site waiting_site(iocp::backend b) {
  return b == iocp::backend::io_uring ? fault_site::submit : fault_site::wait;
}

/// What a fault at `site` does on backend `b`.
struct site_effect {
  std::optional<iocp::operation> reported_as; // every failure goes to on_server_error with this
  bool closes_connection = false;             // the connection it hit closes with the error
  bool drops_clients = false;                 // an accepted client may be closed before on_connected
  bool listener_too = false;                  // (submit) it may hit the listener: reported as accept
};

site_effect effect_of(fault_site site, iocp::backend b) {
  const bool completion_accepts = b != iocp::backend::epoll; // the connection was accepted already
  switch (site) {
  case fault_site::accept: return {iocp::operation::accept, false, completion_accepts, false};
  case fault_site::accept_start: return {iocp::operation::accept, false, false, false};
  case fault_site::accept_context: return {iocp::operation::accept, false, true, false};
  case fault_site::receive:
  case fault_site::receive_start:
  case fault_site::send:
  case fault_site::send_start: return {std::nullopt, true, false, false};
  case fault_site::shutdown: return {iocp::operation::shutdown, true, false, false};
  case fault_site::close: return {iocp::operation::close, false, false, false};
  case fault_site::submit:
    if (b == iocp::backend::io_uring) return {iocp::operation::submit, false, false, false};
    return {std::nullopt, true, false, true}; // epoll_ctl, or joining the completion port
  case fault_site::wait: return {iocp::operation::submit, false, false, false};
  }
  return {};
}

/// The error a site's faults inject: `nth` for the n-th-call rule, else the random one.
int error_for(fault_site site, bool nth) {
  if (site == fault_site::accept || site == fault_site::accept_start || site == fault_site::accept_context)
    return nth ? accept_no_descriptors : accept_gone;
  return io_error;
}

/// Open descriptors of this process (Linux). On Windows -1: Wine, where the tests run, always
/// says 0 handles (GetProcessHandleCount), so there is nothing to compare.
long open_descriptors() {
#if defined(_WIN32)
  return -1;
#else
  long n = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
#endif
}

/// CPU time this process has used, in milliseconds.
double process_cpu_ms() {
#if defined(_WIN32)
  FILETIME created, exited, kernel, user;
  ::GetProcessTimes(::GetCurrentProcess(), &created, &exited, &kernel, &user);
  auto ticks = [](FILETIME t) {
    return (static_cast<std::uint64_t>(t.dwHighDateTime) << 32) | t.dwLowDateTime;
  };
  return static_cast<double>(ticks(kernel) + ticks(user)) / 10'000.0;
#else
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1000.0 + static_cast<double>(t.tv_nsec) / 1e6;
#endif
}

// ---------------------------------------------------------------------------------------------
// What the server reported (written on I/O threads, read on the test's thread under the mutex).

struct observations {
  std::mutex mutex;
  // By the client's port: nothing while open, then the reason on_disconnected was given.
  std::map<std::uint16_t, std::optional<std::error_code>> connections;
  std::vector<std::pair<std::error_code, iocp::operation>> server_errors;
  int connected = 0;
  int disconnected = 0;
  int violations = 0; // a port announced twice while open, a second or unknown on_disconnected
  std::atomic<int> server_closed{0};

  int open_count() {
    std::lock_guard l(mutex);
    return connected - disconnected;
  }
  int connected_count() {
    std::lock_guard l(mutex);
    return connected;
  }
  int errors_matching(std::error_code e, iocp::operation op) {
    std::lock_guard l(mutex);
    return static_cast<int>(std::count(server_errors.begin(), server_errors.end(), std::pair{e, op}));
  }
  std::string errors_text() {
    std::lock_guard l(mutex);
    std::map<std::string, int> grouped;
    for (auto& [e, op] : server_errors)
      ++grouped[std::string(iocp::to_string(op)) + ":" + e.message()];
    std::string out;
    for (auto& [k, n] : grouped)
      out += k + " x" + std::to_string(n) + "; ";
    return out;
  }
};

/// Echoes. "quit" alone: answers "bye" and closes gracefully from our side (so the server's
/// shutdown() runs); the client then sees "bye" and the end of the stream.
struct fault_handler {
  observations* seen;
  struct connection_state {
    std::uint16_t port = 0;
  };

  void on_connected(auto& conn, const iocp::connection_info& info) {
    conn.state().port = info.remote.port();
    std::lock_guard l(seen->mutex);
    ++seen->connected;
    auto [it, fresh] = seen->connections.try_emplace(conn.state().port);
    if (!fresh) {
      if (!it->second) ++seen->violations; // two open connections cannot share a client port
      it->second.reset();
    }
  }
  void on_received(auto& conn, std::span<const std::byte> data) {
    if (std::string_view(reinterpret_cast<const char*>(data.data()), data.size()) == "quit") {
      conn.send(std::string_view("bye"));
      conn.disconnect();
      return;
    }
    conn.send(data);
  }
  void on_disconnected(auto& conn, std::error_code reason) {
    std::lock_guard l(seen->mutex);
    ++seen->disconnected;
    auto it = seen->connections.find(conn.state().port);
    if (it == seen->connections.end() || it->second)
      ++seen->violations;
    else
      it->second = reason;
  }
  void on_server_error(std::error_code e, iocp::operation op) {
    std::lock_guard l(seen->mutex);
    seen->server_errors.emplace_back(e, op);
  }
  void on_server_closed() { ++seen->server_closed; }
};

// ---------------------------------------------------------------------------------------------
// Clients. No Boost.Test assertion here: they run on threads of their own.

struct conversation {
  std::uint16_t port = 0; // the client's
  bool ok = false;
  std::string failure;
};

/// Two messages of random sizes (one in eight of 100 KB), each echoed byte-exact, then either our
/// FIN and the server's, or "quit", "bye" and the server's FIN.
conversation converse(std::uint16_t server_port, std::uint64_t seed, bool quit) {
  conversation c;
  try {
    socket_fd s = connect_local(server_port);
    set_timeouts(s.get(), 5);
    c.port = local_port_of(s.get());
    std::mt19937_64 rng(seed);
    for (int m = 0; m < 2; ++m) {
      std::size_t n = rng() % 8 == 0 ? 100'000 : 1 + rng() % 3000;
      std::vector<std::byte> data = random_bytes(n, rng());
      send_all(s.get(), data);
      if (recv_exact(s.get(), n) != data) {
        c.failure = "echo differs";
        return c;
      }
    }
    if (quit) {
      send_all(s.get(), "quit");
      std::vector<std::byte> rest = recv_until_eof(s.get());
      if (std::string_view(reinterpret_cast<const char*>(rest.data()), rest.size()) != "bye") {
        c.failure = "no goodbye before the end of the stream";
        return c;
      }
    } else {
      shutdown_write(s.get());
      if (!recv_until_eof(s.get()).empty()) {
        c.failure = "data after the echo";
        return c;
      }
    }
    c.ok = true;
  } catch (const std::exception& e) {
    c.failure = e.what();
  }
  return c;
}

/// `threads` clients at once, each holding `per_thread` conversations one after the other; every
/// second one ends with "quit".
std::vector<conversation> run_clients(std::uint16_t port, int threads, int per_thread, std::uint64_t seed) {
  std::vector<std::future<std::vector<conversation>>> work;
  for (int t = 0; t < threads; ++t)
    work.push_back(std::async(std::launch::async, [=] {
      std::vector<conversation> done;
      for (int i = 0; i < per_thread; ++i)
        done.push_back(converse(port, seed * 1000 + static_cast<std::uint64_t>(t * 100 + i), i % 2 == 1));
      return done;
    }));
  std::vector<conversation> all;
  for (auto& w : work)
    for (conversation& c : w.get())
      all.push_back(std::move(c));
  return all;
}

/// Connections opened before the faults and idle while they happen.
struct bystanders {
  std::vector<socket_fd> sockets;
  std::vector<std::uint16_t> ports;

  bystanders(std::uint16_t port, int n) {
    for (int i = 0; i < n; ++i) {
      sockets.push_back(connect_local(port));
      ports.push_back(local_port_of(sockets.back().get()));
    }
  }
  /// Whether each one still echoes `size` bytes byte-exact.
  bool all_echo(std::size_t size, std::uint64_t seed) {
    bool ok = true;
    for (socket_fd& s : sockets) {
      std::vector<std::byte> data = random_bytes(size, seed++);
      try {
        send_all(s.get(), data);
        ok = recv_exact(s.get(), size) == data && ok;
      } catch (const std::exception&) {
        ok = false;
      }
    }
    return ok;
  }
};

// ---------------------------------------------------------------------------------------------

/// One server, one site, one rule: bystanders, a run of conversations while the rule holds, then
/// every check of the file's header.
template <class Config>
void run_faults(fault_site site, const fault_rule& rule, bool nth) {
  constexpr iocp::backend backend = Config::io_backend;
  const site_effect effect = effect_of(site, backend);
  const std::error_code error = reported(rule.error);
  constexpr int bystander_count = 3, client_threads = 3, per_thread = 25;
  constexpr std::size_t bystander_message = 16;
  iocp::testing::clear_faults();
  const long descriptors_before = open_descriptors();
  observations seen;
  {
    server_of<Config, fault_handler> server(Config::options(), fault_handler{&seen});
    const std::uint16_t port = server.local_endpoint().port();
    bystanders idle(port, bystander_count);
    BOOST_TEST(idle.all_echo(bystander_message, 1));
    BOOST_REQUIRE(wait_until([&] { return seen.connected_count() == bystander_count; }));
    // A rule counts the calls made after inject_fault(), so before it is set the server must be
    // done with every call the bystanders caused: else the n-th call, or one of the random
    // decisions, may fall on a bystander and close it. An echo reaches the client before the
    // server has seen its send complete where the kernel reports the completion later (io_uring,
    // IOCP: the 'send' site is consulted at the completion), and bytes_sent counts there (epoll:
    // just after the send).
    BOOST_REQUIRE(wait_until([&] {
      return server.statistics().bytes_sent == std::uint64_t{bystander_count} * bystander_message;
    }));
    if constexpr (backend == iocp::backend::iocp) {
      // IOCP also posts each bystander's next WSARecv (the 'receive_start' site) after the echo's
      // WSASend: the first receive and that one, per bystander.
      BOOST_REQUIRE(wait_until([&] {
        return iocp::testing::fault_calls(fault_site::receive_start) >= std::uint64_t{2} * bystander_count;
      }));
    }

    iocp::testing::inject_fault(site, rule);
    std::vector<conversation> results = run_clients(port, client_threads, per_thread, nth ? 11 : 12);
    iocp::testing::clear_fault(site);
    const std::uint64_t injected = iocp::testing::faults_injected(site);
    const std::uint64_t calls = iocp::testing::fault_calls(site);
    BOOST_TEST_MESSAGE(iocp::to_string(backend)
                       << " " << iocp::testing::to_string(site) << (nth ? " n-th" : " random") << ": "
                       << injected << " of " << calls << " calls failed");
    BOOST_TEST(calls >= static_cast<std::uint64_t>(per_thread)); // the site was on the path
    if (nth)
      BOOST_TEST(injected == 2u); // exactly the calls the rule named
    else
      BOOST_TEST(injected >= 1u);

    // Every workload connection the server announced has closed.
    BOOST_TEST(wait_until([&] { return seen.open_count() == bystander_count; }, 15s));

    int failed = 0, dropped = 0, closed_with_error = 0, unexpected_reasons = 0, bad_outcomes = 0;
    std::string failures;
    {
      std::lock_guard l(seen.mutex);
      for (const conversation& c : results) {
        auto it = seen.connections.find(c.port);
        const bool announced = c.port && it != seen.connections.end();
        const std::optional<std::error_code> reason = announced ? it->second : std::nullopt;
        if (!c.ok) {
          ++failed;
          failures += c.failure + "; ";
        }
        if (!announced) {
          // Never announced: only a failed accept may do that, and the client saw it fail.
          ++dropped;
          if (c.ok || !effect.drops_clients) ++bad_outcomes;
          continue;
        }
        if (!reason) {
          ++bad_outcomes; // still open: not closed by the server although the client is done
          continue;
        }
        // A clean close means the whole conversation went through; a failed one was the fault's.
        if (!*reason) {
          if (!c.ok) ++bad_outcomes;
        } else if (*reason == error && effect.closes_connection) {
          ++closed_with_error;
        } else {
          ++unexpected_reasons;
        }
      }
    }
    BOOST_TEST_MESSAGE("  clients failed " << failed << ", dropped before on_connected " << dropped
                                           << ", closed with the error " << closed_with_error
                                           << "; server errors: " << seen.errors_text());
    BOOST_TEST(bad_outcomes == 0, "client failures: " << failures);
    BOOST_TEST(unexpected_reasons == 0);
    BOOST_TEST(static_cast<std::uint64_t>(dropped) <= injected);
    BOOST_TEST(static_cast<std::uint64_t>(closed_with_error) <= injected);

    // Reported as the site's failures are, and nothing else. An I/O thread reports a failure just
    // after the rule decided it (on_server_error): the last ones may still be on their way.
    if (effect.reported_as)
      BOOST_TEST(wait_until([&] {
        return static_cast<std::uint64_t>(seen.errors_matching(error, *effect.reported_as)) >= injected;
      }));
    int as_operation = 0, on_listener = 0;
    {
      std::lock_guard l(seen.mutex);
      for (auto& [e, op] : seen.server_errors) {
        as_operation += effect.reported_as && e == error && op == *effect.reported_as;
        on_listener += effect.listener_too && e == error && op == iocp::operation::accept;
      }
      BOOST_TEST(seen.server_errors.size() == static_cast<std::size_t>(as_operation + on_listener),
                 "server errors: " << seen.server_errors.size());
    }
    if (effect.reported_as) BOOST_TEST(static_cast<std::uint64_t>(as_operation) == injected);
    if (site == fault_site::shutdown) BOOST_TEST(static_cast<std::uint64_t>(closed_with_error) == injected);
    if (effect.closes_connection && site != fault_site::shutdown) {
      // Each fault closes the connection it hits, unless that one was closing already.
      BOOST_TEST(closed_with_error + on_listener >= 1);
      BOOST_TEST(static_cast<std::uint64_t>(closed_with_error + on_listener) <= injected);
    }

    // The server goes on: the idle connections echo byte-exact, and new clients are served.
    BOOST_TEST(idle.all_echo(64 * 1024, 100));
    for (const conversation& c : run_clients(port, 2, 2, 99))
      BOOST_TEST(c.ok, "after the faults: " << c.failure);

    idle.sockets.clear();
    BOOST_TEST(wait_until([&] { return seen.open_count() == 0; }));
    BOOST_TEST(!server.stop(5s));
    const iocp::server_statistics s = server.statistics();
    std::lock_guard l(seen.mutex);
    BOOST_TEST(seen.violations == 0);
    BOOST_TEST(seen.server_closed == 1);
    BOOST_TEST(seen.connected == seen.disconnected);
    BOOST_TEST(s.accepted == static_cast<std::uint64_t>(seen.connected));
    BOOST_TEST(s.closed.total() == static_cast<std::uint64_t>(seen.disconnected));
    BOOST_TEST(s.active == 0u);
    BOOST_TEST(s.closed.other_error == static_cast<std::uint64_t>(closed_with_error));
    BOOST_TEST(s.closed.graceful == static_cast<std::uint64_t>(seen.disconnected - closed_with_error));
    std::uint64_t accept_reports = 0;
    for (auto& [e, op] : seen.server_errors)
      accept_reports += op == iocp::operation::accept;
    BOOST_TEST(s.accept_errors.total() == accept_reports);
    BOOST_TEST(s.refused == 0u);
  }
  iocp::testing::clear_faults();
  // Every descriptor the server opened, and every one a fault touched, is closed.
  BOOST_TEST(open_descriptors() == descriptors_before);
}

} // namespace

// The n-th call from now fails, and the one after it (for accepts: EMFILE, so the server backs off).
BOOST_AUTO_TEST_CASE_TEMPLATE(the_nth_call_of_each_site_fails, Config, backend_configs) {
  for (fault_site site : sites_of(Config::io_backend)) {
    BOOST_TEST_CONTEXT(iocp::testing::to_string(site)) {
      run_faults<Config>(site, fault_rule::on_call(5, error_for(site, true), 2), true);
    }
  }
}

// Each call fails with probability 8%, from a fixed seed (its 2nd decision is a failure, so every
// site fails at least once), over 40 connections.
BOOST_AUTO_TEST_CASE_TEMPLATE(calls_fail_at_random_from_a_fixed_seed, Config, backend_configs) {
  for (fault_site site : sites_of(Config::io_backend)) {
    BOOST_TEST_CONTEXT(iocp::testing::to_string(site)) {
      run_faults<Config>(site, fault_rule::at_random(0.08, error_for(site, false), 5), false);
    }
  }
}

// Without a rule nothing fails, and the sites consulted are exactly those of the backend.
BOOST_AUTO_TEST_CASE_TEMPLATE(each_backend_reaches_its_sites_and_only_those, Config, backend_configs) {
  iocp::testing::clear_faults();
  observations seen;
  {
    server_of<Config, fault_handler> server(Config::options(), fault_handler{&seen});
    for (const conversation& c : run_clients(server.local_endpoint().port(), 2, 4, 3))
      BOOST_TEST(c.ok, c.failure);
    BOOST_TEST(wait_until([&] { return seen.open_count() == 0; }));
  }
  const std::vector<fault_site> mine = sites_of(Config::io_backend);
  for (std::size_t i = 0; i < iocp::testing::fault_site_count; ++i) {
    const auto site = static_cast<fault_site>(i);
    BOOST_TEST_CONTEXT(iocp::testing::to_string(site)) {
      if (std::find(mine.begin(), mine.end(), site) != mine.end())
        BOOST_TEST(iocp::testing::fault_calls(site) > 0u);
      else
        BOOST_TEST(iocp::testing::fault_calls(site) == 0u);
      BOOST_TEST(iocp::testing::faults_injected(site) == 0u);
    }
  }
  BOOST_TEST(seen.server_errors.empty());
}

// The backend's wait (io_uring: its io_uring_enter) fails on every call for 300 ms: each failure
// is reported, the threads sleep between tries instead of spinning, and once the fault ends the
// input that arrived meanwhile and a client that connected meanwhile are served.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_failing_wait_is_reported_paced_and_recovered_from, Config, backend_configs) {
  const fault_site site = waiting_site(Config::io_backend);
  iocp::testing::clear_faults();
  const long descriptors_before = open_descriptors();
  observations seen;
  {
    auto options = Config::options();
    server_of<Config, fault_handler> server(options, fault_handler{&seen});
    const std::uint16_t port = server.local_endpoint().port();
    bystanders idle(port, 1);
    BOOST_TEST(idle.all_echo(100, 1));

    const double cpu_before = process_cpu_ms();
    const auto start = std::chrono::steady_clock::now();
    iocp::testing::inject_fault(site, fault_rule::on_call(1, io_error, 0)); // every call from now on
    const std::string during = "sent while the server cannot wait";
    send_all(idle.sockets[0].get(), during);
    socket_fd newcomer = connect_local(port); // queued by the kernel meanwhile
    std::this_thread::sleep_for(300ms);
    iocp::testing::clear_fault(site);
    const double elapsed_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const double cpu_ms = process_cpu_ms() - cpu_before;
    const std::uint64_t injected = iocp::testing::faults_injected(site);
    BOOST_TEST_MESSAGE(iocp::to_string(Config::io_backend)
                       << ": " << injected << " failed waits in " << elapsed_ms << " ms, " << cpu_ms
                       << " ms of CPU");
    // Both threads kept trying, at most once a millisecond each.
    BOOST_TEST(injected >= 10u);
    BOOST_TEST(static_cast<double>(injected) <=
               static_cast<double>(server.thread_count()) * (elapsed_ms + 2));
#if !defined(_WIN32)
    BOOST_TEST(cpu_ms < elapsed_ms / 2); // a spinning thread alone would use all of it
#endif
    BOOST_TEST(wait_until([&] {
      return seen.errors_matching(reported(io_error), iocp::operation::submit) == static_cast<int>(injected);
    }));

    // Recovered: what waited is served.
    BOOST_TEST(recv_exact(idle.sockets[0].get(), during.size()) ==
               std::vector<std::byte>(as_bytes(during).begin(), as_bytes(during).end()));
    send_all(newcomer.get(), "late");
    BOOST_TEST(recv_exact(newcomer.get(), 4).size() == 4u);
    BOOST_TEST(idle.all_echo(64 * 1024, 7));
    newcomer.reset();
    idle.sockets.clear();
    BOOST_TEST(wait_until([&] { return seen.open_count() == 0; }));
    BOOST_TEST(!server.stop(5s));
    const iocp::server_statistics s = server.statistics();
    BOOST_TEST(s.accepted == 2u);
    BOOST_TEST(s.closed.graceful == 2u);
    std::lock_guard l(seen.mutex);
    BOOST_TEST(seen.server_errors.size() == injected);
    BOOST_TEST(seen.violations == 0);
  }
  iocp::testing::clear_faults();
  BOOST_TEST(open_descriptors() == descriptors_before);
}
