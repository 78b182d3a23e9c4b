// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Stress on both Linux backends, bounded in count and time.
// - Churn: 200,000 loopback connections against the echo server from 16 client threads. A third
//   reset right after connecting (SO_LINGER {1, 0}, then close, nothing sent); the rest send a few
//   bytes, read them back and close, half of them after the server's FIN. Afterwards the server
//   still accepts and echoes, every on_connected got exactly one on_disconnected (clean for every
//   echo), nothing is left open and no descriptor leaked. Clients bind to source addresses spread
//   over 127.0.0.2-127.0.0.250 (IP_BIND_ADDRESS_NO_PORT), so neither ephemeral ports nor TIME_WAIT
//   entries run out.
// - Races: another thread aborts, disconnects and half-closes connections by id while their clients
//   echo, close or reset.
// - Bursts: thousands of connections open at once, all sending in the same instant.
// - Stop: a graceful stop() with thousands of connections open ends every one with a FIN.
// - Memory: 1,000 clients that never read stay within the send-queue cap (and the process's
//   resident memory within a bound derived from it); afterwards they read everything, byte-exact.
// - Stop mid-transfer: stop() with a short deadline, and the destructor, while hundreds of
//   connections echo megabytes both ways.
// - And first: a server leaves no spurious EINTR behind in the thread that made it.
#define BOOST_TEST_MODULE stress
#include "boost_test.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/listen_drops.hpp"
#include "support/recorder.hpp"

using namespace test_support;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t total_connections = 200'000;
constexpr std::size_t client_threads = 16;
constexpr auto client_time_limit = 200s; // the client phase fails rather than run past this

/// Descriptors open in this process now.
std::size_t open_descriptors() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

enum class kind { reset, echo_then_close, echo_then_half_close };

kind kind_of(std::size_t i) {
  switch (i % 3) {
  case 0: return kind::reset;
  case 1: return kind::echo_then_close;
  default: return kind::echo_then_half_close;
  }
}

/// Client i's source address: 127.0.0.2 to 127.0.0.250 in turn.
std::string source_address(std::size_t i) {
  char source[16];
  std::snprintf(source, sizeof source, "127.0.0.%zu", 2 + i % 249);
  return source;
}

struct client_tally {
  std::size_t resets = 0;
  std::size_t echoes = 0; // both echo kinds
  std::size_t failures = 0;
  std::vector<std::string> failure_samples;

  void fail(std::size_t i, const std::string& what) {
    ++failures;
    if (failure_samples.size() < 5)
      failure_samples.push_back("connection " + std::to_string(i) + ": " + what);
  }
};

/// Connections first, first + step, ... below total_connections, one at a time.
void run_clients(std::uint16_t port, std::size_t first, std::size_t step,
                 std::chrono::steady_clock::time_point deadline, client_tally& tally) {
  const iocp::endpoint server = *iocp::endpoint::parse("127.0.0.1", port);
  for (std::size_t i = first; i < total_connections; i += step) {
    if (std::chrono::steady_clock::now() > deadline) {
      tally.fail(i, "time limit reached; the remaining connections were not made");
      return;
    }
    try {
      socket_fd s = connect_to(server, source_address(i).c_str());
      if (kind_of(i) == kind::reset) {
        set_linger_zero(s.get());
        s.reset();
        ++tally.resets;
        continue;
      }
      std::vector<std::byte> message = random_bytes(1 + i % 97, i);
      send_all(s.get(), message);
      if (recv_exact(s.get(), message.size()) != message) {
        tally.fail(i, "the echo differs");
        continue;
      }
      if (kind_of(i) == kind::echo_then_half_close) {
        shutdown_write(s.get());
        std::vector<std::byte> rest = recv_until_eof(s.get());
        if (!rest.empty()) {
          tally.fail(i, std::to_string(rest.size()) + " bytes after the echo");
          continue;
        }
      }
      ++tally.echoes;
    } catch (const std::exception& e) {
      tally.fail(i, e.what());
    }
  }
}

struct race_tally {
  std::size_t full_echoes = 0; // the whole echo, then the server's FIN
  std::size_t cut_short = 0;   // part of the echo (a prefix), then a FIN or a reset
  std::size_t resets = 0;      // the client reset with its data and the echo in flight
  std::size_t failures = 0;
  std::vector<std::string> failure_samples;

  void fail(std::size_t i, const std::string& what) {
    ++failures;
    if (failure_samples.size() < 5)
      failure_samples.push_back("connection " + std::to_string(i) + ": " + what);
  }
};

