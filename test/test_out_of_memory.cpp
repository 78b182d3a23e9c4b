// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Out of memory on an I/O thread, on every backend: an Allocator policy that fails every n-th
// allocation (the connection objects, the send queues' blocks, the inbox of calls posted by id, held
// input) while clients echo, push through paused connections and receive sends posted from another
// thread. Every failure closes only the connection it was for (reason std::errc::not_enough_memory,
// reported to on_server_error), refuses the accept it was for, or fails the posted call with
// not_enough_memory; nothing else is lost (a connection closed cleanly had its conversation
// byte-exact), the server goes on serving, every on_connected has one on_disconnected, and (under
// the sanitizers) nothing leaks.
#define BOOST_TEST_MODULE out_of_memory
#include "boost_test.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "iocp/lockfree_map.hpp"
#include "support/client.hpp"
#include "support/configs.hpp"

using namespace test_support;
using namespace std::chrono_literals;

namespace {

/// The n-th allocation from now fails, and every n-th after it; 0: none fails. All instances (each
/// I/O thread has two) share the count, so which thread's allocation fails is up to the run.
struct failing_allocator {
  static inline std::atomic<std::uint64_t> every{0};
  static inline std::atomic<std::uint64_t> calls{0};
  static inline std::atomic<std::uint64_t> failures{0};

  void* allocate(std::size_t n) {
    const std::uint64_t k = every.load(std::memory_order_relaxed);
    if (k && calls.fetch_add(1, std::memory_order_relaxed) % k == k - 1) {
      failures.fetch_add(1, std::memory_order_relaxed);
      throw std::bad_alloc();
    }
    return ::operator new(n);
  }
  void deallocate(void* p, std::size_t n) noexcept { iocp::detail::delete_bytes(p, n); }
  /// From now on (0: no failures; the counts stay for reading).
  static void fail_every(std::uint64_t k) {
    if (k) {
      calls = 0;
      failures = 0;
    }
    every = k;
  }
};
static_assert(iocp::operation_allocator<failing_allocator>);

template <iocp::backend B, class Map, class Threading>
struct oom_config {
  static constexpr iocp::backend io_backend = B;
  template <class Handler>
  using server = iocp::basic_iocp_server<Handler, failing_allocator, Map, Threading>;
  static iocp::server_options options() {
    iocp::server_options o;
    o.address = "127.0.0.1";
    o.io_backend = B;
    o.threads = 2;
    return o;
  }
};
#if defined(_WIN32)
struct iocp_pool : oom_config<iocp::backend::iocp, iocp::mutex_map, iocp::thread_pool> {};
struct iocp_single : oom_config<iocp::backend::iocp, iocp::lockfree_map, iocp::single_threaded> {};
using oom_configs = std::tuple<iocp_pool, iocp_single>;
#else
struct uring_pool : oom_config<iocp::backend::io_uring, iocp::mutex_map, iocp::thread_pool> {};
struct uring_single : oom_config<iocp::backend::io_uring, iocp::lockfree_map, iocp::single_threaded> {};
struct epoll_pool : oom_config<iocp::backend::epoll, iocp::mutex_map, iocp::thread_pool> {};
struct epoll_single : oom_config<iocp::backend::epoll, iocp::lockfree_map, iocp::single_threaded> {};
using oom_configs = std::tuple<uring_pool, uring_single, epoll_pool, epoll_single>;
#endif

struct observations {
  std::mutex mutex;
  std::map<std::uint16_t, iocp::connection_id> by_port;        // client port -> id
  std::map<iocp::connection_id, std::error_code> disconnected; // id -> reason
  std::set<std::uint16_t> paused;                              // client ports the handler paused
  std::vector<std::pair<std::error_code, iocp::operation>> server_errors;
  int connected = 0;
  int duplicates = 0;

  std::optional<std::error_code> reason_for_port(std::uint16_t port) {
    std::lock_guard l(mutex);
    auto id = by_port.find(port);
    if (id == by_port.end()) return std::nullopt;
    auto r = disconnected.find(id->second);
    if (r == disconnected.end()) return std::nullopt;
    return r->second;
  }
  bool announced(std::uint16_t port) {
    std::lock_guard l(mutex);
    return by_port.count(port) != 0;
  }
};

/// Echoes. "pause" pauses receiving (the test thread resumes it by id); what arrives meanwhile is
/// held, then echoed.
struct oom_handler {
  observations* seen;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    std::lock_guard l(seen->mutex);
    ++seen->connected;
    seen->by_port[info.remote.port()] = conn.id();
  }
  void on_received(auto& conn, std::span<const std::byte> data) {
    constexpr std::string_view pause = "pause";
    if (std::string_view(reinterpret_cast<const char*>(data.data()), std::min(data.size(), pause.size())) ==
        pause) {
      conn.pause_receiving();
      {
        std::lock_guard l(seen->mutex);
        seen->paused.insert(conn.remote_endpoint().port());
      }
      data = data.subspan(pause.size());
    }
    conn.send(data); // a failure here closes the connection: its client sees the stream end
  }
  void on_disconnected(auto& conn, std::error_code reason) {
    std::lock_guard l(seen->mutex);
    if (!seen->disconnected.emplace(conn.id(), reason).second) ++seen->duplicates;
  }
  void on_server_error(std::error_code e, iocp::operation where) {
    std::lock_guard l(seen->mutex);
    seen->server_errors.emplace_back(e, where);
  }
};

