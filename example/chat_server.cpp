// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// A chat room: members join by connecting, every line a member sends goes to the others, and a
// heartbeat closes members that stopped answering.
//
//   chat_server [--address A] [--port P] [--threads N] [--backend auto|io_uring|epoll]
//               [--heartbeat MS] [--relay-thread] [--map mutex|lockfree] [--threading single|pool]
//               [--fanout K] [--echo] [--fixed S]
//
// Prints "listening on ADDRESS:PORT" once it accepts, runs until SIGINT or SIGTERM (on Windows:
// Ctrl-C), then stops gracefully and exits 0. Errors go to stderr with a non-zero exit.
//
// What it shows of the library:
// - sends by id: a line is sent to every other member through server.send(id, ...), which acts at
//   once for a member of the same I/O thread and is posted to the member's thread otherwise;
// - --relay-thread: the fan-out runs on a worker thread instead (the I/O thread hands each line to
//   it), which sends by id from outside the I/O threads and uses server.post(id, f) for its notices;
// - a timer per member (conn.set_timer, periodic): a member silent for a whole --heartbeat period
//   (default 30000 ms; 0: none) gets "* ping"; still silent one period later, it is closed;
// - a member that does not read (its queue reaches the send-queue cap) is dropped, not waited for.
// The broadcast-room benchmark (test/bench/run_bench.py --room) runs this program with --fixed 64
// (messages of 64 bytes instead of lines), --fanout K (the next K members after the sender instead
// of all), --echo (the sender gets its own message back, last) and --heartbeat 0; --map and
// --threading choose the ConnectionMap and ThreadingPolicy policies it compares.

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "iocp/iocp.hpp"
#include "iocp/lockfree_map.hpp"

#include "example_support.hpp"

namespace {

constexpr std::uint32_t room_capacity = 4096;
constexpr std::size_t max_line = 4096; // a longer line closes its member ("* line too long")

struct chat_settings {
  std::chrono::milliseconds heartbeat{30000};
  bool relay_thread = false;
  unsigned fanout = 0;   // 0: every other member
  bool echo = false;     // the sender gets its own message back, after the others
  std::size_t fixed = 0; // 0: lines; else messages of this many bytes
};

/// The members: a fixed array of atomic id slots, written only when a member joins or leaves and
/// read without a lock by every fan-out (so that the room itself is not what contends).
struct room {
  std::array<std::atomic<std::uint64_t>, room_capacity> members{}; // connection ids; 0: free
  std::atomic<std::uint32_t> high{0};                              // slots [0, high) may be in use
  std::atomic<std::uint64_t> dropped{0};                           // members dropped as slow readers

  /// A slot for `id`, or room_capacity if the room is full.
  std::uint32_t join(iocp::connection_id id) {
    for (std::uint32_t i = 0; i < room_capacity; ++i) {
      std::uint64_t empty = 0;
      if (members[i].load(std::memory_order_relaxed) == 0 &&
          members[i].compare_exchange_strong(empty, id.value(), std::memory_order_acq_rel)) {
        std::uint32_t h = high.load(std::memory_order_relaxed);
        while (h < i + 1 && !high.compare_exchange_weak(h, i + 1, std::memory_order_acq_rel)) {}
        return i;
      }
    }
    return room_capacity;
  }
  void leave(std::uint32_t slot) {
    if (slot < room_capacity) members[slot].store(0, std::memory_order_release);
  }

  /// Sends `message` by id to the members after `from` (all of them, or the next `fanout`,
  /// starting at `cursor`), skipping `from` itself; a member whose queue is full is dropped.
  /// Returns how many it was sent to.
  template <class Server>
  unsigned fan_out(Server& server, std::uint32_t from, std::uint32_t& cursor, unsigned fanout,
                   std::span<const std::byte> message) {
    const std::uint32_t h = high.load(std::memory_order_acquire);
    const std::uint32_t wanted = fanout ? fanout : h;
    unsigned sent = 0;
    for (std::uint32_t looked = 0; sent < wanted && looked < h; ++looked) {
      const std::uint32_t i = cursor < h ? cursor : 0;
      cursor = i + 1;
      if (i == from) continue;
      const std::uint64_t id = members[i].load(std::memory_order_acquire);
      if (id == 0) continue;
      const std::error_code e = server.send(iocp::connection_id(id), message);
      if (e == iocp::errc::send_queue_full) {
        dropped.fetch_add(1, std::memory_order_relaxed);
        (void)server.abort(iocp::connection_id(id));
      } else if (!e) {
        ++sent;
      } // unknown_connection: it left meanwhile
    }
    return sent;
  }
};

/// --relay-thread: the fan-out of every message on one worker thread, in the order the messages
/// were handed over.
class relay {
public:
  struct message {
    std::uint32_t from;
    iocp::connection_id sender;
    std::string bytes;
  };
  /// Hands `m` to the worker; false if it has too much to do already (the caller delivers it).
  bool push(message& m) {
    {
      std::lock_guard lock(mutex_);
      if (queue_.size() >= max_queued) return false;
      queue_.push_back(std::move(m));
    }
    ready_.notify_one();
    return true;
  }
  /// Runs until stop(): takes the queue in batches and hands each message to `deliver`.
  template <class Deliver>
  void run(Deliver&& deliver) {
    std::deque<message> batch;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        batch.swap(queue_);
      }
      for (message& m : batch)
        deliver(m);
      batch.clear();
    }
  }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
  }