/// Clients whose connections the server may abort, disconnect or half-close at any moment: each
/// sends a message, half-closes and reads to the end. What comes back must be a prefix of what was
/// sent, ended by a FIN or a reset; never other bytes, and never silence (the socket times out).
void run_racing_clients(std::uint16_t port, std::size_t first, std::size_t step, std::size_t total,
                        std::chrono::steady_clock::time_point deadline, race_tally& tally) {
  const iocp::endpoint server = *iocp::endpoint::parse("127.0.0.1", port);
  for (std::size_t i = first; i < total; i += step) {
    if (std::chrono::steady_clock::now() > deadline) {
      tally.fail(i, "time limit reached; the remaining connections were not made");
      return;
    }
    try {
      socket_fd s = connect_to(server, source_address(i).c_str());
      if (i % 8 == 7) {
        // Every eighth resets with 32 KiB sent and its echo unread: the server's receive or its
        // echo's send meets the reset, whichever comes first.
        std::vector<std::byte> data = random_bytes(32 * 1024, i);
        [[maybe_unused]] ssize_t n = ::send(s.get(), data.data(), data.size(), MSG_NOSIGNAL);
        set_linger_zero(s.get());
        s.reset();
        ++tally.resets;
        continue;
      }
      std::vector<std::byte> message = random_bytes(1 + i % 1500, ~i);
      bool sent = true;
      if (::send(s.get(), message.data(), message.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(message.size()) ||
          ::shutdown(s.get(), SHUT_WR) != 0)
        sent = false; // the server may have reset it already
      std::vector<std::byte> echoed;
      std::byte buffer[4096];
      int end = 0;
      for (;;) {
        ssize_t n = ::recv(s.get(), buffer, sizeof buffer, 0);
        if (n > 0) {
          echoed.insert(echoed.end(), buffer, buffer + n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        end = n == 0 ? 0 : errno;
        break;
      }
      if (end != 0 && end != ECONNRESET) {
        tally.fail(i, std::string("recv: ") + std::strerror(end));
        continue;
      }
      if (echoed.size() > message.size() || !std::equal(echoed.begin(), echoed.end(), message.begin())) {
        tally.fail(i, "the echo is not a prefix of the message");
        continue;
      }
      if (sent && end == 0 && echoed.size() == message.size())
        ++tally.full_echoes;
      else
        ++tally.cut_short;
    } catch (const std::system_error& e) {
      // The server may accept and abort a connection before connect() has returned here.
      if (e.code() == std::errc::connection_reset)
        ++tally.cut_short;
      else
        tally.fail(i, e.what());
    } catch (const std::exception& e) {
      tally.fail(i, e.what());
    }
  }
}

/// A fresh connection after the churn: `size` random bytes echoed exactly, then the server's FIN.
bool fresh_echo(std::uint16_t port, std::size_t size, std::uint64_t seed) {
  socket_fd s = connect_local(port);
  std::vector<std::byte> message = random_bytes(size, seed);
  send_all(s.get(), message);
  if (recv_exact(s.get(), message.size()) != message) return false;
  shutdown_write(s.get());
  return recv_until_eof(s.get()).empty();
}

/// Connections reported as failed accepts (operation::accept).
std::size_t accept_errors_of(event_record& record) {
  std::lock_guard l(record.mutex);
  std::size_t n = 0;
  for (const auto& [error, where] : record.server_errors)
    n += where == iocp::operation::accept;
  return n;
}

/// Whether each of `made` connections the clients completed is accounted for, and closed: announced
/// (and its on_disconnected run), reported as a failed accept, or dropped by the kernel at a full
/// listen queue since `drops_before` (no server sees those). Connections the clients are done with
/// may still wait in the kernel's queue, or in an I/O thread's completions, for a while after other
/// connections behind them were served: counts read before this holds may still change.
bool all_accounted_for_and_closed(event_record& record, std::size_t made, long drops_before,
                                  const auto& server) {
  const long missing =
      static_cast<long>(made) - static_cast<long>(record.connected_count() + accept_errors_of(record));
  if (missing > listen_drops() - drops_before) return false; // (fewer than none: the checks below say)
  return server.connection_count() == 0 && record.disconnected_count() == record.connected_count();
}

/// Raises the soft descriptor limit to the hard one; returns the limit in force.
std::size_t raise_descriptor_limit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return static_cast<std::size_t>(limit.rlim_cur);
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(a_server_does_not_interrupt_the_thread_that_made_it, Config, backend_configs) {
  // Nothing here installs a signal handler or sends a signal, so no system call of this thread may
  // fail with EINTR: not while the server runs, nor after it is gone. (The stress cases below make
  // their connections with timed, blocking connect() calls from this thread: a spurious EINTR would
  // fail them at random.)
  {
    event_record record;
    std::atomic<int> send_failures{0};
    typename Config::template server<echo_handler> server(Config::options(),
                                                          echo_handler{{&record}, &send_failures});
    BOOST_TEST(fresh_echo(server.local_endpoint().port(), 1000, 7));
    BOOST_TEST(!server.stop());
  }
  socket_fd poller(::epoll_create1(EPOLL_CLOEXEC));
  BOOST_TEST_REQUIRE(poller.get() >= 0);
  int interrupted = 0, waits = 0;
  auto end = std::chrono::steady_clock::now() + 500ms;
  while (std::chrono::steady_clock::now() < end) {
    epoll_event ev;
    // Nothing is registered: each wait can only end by its timeout, or by an interruption.
    if (::epoll_wait(poller.get(), &ev, 1, 20) < 0 && errno == EINTR) ++interrupted;
    ++waits;
  }
  BOOST_TEST_MESSAGE(to_string(Config::io_backend) << ": " << interrupted << " of " << waits
                                                   << " epoll_wait calls in the 0.5 s after the server "
                                                      "was destroyed failed with EINTR");
  BOOST_TEST(interrupted == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(two_hundred_thousand_connections_a_third_reset, Config, backend_configs) {
  const std::size_t descriptors_at_start = open_descriptors();
  event_record record;
  std::atomic<int> send_failures{0};
  {
    typename Config::template server<echo_handler> server(Config::options(),
                                                          echo_handler{{&record}, &send_failures});
    BOOST_TEST((server.backend() == Config::io_backend));
    const std::uint16_t port = server.local_endpoint().port();
    const std::size_t descriptors_with_server = open_descriptors();
    const long drops_before = listen_drops();

    // ---- the churn ----
    auto start = std::chrono::steady_clock::now();
    std::vector<client_tally> tallies(client_threads);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < client_threads; ++t)
      threads.emplace_back(run_clients, port, t, client_threads, start + client_time_limit,
                           std::ref(tallies[t]));
    for (std::thread& t : threads)
      t.join();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    client_tally all;
    for (const client_tally& t : tallies) {
      all.resets += t.resets;
      all.echoes += t.echoes;
      all.failures += t.failures;
      for (const std::string& s : t.failure_samples)
        if (all.failure_samples.size() < 10) all.failure_samples.push_back(s);
    }
    const std::size_t done = all.resets + all.echoes;
    const std::size_t expected_resets = (total_connections + 2) / 3;
    BOOST_TEST_MESSAGE(to_string(server.backend())
                       << ": " << done << " connections in " << seconds << " s ("
                       << static_cast<std::size_t>(done / seconds) << "/s): " << all.resets << " reset, "
                       << all.echoes << " echoed, " << all.failures << " client failures");
    for (const std::string& s : all.failure_samples)
      BOOST_TEST_MESSAGE("  client failure: " << s);
    BOOST_TEST(all.failures == 0u);
    BOOST_TEST(all.resets == expected_resets);
    BOOST_TEST(all.echoes == total_connections - expected_resets);

    // ---- the server still accepts and echoes, from several connections at once ----
    {
      constexpr std::size_t fresh = 16;
      std::vector<std::thread> checkers;
      std::atomic<std::size_t> fresh_ok{0};
      for (std::size_t k = 0; k < fresh; ++k)
        checkers.emplace_back([&, k] {
          try {
            if (fresh_echo(port, 1000 + k * 4096, 0xF00D + k)) ++fresh_ok;
          } catch (const std::exception&) {}
        });
      for (std::thread& t : checkers)
        t.join();
      BOOST_TEST(fresh_ok == fresh);
      BOOST_TEST(fresh_echo(port, 1 << 20, 0xF00D'F00D)); // and a larger one
    }
    const std::size_t fresh_total = 16 + 1;

    // ---- every announced connection was closed exactly once; nothing is left ----
    BOOST_TEST(wait_until(
                   [&] {
                     return all_accounted_for_and_closed(record, total_connections + fresh_total,
                                                         drops_before, server);
                   },
                   30s),
               "accepted " << record.connected_count() << " + failed accepts " << accept_errors_of(record)
                           << " of " << total_connections + fresh_total << "; listen drops "
                           << listen_drops() - drops_before << "; open " << server.connection_count());
    BOOST_TEST(server.connection_count() == 0u);
    BOOST_TEST(record.duplicate_disconnects == 0);
    BOOST_TEST(send_failures == 0);

    std::size_t connected = 0, clean = 0, accept_errors = 0, unexpected_reasons = 0;
    std::map<std::string, std::size_t> reasons, other_errors;
    {
      std::lock_guard l(record.mutex);
      connected = record.connected.size();
      std::set<iocp::connection_id> ids(record.connected.begin(), record.connected.end());
      BOOST_TEST(ids.size() == connected); // ids are never reused
      BOOST_TEST(record.disconnected.size() == connected);
      std::size_t unmatched = 0;
      for (const iocp::connection_id& id : ids)
        if (!record.disconnected.count(id)) ++unmatched;
      BOOST_TEST(unmatched == 0u);
      for (const auto& [id, reason] : record.disconnected) {
        if (!reason)
          ++clean;
        else
          ++reasons[reason.message()];
        if (reason && reason != std::errc::connection_reset) ++unexpected_reasons;
      }
      for (const auto& [error, where] : record.server_errors) {
        if (where == iocp::operation::accept)
          ++accept_errors;
        else
          ++other_errors[std::string(iocp::to_string(where)) + ": " + error.message()];
      }
    }
    BOOST_TEST_MESSAGE("  server: " << connected << " on_connected, " << clean << " clean disconnects, "
                                    << connected - clean << " by error, " << accept_errors
                                    << " accept errors reported, " << other_errors.size()
                                    << " other kinds of server error");
    for (const auto& [what, n] : reasons)
      BOOST_TEST_MESSAGE("    disconnect reason '" << what << "': " << n);
    BOOST_TEST(unexpected_reasons == 0u); // a connection ends clean, or by the client's reset
    for (const auto& [what, n] : other_errors)
      BOOST_ERROR("server error outside the accept path, " << what << ": " << n << " times");

    // Every echo connection was accepted and closed cleanly; a reset one was announced at most once
    // (or never, if its reset beat the accept) and then closed by that reset.
    BOOST_TEST(clean == all.echoes + fresh_total);
    BOOST_TEST(connected >= all.echoes + fresh_total);
    BOOST_TEST(connected - clean <= all.resets);

    // ---- no descriptor leaked while the server runs ----
    const std::size_t descriptors_after = open_descriptors();
    BOOST_TEST_MESSAGE("  descriptors: " << descriptors_at_start << " at start, " << descriptors_with_server
                                         << " with the server, " << descriptors_after << " after the run");
    BOOST_TEST(descriptors_after <= descriptors_with_server + 2);

    BOOST_TEST(!server.stop());
    BOOST_TEST(record.server_closed == 1);
  }
  // ...nor once it is gone.
  BOOST_TEST(open_descriptors() <= descriptors_at_start + 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(server_side_closes_race_client_traffic, Config, backend_configs) {
  // While clients churn through echo connections, another thread aborts, disconnects or half-closes
  // them by id, racing their own traffic and close: exactly-once on_disconnected, ids that are
  // never reused, no leak and no corrupted stream must survive that.
  constexpr std::size_t total = 40'000;
  const std::size_t descriptors_at_start = open_descriptors();
  event_record record;
  std::atomic<int> send_failures{0}; // expected here: echoes after the server shut its send side
  {
    typename Config::template server<echo_handler> server(Config::options(),
                                                          echo_handler{{&record}, &send_failures});
    const std::uint16_t port = server.local_endpoint().port();
    const std::size_t descriptors_with_server = open_descriptors();
    const long drops_before = listen_drops();

    auto start = std::chrono::steady_clock::now();
    std::atomic<bool> clients_done{false};
    std::size_t aborts = 0, disconnects = 0, shutdowns = 0, unknown = 0, wrong_results = 0;
    std::thread controller([&] {
      std::size_t cursor = 0, n = 0;
      std::vector<iocp::connection_id> fresh_ids;
      while (!clients_done.load()) {
        fresh_ids.clear();
        {
          std::lock_guard l(record.mutex);
          fresh_ids.assign(record.connected.begin() + static_cast<std::ptrdiff_t>(cursor),
                           record.connected.end());
          cursor = record.connected.size();
        }
        for (iocp::connection_id id : fresh_ids) {
          std::error_code e;
          std::size_t* counter = nullptr;
          switch (n++ % 4) {
          case 0: e = server.abort(id), counter = &aborts; break;
          case 1: e = server.disconnect(id), counter = &disconnects; break;
          case 2: e = server.shutdown(id, iocp::shutdown_type::send), counter = &shutdowns; break;
          default: continue; // left alone
          }
          if (!e)
            ++*counter;
          else if (e == iocp::errc::unknown_connection)
            ++unknown;
          else
            ++wrong_results;
        }
        std::this_thread::sleep_for(50us);
      }
    });

    std::vector<race_tally> tallies(client_threads);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < client_threads; ++t)
      threads.emplace_back(run_racing_clients, port, t, client_threads, total, start + client_time_limit,
                           std::ref(tallies[t]));
    for (std::thread& t : threads)
      t.join();
    clients_done = true;
    controller.join();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    race_tally all;
    for (const race_tally& t : tallies) {
      all.full_echoes += t.full_echoes;
      all.cut_short += t.cut_short;
      all.resets += t.resets;
      all.failures += t.failures;
      for (const std::string& s : t.failure_samples)
        if (all.failure_samples.size() < 10) all.failure_samples.push_back(s);
    }
    BOOST_TEST_MESSAGE(to_string(server.backend())
                       << ": " << all.full_echoes + all.cut_short + all.resets << " racing connections in "
                       << seconds << " s: " << all.full_echoes << " full echoes, " << all.cut_short
                       << " cut short, " << all.resets << " reset by the client, " << all.failures
                       << " client failures; by id: " << aborts << " aborts, " << disconnects
                       << " disconnects, " << shutdowns << " shutdowns accepted, " << unknown
                       << " unknown ids, " << send_failures << " refused echoes");
    for (const std::string& s : all.failure_samples)
      BOOST_TEST_MESSAGE("  client failure: " << s);
    BOOST_TEST(all.failures == 0u);
    BOOST_TEST(all.full_echoes + all.cut_short + all.resets == total);
    BOOST_TEST(wrong_results == 0u);
    BOOST_TEST(aborts + disconnects + shutdowns > 0u); // the race did happen

    BOOST_TEST(fresh_echo(port, 100'000, 0xBEEF));

    BOOST_TEST(
        wait_until([&] { return all_accounted_for_and_closed(record, total + 1, drops_before, server); },
                   30s),
        "accepted " << record.connected_count() << " + failed accepts " << accept_errors_of(record) << " of "
                    << total + 1 << "; listen drops " << listen_drops() - drops_before << "; open "
                    << server.connection_count());
    BOOST_TEST(server.connection_count() == 0u);
    BOOST_TEST(record.duplicate_disconnects == 0);
    std::size_t aborted = 0, accept_errors = 0;
    std::map<std::string, std::size_t> reasons, other_errors;
    {
      std::lock_guard l(record.mutex);
      std::set<iocp::connection_id> ids(record.connected.begin(), record.connected.end());
      BOOST_TEST(ids.size() == record.connected.size());
      // Every connection is announced (and the fresh one), except perhaps those reset by the client
      // before they were accepted.
      BOOST_TEST(record.connected.size() <= total + 1);
      BOOST_TEST(record.connected.size() >= total + 1 - all.resets);
      BOOST_TEST(record.disconnected.size() == record.connected.size());
      for (const auto& [id, reason] : record.disconnected) {
        ++reasons[reason ? reason.message() : "clean"];
        if (reason == std::errc::connection_aborted) ++aborted;
      }
      for (const auto& [error, where] : record.server_errors)
        ++(where == iocp::operation::accept
               ? accept_errors
               : other_errors[std::string(iocp::to_string(where)) + ": " + error.message()]);
    }
    for (const auto& [what, n] : reasons)
      BOOST_TEST_MESSAGE("    disconnect reason '" << what << "': " << n);
    BOOST_TEST_MESSAGE("  server: " << accept_errors << " accept errors reported");
    for (const auto& [what, n] : other_errors)
      BOOST_ERROR("server error outside the accept path, " << what << ": " << n << " times");
    BOOST_TEST(aborted <= aborts); // only our aborts end a connection as "aborted"

    const std::size_t descriptors_after = open_descriptors();
    BOOST_TEST_MESSAGE("  descriptors: " << descriptors_at_start << " at start, " << descriptors_with_server
                                         << " with the server, " << descriptors_after << " after the run");
    BOOST_TEST(descriptors_after <= descriptors_with_server + 2);
    BOOST_TEST(!server.stop());
    BOOST_TEST(record.server_closed == 1);
  }
  BOOST_TEST(open_descriptors() <= descriptors_at_start + 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(thousands_of_connections_echo_in_bursts, Config, backend_configs) {
  // Thousands of connections open at once, each sending in the same instant, round after round:
  // bursts of completions far larger than one ring or one epoll_wait batch holds.
  const std::size_t descriptor_limit = raise_descriptor_limit();
  // Two descriptors per connection (ours and the server's) and room for the rest.
  const std::size_t count = std::min<std::size_t>(6000, (descriptor_limit - 256) / 2);
  constexpr int rounds = 5;
  BOOST_TEST_MESSAGE("descriptor limit " << descriptor_limit << ": " << count << " connections at once");
  BOOST_TEST_REQUIRE(count >= 300u);

  const std::size_t descriptors_at_start = open_descriptors();
  event_record record;
  std::atomic<int> send_failures{0};
  {
    typename Config::template server<echo_handler> server(Config::options(),
                                                          echo_handler{{&record}, &send_failures});
    const iocp::endpoint at = server.local_endpoint();
    auto start = std::chrono::steady_clock::now();
    std::vector<socket_fd> sockets;
    sockets.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
      sockets.push_back(connect_to(at, source_address(i).c_str()));
    BOOST_TEST_REQUIRE(wait_until([&] { return server.connection_count() == count; }));

    socket_fd poller(::epoll_create1(EPOLL_CLOEXEC));
    BOOST_TEST_REQUIRE(poller.get() >= 0);
    for (std::size_t i = 0; i < count; ++i) {
      int flags = ::fcntl(sockets[i].get(), F_GETFL);
      ::fcntl(sockets[i].get(), F_SETFL, flags | O_NONBLOCK);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      BOOST_TEST_REQUIRE(::epoll_ctl(poller.get(), EPOLL_CTL_ADD, sockets[i].get(), &ev) == 0);
    }

    // Reads until every socket has `want[i]` more bytes (or its end of stream when want is 0 and
    // `until_eof`), checking them against `expected[i]`.
    std::vector<std::vector<std::byte>> expected(count);
    std::vector<std::size_t> got(count);
    std::vector<bool> finished(count);
    std::size_t mismatches = 0, early_ends = 0, errors = 0;
    auto gather = [&](bool until_eof) {
      std::fill(got.begin(), got.end(), 0);
      std::fill(finished.begin(), finished.end(), false);
      std::size_t left = count;
      std::vector<epoll_event> events(512);
      std::byte buffer[4096];
      auto deadline = std::chrono::steady_clock::now() + 60s;
      while (left > 0 && std::chrono::steady_clock::now() < deadline) {
        int n = ::epoll_wait(poller.get(), events.data(), static_cast<int>(events.size()), 100);
        for (int k = 0; k < n; ++k) {
          std::size_t i = events[k].data.u64;
          if (finished[i]) continue;
          for (;;) {
            ssize_t r = ::recv(sockets[i].get(), buffer, sizeof buffer, 0);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (r < 0 && errno == EINTR) continue;
            bool done = false;
            if (r < 0) {
              ++errors, done = true;
            } else if (r == 0) {
              if (!until_eof || got[i] != expected[i].size()) ++early_ends;
              done = true;
            } else {
              std::span<const std::byte> part(buffer, static_cast<std::size_t>(r));
              if (got[i] + part.size() > expected[i].size() ||
                  !std::equal(part.begin(), part.end(),
                              expected[i].begin() + static_cast<std::ptrdiff_t>(got[i])))
                ++mismatches, done = true;
              got[i] += part.size();
              if (!until_eof && got[i] == expected[i].size()) done = true;
            }
            if (done) {
              finished[i] = true;
              --left;
              break;
            }
          }
        }
      }
      return left;
    };

    std::size_t unfinished = 0;
    for (int round = 0; round < rounds; ++round) {
      for (std::size_t i = 0; i < count; ++i) {
        expected[i] = random_bytes(64 + (i + round) % 512, i * rounds + round);
        send_all(sockets[i].get(), expected[i]); // small: the socket buffer always takes it at once
      }
      unfinished += gather(false);
    }
    for (std::size_t i = 0; i < count; ++i) {
      expected[i].clear();
      shutdown_write(sockets[i].get());
    }
    unfinished += gather(true);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    BOOST_TEST_MESSAGE(to_string(server.backend())
                       << ": " << count << " connections, " << rounds << " bursts each, in " << seconds
                       << " s; " << mismatches << " mismatches, " << early_ends << " early ends, " << errors
                       << " errors, " << unfinished << " unfinished");
    BOOST_TEST(mismatches == 0u);
    BOOST_TEST(early_ends == 0u);
    BOOST_TEST(errors == 0u);
    BOOST_TEST(unfinished == 0u);
    sockets.clear();

    BOOST_TEST(
        wait_until([&] { return server.connection_count() == 0 && record.disconnected_count() == count; }));
    BOOST_TEST(record.connected_count() == count);
    BOOST_TEST(record.duplicate_disconnects == 0);
    BOOST_TEST(send_failures == 0);
    {
      std::lock_guard l(record.mutex);
      std::size_t unclean = 0;
      for (const auto& [id, reason] : record.disconnected)
        if (reason) ++unclean;
      BOOST_TEST(unclean == 0u);
      for (const auto& [error, where] : record.server_errors)
        BOOST_ERROR("server error in " << iocp::to_string(where) << ": " << error.message());
    }
    BOOST_TEST(!server.stop());
  }
  BOOST_TEST(open_descriptors() <= descriptors_at_start + 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(graceful_stop_with_thousands_connected, Config, backend_configs) {
  // stop() with thousands of idle connections whose clients close as soon as the server's FIN
  // arrives: every one ends cleanly (a FIN, never a reset), well before the deadline.
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  const std::size_t count = std::min<std::size_t>(4000, (static_cast<std::size_t>(limit.rlim_cur) - 256) / 2);
  BOOST_TEST_REQUIRE(count >= 300u);
  const std::size_t descriptors_at_start = open_descriptors();
  event_record record;
  std::atomic<int> send_failures{0};
  std::vector<socket_fd> sockets;
  {
    typename Config::template server<echo_handler> server(Config::options(),
                                                          echo_handler{{&record}, &send_failures});
    const iocp::endpoint at = server.local_endpoint();
    sockets.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      sockets.push_back(connect_to(at, source_address(i).c_str()));
      if (i % 2) send_all(sockets.back().get(), "some bytes to echo first"); // and left unread
    }
    BOOST_TEST_REQUIRE(wait_until([&] { return server.connection_count() == count; }));

    socket_fd poller(::epoll_create1(EPOLL_CLOEXEC));
    BOOST_TEST_REQUIRE(poller.get() >= 0);
    for (std::size_t i = 0; i < count; ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = i;
      BOOST_TEST_REQUIRE(::epoll_ctl(poller.get(), EPOLL_CTL_ADD, sockets[i].get(), &ev) == 0);
    }
    std::size_t fins = 0, resets = 0, other = 0;
    std::thread closer([&] {
      std::vector<epoll_event> events(256);
      std::byte buffer[256];
      auto deadline = std::chrono::steady_clock::now() + 30s;
      while (fins + resets + other < count && std::chrono::steady_clock::now() < deadline) {
        int n = ::epoll_wait(poller.get(), events.data(), static_cast<int>(events.size()), 100);
        for (int k = 0; k < n; ++k) {
          std::size_t i = events[k].data.u64;
          if (!sockets[i]) continue;
          ssize_t r;
          while ((r = ::recv(sockets[i].get(), buffer, sizeof buffer, MSG_DONTWAIT)) > 0) {}
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
          ++(r == 0 ? fins : errno == ECONNRESET ? resets : other);
          ::epoll_ctl(poller.get(), EPOLL_CTL_DEL, sockets[i].get(), nullptr);
          sockets[i].reset(); // our FIN answers the server's
        }
      }
    });
    auto start = std::chrono::steady_clock::now();
    BOOST_TEST(!server.stop(20s));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    closer.join();
    BOOST_TEST_MESSAGE(to_string(server.backend())
                       << ": stop() with " << count << " connections took " << seconds << " s; clients saw "
                       << fins << " FINs, " << resets << " resets, " << other << " other ends");
    BOOST_TEST(seconds < 15.0);
    BOOST_TEST(fins == count);
    BOOST_TEST(resets == 0u);
    BOOST_TEST(other == 0u);
    BOOST_TEST(record.server_closed == 1);
    BOOST_TEST(server.connection_count() == 0u);
    BOOST_TEST(record.connected_count() == count);
    BOOST_TEST(record.disconnected_count() == count);
    BOOST_TEST(record.duplicate_disconnects == 0);
    BOOST_TEST(send_failures == 0);
    std::lock_guard l(record.mutex);
    std::size_t unclean = 0;
    for (const auto& [id, reason] : record.disconnected)
      if (reason) ++unclean;
    BOOST_TEST(unclean == 0u);
    for (const auto& [error, where] : record.server_errors)
      BOOST_ERROR("server error in " << iocp::to_string(where) << ": " << error.message());
  }
  sockets.clear();
  BOOST_TEST(open_descriptors() <= descriptors_at_start + 2);
}

namespace {

/// This process's resident memory, from /proc/self/statm.
std::size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

/// A connected, non-blocking client socket whose receive buffer is set small before the
/// handshake, so that the kernel holds little of what the server sends it.
socket_fd connect_small_receiver(const iocp::endpoint& to) {
  socket_fd s = open_tcp_socket(AF_INET);
  int small = 4096;
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(to.port());
  std::memcpy(&a.sin_addr, to.bytes().data(), 4);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail_errno("connect");
  ::fcntl(s.get(), F_SETFL, ::fcntl(s.get(), F_GETFL) | O_NONBLOCK);
  return s;
}

/// On connect, sends a 64 KiB block again and again, up to `goal` bytes, as far as the send-queue
/// limits let it; keeps the server side's socket buffer small, so that most of it has to queue.
/// Records how many bytes each connection's sends accepted, by the client's port.
struct flooder : recording_handler {
  const std::vector<std::byte>* block;
  std::size_t goal;
  std::map<std::uint16_t, std::size_t>* accepted_by_port; // guarded by record->mutex
  std::atomic<std::size_t>* refused;
  std::atomic<std::size_t>* other_errors;

  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    int small = 16 * 1024;
    ::setsockopt(conn.native_handle(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    std::size_t accepted = 0;
    while (accepted < goal) {
      std::error_code e = conn.send(std::span<const std::byte>(*block));
      if (e == iocp::errc::send_queue_full) {
        ++*refused;
        break;
      }
      if (e) {
        ++*other_errors;
        break;
      }
      accepted += block->size();
    }
    std::lock_guard l(record->mutex);
    (*accepted_by_port)[info.remote.port()] = accepted;
  }
};

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(a_thousand_clients_that_never_read_stay_within_the_send_queue_cap, Config,
                              backend_configs) {
  // 1,000 clients that do not read while the server sends each up to 2 MiB: without limits the
  // server would queue about 2 GB. With max_send_queue_per_connection 1 MiB and
  // max_send_queue_total 64 MiB, sends past either fail with send_queue_full, the memory reserved
  // for queues never passes the cap, and the process's resident memory grows by at most
  // cap * 9/8 + 24 MiB while the clients do not read: the cap, an eighth for allocator rounding and
  // the 64 KiB chunks each thread reserves ahead, and 24 MiB for 1,000 connections' own state and
  // this test's bookkeeping. Then the clients read everything they were sent, byte-exact (a tenth of
  // them close halfway instead), and every connection ends with one on_disconnected.
  constexpr std::size_t count = 1000;
  constexpr std::size_t cap = std::size_t{64} << 20;
  const std::size_t limit = raise_descriptor_limit();
  BOOST_TEST_REQUIRE(limit >= 2 * count + 256, "descriptor limit " << limit << " is too low");
  const std::size_t descriptors_at_start = open_descriptors();
  const std::vector<std::byte> block = random_bytes(64 * 1024, 0xF100D);
  event_record record;
  std::map<std::uint16_t, std::size_t> accepted_by_port;
  std::atomic<std::size_t> refused{0}, other_errors{0};
  auto options = Config::options();
  options.max_send_queue_per_connection = std::size_t{1} << 20;
  options.max_send_queue_total = cap;
  {
    typename Config::template server<flooder> server(
        options,
        flooder{{&record}, &block, std::size_t{2} << 20, &accepted_by_port, &refused, &other_errors});
    const iocp::endpoint at = server.local_endpoint();
    ::malloc_trim(0); // what earlier cases freed goes back to the system: this case's growth is its own
    const std::size_t rss_before = resident_bytes();
    std::vector<socket_fd> clients;
    clients.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
      clients.push_back(connect_small_receiver(at));
    BOOST_TEST_REQUIRE(wait_until([&] {
      std::lock_guard l(record.mutex);
      return accepted_by_port.size() == count;
    }));

    // ---- nobody reads ----
    std::size_t rss_peak = 0, reserved_peak = 0;
    for (int sample = 0; sample < 10; ++sample) {
      rss_peak = std::max(rss_peak, resident_bytes());
      reserved_peak = std::max(reserved_peak, server.send_queue_reserved());
      std::this_thread::sleep_for(50ms);
    }
    std::size_t accepted_total = 0;
    {
      std::lock_guard l(record.mutex);
      for (const auto& [port, n] : accepted_by_port)
        accepted_total += n;
    }
    const std::size_t growth = rss_peak > rss_before ? rss_peak - rss_before : 0;
    const std::size_t bound = cap / 8 * 9 + (std::size_t{24} << 20);
    BOOST_TEST_MESSAGE(to_string(server.backend())
                       << ": " << count << " clients not reading; sends accepted " << (accepted_total >> 20)
                       << " MiB, " << refused << " refused; send memory reserved at most "
                       << (reserved_peak >> 20) << " MiB (cap " << (cap >> 20)
                       << " MiB); resident memory grew by " << (growth >> 20) << " MiB (bound "
                       << (bound >> 20) << " MiB)");
    BOOST_TEST(other_errors == 0u);
    BOOST_TEST(refused > 0u); // the caps were reached
    BOOST_TEST(reserved_peak <= cap);
    BOOST_TEST(growth <= bound);
    BOOST_TEST(record.disconnected_count() == 0u);

    // ---- the clients read what they were sent (byte-exact), or close halfway ----
    socket_fd poller(::epoll_create1(EPOLL_CLOEXEC));
    BOOST_TEST_REQUIRE(poller.get() >= 0);
    std::vector<std::size_t> want(count), got(count);
    for (std::size_t i = 0; i < count; ++i) {
      {
        std::lock_guard l(record.mutex);
        want[i] = accepted_by_port.at(local_port_of(clients[i].get()));
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      BOOST_TEST_REQUIRE(::epoll_ctl(poller.get(), EPOLL_CTL_ADD, clients[i].get(), &ev) == 0);
    }
    std::size_t left = count, mismatches = 0, early_ends = 0, closed_halfway = 0;
    auto finish = [&](std::size_t i) {
      ::epoll_ctl(poller.get(), EPOLL_CTL_DEL, clients[i].get(), nullptr);
      clients[i].reset();
      --left;
    };
    for (std::size_t i = 0; i < count; ++i)
      if (want[i] == 0) finish(i); // nothing was accepted for it
    std::vector<epoll_event> events(256);
    std::vector<std::byte> buffer(256 * 1024);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (left > 0 && std::chrono::steady_clock::now() < deadline) {
      int n = ::epoll_wait(poller.get(), events.data(), static_cast<int>(events.size()), 100);
      for (int k = 0; k < n; ++k) {
        const std::size_t i = events[k].data.u64;
        if (!clients[i]) continue;
        ssize_t r = ::recv(clients[i].get(), buffer.data(), buffer.size(), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r <= 0) { // the server does not close while we have not read everything
          ++early_ends;
          finish(i);
          continue;
        }
        for (ssize_t b = 0; b < r; ++b)
          if (buffer[static_cast<std::size_t>(b)] !=
              block[(got[i] + static_cast<std::size_t>(b)) % block.size()]) {
            ++mismatches;
            break;
          }
        got[i] += static_cast<std::size_t>(r);
        if (got[i] > want[i]) ++mismatches;
        if (got[i] >= want[i]) {
          finish(i); // all of it: our FIN, and the server closes cleanly
        } else if (i % 10 == 9 && got[i] >= want[i] / 2) {
          ++closed_halfway;
          finish(i); // unread bytes: a reset
        }
      }
    }
    BOOST_TEST_MESSAGE("  clients: " << count - left << " done (" << closed_halfway << " closed halfway), "
                                     << mismatches << " mismatches, " << early_ends << " early ends");
    BOOST_TEST(left == 0u);
    BOOST_TEST(mismatches == 0u);
    BOOST_TEST(early_ends == 0u);

    BOOST_TEST(wait_until(
        [&] { return server.connection_count() == 0 && record.disconnected_count() == count; }, 30s));
    BOOST_TEST(record.connected_count() == count);
    BOOST_TEST(record.duplicate_disconnects == 0);
    std::size_t clean = 0, resets = 0, other = 0;
    {
      std::lock_guard l(record.mutex);
      for (const auto& [id, reason] : record.disconnected)
        ++(!reason                                                                     ? clean
           : reason == std::errc::connection_reset || reason == std::errc::broken_pipe ? resets
                                                                                       : other);
    }
    BOOST_TEST_MESSAGE("  server: " << clean << " clean closes, " << resets << " resets, " << other
                                    << " other");
    BOOST_TEST(other == 0u);
    BOOST_TEST(resets <= closed_halfway); // only a client that left bytes unread resets
    BOOST_TEST(!server.stop());
    BOOST_TEST(record.server_closed == 1);
    BOOST_TEST(server.send_queue_reserved() <= 2 * 4 * 64 * 1024u); // a few chunks per thread at most
  }
  BOOST_TEST(open_descriptors() <= descriptors_at_start + 2);
}

namespace {

/// Echoes everything; sends refused once the stop has shut the send side are expected.
struct stop_echo : recording_handler {
  std::atomic<std::size_t>* refused;
  void on_received(auto& conn, std::span<const std::byte> data) {
    if (conn.send(data)) ++*refused;
  }
};

/// Client i's byte at stream offset k: the server must echo exactly these, in order.
std::byte transfer_byte(std::size_t i, std::uint64_t k) {
  return static_cast<std::byte>((k * 131 + i * 7) ^ (k >> 11));
}

enum class stop_kind { stop_with_deadline, destructor };

/// Hundreds of clients sending and reading large amounts through the echo server; mid-transfer,
/// the server is stopped (stop with a short deadline, or its destructor).
template <class Config>
void stop_mid_transfer(stop_kind how) {
  constexpr std::size_t count = 400;
  constexpr std::uint64_t per_client = 8u << 20; // more than can pass before the stop
  const std::size_t descriptors_at_start = open_descriptors();
  event_record record;
  std::atomic<std::size_t> refused{0};
  auto server = std::make_unique<typename Config::template server<stop_echo>>(Config::options(),
                                                                              stop_echo{{&record}, &refused});
  const iocp::endpoint at = server->local_endpoint();
  struct client {
    socket_fd s;
    std::uint64_t sent = 0, echoed = 0;
    int end = -1; // -1: open; 0: the server's FIN; else the errno of the read that ended it
    bool writing = true;
    bool mismatch = false;
  };
  std::vector<client> clients(count);
  socket_fd poller(::epoll_create1(EPOLL_CLOEXEC));
  BOOST_TEST_REQUIRE(poller.get() >= 0);
  for (std::size_t i = 0; i < count; ++i) {
    clients[i].s = connect_to(at, source_address(i).c_str());
    ::fcntl(clients[i].s.get(), F_SETFL, ::fcntl(clients[i].s.get(), F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = i;
    BOOST_TEST_REQUIRE(::epoll_ctl(poller.get(), EPOLL_CTL_ADD, clients[i].s.get(), &ev) == 0);
  }
  BOOST_TEST_REQUIRE(wait_until([&] { return server->connection_count() == count; }));

  // One thread drives every client: sends its stream, reads and checks the echo, and when the
  // stream ends (the server's FIN, or a reset) closes. It never waits for the server.
  std::atomic<std::uint64_t> echoed_total{0};
  std::atomic<std::size_t> writing{count}, open{count};
  std::atomic<bool> give_up{false};
  std::thread driver([&] {
    std::vector<epoll_event> events(256);
    std::vector<std::byte> out(64 * 1024), in(64 * 1024);
    while (open > 0 && !give_up) {
      int n = ::epoll_wait(poller.get(), events.data(), static_cast<int>(events.size()), 50);
      for (int k = 0; k < n; ++k) {
        const std::size_t i = events[k].data.u64;
        client& c = clients[i];
        if (c.end != -1) continue;
        if (c.writing && (events[k].events & EPOLLOUT)) {
          std::size_t len =
              static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), per_client - c.sent));
          for (std::size_t b = 0; b < len; ++b)
            out[b] = transfer_byte(i, c.sent + b);
          ssize_t r = ::send(c.s.get(), out.data(), len, MSG_NOSIGNAL);
          if (r > 0) c.sent += static_cast<std::uint64_t>(r);
          if ((r < 0 && errno != EAGAIN && errno != EINTR) || c.sent == per_client) {
            c.writing = false; // done, or the server is gone; the read side says how it ended
            --writing;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = i;
            ::epoll_ctl(poller.get(), EPOLL_CTL_MOD, c.s.get(), &ev);
          }
        }
        if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
          ssize_t r = ::recv(c.s.get(), in.data(), in.size(), 0);
          if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
          if (r > 0) {
            for (ssize_t b = 0; b < r && !c.mismatch; ++b)
              if (in[static_cast<std::size_t>(b)] !=
                  transfer_byte(i, c.echoed + static_cast<std::uint64_t>(b)))
                c.mismatch = true;
            c.echoed += static_cast<std::uint64_t>(r);
            if (c.echoed > c.sent) c.mismatch = true;
            echoed_total += static_cast<std::uint64_t>(r);
            continue;
          }
          c.end = r == 0 ? 0 : errno;
          ::epoll_ctl(poller.get(), EPOLL_CTL_DEL, c.s.get(), nullptr);
          c.s.reset(); // our FIN (or nothing, after a reset)
          --open;
        }
      }
    }
  });

  // Let the transfer run, then stop it in the middle.
  wait_until([&] { return echoed_total.load() >= count * std::uint64_t{256 * 1024}; }, 20s);
  const std::size_t in_flight = writing.load();
  const auto start = std::chrono::steady_clock::now();
  if (how == stop_kind::stop_with_deadline)
    BOOST_TEST(!server->stop(200ms));
  else
    server.reset();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Every client's stream ends soon after: the FIN after its echo, or a reset. None hangs.
  wait_until([&] { return open.load() == 0; }, 20s);
  give_up = true;
  driver.join();

  std::size_t fins = 0, resets = 0, other_ends = 0, hung = 0, mismatches = 0;
  for (const client& c : clients) {
    if (c.end == -1)
      ++hung;
    else if (c.end == 0)
      ++fins;
    else if (c.end == ECONNRESET || c.end == EPIPE)
      ++resets;
    else
      ++other_ends;
    if (c.mismatch) ++mismatches;
  }
  std::size_t clean = 0, stop_timeouts = 0, peer_resets = 0, other_reasons = 0;
  {
    std::lock_guard l(record.mutex);
    for (const auto& [id, reason] : record.disconnected)
      ++(!reason                                                                     ? clean
         : reason == iocp::errc::stop_timeout                                        ? stop_timeouts
         : reason == std::errc::connection_reset || reason == std::errc::broken_pipe ? peer_resets
                                                                                     : other_reasons);
  }
  BOOST_TEST_MESSAGE(to_string(Config::io_backend)
                     << (how == stop_kind::destructor ? ": destructor" : ": stop(200 ms)") << " with "
                     << count << " connections, " << in_flight << " still sending and "
                     << (echoed_total.load() >> 20) << " MiB echoed, took " << took << " s; clients saw "
                     << fins << " FINs, " << resets << " resets, " << other_ends << " other ends, " << hung
                     << " no end, " << mismatches << " wrong bytes; server: " << clean << " clean, "
                     << stop_timeouts << " stop_timeout, " << peer_resets << " peer resets, " << other_reasons
                     << " other; " << refused << " echoes refused");
  BOOST_TEST(in_flight > 0u); // the stop came mid-transfer
  BOOST_TEST(took < 5.0);
  BOOST_TEST(hung == 0u);
  BOOST_TEST(other_ends == 0u);
  BOOST_TEST(mismatches == 0u);
  BOOST_TEST(fins + resets == count);
  BOOST_TEST(record.connected_count() == count);
  BOOST_TEST(record.disconnected_count() == count);
  BOOST_TEST(record.duplicate_disconnects == 0);
  BOOST_TEST(other_reasons == 0u);
  BOOST_TEST(record.server_closed == 1);
  if (how == stop_kind::destructor) BOOST_TEST(clean == 0u); // no wait: every connection is reset
  server.reset();
  poller.reset();
  BOOST_TEST(open_descriptors() <= descriptors_at_start + 2);
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(stop_with_a_short_deadline_mid_transfer, Config, backend_configs) {
  // stop(200 ms) while 400 connections echo megabytes both ways: stop() returns, every connection
  // gets exactly one on_disconnected, each client sees its echo (a prefix, byte-exact) and then the
  // server's FIN or a reset, never silence, and no descriptor is left behind.
  stop_mid_transfer<Config>(stop_kind::stop_with_deadline);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(destructor_mid_transfer, Config, backend_configs) {
  // The same with the destructor: no wait at all, every connection is reset.
  stop_mid_transfer<Config>(stop_kind::destructor);
}
