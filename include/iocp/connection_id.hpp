// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A connection id is 64 bits: a slot index in the low half and that slot's generation in the high
// half. A slot is reused only with a new generation, so an id kept after its connection closed can
// never reach the connection that took its slot. Generation 0 is never issued: id 0 is "no
// connection".

#include <compare>
#include <cstdint>
#include <functional>

namespace iocp {

class connection_id {
public:
  constexpr connection_id() noexcept = default;
  constexpr explicit connection_id(std::uint64_t value) noexcept : value_(value) {}
  constexpr connection_id(std::uint32_t slot, std::uint32_t generation) noexcept
      : value_((std::uint64_t{generation} << 32) | slot) {}

  constexpr std::uint64_t value() const noexcept { return value_; }
  constexpr std::uint32_t slot() const noexcept { return static_cast<std::uint32_t>(value_); }
  constexpr std::uint32_t generation() const noexcept { return static_cast<std::uint32_t>(value_ >> 32); }
  constexpr explicit operator bool() const noexcept { return generation() != 0; }

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
