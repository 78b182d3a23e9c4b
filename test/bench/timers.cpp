// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// A million timers on one I/O thread: what each costs in memory, and how fast arming, cancelling
// and expiry are.
//
//   timers [--count 1000000] [--backend io_uring|epoll] [--spread-ms 2000] [--rounds 3]
//
// Part 1, the server (public API, one I/O thread, no connections): from a function posted to the
// I/O thread, --count server-wide timers are armed (due in an hour) with server.set_timer, then
// cancelled; then --count timers are armed due evenly over --spread-ms and left to fire. Reported:
// ns per arm and per cancel (wall time on the I/O thread), the process's resident growth per armed
// timer, and for the fires: the I/O thread's CPU per expiry (callback included) and the lateness of
// each fire against its due time (median, 99th percentile, max; the loop wakes for the earliest
// deadline, so lateness is the wake-up's and the callbacks' before it).
//
// Part 2, side by side (the timer set alone, the same operations, rotated rounds, medians): the
// library's loop_timers (4-ary heap + hash table) against the usual std::multimap keyed by due time
// with a hash table of iterators for cancel by id. Arm --count random deadlines, cancel half of
// them by id, expire the rest; ns per operation and the ratio.
//
// Exit 0, or 1 if a timer fired early, twice or not at all.

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "iocp/detail/loop_timers.hpp"
#include "iocp/iocp.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}

long resident_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

double thread_cpu_ns() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e9 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e3;
}

struct options {
  std::size_t count = 1'000'000;
  iocp::backend backend = iocp::backend::automatic;
  int spread_ms = 2000;
  int rounds = 3;
};

// ---- part 1: the server ----

struct fire_log {
  std::int64_t first_sequence = 0;
  std::vector<std::int64_t> due;      // by sequence - first_sequence
  std::vector<std::int64_t> fired_at; // 0: not fired
  std::atomic<std::size_t> fires{0};
  std::atomic<int> twice{0};
  std::size_t expected = 0;
  double cpu_at_last = 0;
  std::promise<void> done;
};

struct timer_handler {
  fire_log* log = nullptr;
  void on_server_timer(iocp::timer_id t) {
    const std::int64_t at = now_ns();
    const std::size_t i =
        static_cast<std::size_t>(static_cast<std::int64_t>(t.sequence()) - log->first_sequence);
    if (i < log->fired_at.size()) {
      if (log->fired_at[i]) ++log->twice;
      log->fired_at[i] = at;
    }
    if (++log->fires == log->expected) {
      log->cpu_at_last = thread_cpu_ns();
      log->done.set_value();
    }
  }
};

using server_type =
    iocp::basic_iocp_server<timer_handler, iocp::pooled_allocator, iocp::mutex_map, iocp::single_threaded>;

template <class F>
auto on_io_thread(server_type& server, F f) {
  std::promise<decltype(f())> result;
  auto future = result.get_future();
  if (server.post([&]() noexcept { result.set_value(f()); })) {
    std::fputs("timers: post refused\n", stderr);
    std::exit(1);
  }
  return future.get();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5))];
}

