// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The policy lab: one workload over every named combination of the server's policies, in one
// process, in rotated rounds, so that what a policy changes is seen side by side on a shared
// machine. Public API only (include/iocp/*.hpp).
//
//   policy_lab [--workload fanout|all] [--senders K[,K...]] [--seconds S] [--rounds R]
//              [--backend auto|io_uring|epoll|both] [--connections N] [--size B] [--window W]
//              [--threads N] [--quick]
//
// Workloads (more to come; see the README's "Policy lab"):
// - fanout: K user threads (not I/O threads) send --size-byte messages by id (server.send(id,
//   span)) to --connections loopback clients, each thread round-robin over all of them, with at
//   most --window messages in flight in all (each sender its share; a sender whose share is out
//   sleeps until the clients have read more). One reader thread reads every client with epoll and
//   takes each message's send time from its first bytes.
//
// Combinations: {mutex_map, lockfree_map} x {thread_pool (--threads, default 2), single_threaded},
// all with pooled_allocator. Each is measured through the counting policies
// (iocp/counting_policies.hpp: counting_map, counting_allocator), which is what makes the lock
// and allocation columns possible; they cost the same in every combination.
//
// Each round runs every combination once, in an order rotated by one per round, on a fresh server:
// a warm-up (a fifth of --seconds, not counted), then --seconds measured. Figures (per combination,
// the median over the rounds):
//   msg/s        messages the clients received per second
//   io ns/msg    CPU time of the server's I/O threads per message (thread CPU clocks)
//   send ns/msg  CPU time of the sending threads per message (the library's posting side runs there)
//   p50/p99 us   from the sender's call to the reader taking the message (includes the reader's delay)
//   new/msg      global operator new calls per message (every thread; this program counts them)
//   alloc/msg    allocations of the server's Allocator policy per message
//   locks/msg    acquisitions of the ConnectionMap's lock per message (0: the map takes none)
//   cont/msg     of those, the ones that found the lock held and waited
// plus one machine-readable line per figure:
//   LAB workload=fanout backend=io_uring senders=8 combination=mutex+pool figure=msgs_per_s value=...
//
// --quick (meson test --benchmark): --seconds 0.5 --rounds 1. Everything runs on 127.0.0.1 with
// ephemeral ports; a run that stalls (no message for 10 s) fails with exit 1; exit 2: bad command line.

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <span>
#include <string>
#include <string_view>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "iocp/counting_policies.hpp"
#include "iocp/iocp.hpp"
#include "iocp/lockfree_map.hpp"

#include "counting_new.hpp" // counting::calls, counting::enabled

namespace {

using steady = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch()).count();
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "policy_lab: %s\n", what.c_str());
  std::exit(1);
}

// ---- command line ----

struct settings {
  std::vector<unsigned> senders{8};
  double seconds = 2;
  unsigned rounds = 3;
  std::vector<iocp::backend> backends{iocp::backend::automatic};
  unsigned connections = 64;
  std::size_t size = 64;
  unsigned window = 4096;
  std::size_t threads = 2;
};

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr,
               "policy_lab: %s\n"
               "usage: policy_lab [--workload fanout|all] [--senders K[,K...]] [--seconds S] [--rounds R]\n"
               "                  [--backend auto|io_uring|epoll|both] [--connections N] [--size B]\n"
               "                  [--window W] [--threads N] [--quick]\n",
               message.c_str());
  std::exit(2);
}

