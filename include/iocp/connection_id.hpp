// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A connection id is 64 bits: a slot index in the low 24 bits and that slot's generation in the
// high 40. A slot is reused only with the next generation, so an id kept after its connection
// closed can never reach the connection that took its slot. Generation 0 is never issued: id 0 is
// "no connection".
//
// How long before an id repeats. Both maps put a freed slot at the back of a FIFO free list and
// reuse it only when more than slot_quarantine (Q = 4096) freed slots wait; otherwise they take a
// fresh slot. So between two uses of a slot at least Q + 1 connections close (the first use's own
// and Q others, freed after it). An id (slot, generation) comes back only when its slot's
// generation has gone once round its 2^40 - 1 values, that is after the slot was reused
// 2^40 - 1 times: after at least (2^40 - 1) x 4097 ~ 4.5e15 closed connections, about 143 years
// at a million connections a second. Until then no id is issued twice.

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace iocp {

/// Freed slots that wait in a map's free list before one of them is reused.
inline constexpr std::size_t slot_quarantine = 4096;
/// The largest capacity (live connections) of a connection map: slots number at most 2^24, and up
/// to slot_quarantine of them wait in quarantine. A larger capacity (max_connections) is clamped.
inline constexpr std::size_t max_connection_capacity = (std::size_t{1} << 24) - slot_quarantine;

class connection_id {
public:
  static constexpr int slot_bits = 24;
  static constexpr int generation_bits = 64 - slot_bits;
  /// Slot indices are below this.
  static constexpr std::uint32_t max_slots = std::uint32_t{1} << slot_bits;
  /// The last generation; the one after it is 1.
  static constexpr std::uint64_t max_generation = (std::uint64_t{1} << generation_bits) - 1;

  constexpr connection_id() noexcept = default;
  constexpr explicit connection_id(std::uint64_t value) noexcept : value_(value) {}
  /// Bits of `slot` above its 24 and of `generation` above its 40 are dropped.
  constexpr connection_id(std::uint32_t slot, std::uint64_t generation) noexcept
      : value_(((generation & max_generation) << slot_bits) | (slot & (max_slots - 1))) {}

  constexpr std::uint64_t value() const noexcept { return value_; }
  constexpr std::uint32_t slot() const noexcept {
    return static_cast<std::uint32_t>(value_ & (max_slots - 1));
  }
  constexpr std::uint64_t generation() const noexcept { return value_ >> slot_bits; }
  constexpr explicit operator bool() const noexcept { return generation() != 0; }

  /// The generation a slot takes after `generation` (1 after max_generation: 0 is never issued).
  static constexpr std::uint64_t next_generation(std::uint64_t generation) noexcept {
    return generation >= max_generation ? 1 : generation + 1;
  }

  friend constexpr auto operator<=>(connection_id, connection_id) noexcept = default;

private:
  std::uint64_t value_ = 0;
};

} // namespace iocp

template <>
struct std::hash<iocp::connection_id> {
  std::size_t operator()(iocp::connection_id id) const noexcept {
    return std::hash<std::uint64_t>{}(id.value());
  }
};