bool run_server_part(const options& o) {
  fire_log log;
  iocp::server_options so;
  so.address = "127.0.0.1";
  so.io_backend = o.backend;
  server_type server(so, timer_handler{&log});
  std::printf("part 1: the server, %s, one I/O thread, %zu timers\n", to_string(server.backend()).data(),
              o.count);

  struct arm_result {
    double arm_ns, cancel_ns;
    long grown_kib;
  };
  const long before_kib = resident_kib();
  std::vector<iocp::timer_id> ids(o.count);
  const arm_result r = on_io_thread(server, [&] {
    arm_result out{};
    std::int64_t t0 = now_ns();
    for (auto& id : ids)
      id = server.set_timer(std::chrono::hours(1));
    std::int64_t t1 = now_ns();
    out.grown_kib = resident_kib() - before_kib;
    for (auto id : ids)
      (void)server.cancel_timer(id);
    std::int64_t t2 = now_ns();
    out.arm_ns = double(t1 - t0) / double(o.count);
    out.cancel_ns = double(t2 - t1) / double(o.count);
    return out;
  });
  for (auto id : ids)
    if (!id) {
      std::fputs("timers: an arm was refused\n", stderr);
      return false;
    }
  std::printf("  arm      %8.1f ns/timer\n", r.arm_ns);
  std::printf("  cancel   %8.1f ns/timer\n", r.cancel_ns);
  std::printf("  memory   %8.1f bytes/armed timer (resident growth %ld KiB for %zu)\n",
              double(r.grown_kib) * 1024.0 / double(o.count), r.grown_kib, o.count);

  // Expiry: due evenly over the spread, armed in a shuffled order (a heap's worst case is not
  // the in-order arm).
  log.due.assign(o.count, 0);
  log.fired_at.assign(o.count, 0);
  log.expected = o.count;
  std::vector<std::int64_t> delays(o.count);
  const std::int64_t spread = std::int64_t{o.spread_ms} * 1'000'000;
  for (std::size_t i = 0; i < o.count; ++i)
    delays[i] = 100'000'000 + spread * static_cast<std::int64_t>(i) / static_cast<std::int64_t>(o.count);
  std::shuffle(delays.begin(), delays.end(), std::mt19937_64(1));
  auto done = log.done.get_future();
  const double cpu_start = on_io_thread(server, [&] {
    for (std::size_t i = 0; i < o.count; ++i) {
      // Read before the arm: the loop's due time is at or after this + delay.
      const std::int64_t armed = now_ns();
      iocp::timer_id t = server.set_timer(std::chrono::nanoseconds(delays[i]));
      if (i == 0) log.first_sequence = static_cast<std::int64_t>(t.sequence());
      log.due[static_cast<std::size_t>(static_cast<std::int64_t>(t.sequence()) - log.first_sequence)] =
          armed + delays[i];
    }
    return thread_cpu_ns();
  });
  if (done.wait_for(std::chrono::milliseconds(o.spread_ms) + std::chrono::seconds(60)) !=
      std::future_status::ready) {
    std::fprintf(stderr, "timers: only %zu of %zu fired\n", log.fires.load(), o.count);
    return false;
  }
  std::vector<double> late_us;
  late_us.reserve(o.count);
  std::size_t early = 0;
  for (std::size_t i = 0; i < o.count; ++i) {
    if (log.fired_at[i] < log.due[i]) ++early;
    late_us.push_back(double(log.fired_at[i] - log.due[i]) / 1000.0);
  }
  std::printf("  expiry   %8.1f ns/timer of I/O-thread CPU (the callback included)\n",
              (log.cpu_at_last - cpu_start) / double(o.count));
  std::printf("  lateness %8.1f us median, %.1f us p99, %.1f us max; %zu early, %d twice\n",
              percentile(late_us, 0.5), percentile(late_us, 0.99), percentile(late_us, 1.0), early,
              log.twice.load());
  std::printf("RESULT timers_arm_ns=%.1f timers_cancel_ns=%.1f timers_bytes_per_timer=%.1f "
              "timers_expiry_cpu_ns=%.1f timers_late_p50_us=%.1f timers_late_p99_us=%.1f\n",
              r.arm_ns, r.cancel_ns, double(r.grown_kib) * 1024.0 / double(o.count),
              (log.cpu_at_last - cpu_start) / double(o.count), percentile(late_us, 0.5),
              percentile(late_us, 0.99));
  server.stop();
  return early == 0 && log.twice.load() == 0;
}

// ---- part 2: side by side ----

/// The usual alternative: timers ordered in a std::multimap by due time, found by id through a
/// hash table of iterators.
class multimap_timers {
public:
  void arm(std::uint64_t sequence, std::int64_t due) { by_id_[sequence] = by_due_.emplace(due, sequence); }
  void cancel(std::uint64_t sequence) {
    auto it = by_id_.find(sequence);
    if (it == by_id_.end()) return;
    by_due_.erase(it->second);
    by_id_.erase(it);
  }
  template <class Fire>
  void expire(std::int64_t now, Fire&& fire) {
    while (!by_due_.empty() && by_due_.begin()->first <= now) {
      const std::uint64_t s = by_due_.begin()->second;
      by_due_.erase(by_due_.begin());
      by_id_.erase(s);
      fire(s);
    }
  }

private:
  std::multimap<std::int64_t, std::uint64_t> by_due_;
  std::unordered_map<std::uint64_t, std::multimap<std::int64_t, std::uint64_t>::iterator> by_id_;
};

struct part2_figures {
  double arm_ns, cancel_ns, expire_ns;
};

