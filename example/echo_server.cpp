// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The original library's tutorial made real: an echo server.
//
//   echo_server [--address A] [--port P] [--threads N] [--backend auto|io_uring|epoll]
//
// Prints "listening on ADDRESS:PORT" once it accepts, runs until SIGINT or SIGTERM (on Windows:
// Ctrl-C, Ctrl-Break or the console closing), then stops gracefully and exits 0. Errors go to
// stderr with a non-zero exit.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "iocp/iocp.hpp"

#include "example_support.hpp"

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

const std::string usage_line =
    std::string("usage: echo_server [--address A] [--port P] [--threads N] [--backend ") +
    example::backend_choices + "]";

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr, "echo_server: %s\n%s\n", message.c_str(), usage_line.c_str());
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  iocp::server_options options;
  options.address = "127.0.0.1";
  options.port = 50000;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s\n", usage_line.c_str());
      return 0;
    }
    if (i + 1 >= argc) usage("missing value for " + std::string(arg));
    switch (example::parse_server_option(arg, argv[++i], options)) {
    case example::option_result::parsed: break;
    case example::option_result::bad_value: usage("bad " + std::string(arg));
    case example::option_result::not_a_server_option: usage("unknown option " + std::string(arg));
    }
  }

  // Before any I/O thread starts: they inherit the blocked signals (see example_support.hpp).
  example::stop_signals stop;
  try {
    iocp::iocp_server<echo_handler> server(options);
    std::cout << "listening on " << server.local_endpoint().to_string() << std::endl;
    stop.wait();
    server.stop(std::chrono::seconds(5));
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
