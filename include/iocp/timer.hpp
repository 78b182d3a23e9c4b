// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A timer's name: what set_timer() returns, what on_timer / on_server_timer are given, what
// cancel_timer() takes. It names the I/O thread that owns the timer (so a cancel from any thread
// goes straight there, without a lookup) and a number that thread never gives out twice.

#include <compare>
#include <cstdint>
#include <functional>

namespace iocp {

class timer_id {
public:
  /// The empty id: set_timer() refused (see its error_code form for why); cancelling it does nothing.
  constexpr timer_id() noexcept = default;

  /// The thread index takes the top 12 bits (the server has at most 4,096 threads), the thread's
  /// own count the low 52: an id repeats only after 2^52 timers on one thread (142 years at a
  /// million timers a second).
  static constexpr int sequence_bits = 52;
  static constexpr std::uint64_t sequence_mask = (std::uint64_t{1} << sequence_bits) - 1;

  constexpr timer_id(std::uint32_t thread, std::uint64_t sequence) noexcept
      : value_((std::uint64_t{thread} << sequence_bits) | (sequence & sequence_mask)) {}

  constexpr std::uint32_t thread() const noexcept {
    return static_cast<std::uint32_t>(value_ >> sequence_bits);
  }
  constexpr std::uint64_t sequence() const noexcept { return value_ & sequence_mask; }
  constexpr std::uint64_t value() const noexcept { return value_; }
  constexpr explicit operator bool() const noexcept { return value_ != 0; }
  friend constexpr auto operator<=>(timer_id, timer_id) noexcept = default;

private:
  std::uint64_t value_ = 0; // sequences start at 1: 0 is never a timer's
};

} // namespace iocp

template <>
struct std::hash<iocp::timer_id> {
  std::size_t operator()(iocp::timer_id t) const noexcept { return std::hash<std::uint64_t>{}(t.value()); }
};