private:
  static constexpr std::size_t max_queued = 65536; // bounds the worker's backlog
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<message> queue_;
  bool stopping_ = false;
};

struct chat_handler {
  struct connection_state {
    std::uint32_t slot = room_capacity;
    std::uint32_t cursor = 0;  // where the next --fanout K starts looking
    unsigned silent_beats = 0; // heartbeats since the member last sent anything
    std::size_t have = 0;      // bytes of a partial message in `partial`
    std::array<std::byte, max_line> partial;
  };

  chat_handler(const chat_settings& s, relay* r) : settings(s), relay_queue(r) {}

  chat_settings settings;
  room members;
  relay* relay_queue = nullptr; // --relay-thread

  void on_connected(auto& conn, const iocp::connection_info& info) {
    auto& st = conn.state();
    st.slot = members.join(conn.id());
    st.cursor = st.slot + 1;
    if (st.slot == room_capacity) {
      notice(conn, "* the room is full\n");
      conn.disconnect();
      return;
    }
    if (settings.heartbeat.count() > 0) (void)conn.set_timer(settings.heartbeat, settings.heartbeat);
    if (!settings.fixed) {
      notice(conn, "* welcome; lines you send go to everyone else\n");
      announce(conn, "* " + info.remote.to_string() + " joined\n");
    }
  }

  void on_disconnected(auto& conn, std::error_code) {
    auto& st = conn.state();
    if (st.slot == room_capacity) return;
    members.leave(st.slot);
    if (!settings.fixed) announce(conn, "* " + conn.remote_endpoint().to_string() + " left\n");
  }

  void on_received(auto& conn, std::span<const std::byte> data) {
    auto& st = conn.state();
    st.silent_beats = 0; // any bytes answer the heartbeat
    while (!data.empty()) {
      std::size_t take = data.size();
      bool complete = false;
      if (settings.fixed) {
        take = std::min(settings.fixed - st.have, data.size());
        complete = st.have + take == settings.fixed;
      } else if (const void* nl = std::memchr(data.data(), '\n', data.size())) {
        take = static_cast<std::size_t>(static_cast<const std::byte*>(nl) - data.data()) + 1;
        complete = true;
      }
      if (st.have == 0 && complete) { // a whole message in the receive buffer: no copy
        deliver(conn, data.first(take));
      } else {
        if (st.have + take > max_line) {
          notice(conn, "* line too long\n");
          conn.disconnect();
          return;
        }
        std::memcpy(st.partial.data() + st.have, data.data(), take);
        st.have += take;
        if (complete) {
          deliver(conn, std::span<const std::byte>(st.partial.data(), st.have));
          st.have = 0;
        }
      }
      data = data.subspan(take);
    }
  }

  /// The heartbeat: silent for one period, the member is pinged; for two, it is closed.
  void on_timer(auto& conn, iocp::timer_id) {
    auto& st = conn.state();
    if (++st.silent_beats == 1) return;
    if (st.silent_beats == 2) {
      notice(conn, "* ping\n");
      return;
    }
    notice(conn, "* no answer: closing\n");
    conn.disconnect();
  }

  void on_server_error(std::error_code error, iocp::operation where) {
    std::fprintf(stderr, "chat_server: %s: %s\n", iocp::to_string(where), error.message().c_str());
  }

private:
  void deliver(auto& conn, std::span<const std::byte> message) {
    auto& st = conn.state();
    if (relay_queue) {
      relay::message m{st.slot, conn.id(),
                       std::string(reinterpret_cast<const char*>(message.data()), message.size())};
      if (relay_queue->push(m)) return;
    }
    const unsigned sent = members.fan_out(conn.server(), st.slot, st.cursor, settings.fanout, message);
    // The echo, last: once the sender sees it, the fan-out has been issued.
    if (settings.echo) (void)conn.send(message);
    if (!sent) notice(conn, "* nobody else is here\n");
  }