unsigned long number(std::string_view text, unsigned long min, unsigned long max, const char* what) {
  unsigned long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value < min || value > max)
    usage(std::string("bad ") + what);
  return value;
}

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--quick") {
      s.seconds = 0.5;
      s.rounds = 1;
      continue;
    }
    if (arg == "--help" || arg == "-h") usage("help");
    if (i + 1 >= argc) usage("missing value for " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--workload") {
      if (value != "fanout" && value != "all") usage("bad --workload (fanout, all)"); // one, so far
    } else if (arg == "--senders") {
      s.senders.clear();
      std::string_view rest = value;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        s.senders.push_back(static_cast<unsigned>(number(rest.substr(0, comma), 1, 256, "--senders")));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
      if (s.senders.empty()) usage("bad --senders");
    } else if (arg == "--seconds") {
      s.seconds = std::atof(std::string(value).c_str());
      if (!(s.seconds > 0 && s.seconds <= 3600)) usage("bad --seconds");
    } else if (arg == "--rounds") {
      s.rounds = static_cast<unsigned>(number(value, 1, 1000, "--rounds"));
    } else if (arg == "--backend") {
      if (value == "both") {
        s.backends = {iocp::backend::io_uring, iocp::backend::epoll};
      } else {
        const auto b = iocp::parse_backend(value);
        if (!b) usage("bad --backend");
        s.backends = {*b};
      }
    } else if (arg == "--connections") {
      s.connections = static_cast<unsigned>(number(value, 1, 4096, "--connections"));
    } else if (arg == "--size") {
      s.size = number(value, 16, 65536, "--size (16..65536)");
    } else if (arg == "--window") {
      s.window = static_cast<unsigned>(number(value, 1, 1u << 24, "--window"));
    } else if (arg == "--threads") {
      s.threads = number(value, 1, 256, "--threads");
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  return s;
}

// ---- what one run measures ----

struct figures {
  iocp::backend backend = iocp::backend::automatic; // the one the server used
  double msgs_per_s = 0;
  double io_ns_per_msg = 0;
  double send_ns_per_msg = 0;
  double p50_us = 0;
  double p99_us = 0;
  double new_per_msg = 0;
  double alloc_per_msg = 0;
  double locks_per_msg = 0;
  double contended_per_msg = 0;
};

struct figure_column {
  const char* name;  // machine-readable
  const char* title; // the table's
  double figures::*member;
  int decimals;
};
constexpr figure_column columns[] = {
    {"msgs_per_s", "msg/s", &figures::msgs_per_s, 0},
    {"io_cpu_ns_per_msg", "io ns/msg", &figures::io_ns_per_msg, 0},
    {"sender_cpu_ns_per_msg", "send ns/msg", &figures::send_ns_per_msg, 0},
    {"latency_p50_us", "p50 us", &figures::p50_us, 0},
    {"latency_p99_us", "p99 us", &figures::p99_us, 0},
    {"heap_new_per_msg", "new/msg", &figures::new_per_msg, 3},
    {"policy_allocs_per_msg", "alloc/msg", &figures::alloc_per_msg, 3},
    {"map_locks_per_msg", "locks/msg", &figures::locks_per_msg, 2},
    {"map_contended_per_msg", "cont/msg", &figures::contended_per_msg, 4},
};

std::int64_t thread_cpu_ns(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return 0;
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

/// Latencies in microseconds, 0 to 99,999, and one bucket for longer.
class latency_histogram {
public:
  void add(std::int64_t ns) {
    const std::int64_t us = ns < 0 ? 0 : ns / 1000;
    ++buckets_[us < limit ? static_cast<std::size_t>(us) : limit];
    ++count_;
  }
  void clear() {
    std::fill(buckets_.begin(), buckets_.end(), 0u);
    count_ = 0;
  }
  double percentile(double p) const {
    if (count_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(p * static_cast<double>(count_ - 1));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i];
      if (seen > rank) return static_cast<double>(i);
    }
    return limit;
  }

private:
  static constexpr std::int64_t limit = 100'000;
  std::vector<std::uint32_t> buckets_ = std::vector<std::uint32_t>(limit + 1);
  std::uint64_t count_ = 0;
};

// ---- the fan-out workload ----

/// What the server's handler and the lab share: the connections' ids and the I/O threads' clocks.
struct lab_state {
  std::mutex mutex;
  std::vector<iocp::connection_id> ids;
  std::vector<pthread_t> io_threads;
  std::vector<clockid_t> io_clocks;

  void connected(iocp::connection_id id) {
    std::lock_guard lock(mutex);
    ids.push_back(id);
    const pthread_t self = pthread_self();
    for (pthread_t t : io_threads)
      if (pthread_equal(t, self)) return;
    clockid_t clock;
    if (pthread_getcpuclockid(self, &clock) == 0) {
      io_threads.push_back(self);
      io_clocks.push_back(clock);
    }
  }
};

