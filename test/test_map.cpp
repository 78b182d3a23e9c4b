// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The ConnectionMap policies on their own and under concurrency: ids carry generations, a stale id
// never finds a newer entry in its slot, freed slots wait in quarantine (no id is issued twice, and
// a slot is reused only after slot_quarantine others were freed), capacity bounds the live entries
// and a full map refuses, and several threads inserting, erasing and looking up at once never see
// an entry that is not theirs (run under ThreadSanitizer in CI).
#define BOOST_TEST_MODULE map
#include "boost_test.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <random>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "iocp/connection_map.hpp"
#include "iocp/counting_policies.hpp"
#include "iocp/lockfree_map.hpp"

// counting_map<mutex_map> is a mutex map over a counting_mutex: it must behave as the map itself.
using maps = std::tuple<iocp::mutex_map, iocp::lockfree_map, iocp::counting_map<iocp::mutex_map>>;

BOOST_AUTO_TEST_CASE_TEMPLATE(insert_find_erase_and_generations, Map, maps) {
  Map map(8);
  int objects[3];
  iocp::connection_id a = map.insert({1, &objects[0]});
  BOOST_REQUIRE(a);
  auto found = map.find(a);
  BOOST_REQUIRE(found);
  BOOST_TEST(found->owner == 1u);
  BOOST_TEST(found->object == &objects[0]);
  BOOST_TEST(map.size() == 1u);

  BOOST_TEST(map.erase(a));
  BOOST_TEST(!map.erase(a)); // twice: the second finds nothing
  BOOST_TEST(!map.find(a));
  BOOST_TEST(map.size() == 0u);

  // The freed slot waits in quarantine: the next entry takes a fresh one.
  iocp::connection_id b = map.insert({2, &objects[1]});
  BOOST_REQUIRE(b);
  BOOST_TEST(b.slot() != a.slot());
  BOOST_TEST(!map.find(a));
  BOOST_TEST(!map.erase(a));
  BOOST_TEST(map.find(b)->object == &objects[1]);

  // Ids the map never issued.
  BOOST_TEST(!map.find(iocp::connection_id{}));
  BOOST_TEST(!map.find(iocp::connection_id(b.slot(), b.generation() + 1)));
  BOOST_TEST(!map.find(iocp::connection_id(7, 1)));
  BOOST_TEST(!map.find(iocp::connection_id(1'000'000, 1)));
  BOOST_TEST(!map.erase(iocp::connection_id(1'000'000, 1)));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_full_map_refuses_and_recovers, Map, maps) {
  Map map(3);
  int object;
  std::vector<iocp::connection_id> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(map.insert({0, &object}));
  for (auto id : ids)
    BOOST_TEST(bool(id));
  BOOST_TEST(!map.insert({0, &object})); // full: an empty id, not a crash
  BOOST_TEST(map.size() == 3u);
  BOOST_TEST(map.erase(ids[1]));
  iocp::connection_id again = map.insert({0, &object});
  BOOST_TEST(bool(again));
  BOOST_TEST(!map.insert({0, &object}));
}

