// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// A broadcast room on the library: the contention workload for the ConnectionMap and
// ThreadingPolicy policies (load_client --mode room drives it; run_bench.py --room compares them).
//
//   room_server [--address A] [--port P] [--backend auto|io_uring|epoll] [--map mutex|lockfree]
//               [--threading single|pool] [--threads N] [--fanout K] [--size S]
//
// The client sends fixed-size messages of S bytes (default 64; the server only frames them, it does
// not look inside). Every complete message is sent by id, through server.send(id, span), to the next
// K members of the room after the sender (fewer if the room is smaller), and echoed to the sender
// (conn.send) so that the client can keep one message in flight per connection. Every by-id send
// looks the id up in the ConnectionMap; with the thread_pool policy about half of the members
// belong to the other I/O thread, and the send is posted to it.
//
// The room is a fixed array of atomic id slots, written only in on_connected and on_disconnected and
// read without a lock, so that the room itself is not what contends.
//
// Prints "listening on ADDRESS:PORT", runs until SIGINT or SIGTERM, then stops gracefully; at exit,
// prints to stderr how many by-id sends found their member gone (a member that left mid-send).

#include <array>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <span>
#include <string>
#include <string_view>

#include "iocp/iocp.hpp"

namespace {

constexpr std::size_t room_capacity = 4096;
constexpr std::size_t max_message = 4096;

struct room_settings {
  unsigned fanout = 4;
  std::size_t size = 64;
};

struct room_handler {
  struct connection_state {
    std::uint32_t slot = UINT32_MAX; // our place in the room
    std::uint32_t cursor = 0;        // where the next fan-out starts looking
    std::size_t have = 0;            // bytes of a partial message in `partial`
    std::array<std::byte, max_message> partial;
  };

  explicit room_handler(room_settings s) : settings(s) {}

  room_settings settings;
  // Written once per connect and disconnect; read by every fan-out. 0 = empty.
  std::array<std::atomic<std::uint64_t>, room_capacity> members{};
  std::atomic<std::uint32_t> high{0}; // slots [0, high) may be in use
  std::atomic<std::uint64_t> gone{0}; // by-id sends that met a closed member (rare)
  std::atomic<std::uint64_t> full{0}; // connections that found the room full

  void on_connected(auto& conn, const iocp::connection_info&) {
    auto& st = conn.state();
    for (std::uint32_t i = 0; i < room_capacity; ++i) {
      std::uint64_t empty = 0;
      if (members[i].load(std::memory_order_relaxed) == 0 &&
          members[i].compare_exchange_strong(empty, conn.id().value(), std::memory_order_release)) {
        st.slot = i;
        st.cursor = i + 1;
        std::uint32_t h = high.load(std::memory_order_relaxed);
        while (h < i + 1 && !high.compare_exchange_weak(h, i + 1, std::memory_order_release)) {}
        return;
      }
    }
    full.fetch_add(1, std::memory_order_relaxed);
  }

  void on_disconnected(auto& conn, std::error_code) {
    if (conn.state().slot != UINT32_MAX) members[conn.state().slot].store(0, std::memory_order_release);
  }

  void on_received(auto& conn, std::span<const std::byte> data) {
    auto& st = conn.state();
    const std::size_t S = settings.size;
    while (!data.empty()) {
      if (st.have == 0 && data.size() >= S) { // a whole message in the receive buffer
        deliver(conn, data.first(S));
        data = data.subspan(S);
        continue;
      }
      std::size_t take = std::min(S - st.have, data.size());
      std::memcpy(st.partial.data() + st.have, data.data(), take);
      st.have += take;
      data = data.subspan(take);
      if (st.have == S) {
        st.have = 0;
        deliver(conn, std::span<const std::byte>(st.partial.data(), S));
      }
    }
  }