/// The server's handler: it only learns the ids; the clients never send.
struct lab_handler {
  explicit lab_handler(lab_state& s) : state(&s) {}
  void on_connected(auto& conn, const iocp::connection_info&) { state->connected(conn.id()); }
  void on_received(auto&, std::span<const std::byte>) {}
  lab_state* state;
};

/// Per sender: what it sent and what the clients have read of it, on separate cache lines.
struct alignas(64) sender_lane {
  std::atomic<std::uint64_t> sent{0};
  alignas(64) std::atomic<std::uint64_t> received{0}; // written by the reader only
  std::atomic<bool> waiting{false};
  std::atomic<std::uint32_t> wakeups{0}; // a sleeping sender waits for this to move
};

int connect_client(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
    die(std::string("connect: ") + std::strerror(errno));
  return fd;
}

template <class Server>
figures run_fanout(const settings& s, iocp::backend backend, unsigned sender_count, std::size_t io_threads) {
  using allocator = typename Server::allocator_type;
  lab_state state;
  iocp::server_options options;
  options.address = "127.0.0.1";
  options.port = 0;
  options.io_backend = backend;
  options.threads = io_threads;
  Server server(options, state);

  std::vector<int> clients;
  for (unsigned i = 0; i < s.connections; ++i)
    clients.push_back(connect_client(server.local_endpoint().port()));
  for (const auto give_up = steady::now() + std::chrono::seconds(10);;) {
    {
      std::lock_guard lock(state.mutex);
      if (state.ids.size() == s.connections) break;
    }
    if (steady::now() > give_up) die("the server did not announce every client");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  std::vector<sender_lane> lanes(sender_count);
  const std::uint64_t share = std::max<std::uint64_t>(1, s.window / sender_count);
  enum : int { warming, measuring, ending, done };
  std::atomic<int> phase{warming};

  // The reader: every client's bytes, cut into messages; each gives its sender credit and, while
  // measuring, a latency.
  latency_histogram latencies;
  std::atomic<std::uint64_t> read_total{0};
  std::thread reader([&] {
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    std::vector<std::vector<std::byte>> partial(s.connections, std::vector<std::byte>(s.size));
    std::vector<std::size_t> filled(s.connections, 0);
    for (unsigned i = 0; i < s.connections; ++i) {
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u32 = i;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, clients[i], &e);
    }
    std::vector<std::byte> buffer(256 * 1024);
    std::vector<std::uint64_t> credit(sender_count, 0);
    epoll_event events[64];
    std::uint64_t total = 0;
    while (phase.load(std::memory_order_acquire) != done) {
      const int n = ::epoll_wait(ep, events, 64, 50);
      const bool measure = phase.load(std::memory_order_relaxed) == measuring;
      for (int k = 0; k < n; ++k) {
        const unsigned c = events[k].data.u32;
        const ssize_t got = ::recv(clients[c], buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (got <= 0) continue;
        const std::int64_t at = now_ns();
        for (std::size_t off = 0; off < static_cast<std::size_t>(got);) {
          const std::size_t take = std::min(s.size - filled[c], static_cast<std::size_t>(got) - off);
          std::memcpy(partial[c].data() + filled[c], buffer.data() + off, take);
          filled[c] += take;
          off += take;
          if (filled[c] < s.size) break;
          filled[c] = 0;
          std::int64_t sent_at;
          std::memcpy(&sent_at, partial[c].data(), sizeof sent_at);
          const auto from = static_cast<unsigned>(partial[c][8]);
          if (from < sender_count) ++credit[from];
          if (measure) latencies.add(at - sent_at);
          ++total;
        }
      }
      for (unsigned t = 0; t < sender_count; ++t) {
        lanes[t].received.store(credit[t], std::memory_order_seq_cst);
        if (lanes[t].waiting.load(std::memory_order_seq_cst)) {
          lanes[t].wakeups.fetch_add(1, std::memory_order_seq_cst);
          lanes[t].wakeups.notify_one();
        }
      }
      read_total.store(total, std::memory_order_release);
    }
    ::close(ep);
  });

  std::vector<std::thread> senders;
  std::vector<clockid_t> sender_clocks(sender_count);
  for (unsigned t = 0; t < sender_count; ++t) {
    senders.emplace_back([&, t] {
      sender_lane& lane = lanes[t];
      std::vector<std::byte> message(s.size, std::byte{'x'});
      message[8] = static_cast<std::byte>(t);
      std::size_t next = t % state.ids.size();
      std::uint64_t sent = 0;
      while (phase.load(std::memory_order_relaxed) < ending) {
        std::uint64_t received = lane.received.load(std::memory_order_acquire);
        if (sent - received >= share) {
          // No lost wake-up: the reader moves `wakeups` after storing `received` if it sees
          // `waiting`; we load `received` after storing `waiting` (both sequentially consistent).
          const std::uint32_t generation = lane.wakeups.load(std::memory_order_seq_cst);
          lane.waiting.store(true, std::memory_order_seq_cst);
          received = lane.received.load(std::memory_order_seq_cst);
          if (sent - received >= share && phase.load(std::memory_order_seq_cst) < ending)
            lane.wakeups.wait(generation, std::memory_order_seq_cst);
          lane.waiting.store(false, std::memory_order_relaxed);
          continue;
        }
        const std::int64_t at = now_ns();
        std::memcpy(message.data(), &at, sizeof at);
        if (server.send(state.ids[next], std::span<const std::byte>(message))) {
          std::this_thread::yield(); // refused (the send-queue cap): try again later
          continue;
        }
        lane.sent.store(++sent, std::memory_order_relaxed);
        if (++next == state.ids.size()) next = 0;
      }
    });
    pthread_getcpuclockid(senders.back().native_handle(), &sender_clocks[t]);
  }

  struct snapshot {
    std::int64_t at = 0;
    std::uint64_t messages = 0;
    std::int64_t io_cpu = 0;
    std::int64_t sender_cpu = 0;
    std::uint64_t heap_new = 0;
    std::uint64_t policy_allocs = 0;
    iocp::lock_statistics locks;
  };
  auto take = [&] {
    snapshot x;
    x.at = now_ns();
    x.messages = read_total.load(std::memory_order_acquire);
    {
      std::lock_guard lock(state.mutex);
      for (clockid_t c : state.io_clocks)
        x.io_cpu += thread_cpu_ns(c);
    }
    for (clockid_t c : sender_clocks)
      x.sender_cpu += thread_cpu_ns(c);
    x.heap_new = counting::calls.load(std::memory_order_relaxed);
    x.policy_allocs = allocator::statistics().allocations;
    x.locks = server.connection_map().lock_statistics();
    return x;
  };

  // A stall (nothing read for 10 s) ends the program: a broken run must not hang the benchmark.
  auto sleep_watching = [&](std::chrono::nanoseconds length) {
    const auto until = steady::now() + length;
    std::uint64_t last = read_total.load();
    auto last_progress = steady::now();
    while (steady::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      const std::uint64_t now_read = read_total.load();
      if (now_read != last) {
        last = now_read;
        last_progress = steady::now();
      } else if (steady::now() - last_progress > std::chrono::seconds(10)) {
        die("no message arrived for 10 s");
      }
    }
  };

  counting::enabled.store(true);
  sleep_watching(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s.seconds / 5)));
  const snapshot before = take();
  phase.store(measuring, std::memory_order_release);
  sleep_watching(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s.seconds)));
  phase.store(ending, std::memory_order_seq_cst);
  const snapshot after = take();
  counting::enabled.store(false);

  for (auto& lane : lanes) {
    lane.wakeups.fetch_add(1, std::memory_order_seq_cst); // a sleeping sender wakes and sees `ending`
    lane.wakeups.notify_all();
  }
  for (auto& t : senders)
    t.join();
  // Let the clients read what is in flight, so the server stops with little left to send.
  std::uint64_t sent_total = 0;
  for (auto& lane : lanes)
    sent_total += lane.sent.load();
  for (const auto give_up = steady::now() + std::chrono::seconds(10);
       read_total.load() < sent_total && steady::now() < give_up;)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  phase.store(done, std::memory_order_release);
  reader.join();
  for (int fd : clients)
    ::close(fd);
  server.stop(std::chrono::milliseconds(0));

  figures f;
  f.backend = server.backend();
  const double messages = static_cast<double>(after.messages - before.messages);
  if (messages <= 0) die("no message arrived while measuring");
  f.msgs_per_s = messages * 1e9 / static_cast<double>(after.at - before.at);
  f.io_ns_per_msg = static_cast<double>(after.io_cpu - before.io_cpu) / messages;
  f.send_ns_per_msg = static_cast<double>(after.sender_cpu - before.sender_cpu) / messages;
  f.p50_us = latencies.percentile(0.50);
  f.p99_us = latencies.percentile(0.99);
  f.new_per_msg = static_cast<double>(after.heap_new - before.heap_new) / messages;
  f.alloc_per_msg = static_cast<double>(after.policy_allocs - before.policy_allocs) / messages;
  f.locks_per_msg = static_cast<double>(after.locks.acquisitions - before.locks.acquisitions) / messages;
  f.contended_per_msg = static_cast<double>(after.locks.contended - before.locks.contended) / messages;
  return f;
}

