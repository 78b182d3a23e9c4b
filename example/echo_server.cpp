// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The original library's tutorial made real: an echo server.
//
//   echo_server [--address A] [--port P] [--threads N] [--backend auto|io_uring|epoll]
//
// Prints "listening on ADDRESS:PORT" once it accepts, runs until SIGINT or SIGTERM (on Windows:
// Ctrl-C, Ctrl-Break or the console closing), then stops gracefully and exits 0. Errors go to
// stderr with a non-zero exit.

#if defined(_WIN32)
#include "iocp/detail/win/windows_headers.hpp"
#include <condition_variable>
#include <mutex>
#else
#include <csignal>
#endif
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "iocp/iocp.hpp"

namespace {

struct echo_handler {
  // Everything received goes straight back; the peer's half-close gets the default treatment
  // (finish sending what is queued, then close our side).
  // A send that fails (the server-wide send-queue cap is reached: more clients are not reading
  // than memory is set aside for) would leave a gap in the echo: that client is dropped instead.
  void on_received(auto& conn, std::span<const std::byte> data) {
    if (conn.send(data)) conn.abort();
  }

  // Backpressure: a client that sends without reading would make its echo queue grow. Above the
  // high-water mark we stop reading from it (TCP flow control then slows it down), and read again
  // once it has taken most of what is queued. Memory per connection stays near the mark.
  void on_send_queue_high(auto& conn, std::size_t) { conn.pause_receiving(); }
  void on_send_queue_low(auto& conn, std::size_t) { conn.resume_receiving(); }

  void on_server_error(std::error_code error, iocp::operation where) {
    // Accept-path errors are survived; say what happened without stopping.
    std::fprintf(stderr, "echo_server: %s: %s\n", iocp::to_string(where), error.message().c_str());
  }
};

#if defined(_WIN32)
// The console control handler runs on a thread of its own: it only tells main() to stop.
std::mutex stop_mutex;
std::condition_variable stop_requested;
bool stop_flag = false;

BOOL WINAPI on_console_event(DWORD) {
  {
    std::lock_guard lock(stop_mutex);
    stop_flag = true;
  }
  stop_requested.notify_all();
  return TRUE; // handled: the process is not ended before main() has stopped the server
}
#endif

constexpr const char* usage_line = "usage: echo_server [--address A] [--port P] [--threads N] "
#if defined(_WIN32)
                                   "[--backend auto|iocp]";
#else
                                   "[--backend auto|io_uring|epoll]";
#endif

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr, "echo_server: %s\n%s\n", message, usage_line);
  std::exit(2);
}

unsigned long parse_number(std::string_view text, unsigned long max, const char* what) {
  unsigned long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value > max) usage(what);
  return value;
}

} // namespace

int main(int argc, char** argv) {
  iocp::server_options options;
  options.address = "127.0.0.1";
  options.port = 50000;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s\n", usage_line);
      return 0;
    }
    if (i + 1 >= argc) usage(("missing value for " + std::string(arg)).c_str());
    std::string_view value = argv[++i];
    if (arg == "--address") {
      options.address = std::string(value);
    } else if (arg == "--port") {
      options.port = static_cast<std::uint16_t>(parse_number(value, 65535, "bad --port"));
    } else if (arg == "--threads") {
      options.threads = parse_number(value, 4096, "bad --threads");
    } else if (arg == "--backend") {
      auto b = iocp::parse_backend(value);
      if (!b) usage("bad --backend");
      options.io_backend = *b;
    } else {
      usage(("unknown option " + std::string(arg)).c_str());
    }
  }

#if defined(_WIN32)
  ::SetConsoleCtrlHandler(on_console_event, TRUE);
#else
  // Block the stop signals before any I/O thread starts, so that they inherit the mask and the
  // signals reach sigwait() below instead of an arbitrary thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
#endif

  try {
    iocp::iocp_server<echo_handler> server(options);
    std::cout << "listening on " << server.local_endpoint().to_string() << std::endl;
#if defined(_WIN32)
    std::unique_lock lock(stop_mutex);
    stop_requested.wait(lock, [] { return stop_flag; });
#else
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
#endif
    server.stop(std::chrono::seconds(5));
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
