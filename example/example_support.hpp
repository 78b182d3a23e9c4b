// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// What every example needs beyond the library: the command-line options all servers take
// (--address, --port, --threads, --backend) and waiting for the signal that stops them.
// Not part of the library: a program of your own does this its own way.

#ifndef IOCP_EXAMPLE_EXAMPLE_SUPPORT_HPP
#define IOCP_EXAMPLE_EXAMPLE_SUPPORT_HPP

#if defined(_WIN32)
#include "iocp/detail/win/windows_headers.hpp"
#include <condition_variable>
#include <mutex>
#else
#include <csignal>
#endif
#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "iocp/options.hpp"

namespace example {

/// The --backend values this platform has, for usage lines.
#if defined(_WIN32)
inline constexpr const char* backend_choices = "auto|iocp";
#else
inline constexpr const char* backend_choices = "auto|io_uring|epoll";
#endif

/// A whole decimal number no greater than `max`; nothing for anything else.
inline std::optional<unsigned long> parse_number(std::string_view text, unsigned long max) {
  unsigned long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value > max) return std::nullopt;
  return value;
}

enum class option_result { not_a_server_option, parsed, bad_value };

/// Takes `--address`, `--port`, `--threads` or `--backend` with its value into `options`;
/// anything else is left to the caller.
inline option_result parse_server_option(std::string_view name, std::string_view value,
                                         iocp::server_options& options) {
  if (name == "--address") {
    options.address = std::string(value);
  } else if (name == "--port") {
    const auto port = parse_number(value, 65535);
    if (!port) return option_result::bad_value;
    options.port = static_cast<std::uint16_t>(*port);
  } else if (name == "--threads") {
    const auto threads = parse_number(value, 4096);
    if (!threads) return option_result::bad_value;
    options.threads = *threads;
  } else if (name == "--backend") {
    const auto backend = iocp::parse_backend(value);
    if (!backend) return option_result::bad_value;
    options.io_backend = *backend;
  } else {
    return option_result::not_a_server_option;
  }
  return option_result::parsed;
}

#if defined(_WIN32)
namespace detail {
// The console control handler runs on a thread of its own: it only tells wait() to return.
inline std::mutex stop_mutex;
inline std::condition_variable stop_requested;
inline bool stop_flag = false;

inline BOOL WINAPI on_console_event(DWORD) {
  {
    std::lock_guard lock(stop_mutex);
    stop_flag = true;
  }
  stop_requested.notify_all();
  return TRUE; // handled: the process is not ended before main() has stopped the server
}
} // namespace detail
#endif

/// SIGINT and SIGTERM (on Windows: Ctrl-C, Ctrl-Break or the console closing), taken by wait().
/// Construct it before the server: on POSIX the signals are blocked in the constructing thread,
/// and threads started after it inherit the mask, so the signals reach sigwait() in wait() and not
/// an arbitrary I/O thread.
class stop_signals {
public:
  stop_signals() {
#if defined(_WIN32)
    ::SetConsoleCtrlHandler(detail::on_console_event, TRUE);
#else
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
#endif
  }

  /// Returns once one of the signals arrived.
  void wait() {
#if defined(_WIN32)
    std::unique_lock lock(detail::stop_mutex);
    detail::stop_requested.wait(lock, [] { return detail::stop_flag; });
#else
    int signal_number = 0;
    sigwait(&signals_, &signal_number);
#endif
  }

private:
#if !defined(_WIN32)
  sigset_t signals_;
#endif
};

} // namespace example

#endif // IOCP_EXAMPLE_EXAMPLE_SUPPORT_HPP