  /// To this member only (the heartbeat, errors). Not with --fixed: it would break the framing.
  void notice(auto& conn, std::string_view text) {
    if (!settings.fixed) (void)conn.send(text);
  }

  /// To everyone else: joins and leaves (not counted as the member's messages).
  void announce(auto& conn, const std::string& text) {
    std::uint32_t cursor = conn.state().slot + 1;
    members.fan_out(conn.server(), conn.state().slot, cursor, 0, std::as_bytes(std::span(text)));
  }
};

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr,
               "chat_server: %s\n"
               "usage: chat_server [--address A] [--port P] [--threads N] [--backend %s]\n"
               "                   [--heartbeat MS] [--relay-thread] [--map mutex|lockfree]\n"
               "                   [--threading single|pool] [--fanout K] [--echo] [--fixed S]\n",
               message.c_str(), example::backend_choices);
  std::exit(2);
}

unsigned long parse_number(std::string_view text, unsigned long max, const char* what) {
  const auto value = example::parse_number(text, max);
  if (!value) usage(what);
  return *value;
}

template <class Map, class Threading>
int serve(const iocp::server_options& options, const chat_settings& settings, example::stop_signals& stop) {
  using server_type = iocp::basic_iocp_server<chat_handler, iocp::pooled_allocator, Map, Threading>;
  try {
    relay relay_queue;
    server_type server(options, settings, settings.relay_thread ? &relay_queue : nullptr);
    std::thread worker;
    if (settings.relay_thread) {
      worker = std::thread([&] {
        std::vector<std::uint32_t> cursors(room_capacity);
        room& members = server.handler().members;
        relay_queue.run([&](relay::message& m) {
          const auto bytes = std::as_bytes(std::span(m.bytes));
          const unsigned sent = members.fan_out(server, m.from, cursors[m.from], settings.fanout, bytes);
          if (settings.echo) (void)server.send(m.sender, bytes);
          if (!sent && !settings.fixed) {
            // A notice from outside the I/O threads: posted to the member's own thread, where it
            // runs as one of its callbacks (or learns that the member has left: nullptr).
            (void)server.post(m.sender, [](auto* conn) noexcept {
              if (conn) (void)conn->send(std::string_view("* nobody else is here\n"));
            });
          }
        });
      });
    }
    std::cout << "listening on " << server.local_endpoint().to_string() << std::endl;
    stop.wait();
    server.stop(std::chrono::seconds(2));
    relay_queue.stop();
    if (worker.joinable()) worker.join();
    std::fprintf(stderr, "chat_server: stopped; %llu slow members dropped\n",
                 static_cast<unsigned long long>(server.handler().members.dropped.load()));
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "chat_server: %s\n", e.what());
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  iocp::server_options options;
  options.address = "127.0.0.1";
  options.port = 50000;
  options.max_connections = room_capacity * 2; // the room refuses the rest politely
  chat_settings settings;
  std::string map = "mutex", threading = "pool";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") usage("help");
    if (arg == "--relay-thread") {
      settings.relay_thread = true;
      continue;
    }
    if (arg == "--echo") {
      settings.echo = true;
      continue;
    }
    if (i + 1 >= argc) usage("missing value for " + std::string(arg));
    std::string_view value = argv[++i];
    const auto common = example::parse_server_option(arg, value, options);
    if (common == example::option_result::bad_value) usage("bad " + std::string(arg));
    if (common == example::option_result::parsed) continue;
    if (arg == "--heartbeat") {
      settings.heartbeat = std::chrono::milliseconds(parse_number(value, 86'400'000, "bad --heartbeat"));
    } else if (arg == "--map") {
      map = value;
    } else if (arg == "--threading") {
      threading = value;
    } else if (arg == "--fanout") {
      settings.fanout = static_cast<unsigned>(parse_number(value, room_capacity, "bad --fanout"));
    } else if (arg == "--fixed") {
      settings.fixed = parse_number(value, max_line, "bad --fixed (1..4096)");
      if (settings.fixed == 0) usage("bad --fixed (1..4096)");
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (map != "mutex" && map != "lockfree") usage("--map is mutex or lockfree");
  if (threading != "single" && threading != "pool") usage("--threading is single or pool");

  // Before any thread starts: they inherit the blocked signals (see example_support.hpp).
  example::stop_signals stop;
  const bool pool = threading == "pool";
  if (map == "mutex")
    return pool ? serve<iocp::mutex_map, iocp::thread_pool>(options, settings, stop)
                : serve<iocp::mutex_map, iocp::single_threaded>(options, settings, stop);
  return pool ? serve<iocp::lockfree_map, iocp::thread_pool>(options, settings, stop)
              : serve<iocp::lockfree_map, iocp::single_threaded>(options, settings, stop);
}
