// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The counting policies (iocp/counting_policies.hpp): counting_mutex counts acquisitions, the
// contended ones and their wait; counting_map counts the lock of a mutex map and reports none for
// the lock-free map; counting_allocator counts what its policy hands out. And both, dropped into a
// real server, count what the server does: an echo over loopback locks the map and allocates. An
// allocator given to the server's constructor is the one (copied) that every allocation uses.
#define BOOST_TEST_MODULE counting_policies
#include "boost_test.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "iocp/counting_policies.hpp"
#include "iocp/iocp.hpp"
#include "iocp/lockfree_map.hpp"
#include "iocp/pmr_allocator.hpp"
#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/recorder.hpp"

BOOST_AUTO_TEST_CASE(counting_mutex_counts_what_waited) {
  iocp::counting_mutex m;
  m.lock();
  m.unlock();
  BOOST_TEST(m.try_lock());
  m.unlock();
  BOOST_TEST(m.statistics().acquisitions == 2u);
  BOOST_TEST(m.statistics().contended == 0u);

  // Held by this thread while another locks: that lock() waits, and says so.
  m.lock();
  std::atomic<bool> trying{false};
  std::thread other([&] {
    trying = true;
    m.lock();
    m.unlock();
  });
  while (!trying)
    std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  m.unlock();
  other.join();
  const iocp::lock_statistics s = m.statistics();
  BOOST_TEST(s.acquisitions == 4u);
  BOOST_TEST(s.contended == 1u);
  BOOST_TEST(s.wait_ns >= 10'000'000u); // it waited about 50 ms; at least 10 on any machine
}

BOOST_AUTO_TEST_CASE(counting_map_counts_the_mutex_maps_lock_and_none_for_the_lockfree_map) {
  int object = 0;
  iocp::counting_map<iocp::mutex_map> locked(16);
  const iocp::connection_id a = locked.insert({0, &object});
  BOOST_TEST(locked.find(a).has_value());
  BOOST_TEST(locked.erase(a));
  BOOST_TEST(!locked.find(a).has_value());
  BOOST_TEST(locked.lock_statistics().acquisitions == 4u); // insert, find, erase, find
  BOOST_TEST(locked.lock_statistics().contended == 0u);

  iocp::counting_map<iocp::lockfree_map> free_of_locks(16);
  const iocp::connection_id b = free_of_locks.insert({0, &object});
  BOOST_TEST(free_of_locks.find(b).has_value());
  BOOST_TEST(free_of_locks.lock_statistics().acquisitions == 0u);
  static_assert(std::is_base_of_v<iocp::lockfree_map, iocp::counting_map<iocp::lockfree_map>>);
  static_assert(iocp::connection_map<iocp::counting_map<iocp::mutex_map>>);
}

BOOST_AUTO_TEST_CASE(counting_allocator_counts_allocations_live_bytes_and_the_peak) {
  struct tag {};
  using counted = iocp::counting_allocator<iocp::plain_allocator, tag>;
  static_assert(iocp::operation_allocator<counted>);
  counted a;
  void* p = a.allocate(100);
  void* q = a.allocate(28);
  BOOST_TEST(counted::statistics().allocations == 2u);
  BOOST_TEST(counted::statistics().bytes == 128u);
  BOOST_TEST(counted::statistics().live_bytes == 128u);
  a.deallocate(p, 100);
  BOOST_TEST(counted::statistics().live_bytes == 28u);
  BOOST_TEST(counted::statistics().peak_live_bytes == 128u);
  counted::reset_statistics();
  BOOST_TEST(counted::statistics().allocations == 0u);
  BOOST_TEST(counted::statistics().peak_live_bytes == 28u);
  a.deallocate(q, 28);
  BOOST_TEST(counted::statistics().live_bytes == 0u);
  // good_size is the inner policy's.
  using counted_pool = iocp::counting_allocator<iocp::pooled_allocator, tag>;
  BOOST_TEST(counted_pool{}.good_size(100) == 128u);
}

namespace {
std::string text(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}
/// A server of two I/O threads on 127.0.0.1, an ephemeral port.
iocp::server_options two_threads(iocp::backend b = iocp::backend::automatic) {
  iocp::server_options options;
  options.address = "127.0.0.1";
  options.port = 0;
  options.threads = 2;
  options.io_backend = b;
  return options;
}
struct server_tag {};
} // namespace

