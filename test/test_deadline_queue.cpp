// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The deadline queue and the loop's timer set with a clock of the test's own, where exact times
// can be asserted (test_timers.cpp runs the same rules over real connections and the real clock):
// - the heap against a model (std::multiset) over a random mix of pushes, removals from the
//   middle and pops: always the earliest, ties in arming order;
// - periodic timers: no drift, missed periods skipped after a long callback, none fired twice;
// - cancels from inside a callback: of itself, of a timer due in the same pass, of a whole list.
#define BOOST_TEST_MODULE deadline_queue
#include "boost_test.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "iocp/detail/deadline_queue.hpp"
#include "iocp/detail/loop_timers.hpp"

using iocp::detail::deadline_queue;
using iocp::detail::loop_timers;
using iocp::detail::timer_node;

namespace {
struct node {
  std::int64_t due_ns = 0;
  std::uint64_t order = 0;
  std::uint32_t heap_index = deadline_queue<node>::not_queued;
};
} // namespace

BOOST_AUTO_TEST_CASE(the_heap_always_yields_the_earliest_and_ties_in_arming_order) {
  std::mt19937_64 random(20261204);
  std::vector<node> nodes(5000);
  deadline_queue<node> queue;
  std::set<std::pair<std::int64_t, std::uint64_t>> model; // (due, order)
  std::vector<std::size_t> queued;
  std::uint64_t next_order = 0;
  for (int step = 0; step < 200000; ++step) {
    const unsigned op = static_cast<unsigned>(random() % 10);
    if (op < 5 && queued.size() < nodes.size()) { // push a free node, due times with many ties
      std::size_t i = 0;
      while (nodes[i].heap_index != deadline_queue<node>::not_queued)
        i = static_cast<std::size_t>(random() % nodes.size());
      nodes[i].due_ns = static_cast<std::int64_t>(random() % 500);
      nodes[i].order = next_order++;
      queue.push(nodes[i]);
      model.emplace(nodes[i].due_ns, nodes[i].order);
      queued.push_back(i);
    } else if (op < 8 && !queued.empty()) { // remove one from anywhere
      const std::size_t at = static_cast<std::size_t>(random() % queued.size());
      node& n = nodes[queued[at]];
      queue.remove(n);
      BOOST_REQUIRE(n.heap_index == deadline_queue<node>::not_queued);
      model.erase({n.due_ns, n.order});
      queued[at] = queued.back();
      queued.pop_back();
    } else if (!queued.empty()) { // pop the earliest
      BOOST_REQUIRE(queue.top_due() == model.begin()->first);
      node& n = queue.pop();
      BOOST_REQUIRE(n.due_ns == model.begin()->first);
      BOOST_REQUIRE(n.order == model.begin()->second);
      model.erase(model.begin());
      queued.erase(std::find(queued.begin(), queued.end(), static_cast<std::size_t>(&n - nodes.data())));
    }
    BOOST_REQUIRE(queue.size() == model.size());
  }
  while (!queue.empty()) { // drains in (due, order) order
    node& n = queue.pop();
    BOOST_REQUIRE(n.due_ns == model.begin()->first);
    BOOST_REQUIRE(n.order == model.begin()->second);
    model.erase(model.begin());
  }
}

namespace {
/// A timer set on a clock that moves only when told to.
struct fake_world {
  iocp::detail::loop_deadlines queue;
  loop_timers timers{queue};
  std::int64_t now = 0;
  timer_node* list = nullptr;
  std::vector<std::pair<std::uint64_t, std::int64_t>> fired; // (sequence, when)
  std::map<std::uint64_t, std::int64_t> callback_takes;      // a callback that advances the clock

  template <class Extra>
  void run_until(std::int64_t t, Extra&& extra) {
    while (!queue.empty() && queue.top_due() <= t) {
      now = std::max(now, queue.top_due());
      timers.expire(
          now,
          [&](timer_node& n) {
            fired.emplace_back(n.order, now);
            auto it = callback_takes.find(n.order);
            if (it != callback_takes.end()) now += it->second;
            extra(n);
          },
          [&] { return now; });
    }
    now = std::max(now, t);
  }
  void run_until(std::int64_t t) {
    run_until(t, [](timer_node&) {});
  }
};
} // namespace