namespace {

constexpr std::size_t quarantine = iocp::slot_quarantine;

/// Watches every id a map issues and every erase: no id twice, each reuse of a slot comes after
/// `quarantine` other slots were freed since that slot was, with the slot's next generation.
class reuse_checker {
public:
  /// False (and a test error) if `id` breaks a rule.
  bool issued(iocp::connection_id id) {
    bool ok = true;
    if (!ids_.insert(id.value()).second) {
      BOOST_ERROR("id issued twice: slot " << id.slot() << ", generation " << id.generation());
      ok = false;
    }
    if (auto it = slots_.find(id.slot()); it != slots_.end()) {
      const slot_history& h = it->second;
      if (h.live) {
        BOOST_ERROR("slot " << id.slot() << " issued while live");
        ok = false;
      } else if (frees_ - h.freed_at < quarantine) {
        BOOST_ERROR("slot " << id.slot() << " reused after only " << frees_ - h.freed_at << " other frees");
        ok = false;
      }
      if (id.generation() != iocp::connection_id::next_generation(h.generation)) {
        BOOST_ERROR("slot " << id.slot() << " went from generation " << h.generation << " to "
                            << id.generation());
        ok = false;
      }
      ++reuses_;
    }
    slots_[id.slot()] = {id.generation(), 0, true};
    return ok;
  }
  void erased(iocp::connection_id id) {
    slot_history& h = slots_.at(id.slot());
    h.live = false;
    h.freed_at = ++frees_;
  }
  std::size_t slots_used() const { return slots_.size(); }
  std::uint32_t highest_slot() const {
    std::uint32_t highest = 0;
    for (auto& [slot, h] : slots_)
      highest = std::max(highest, slot);
    return highest;
  }
  std::size_t reuses() const { return reuses_; }

private:
  struct slot_history {
    std::uint64_t generation;
    std::uint64_t freed_at; // the ordinal of the erase that freed it
    bool live;
  };
  std::unordered_set<std::uint64_t> ids_;
  std::unordered_map<std::uint32_t, slot_history> slots_;
  std::uint64_t frees_ = 0;
  std::size_t reuses_ = 0;
};

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(serial_churn_never_repeats_an_id_and_quarantines_slots, Map, maps) {
  // One connection at a time, as a server with one client reconnecting in a loop: with a LIFO free
  // list this reused one slot every time, and its 32-bit generation wrapped after 2^32 connections.
  Map map(1000);
  reuse_checker check;
  int object;
  constexpr int rounds = 200'000;
  int broken = 0;
  for (int i = 0; i < rounds; ++i) {
    iocp::connection_id id = map.insert({0, &object});
    BOOST_REQUIRE(id);
    if (!check.issued(id) && ++broken > 10) break;
    BOOST_REQUIRE(map.erase(id));
    check.erased(id);
  }
  // Exactly quarantine + 1 slots take turns: each reused only after the quarantine others.
  BOOST_TEST(check.slots_used() == quarantine + 1);
  BOOST_TEST(check.highest_slot() == quarantine);
  BOOST_TEST(check.reuses() == rounds - (quarantine + 1));
  BOOST_TEST(map.size() == 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(churn_with_many_live_entries_quarantines_slots, Map, maps) {
  // Random inserts and erases (oldest, newest or any) around a few hundred live entries, up to the
  // capacity: the same rules, and the slots stay below capacity + quarantine.
  constexpr std::size_t capacity = 500;
  Map map(capacity);
  reuse_checker check;
  std::mt19937 rng(7);
  std::deque<iocp::connection_id> live;
  int object;
  std::size_t refused = 0;
  int broken = 0;
  for (int i = 0; i < 300'000 && broken <= 10; ++i) {
    const unsigned choice = rng() % 100;
    if (choice < 52) {
      iocp::connection_id id = map.insert({0, &object});
      if (live.size() == capacity) {
        BOOST_TEST(!id);
        ++refused;
        continue;
      }
      BOOST_REQUIRE(id);
      if (!check.issued(id)) ++broken;
      live.push_back(id);
    } else if (!live.empty()) {
      std::size_t k = choice < 70 ? 0 : choice < 85 ? live.size() - 1 : rng() % live.size();
      BOOST_REQUIRE(map.erase(live[k]));
      check.erased(live[k]);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    }
    BOOST_TEST_REQUIRE(map.size() == live.size());
  }
  BOOST_TEST(broken == 0);
  BOOST_TEST(refused > 0u); // the walk did reach the capacity
  BOOST_TEST(check.reuses() > 100'000u);
  BOOST_TEST(check.highest_slot() < capacity + quarantine);
  for (iocp::connection_id id : live)
    BOOST_TEST(map.find(id).has_value());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stale_ids_never_find_a_later_occupant, Map, maps) {
  Map map(64);
  std::unordered_map<std::uint32_t, std::vector<iocp::connection_id>> by_slot; // every id per slot
  int objects[2];
  int wrong = 0;
  for (int i = 0; i < 3 * static_cast<int>(quarantine + 1); ++i) {
    iocp::connection_id id = map.insert({static_cast<std::uint32_t>(i), &objects[i % 2]});
    BOOST_REQUIRE(id);
    auto& earlier = by_slot[id.slot()];
    // Every earlier id of this slot, and forged ones around the live generation, miss it.
    for (iocp::connection_id old : earlier)
      wrong += map.find(old).has_value() + map.erase(old);
    wrong += map.find(iocp::connection_id(id.slot(), id.generation() + 1)).has_value();
    wrong += map.find(iocp::connection_id(id.slot(), id.generation() - 1)).has_value();
    wrong += map.find(iocp::connection_id(id.slot(), 0)).has_value();
    auto found = map.find(id);
    BOOST_REQUIRE(found);
    wrong += found->owner != static_cast<std::uint32_t>(i) || found->object != &objects[i % 2];
    earlier.push_back(id);
    BOOST_REQUIRE(map.erase(id));
  }
  BOOST_TEST(wrong == 0);
  // Each slot was used three times, with generations 1, 2 and 3.
  BOOST_TEST(by_slot.size() == quarantine + 1);
  for (auto& [slot, ids] : by_slot) {
    BOOST_TEST_REQUIRE(ids.size() == 3u);
    BOOST_TEST(ids[0].generation() == 1u);
    BOOST_TEST(ids[2].generation() == 3u);
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(capacity_bounds_live_entries_not_slots, Map, maps) {
  // Full, refused, emptied and refilled many times over: the slots the quarantine adds never
  // count as room, and what was there stays found.
  constexpr std::size_t capacity = 3;
  Map map(capacity);
  BOOST_TEST(map.capacity() == capacity);
  int object;
  std::vector<iocp::connection_id> live;
  std::uint32_t highest_slot = 0;
  for (int round = 0; round < 10000; ++round) {
    while (live.size() < capacity) {
      iocp::connection_id id = map.insert({0, &object});
      BOOST_REQUIRE(id);
      highest_slot = std::max(highest_slot, id.slot());
      live.push_back(id);
    }
    BOOST_REQUIRE(!map.insert({0, &object})); // full: an empty id, and nothing changed
    BOOST_REQUIRE(map.size() == capacity);
    for (iocp::connection_id id : live)
      BOOST_REQUIRE(map.find(id));
    // Erase one (or all, now and then) and go round again.
    std::size_t erase = round % 10 == 0 ? capacity : 1;
    for (std::size_t k = 0; k < erase; ++k) {
      BOOST_REQUIRE(map.erase(live.front()));
      live.erase(live.begin());
    }
  }
  BOOST_TEST(highest_slot == capacity + quarantine - 1); // all the slots it may have, no more
  // Capacity 0 makes room for one; more than max_connection_capacity is clamped to it.
  Map one(0);
  BOOST_TEST(one.capacity() == 1u);
  BOOST_TEST(bool(one.insert({0, &object})));
  BOOST_TEST(!one.insert({0, &object}));
  Map huge(std::numeric_limits<std::size_t>::max());
  BOOST_TEST(huge.capacity() == iocp::max_connection_capacity);
  BOOST_TEST(iocp::max_connection_capacity + quarantine == std::size_t{1} << 24);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(erase_steps_the_generation, Map, maps) {
  Map map(1);
  int object;
  iocp::connection_id first = map.insert({0, &object});
  BOOST_REQUIRE(first);
  BOOST_TEST(first.generation() == 1u);
  std::uint64_t generation = first.generation();
  for (std::size_t i = 0; i <= 2 * quarantine + 2; ++i) {
    iocp::connection_id id = i == 0 ? first : map.insert({0, &object});
    BOOST_REQUIRE(id);
    if (id.slot() == first.slot() && i != 0) {
      BOOST_TEST(id.generation() == iocp::connection_id::next_generation(generation));
      generation = id.generation();
    }
    BOOST_REQUIRE(map.erase(id));
  }
  BOOST_TEST(generation == 3u); // slot 0 came back twice
  // The wrap itself (1 after 2^40 - 1, never 0) is connection_id::next_generation's, which both maps
  // use: test_endpoint tests it; 2^40 erases of one slot are out of a test's reach.
}

BOOST_AUTO_TEST_CASE_TEMPLATE(concurrent_insert_erase_find, Map, maps) {
  constexpr int threads = 4;
  constexpr int operations = 200'000;
  Map map(1024); // small, so slots are reused all the time and generations churn
  std::atomic<int> wrong{0}, refused{0};
  std::vector<std::thread> workers;
  // Every thread publishes its live ids so the others look them up (and stale ones) concurrently.
  std::vector<std::atomic<std::uint64_t>> shared(threads * 64);
  for (auto& s : shared)
    s.store(0);
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<std::pair<iocp::connection_id, int*>> mine;
      std::vector<iocp::connection_id> erased;
      int tokens[64];
      for (int op = 0; op < operations; ++op) {
        int choice = static_cast<int>(rng() % 10);
        if (choice < 4 && mine.size() < 64) {
          int* object = &tokens[mine.size()];
          iocp::connection_id id = map.insert({static_cast<std::uint32_t>(t), object});
          if (!id) {
            ++refused;
            continue;
          }
          mine.emplace_back(id, object);
          shared[t * 64 + rng() % 64].store(id.value(), std::memory_order_relaxed);
        } else if (choice < 7 && !mine.empty()) {
          std::size_t k = rng() % mine.size();
          if (!map.erase(mine[k].first)) ++wrong;
          erased.push_back(mine[k].first);
          mine[k] = mine.back();
          mine.pop_back();
        } else if (choice < 8 && !erased.empty()) {
          // A stale id of ours: never found, whoever holds its slot now.
          if (map.find(erased[rng() % erased.size()])) ++wrong;
        } else if (choice < 9 && !mine.empty()) {
          auto& [id, object] = mine[rng() % mine.size()];
          auto entry = map.find(id);
          if (!entry || entry->object != object || entry->owner != static_cast<std::uint32_t>(t)) ++wrong;
        } else {
          // Somebody's id, maybe stale: if found, the entry must belong to the thread that inserted it.
          iocp::connection_id other(shared[rng() % shared.size()].load(std::memory_order_relaxed));
          if (auto entry = map.find(other); entry && entry->owner >= threads) ++wrong;
        }
      }
      for (auto& [id, object] : mine)
        if (!map.erase(id)) ++wrong;
    });
  }
  for (auto& w : workers)
    w.join();
  BOOST_TEST(wrong.load() == 0);
  BOOST_TEST(map.size() == 0u);
  BOOST_TEST_MESSAGE("refused while full: " << refused.load());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(concurrent_churn_at_capacity, Map, maps) {
  // More entries wanted than there is room for: inserts race for the last places and for slots
  // (the lock-free map also takes a queued slot when all capacity + quarantine slots exist), the
  // live count never passes the capacity, no id is issued twice, and the map recovers.
  constexpr int threads = 4;
  constexpr int operations = 150'000;
  constexpr std::size_t capacity = 100;
  Map map(capacity);
  std::atomic<int> wrong{0}, over{0};
  std::atomic<long> refused{0};
  std::vector<std::vector<std::uint64_t>> issued(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      std::vector<iocp::connection_id> mine;
      int token;
      for (int op = 0; op < operations; ++op) {
        if (rng() % 2 == 0 && mine.size() < 64) {
          iocp::connection_id id = map.insert({static_cast<std::uint32_t>(t), &token});
          if (!id) {
            ++refused;
            continue;
          }
          mine.push_back(id);
          issued[t].push_back(id.value());
        } else if (!mine.empty()) {
          std::size_t k = rng() % mine.size();
          if (!map.erase(mine[k])) ++wrong;
          mine[k] = mine.back();
          mine.pop_back();
        }
        if (map.size() > capacity) ++over;
        if (!mine.empty()) {
          auto entry = map.find(mine[rng() % mine.size()]);
          if (!entry || entry->owner != static_cast<std::uint32_t>(t) || entry->object != &token) ++wrong;
        }
      }
      for (iocp::connection_id id : mine)
        if (!map.erase(id)) ++wrong;
    });
  }
  for (auto& w : workers)
    w.join();
  BOOST_TEST(wrong.load() == 0);
  BOOST_TEST(over.load() == 0);
  BOOST_TEST(refused.load() > 0); // it was full, often
  std::vector<std::uint64_t> all;
  for (auto& ids : issued)
    all.insert(all.end(), ids.begin(), ids.end());
  std::sort(all.begin(), all.end());
  BOOST_TEST((std::adjacent_find(all.begin(), all.end()) == all.end())); // no id issued twice
  BOOST_TEST(all.size() > 2 * (capacity + quarantine));                  // slots were reused, many times
  BOOST_TEST_MESSAGE(all.size() << " ids, refused while full: " << refused.load());
  // Empty again, and the whole capacity is there, not a place more.
  BOOST_TEST(map.size() == 0u);
  int object;
  for (std::size_t i = 0; i < capacity; ++i)
    BOOST_TEST_REQUIRE(bool(map.insert({0, &object})));
  BOOST_TEST(!map.insert({0, &object}));
}

// ---- the maps inside a running server: sends by id from several threads while connections churn ----

#include "support/client.hpp"
#include "support/configs.hpp"
#include "support/recorder.hpp"

namespace {

struct publishing_handler : test_support::recording_handler {
  std::vector<std::atomic<std::uint64_t>>* ids;
  void on_connected(auto& conn, const iocp::connection_info& info) {
    recording_handler::on_connected(conn, info);
    (*ids)[conn.id().value() % ids->size()].store(conn.id().value(), std::memory_order_relaxed);
  }
  void on_received(auto& conn, std::span<const std::byte> data) { conn.send(data); }
};

#if defined(_WIN32)
using server_configs =
    std::tuple<test_support::iocp_mutex_pooled_pool, test_support::iocp_lockfree_pooled_pool>;
#else
using server_configs =
    std::tuple<test_support::uring_mutex_pooled_pool, test_support::uring_lockfree_pooled_pool,
               test_support::epoll_mutex_pooled_pool, test_support::epoll_lockfree_pooled_pool>;
#endif

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(sends_by_id_race_with_closing_connections, Config, server_configs) {
  using namespace test_support;
  event_record record;
  std::vector<std::atomic<std::uint64_t>> ids(64);
  for (auto& i : ids)
    i.store(0);
  typename Config::template server<publishing_handler> server(Config::options(),
                                                              publishing_handler{{&record}, &ids});
  const std::uint16_t port = server.local_endpoint().port();
  std::atomic<bool> done{false};
  std::atomic<long> accepted_sends{0}, rejected_sends{0}, full_sends{0};

  // Senders: hammer whatever ids were published, live or long gone.
  std::vector<std::thread> senders;
  for (int t = 0; t < 3; ++t) {
    senders.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<std::byte> payload(100, std::byte{'x'});
      while (!done.load()) {
        iocp::connection_id id(ids[rng() % ids.size()].load(std::memory_order_relaxed));
        std::error_code e =
            (rng() % 2) ? server.send(id, payload) : server.send(id, std::vector<std::byte>(payload));
        if (!e)
          ++accepted_sends;
        else if (e == iocp::errc::unknown_connection || e == iocp::errc::connection_closing)
          ++rejected_sends;
        else if (e == iocp::errc::send_queue_full)
          ++full_sends; // three threads posting flat out outrun the I/O threads: backpressure
        else
          BOOST_ERROR("unexpected send error: " << e.message());
      }
    });
  }
  // Churn: clients connect, echo, and leave by FIN or by reset: 400 connections each, and more
  // (for at most 20 s) until the senders have hit a live connection: on a busy machine they may
  // not run while the first 800 are open.
  std::vector<std::thread> clients;
  std::atomic<unsigned> connections{0};
  const auto churn_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int t = 0; t < 2; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 400 || (accepted_sends == 0 && std::chrono::steady_clock::now() < churn_deadline);
           ++i) {
        socket_fd s = connect_local(port);
        ++connections;
        send_all(s.get(), "ping");
        (void)recv_exact(s.get(), 4); // the echo, or posted bytes: the connection was live
        if (i % 3 == 0)
          set_linger_zero(s.get());
        else
          shutdown_write(s.get());
      }
    });
  }
  for (auto& c : clients)
    c.join();
  done = true;
  for (auto& s : senders)
    s.join();
    // The clients are done, but the server may not have accepted them all yet: wait for every one
    // to be accounted for, then for each to be closed.