BOOST_AUTO_TEST_CASE(a_server_with_counting_policies_counts_its_map_and_its_memory) {
  using namespace test_support;
  for (iocp::backend b : {
#if defined(_WIN32)
         iocp::backend::iocp
#else
         iocp::backend::io_uring, iocp::backend::epoll
#endif
       }) {
    BOOST_TEST_CONTEXT("backend " << iocp::to_string(b)) {
      event_record record;
      using server_type =
          iocp::basic_iocp_server<echo_handler, iocp::counting_allocator<iocp::pooled_allocator, server_tag>,
                                  iocp::counting_map<iocp::mutex_map>, iocp::thread_pool>;
      server_type server(two_threads(b), echo_handler{{&record}});
      const auto before = server_type::allocator_type::statistics();
      socket_fd client = connect_local(server.local_endpoint().port());
      const iocp::connection_id id = wait_for_connection(record, client.get());
      BOOST_REQUIRE(id);
      send_all(client.get(), std::string_view("counted"));
      BOOST_TEST(text(recv_exact(client.get(), 7)) == "counted");
      // A send by id from this thread: looked up in the map (its lock counted).
      const auto locks_before = server.connection_map().lock_statistics().acquisitions;
      BOOST_TEST(!server.send(id, std::string_view("by id")));
      BOOST_TEST(text(recv_exact(client.get(), 5)) == "by id");
      BOOST_TEST(server.connection_map().lock_statistics().acquisitions > locks_before);
      // The connection and its buffers came from the counted policy.
      BOOST_TEST(server_type::allocator_type::statistics().allocations > before.allocations);
      shutdown_both(client.get()); // the server sees the FIN and closes: stop() need not wait
      server.stop();
    }
  }
}

namespace {
/// A stateful allocator: every copy counts into the counters it was made with.
struct shared_counters {
  std::atomic<long> allocations{0};
  std::atomic<long> live{0};
};
struct stateful_allocator {
  shared_counters* counters = nullptr;
  stateful_allocator() = default; // the Allocator concept asks for it; the server must not use it
  explicit stateful_allocator(shared_counters& c) : counters(&c) {}
  void* allocate(std::size_t n) {
    if (!counters) throw std::logic_error("a default-constructed allocator was used");
    ++counters->allocations;
    ++counters->live;
    return ::operator new(n);
  }
  void deallocate(void* p, std::size_t) noexcept {
    if (counters) --counters->live;
    ::operator delete(p);
  }
};

/// Counts what reaches it, then passes it on to new/delete.
class counting_resource : public std::pmr::memory_resource {
public:
  std::atomic<long> allocations{0};
  std::atomic<long> live{0};

private:
  void* do_allocate(std::size_t n, std::size_t align) override {
    ++allocations;
    ++live;
    return std::pmr::new_delete_resource()->allocate(n, align);
  }
  void do_deallocate(void* p, std::size_t n, std::size_t align) override {
    --live;
    std::pmr::new_delete_resource()->deallocate(p, n, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

template <class Server>
void echo_once(Server& server, test_support::event_record& record) {
  using namespace test_support;
  socket_fd client = connect_local(server.local_endpoint().port());
  BOOST_REQUIRE(wait_for_connection(record, client.get()));
  send_all(client.get(), std::string_view("through your allocator"));
  BOOST_TEST(text(recv_exact(client.get(), 22)) == "through your allocator");
  shutdown_both(client.get());
}
} // namespace

BOOST_AUTO_TEST_CASE(every_allocator_the_server_uses_is_a_copy_of_the_one_it_was_given) {
  shared_counters counters;
  {
    test_support::event_record record;
    iocp::basic_iocp_server<test_support::echo_handler, stateful_allocator> server(
        std::allocator_arg, stateful_allocator(counters), two_threads(),
        test_support::echo_handler{{&record}});
    echo_once(server, record);
    // A send by id from this thread goes through the inbox, whose allocator is a copy too.
    BOOST_TEST(counters.allocations.load() > 0);
    server.stop();
  }
  BOOST_TEST(counters.live.load() == 0); // everything given back, to the allocator it came from
}

BOOST_AUTO_TEST_CASE(pmr_allocator_takes_its_memory_from_the_resource_it_is_given) {
  counting_resource upstream;
  {
    std::pmr::synchronized_pool_resource pool(&upstream);
    {
      test_support::event_record record;
      iocp::basic_iocp_server<test_support::echo_handler, iocp::pmr_allocator> server(
          std::allocator_arg, iocp::pmr_allocator(&pool), two_threads(),
          test_support::echo_handler{{&record}});
      echo_once(server, record);
      BOOST_TEST(upstream.allocations.load() > 0);
      server.stop();
    }
  }
  BOOST_TEST(upstream.live.load() == 0);
}