BOOST_AUTO_TEST_CASE(a_periodic_timer_does_not_drift_and_skips_what_a_long_callback_missed) {
  fake_world w;
  w.timers.arm(1, 100, 100, nullptr, w.list);
  w.callback_takes[1] = 0;
  w.run_until(1000);
  BOOST_TEST(w.fired.size() == 10u); // 100, 200, ... 1000: on its multiples
  for (std::size_t k = 0; k < w.fired.size(); ++k)
    BOOST_TEST(w.fired[k].second == static_cast<std::int64_t>(100 * (k + 1)));
  // One callback takes 350: the fires at 1200, 1300, 1400 are skipped, not made up in a burst.
  w.fired.clear();
  w.callback_takes[1] = 0;
  w.run_until(1100, [&](timer_node&) {
    if (w.now == 1100) w.now += 350;
  });
  w.run_until(1700);
  std::vector<std::int64_t> at;
  for (auto& f : w.fired)
    at.push_back(f.second);
  BOOST_TEST((at == std::vector<std::int64_t>{1100, 1500, 1600, 1700}));
  BOOST_TEST(w.timers.size() == 1u);
}

BOOST_AUTO_TEST_CASE(cancels_inside_callbacks_take_effect_at_once) {
  fake_world w;
  timer_node* other_list = nullptr;
  w.timers.arm(1, 100, 0, nullptr, w.list);      // cancels 2 and itself
  w.timers.arm(2, 100, 0, nullptr, w.list);      // due in the same pass: never fires
  w.timers.arm(3, 100, 50, nullptr, w.list);     // periodic: cancels itself on its 3rd fire
  w.timers.arm(4, 120, 10, nullptr, other_list); // a list cancelled whole from 1's callback
  w.timers.arm(5, 500, 0, nullptr, other_list);
  int threes = 0;
  w.run_until(1000, [&](timer_node& n) {
    if (n.order == 1) {
      w.timers.cancel(2);
      w.timers.cancel(2); // idempotent
      w.timers.cancel(1); // itself, while firing
      w.timers.cancel_all(other_list);
      w.timers.arm(6, w.now, 0, nullptr, w.list); // due now: fires in this pass, after the rest due
    }
    if (n.order == 3 && ++threes == 3) w.timers.cancel(3);
  });
  std::vector<std::uint64_t> order;
  for (auto& f : w.fired)
    order.push_back(f.first);
  BOOST_TEST((order == std::vector<std::uint64_t>{1, 3, 6, 3, 3}));
  BOOST_TEST(w.timers.size() == 0u);
  BOOST_TEST(w.timers.empty());
  BOOST_TEST(other_list == nullptr);
  BOOST_TEST(w.list == nullptr);
}

BOOST_AUTO_TEST_CASE(many_timers_come_and_go_and_the_set_is_left_empty) {
  fake_world w;
  std::mt19937_64 random(7);
  std::set<std::uint64_t> cancelled;
  for (std::uint64_t s = 1; s <= 100000; ++s)
    w.timers.arm(s, static_cast<std::int64_t>(random() % 100000), 0, nullptr, w.list);
  for (std::uint64_t s = 1; s <= 100000; s += 3) {
    w.timers.cancel(s);
    cancelled.insert(s);
  }
  w.run_until(100000);
  BOOST_TEST(w.fired.size() == 100000u - cancelled.size());
  for (std::size_t k = 1; k < w.fired.size(); ++k)
    BOOST_REQUIRE(w.fired[k - 1].second <= w.fired[k].second);
  for (auto& f : w.fired)
    BOOST_REQUIRE(!cancelled.count(f.first));
  BOOST_TEST(w.timers.size() == 0u);
  BOOST_TEST(w.list == nullptr);
}