#if defined(_WIN32)
  // A client that resets at once can fail its AcceptEx (reported as an accept error, never
  // announced) instead of being accepted and then reset as on Linux.
  auto accept_errors = [&] {
    std::lock_guard l(record.mutex);
    std::size_t n = 0;
    for (auto& [e, where] : record.server_errors)
      n += where == iocp::operation::accept;
    return n;
  };
  BOOST_TEST(wait_until([&] { return record.connected_count() + accept_errors() == connections; }),
             "accepted " << record.connected_count() << " + failed accepts " << accept_errors() << " of "
                         << connections);
  BOOST_TEST_MESSAGE("accepted " << record.connected_count() << ", failed accepts " << accept_errors());
#else
  BOOST_TEST(wait_until([&] { return record.connected_count() == connections; }),
             "accepted " << record.connected_count() << " of " << connections);
#endif
  BOOST_TEST(wait_until([&] { return record.disconnected_count() == record.connected_count(); }));
  BOOST_TEST(record.duplicate_disconnects == 0);
  BOOST_TEST(wait_until([&] { return server.connection_count() == 0; }));
  BOOST_TEST_MESSAGE("sends accepted " << accepted_sends << ", rejected " << rejected_sends
                                       << ", refused as full " << full_sends);
  BOOST_TEST(rejected_sends > 0); // stale ids were tried, and refused
  BOOST_TEST(accepted_sends > 0);
}