// ---- the combinations ----

/// One named combination of policies. A handler of your own joins the lab the same way: a
/// combination whose run() builds a basic_iocp_server of it (see the README's "Policy lab").
struct combination {
  std::string name;
  std::function<figures(const settings&, iocp::backend, unsigned senders)> fanout;
};

template <class Map, class Threading>
combination make_combination(std::string name) {
  struct tag {}; // each combination counts its own allocations
  using server = iocp::basic_iocp_server<lab_handler, iocp::counting_allocator<iocp::pooled_allocator, tag>,
                                         iocp::counting_map<Map>, Threading>;
  return {std::move(name), [](const settings& s, iocp::backend b, unsigned senders) {
            const std::size_t threads = std::is_same_v<Threading, iocp::single_threaded> ? 1 : s.threads;
            return run_fanout<server>(s, b, senders, threads);
          }};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

} // namespace

int main(int argc, char** argv) {
  const settings s = parse(argc, argv);
  const std::vector<combination> combinations = {
      make_combination<iocp::mutex_map, iocp::thread_pool>("mutex+pool"),
      make_combination<iocp::lockfree_map, iocp::thread_pool>("lockfree+pool"),
      make_combination<iocp::mutex_map, iocp::single_threaded>("mutex+single"),
      make_combination<iocp::lockfree_map, iocp::single_threaded>("lockfree+single"),
  };

  for (iocp::backend wanted : s.backends) {
    for (unsigned senders : s.senders) {
      std::map<std::string, std::vector<figures>> results;
      for (unsigned round = 0; round < s.rounds; ++round) {
        for (std::size_t k = 0; k < combinations.size(); ++k) {
          const combination& c = combinations[(k + round) % combinations.size()];
          try {
            results[c.name].push_back(c.fanout(s, wanted, senders));
          } catch (const std::system_error& e) {
            die(c.name + ": " + e.what());
          }
        }
      }
      const iocp::backend used = results.begin()->second.front().backend; // what `automatic` chose
      auto median_of = [&](const combination& c, const figure_column& col) {
        std::vector<double> v;
        for (const figures& f : results[c.name])
          v.push_back(f.*col.member);
        return median(v);
      };
      std::printf("\nworkload fanout: backend %s, %u senders, %u connections, %zu-byte messages, window %u, "
                  "pool of %zu threads; median of %u rounds of %.1f s\n",
                  std::string(iocp::to_string(used)).c_str(), senders, s.connections, s.size, s.window,
                  s.threads, s.rounds, s.seconds);
      std::printf("%-16s", "combination");
      for (const auto& col : columns)
        std::printf(" %11s", col.title);
      std::printf("\n");
      for (const combination& c : combinations) {
        std::printf("%-16s", c.name.c_str());
        for (const auto& col : columns)
          std::printf(" %11.*f", col.decimals, median_of(c, col));
        std::printf("\n");
      }
      for (const combination& c : combinations) {
        for (const auto& col : columns)
          std::printf("LAB workload=fanout backend=%s senders=%u combination=%s figure=%s value=%.*f\n",
                      std::string(iocp::to_string(used)).c_str(), senders, c.name.c_str(), col.name,
                      col.decimals + 1, median_of(c, col));
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