template <class Arm, class Cancel, class Expire>
part2_figures measure(const std::vector<std::int64_t>& due, const std::vector<std::uint64_t>& cancel_order,
                      Arm&& arm, Cancel&& cancel, Expire&& expire) {
  part2_figures f{};
  std::int64_t t0 = now_ns();
  for (std::size_t i = 0; i < due.size(); ++i)
    arm(i + 1, due[i]);
  std::int64_t t1 = now_ns();
  for (std::uint64_t s : cancel_order)
    cancel(s);
  std::int64_t t2 = now_ns();
  const std::size_t fired = expire();
  std::int64_t t3 = now_ns();
  if (fired != due.size() - cancel_order.size()) {
    std::fprintf(stderr, "timers: part 2 fired %zu, expected %zu\n", fired, due.size() - cancel_order.size());
    std::exit(1);
  }
  f.arm_ns = double(t1 - t0) / double(due.size());
  f.cancel_ns = double(t2 - t1) / double(cancel_order.size());
  f.expire_ns = double(t3 - t2) / double(fired);
  return f;
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

void run_side_by_side(const options& o) {
  std::mt19937_64 random(42);
  std::vector<std::int64_t> due(o.count);
  for (auto& d : due)
    d = static_cast<std::int64_t>(random() % 1'000'000'000);
  std::vector<std::uint64_t> cancel_order;
  for (std::size_t i = 1; i <= o.count; i += 2)
    cancel_order.push_back(i);
  std::shuffle(cancel_order.begin(), cancel_order.end(), random);

  std::vector<part2_figures> heap, tree;
  for (int round = 0; round < o.rounds; ++round) {
    for (int which = 0; which < 2; ++which) { // rotated: each goes first in turn
      const bool heap_turn = (round + which) % 2 == 0;
      if (heap_turn) {
        iocp::detail::loop_deadlines queue;
        iocp::detail::loop_timers timers(queue);
        iocp::detail::timer_node* list = nullptr;
        heap.push_back(measure(
            due, cancel_order, [&](std::uint64_t s, std::int64_t d) { timers.arm(s, d, 0, nullptr, list); },
            [&](std::uint64_t s) { timers.cancel(s); },
            [&] {
              std::size_t n = 0;
              timers.expire(
                  1'000'000'000, [&](iocp::detail::timer_node&) { ++n; }, [] { return std::int64_t{0}; });
              return n;
            }));
      } else {
        multimap_timers timers;
        tree.push_back(measure(
            due, cancel_order, [&](std::uint64_t s, std::int64_t d) { timers.arm(s, d); },
            [&](std::uint64_t s) { timers.cancel(s); },
            [&] {
              std::size_t n = 0;
              timers.expire(1'000'000'000, [&](std::uint64_t) { ++n; });
              return n;
            }));
      }
    }
  }
  auto col = [](const std::vector<part2_figures>& v, double part2_figures::*m) {
    std::vector<double> out;
    for (auto& f : v)
      out.push_back(f.*m);
    return median(out);
  };
  std::printf("part 2: the timer set alone, %zu timers, %d rotated rounds, medians (ns per operation)\n",
              o.count, o.rounds);
  std::printf("  %-8s %14s %22s %8s\n", "", "loop_timers", "multimap + hash table", "ratio");
  const char* names[] = {"arm", "cancel", "expire"};
  double part2_figures::*members[] = {&part2_figures::arm_ns, &part2_figures::cancel_ns,
                                      &part2_figures::expire_ns};
  for (int i = 0; i < 3; ++i) {
    const double a = col(heap, members[i]), b = col(tree, members[i]);
    std::printf("  %-8s %14.1f %22.1f %8.2f\n", names[i], a, b, a / b);
    std::printf("RESULT timers_set_%s_ns=%.1f multimap_%s_ns=%.1f ratio=%.2f\n", names[i], a, names[i], b,
                a / b);
  }
}

} // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "timers: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--count")
      o.count = std::stoul(value());
    else if (a == "--backend") {
      auto b = iocp::parse_backend(value());
      if (!b) {
        std::fputs("timers: --backend io_uring|epoll\n", stderr);
        return 2;
      }
      o.backend = *b;
    } else if (a == "--spread-ms")
      o.spread_ms = std::stoi(value());
    else if (a == "--rounds")
      o.rounds = std::stoi(value());
    else {
      std::fprintf(stderr,
                   "usage: timers [--count N] [--backend io_uring|epoll] [--spread-ms MS] [--rounds N]\n");
      return 2;
    }
  }
  if (o.count < 2) o.count = 2;
  const bool ok = run_server_part(o);
  run_side_by_side(o);
  return ok ? 0 : 1;
}
