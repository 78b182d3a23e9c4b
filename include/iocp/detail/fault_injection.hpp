// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Compile-time fault injection: the hook every system-call site of the I/O path consults. Without
// IOCP_FAULT_INJECTION, injected_fault() is a constexpr 0 and every `if (int e = injected_fault(...))`
// is dead code the compiler removes. With it (for the whole program: the two versions of the inline
// functions must not meet in one link), a process-wide registry holds a rule per site, which the
// test thread sets (iocp/testing/fault_injection.hpp) and the I/O threads consult.
//
// A site that fires fails its call with the rule's native error (an errno value on Linux, a Win32 or
// Winsock code on Windows) through the path the real failure takes: before the call, as if the
// kernel had refused it, or, where the kernel reports the result later (io_uring and IOCP
// completions), by replacing that result.

#include <cstddef>
#include <cstdint>

#if defined(IOCP_FAULT_INJECTION)
#include <array>
#include <atomic>
#include <mutex>
#include <random>
#endif

namespace iocp::testing {

/// Where a fault can be injected. What each site is on each backend:
enum class fault_site : std::uint8_t {
  accept,         // io_uring: an accept's completion; epoll: accept4(); IOCP: an AcceptEx completion
  accept_start,   // IOCP: the AcceptEx() call
  accept_context, // IOCP: setsockopt(SO_UPDATE_ACCEPT_CONTEXT) on the accepted socket
  receive,        // io_uring: a receive's completion; epoll: recv(); IOCP: a WSARecv completion
  receive_start,  // IOCP: the WSARecv() call
  send,           // io_uring: a send's completion; epoll: send(); IOCP: a WSASend completion
  send_start,     // IOCP: the WSASend() call
  shutdown,       // shutdown() of a connection's send side
  close,          // close() / closesocket() of a connection's socket, and of the listener
  submit,         // io_uring_enter(); epoll_ctl() ADD and MOD; IOCP: a socket joining the port
  wait,           // epoll_wait(); GetQueuedCompletionStatusEx()
};
inline constexpr std::size_t fault_site_count = 11;

inline constexpr const char* to_string(fault_site site) noexcept {
  switch (site) {
  case fault_site::accept: return "accept";
  case fault_site::accept_start: return "accept_start";
  case fault_site::accept_context: return "accept_context";
  case fault_site::receive: return "receive";
  case fault_site::receive_start: return "receive_start";
  case fault_site::send: return "send";
  case fault_site::send_start: return "send_start";
  case fault_site::shutdown: return "shutdown";
  case fault_site::close: return "close";
  case fault_site::submit: return "submit";
  case fault_site::wait: return "wait";
  }
  return "?";
}

#if defined(IOCP_FAULT_INJECTION)
/// When a site fails, and with what.
struct fault_rule {
  int error = 0;           ///< the native error: an errno value, or a Win32/Winsock code
  std::uint64_t after = 0; ///< calls that pass before the first failure (0: the next call fails)
  std::uint64_t times = 1; ///< failures before the rule disarms itself (0: no limit)
  double probability = 0;  ///< > 0: each call fails with this probability instead (`after` unused)
  std::uint64_t seed = 0;  ///< of the generator behind `probability`

  /// The n-th call from now fails (1: the next one), and the `times` - 1 after it.
  static fault_rule on_call(std::uint64_t n, int error, std::uint64_t times = 1) noexcept {
    fault_rule r;
    r.error = error;
    r.after = n ? n - 1 : 0;
    r.times = times;
    return r;
  }
  /// Each call fails with `probability`, decided by a generator seeded with `seed` (the same
  /// decisions for the same sequence of calls); at most `times` failures (0: no limit).
  static fault_rule at_random(double probability, int error, std::uint64_t seed,
                              std::uint64_t times = 0) noexcept {
    fault_rule r;
    r.error = error;
    r.times = times;
    r.probability = probability;
    r.seed = seed;
    return r;
  }
};
#endif

} // namespace iocp::testing

namespace iocp::detail {

#if defined(IOCP_FAULT_INJECTION)

inline constexpr bool fault_injection_enabled = true;

/// The rules and counters of every site. An unarmed site costs its callers one relaxed increment
/// and one load; an armed one takes the lock, so that a seeded rule decides in call order.
class fault_registry {
public:
  static fault_registry& instance() noexcept {
    static fault_registry registry;
    return registry;
  }

  /// 0: the call goes ahead; else the error it fails with.
  int consult(testing::fault_site site) noexcept {
    entry& e = entries_[static_cast<std::size_t>(site)];
    e.calls.fetch_add(1, std::memory_order_relaxed);
    if (!e.armed.load(std::memory_order_acquire)) return 0;
    std::lock_guard lock(mutex_);
    if (!e.armed.load(std::memory_order_relaxed)) return 0;
    const testing::fault_rule& rule = e.rule;
    bool fail;
    if (rule.probability > 0) {
      // mt19937_64 is the same everywhere, so a seed gives the same decisions on every platform.
      fail = static_cast<double>(e.random()) < rule.probability * 18446744073709551616.0;
    } else {
      fail = e.consulted++ >= rule.after;
    }
    if (!fail) return 0;
    e.injected.fetch_add(1, std::memory_order_relaxed);
    if (rule.times && ++e.failed >= rule.times) e.armed.store(false, std::memory_order_relaxed);
    return rule.error;
  }

  void arm(testing::fault_site site, const testing::fault_rule& rule) {
    std::lock_guard lock(mutex_);
    entry& e = entries_[static_cast<std::size_t>(site)];
    e.rule = rule;
    e.consulted = e.failed = 0;
    e.random.seed(rule.seed);
    e.armed.store(rule.error != 0, std::memory_order_release);
  }

  void disarm(testing::fault_site site) {
    std::lock_guard lock(mutex_);
    entries_[static_cast<std::size_t>(site)].armed.store(false, std::memory_order_release);
  }

  void reset() {
    std::lock_guard lock(mutex_);
    for (entry& e : entries_) {
      e.armed.store(false, std::memory_order_release);
      e.calls.store(0, std::memory_order_relaxed);
      e.injected.store(0, std::memory_order_relaxed);
    }
  }

  std::uint64_t calls(testing::fault_site site) const noexcept {
    return entries_[static_cast<std::size_t>(site)].calls.load(std::memory_order_relaxed);
  }
  std::uint64_t injected(testing::fault_site site) const noexcept {
    return entries_[static_cast<std::size_t>(site)].injected.load(std::memory_order_relaxed);
  }

private:
  struct entry {
    std::atomic<bool> armed{false};
    std::atomic<std::uint64_t> calls{0};
    std::atomic<std::uint64_t> injected{0};
    // Under mutex_:
    testing::fault_rule rule;
    std::uint64_t consulted = 0; // calls since the rule was set
    std::uint64_t failed = 0;    // failures since the rule was set
    std::mt19937_64 random;
  };

  std::mutex mutex_;
  std::array<entry, testing::fault_site_count> entries_;
};

inline int injected_fault(testing::fault_site site) noexcept {
  return fault_registry::instance().consult(site);
}

#else

inline constexpr bool fault_injection_enabled = false;

constexpr int injected_fault(testing::fault_site) noexcept { return 0; }

#endif

} // namespace iocp::detail