struct conversation {
  std::uint16_t port = 0;
  bool ok = false;
  std::string failure;
};

/// A client: an echo of `size` bytes (the server queues what the kernel does not take at once),
/// optionally paused first (the bytes wait, held, until the test resumes it), then its FIN and the
/// server's.
conversation converse(std::uint16_t server_port, std::size_t size, std::uint64_t seed, bool paused,
                      const std::function<void(std::uint16_t)>& resume) {
  conversation c;
  try {
    socket_fd s = connect_local(server_port);
    set_timeouts(s.get(), 10);
    c.port = local_port_of(s.get());
    const std::vector<std::byte> data = random_bytes(size, seed);
    if (paused) {
      send_all(s.get(), "pause");
      std::this_thread::sleep_for(5ms); // not a check: "pause" alone in its receive, usually
      send_all(s.get(), data);
      resume(c.port);
    } else {
      send_all(s.get(), data);
    }
    if (recv_exact(s.get(), size) != data) {
      c.failure = "echo differs";
      return c;
    }
    shutdown_write(s.get());
    if (!recv_until_eof(s.get()).empty()) {
      c.failure = "data after the echo";
      return c;
    }
    c.ok = true;
  } catch (const std::exception& e) {
    c.failure = e.what();
  }
  return c;
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(allocation_failures_close_only_what_they_hit, Config, oom_configs) {
  failing_allocator::fail_every(0);
  observations seen;
  {
    typename Config::template server<oom_handler> server(Config::options(), oom_handler{&seen});
    const std::uint16_t port = server.local_endpoint().port();
    auto resume = [&](std::uint16_t client_port) {
      // By id from this (client) thread: a posted call, which may itself fail for memory.
      // Only once the handler has paused it (a resume that overtook the pause would be lost), or
      // it closed (for memory, say).
      wait_until([&] {
        {
          std::lock_guard l(seen.mutex);
          if (seen.paused.count(client_port)) return true;
        }
        return seen.reason_for_port(client_port).has_value();
      });
      iocp::connection_id id;
      {
        std::lock_guard l(seen.mutex);
        auto it = seen.by_port.find(client_port);
        if (it == seen.by_port.end()) return;
        id = it->second;
      }
      // The post itself may fail for memory: then it is made again.
      while (server.resume_receiving(id) == std::errc::not_enough_memory)
        std::this_thread::sleep_for(1ms);
    };

    // Connections fed by sends posted from this thread, one at a time: when a failure closes one,
    // the next takes over.
    struct fed_client {
      socket_fd socket;
      iocp::connection_id id;
      std::vector<std::byte> posted; // what the server accepted for it, in order
    };
    std::vector<fed_client> feds;
    auto new_fed = [&] {
      fed_client f{connect_local(port), {}, {}};
      const std::uint16_t p = local_port_of(f.socket.get());
      // Its accept may fail for memory: the server closes the socket, and the client sees its end.
      wait_until([&] { return seen.announced(p) || readable_now(f.socket.get()); });
      std::lock_guard l(seen.mutex);
      auto it = seen.by_port.find(p);
      if (it != seen.by_port.end()) f.id = it->second;
      feds.push_back(std::move(f));
    };

    failing_allocator::fail_every(7);
    std::vector<std::future<std::vector<conversation>>> clients;
    for (int t = 0; t < 3; ++t)
      clients.push_back(std::async(std::launch::async, [&, t] {
        std::vector<conversation> done;
        std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 1);
        for (int i = 0; i < 20; ++i) {
          const std::size_t size = rng() % 4 == 0 ? 600'000 : 1 + rng() % 20'000;
          done.push_back(converse(port, size, rng(), i % 3 == 0, resume));
        }
        return done;
      }));
    // Each posted send is accepted or fails for memory, until a failure closes its connection.
    std::size_t posted_ok = 0, posted_oom = 0, posted_other = 0;
    const std::vector<std::byte> chunk = random_bytes(4000, 99);
    new_fed();
    for (int i = 0; i < 400; ++i) {
      fed_client& f = feds.back();
      const std::error_code e = f.id ? server.send(f.id, std::span<const std::byte>(chunk))
                                     : make_error_code(iocp::errc::unknown_connection);
      if (!e) {
        ++posted_ok;
        f.posted.insert(f.posted.end(), chunk.begin(), chunk.end());
      } else if (e == std::errc::not_enough_memory) {
        ++posted_oom;
      } else if (e == iocp::errc::unknown_connection) {
        new_fed();
      } else {
        if (!posted_other) BOOST_TEST_MESSAGE("posted send: " << e.message());
        ++posted_other;
      }
      std::this_thread::sleep_for(1ms);
    }
    std::vector<conversation> results;
    for (auto& c : clients)
      for (conversation& r : c.get())
        results.push_back(std::move(r));
    const std::uint64_t injected = failing_allocator::failures.load();
    failing_allocator::fail_every(0);
    BOOST_TEST_MESSAGE(
        iocp::to_string(server.backend())
        << ", " << server.thread_count() << " thread(s): " << injected << " allocations failed; "
        << "posted sends " << posted_ok << " accepted, " << posted_oom << " not_enough_memory, "
        << posted_other << " other, to " << feds.size() << " connections");
    BOOST_TEST(injected >= 5u);
    BOOST_TEST(posted_other == 0u);

    // Each fed connection: what was accepted arrived in order; a clean close had all of it, and only
    // not_enough_memory ended one early. (Unannounced ones were refused: counted below.)
    int feds_closed_for_memory = 0, feds_refused = 0;
    for (fed_client& f : feds) {
      if (!f.id) {
        ++feds_refused;
        continue;
      }
      std::vector<std::byte> got;
      try {
        shutdown_write(f.socket.get()); // our FIN ends a live one once its bytes are out
        got = recv_until_eof(f.socket.get());
      } catch (const std::exception&) { // a reset: its connection was closed for memory
      }
      const std::uint16_t p = local_port_of(f.socket.get());
      BOOST_REQUIRE(wait_until([&] { return seen.reason_for_port(p).has_value(); }));
      const std::error_code reason = *seen.reason_for_port(p);
      BOOST_TEST(got.size() <= f.posted.size());
      BOOST_TEST(std::equal(got.begin(), got.end(), f.posted.begin()));
      if (reason == std::errc::not_enough_memory) {
        ++feds_closed_for_memory;
      } else {
        BOOST_TEST(!reason, reason.message());
        BOOST_TEST(got.size() == f.posted.size());
      }
    }

    // Each client: byte-exact and closed cleanly, or closed for memory, or never announced (its
    // accept failed for memory).
    int failed = 0, closed_for_memory = 0, refused = 0, wrong = 0;
    std::string failures;
    for (const conversation& c : results) {
      BOOST_REQUIRE(c.port != 0);
      if (!c.ok) {
        ++failed;
        failures += c.failure + "; ";
      }
      if (!wait_until([&] { return !seen.announced(c.port) || seen.reason_for_port(c.port).has_value(); },
                      20s)) {
        ++wrong; // announced and never closed
        continue;
      }
      if (!seen.announced(c.port)) {
        ++refused;
        if (c.ok) ++wrong;
        continue;
      }
      const std::error_code reason = *seen.reason_for_port(c.port);
      if (!reason) {
        if (!c.ok) ++wrong; // closed cleanly, yet the conversation broke
      } else if (reason == std::errc::not_enough_memory) {
        ++closed_for_memory;
      } else {
        ++wrong;
      }
    }
    BOOST_TEST_MESSAGE("  clients failed " << failed << ", closed for memory " << closed_for_memory
                                           << ", refused " << refused << "; " << failures);
    BOOST_TEST(wrong == 0, failures);

    // Reported: once for each connection closed for memory and each refused accept.
    {
      std::lock_guard l(seen.mutex);
      int reports = 0;
      for (auto& [e, where] : seen.server_errors) {
        if (e == std::errc::not_enough_memory)
          ++reports;
        else
          BOOST_ERROR("unexpected server error in " << iocp::to_string(where) << ": " << e.message());
      }
      BOOST_TEST(reports == closed_for_memory + refused + feds_closed_for_memory + feds_refused);
      BOOST_TEST(static_cast<std::uint64_t>(reports) <= injected);
    }
    const iocp::server_statistics stats = server.statistics();
    BOOST_TEST(stats.refused == static_cast<std::uint64_t>(refused + feds_refused));

    // The server goes on.
    for (int i = 0; i < 5; ++i) {
      conversation c = converse(port, 100'000, 1000 + static_cast<std::uint64_t>(i), i % 2 == 0, resume);
      BOOST_TEST(c.ok, "after the failures: " << c.failure);
    }
    feds.clear();
    BOOST_TEST(!server.stop(5s));
  }
  std::lock_guard l(seen.mutex);
  BOOST_TEST(seen.duplicates == 0);
  BOOST_TEST(seen.disconnected.size() == static_cast<std::size_t>(seen.connected));
}