  void deliver(auto& conn, std::span<const std::byte> message) {
    auto& st = conn.state();
    auto& server = conn.server();
    const std::uint32_t h = high.load(std::memory_order_acquire);
    unsigned sent = 0;
    // The next `fanout` members after the cursor, skipping ourselves and empty slots; at most one
    // lap of the room.
    for (std::uint32_t looked = 0; sent < settings.fanout && looked < h; ++looked) {
      std::uint32_t i = st.cursor < h ? st.cursor : 0;
      st.cursor = i + 1;
      if (i == st.slot) continue;
      std::uint64_t id = members[i].load(std::memory_order_acquire);
      if (id == 0) continue;
      if (server.send(iocp::connection_id(id), message))
        gone.fetch_add(1, std::memory_order_relaxed);
      else
        ++sent;
    }
    conn.send(message); // the echo, last: once the client sees it, the fan-out has been issued
  }

  void on_server_error(std::error_code error, iocp::operation where) {
    std::fprintf(stderr, "room_server: %s: %s\n", iocp::to_string(where), error.message().c_str());
  }
};

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr,
               "room_server: %s\n"
               "usage: room_server [--address A] [--port P] [--backend auto|io_uring|epoll]\n"
               "                   [--map mutex|lockfree] [--threading single|pool] [--threads N]\n"
               "                   [--fanout K] [--size S]\n",
               message.c_str());
  std::exit(2);
}

unsigned long parse_number(std::string_view text, unsigned long max, const char* what) {
  unsigned long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value > max) usage(what);
  return value;
}

template <class Map, class Threading>
int serve(const iocp::server_options& options, room_settings settings, const sigset_t& stop_signals) {
  using server_type = iocp::basic_iocp_server<room_handler, iocp::pooled_allocator, Map, Threading>;
  try {
    server_type server(options, settings);
    std::cout << "listening on " << server.local_endpoint().to_string() << " (" << to_string(server.backend())
              << ", " << server.thread_count() << " thread(s))" << std::endl;
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    server.stop(std::chrono::seconds(2));
    const room_handler& h = server.handler();
    std::fprintf(
        stderr, "room_server: stopped; %llu by-id sends met a closed member, %llu refused (room full)\n",
        static_cast<unsigned long long>(h.gone.load()), static_cast<unsigned long long>(h.full.load()));
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "room_server: %s\n", e.what());
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  iocp::server_options options;
  options.address = "127.0.0.1";
  options.port = 50000;
  options.threads = 2;
  room_settings settings;
  std::string map = "mutex", threading = "single";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") usage("help");
    if (i + 1 >= argc) usage("missing value for " + std::string(arg));
    std::string_view value = argv[++i];
    if (arg == "--address") {
      options.address = std::string(value);
    } else if (arg == "--port") {
      options.port = static_cast<std::uint16_t>(parse_number(value, 65535, "bad --port"));
    } else if (arg == "--threads") {
      options.threads = parse_number(value, 4096, "bad --threads");
    } else if (arg == "--backend") {
      auto b = iocp::parse_backend(value);
      if (!b) usage("bad --backend (auto, io_uring or epoll)");
      options.io_backend = *b;
    } else if (arg == "--map") {
      map = value;
    } else if (arg == "--threading") {
      threading = value;
    } else if (arg == "--fanout") {
      settings.fanout = static_cast<unsigned>(parse_number(value, room_capacity, "bad --fanout"));
    } else if (arg == "--size") {
      settings.size = parse_number(value, max_message, "bad --size (1..4096)");
      if (settings.size == 0) usage("bad --size (1..4096)");
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (map != "mutex" && map != "lockfree") usage("--map is mutex or lockfree");
  if (threading != "single" && threading != "pool") usage("--threading is single or pool");
  options.max_connections = room_capacity * 4;

  // Block the stop signals before any I/O thread starts (they inherit the mask), so that the
  // signals reach sigwait().
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const bool pool = threading == "pool";
  if (map == "mutex")
    return pool ? serve<iocp::mutex_map, iocp::thread_pool>(options, settings, stop_signals)
                : serve<iocp::mutex_map, iocp::single_threaded>(options, settings, stop_signals);
  return pool ? serve<iocp::lockfree_map, iocp::thread_pool>(options, settings, stop_signals)
              : serve<iocp::lockfree_map, iocp::single_threaded>(options, settings, stop_signals);
}
