// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The loop's clock, and timeouts turned into deadlines on it. A timeout too long to count in
// nanoseconds (std::chrono::milliseconds::max() is the usual way to say "for ever") saturates to
// a deadline that never comes, instead of overflowing into one that has already passed.

#include <chrono>
#include <cstdint>
#include <limits>

namespace iocp::detail {

/// A deadline that never comes.
inline constexpr std::int64_t never_ns = (std::numeric_limits<std::int64_t>::max)();

inline std::int64_t monotonic_ns() noexcept {
#if defined(IOCP_TEST_BACKEND)
  return IOCP_TEST_BACKEND::now_ns(); // a test's clock, which moves only when the test says
#else
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
#endif
}

/// `timeout` in nanoseconds: 0 for a negative one, never_ns for one too long to count.
inline constexpr std::int64_t timeout_ns(std::chrono::milliseconds timeout) noexcept {
  constexpr std::int64_t per_ms = 1'000'000;
  if (timeout.count() <= 0) return 0;
  if (timeout.count() >= never_ns / per_ms) return never_ns;
  return static_cast<std::int64_t>(timeout.count()) * per_ms;
}

/// `ns` (not negative) after `from`, or never_ns if the clock cannot count that far.
inline constexpr std::int64_t later_ns(std::int64_t from, std::int64_t ns) noexcept {
  return ns >= never_ns - from ? never_ns : from + ns;
}

} // namespace iocp::detail
