// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Sends by id posted from another thread, against the same sends made in a callback, on every
// backend: a burst of small posted sends is coalesced into about as few kernel send operations as
// the callback's (it used to be one operation each), arrives byte-exact and in order, and in the
// steady state neither path calls the global operator new (posted sends take their memory from the
// Allocator policy, recycled). This program replaces the global operator new to count the calls.
#define BOOST_TEST_MODULE allocations
#include "boost_test.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/recorder.hpp"

namespace {
std::atomic<bool> counting{false};
std::atomic<std::uint64_t> new_calls{0};
} // namespace

// Every form of the global operator new goes through these two; the deletes match them (malloc and
// free underneath, which g++ cannot see through the replacement).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) new_calls.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return operator new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return operator new(n, std::nothrow); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace test_support;
using namespace std::chrono_literals;

namespace {

template <class Config, class Handler>
using server_of = typename Config::template server<Handler>;

constexpr std::size_t message_size = 64;
constexpr int burst = 20'000;
constexpr int gated_batch = 2'000; // posted sends the I/O thread takes at once (see measure)

/// Message i: its number, then a pattern, so that a lost or reordered message shows.
void fill_message(std::byte* out, std::uint32_t i) {
  std::memcpy(out, &i, sizeof i);
  for (std::size_t k = sizeof i; k < message_size; ++k)
    out[k] = static_cast<std::byte>(i * 31 + k);
}

/// "go" makes the callback send the whole burst itself; everything else is ignored.
struct burst_handler : recording_handler {
  std::atomic<int>* sends; // completed send operations (on_sent calls)
  void on_received(auto& conn, std::span<const std::byte> data) {
    if (data.size() != 2) return;
    std::byte message[message_size];
    for (int i = 0; i < burst; ++i) {
      fill_message(message, static_cast<std::uint32_t>(i));
      conn.send(std::span<const std::byte>(message, message_size));
    }
  }
  void on_sent(auto& conn, std::size_t n) {
    recording_handler::on_sent(conn, n);
    ++*sends;
  }
};

/// Reads exactly one burst into `buffer` (allocated once) and checks it.
bool read_burst(native_socket fd, std::vector<std::byte>& buffer) {
  std::size_t got = 0;
  while (got < buffer.size()) {
    io_result r = recv_some(fd, buffer.data() + got, buffer.size() - got);
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  std::byte expected[message_size];
  for (int i = 0; i < burst; ++i) {
    fill_message(expected, static_cast<std::uint32_t>(i));
    if (std::memcmp(expected, buffer.data() + static_cast<std::size_t>(i) * message_size, message_size) != 0)
      return false;
  }
  return true;
}

struct burst_figures {
  int operations = 0;
  std::uint64_t allocations = 0;
  bool intact = false;
};

template <class Server>
burst_figures measure(Server& server, native_socket client, iocp::connection_id id, std::atomic<int>& sends,
                      bool posted, std::vector<std::byte>& buffer, const std::vector<std::byte>& messages) {
  // Quiet first: every earlier send has completed.
  const std::uint64_t sent_before = server.statistics().bytes_sent;
  const int operations_before = sends.load();
  // The gate (below) is shared with the posted functions: the last one may still be reading it
  // after this function has posted its batch and moved on (or left early on a failed check).
  // Made before counting starts.
  const auto gate = std::make_shared<std::atomic<int>>(0);
  new_calls = 0;
  counting = true;
  if (posted) {
    // In batches, each posted while the I/O thread waits inside a posted function (the gate), so
    // that the thread takes each batch at once however the two threads are scheduled (a sanitizer
    // or a loaded machine slows the poster, and an ungated I/O thread then takes the sends a few at
    // a time: how many coalesce would measure the scheduler, not the library).
    // Batch b: 2b + 1 while the I/O thread is inside, 2b + 2 once posted.
    for (int first = 0, b = 0; first < burst; first += gated_batch, ++b) {
      BOOST_TEST_REQUIRE(!server.post(id, [gate, b](auto*) noexcept {
        *gate = 2 * b + 1;
        const auto give_up = std::chrono::steady_clock::now() + 20s;
        while (gate->load() != 2 * b + 2 && std::chrono::steady_clock::now() < give_up)
          std::this_thread::yield();
      }));
      while (gate->load() != 2 * b + 1)
        std::this_thread::yield();
      for (int i = first; i < std::min(burst, first + gated_batch); ++i)
        (void)server.send(
            id, std::span<const std::byte>(messages.data() + static_cast<std::size_t>(i) * message_size,
                                           message_size));
      *gate = 2 * b + 2;
    }
  } else {
    send_all(client, "go");
  }
  burst_figures f;
  f.intact = read_burst(client, buffer);
  counting = false;
  f.allocations = new_calls.load();
  // The last on_sent may come after the bytes arrived.
  wait_until([&] { return server.statistics().bytes_sent >= sent_before + buffer.size(); }, 5s);
  std::this_thread::sleep_for(20ms); // not a check: lets the last completion's on_sent run
  f.operations = sends.load() - operations_before;
  return f;
}

#if defined(_WIN32)
using burst_configs = std::tuple<iocp_mutex_pooled_single, iocp_lockfree_pooled_pool>;
#else
using burst_configs = std::tuple<uring_mutex_pooled_single, epoll_mutex_pooled_single,
                                 uring_lockfree_pooled_pool, epoll_lockfree_pooled_pool>;
#endif

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(posted_sends_coalesce_and_neither_path_allocates_in_the_steady_state, Config,
                              burst_configs) {
  event_record record;
  std::atomic<int> sends{0};
  auto options = Config::options();
  options.max_send_queue_per_connection = 64 << 20;
  options.max_send_queue_total = 256 << 20;
  server_of<Config, burst_handler> server(options, burst_handler{{&record}, &sends});
  socket_fd client = connect_local(server.local_endpoint().port());
  BOOST_REQUIRE(wait_until([&] { return record.connected_count() == 1; }));
  const iocp::connection_id id = record.last_connected();

  std::vector<std::byte> buffer(burst * message_size);
  std::vector<std::byte> messages(burst * message_size);
  for (int i = 0; i < burst; ++i)
    fill_message(messages.data() + static_cast<std::size_t>(i) * message_size, static_cast<std::uint32_t>(i));

  // Warm-up rounds fill the pools and grow the lists to their size; then the steady state. On a
  // busy machine the threads interleave differently from round to round (the I/O thread may take
  // the posted sends a few at a time, and a round may need a list longer than any before), so
  // the best round of each path is what proves the steady state, and every round is bounded.
  constexpr int warm_up = 2, rounds = 6;
  int callback_operations = burst, posted_operations = burst;
  std::uint64_t callback_allocations = ~0ull, posted_allocations = ~0ull, posted_allocations_total = 0;
  for (int round = 0; round < warm_up + rounds; ++round) {
    const burst_figures callback = measure(server, client.get(), id, sends, false, buffer, messages);
    BOOST_TEST_REQUIRE(callback.intact);
    const burst_figures posted = measure(server, client.get(), id, sends, true, buffer, messages);
    BOOST_TEST_REQUIRE(posted.intact);
    if (round < warm_up) continue;
    BOOST_TEST_MESSAGE(iocp::to_string(server.backend())
                       << ", " << server.thread_count() << " thread(s): " << burst << " sends of "
                       << message_size << " B: from a callback " << callback.operations
                       << " send operations, " << callback.allocations << " operator new; posted "
                       << posted.operations << " operations, " << posted.allocations << " operator new");
    // One operation per send would be 20,000; coalesced, they take about one per 16 KiB block.
    BOOST_TEST(callback.operations <= burst / 50);
    BOOST_TEST(posted.operations <= burst / 50); // every round coalesces as well as the callback
    callback_operations = std::min(callback_operations, callback.operations);
    posted_operations = std::min(posted_operations, posted.operations);
    callback_allocations = std::min(callback_allocations, callback.allocations);
    posted_allocations = std::min(posted_allocations, posted.allocations);
    posted_allocations_total += posted.allocations;
  }
  // Each gated batch is taken at once: its 128 KiB go out in a few send operations.
  BOOST_TEST(posted_operations <= burst / 50);
  BOOST_TEST(callback_allocations == 0u);
  BOOST_TEST(posted_allocations == 0u);
  BOOST_TEST(posted_allocations_total <
             static_cast<std::uint64_t>(burst) * rounds / 100); // under 0.01 a send
}
