// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// An IPv4 or IPv6 address and port as plain bytes. It parses and prints numeric addresses only, with
// no operating-system header, so the public API stays free of <sys/socket.h> and <winsock2.h>, and
// nothing on an I/O thread can ever turn into a DNS lookup.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iocp {

class endpoint {
public:
  enum class family : std::uint8_t { v4, v6 };

  constexpr endpoint() noexcept = default;

  static constexpr endpoint v4(std::array<std::uint8_t, 4> address, std::uint16_t port) noexcept {
    endpoint e;
    e.family_ = family::v4;
    for (std::size_t i = 0; i < 4; ++i)
      e.bytes_[i] = address[i];
    e.port_ = port;
    return e;
  }
  static constexpr endpoint v6(const std::array<std::uint8_t, 16>& address, std::uint16_t port,
                               std::uint32_t scope_id = 0) noexcept {
    endpoint e;
    e.family_ = family::v6;
    e.bytes_ = address;
    e.port_ = port;
    e.scope_id_ = scope_id;
    return e;
  }

  /// Parses a numeric IPv4 ("127.0.0.1") or IPv6 ("::1", "fe80::1%3", "[::1]") address; no name
  /// lookup. IPv4 is a dotted quad without leading zeros, IPv6 what inet_pton reads, with an optional
  /// numeric scope id and optional brackets.
  static std::optional<endpoint> parse(std::string_view address, std::uint16_t port = 0);

  constexpr family address_family() const noexcept { return family_; }
  constexpr bool is_v4() const noexcept { return family_ == family::v4; }
  constexpr bool is_v6() const noexcept { return family_ == family::v6; }
  constexpr std::uint16_t port() const noexcept { return port_; }
  constexpr void port(std::uint16_t p) noexcept { port_ = p; }
  constexpr std::uint32_t scope_id() const noexcept { return scope_id_; }
  /// The wildcard address (0.0.0.0 or ::), as a listener bound to every interface has.
  constexpr bool is_unspecified() const noexcept {
    for (std::size_t i = 0; i < (is_v4() ? 4u : 16u); ++i)
      if (bytes_[i] != 0) return false;
    return true;
  }
  /// The address bytes in network order: the first 4 for IPv4, all 16 for IPv6.
  constexpr const std::array<std::uint8_t, 16>& bytes() const noexcept { return bytes_; }

  /// "127.0.0.1" or "::1" (RFC 5952 form), without the port.
  std::string address() const;
  /// "127.0.0.1:80" or "[::1]:80".
  std::string to_string() const;

  friend constexpr bool operator==(const endpoint&, const endpoint&) noexcept = default;

private:
  std::array<std::uint8_t, 16> bytes_{};
  std::uint16_t port_ = 0;
  std::uint32_t scope_id_ = 0;
  family family_ = family::v4;
};

namespace detail {

inline bool parse_ipv4(std::string_view s, std::uint8_t* out) noexcept {
  int parts = 0;
  std::size_t i = 0;
  while (parts < 4) {
    if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
    unsigned value = 0;
    std::size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits == 1 && value == 0) return false; // no leading zeros: "01" is ambiguous (octal)
      value = value * 10 + static_cast<unsigned>(s[i] - '0');
      if (value > 255) return false;
      ++i;
      ++digits;
    }
    out[parts++] = static_cast<std::uint8_t>(value);
    if (parts < 4) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  return i == s.size();
}

inline int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

inline bool parse_ipv6(std::string_view s, std::uint8_t* out) noexcept {
  std::uint16_t groups[8] = {};
  int count = 0;
  int gap = -1; // index in groups where "::" stands
  std::size_t i = 0;
  if (s.size() >= 2 && s[0] == ':' && s[1] == ':') {
    gap = 0;
    i = 2;
    if (i == s.size()) {
      for (int k = 0; k < 16; ++k)
        out[k] = 0;
      return true;
    }
  } else if (!s.empty() && s[0] == ':') {
    return false;
  }
  while (i < s.size()) {
    if (count == 8) return false;
    // An embedded IPv4 tail ("::ffff:1.2.3.4") takes the last two groups.
    std::size_t end = s.find(':', i);
    std::string_view piece = s.substr(i, end == std::string_view::npos ? s.size() - i : end - i);
    if (piece.find('.') != std::string_view::npos) {
      if (end != std::string_view::npos || count > 6) return false;
      std::uint8_t v4[4];
      if (!parse_ipv4(piece, v4)) return false;
      groups[count++] = static_cast<std::uint16_t>(v4[0] << 8 | v4[1]);
      groups[count++] = static_cast<std::uint16_t>(v4[2] << 8 | v4[3]);
      i = s.size();
      break;
    }
    if (piece.empty() || piece.size() > 4) return false;
    unsigned value = 0;
    for (char c : piece) {
      int h = hex_value(c);
      if (h < 0) return false;
      value = value * 16 + static_cast<unsigned>(h);
    }
    groups[count++] = static_cast<std::uint16_t>(value);
    i += piece.size();
    if (i == s.size()) break;
    ++i; // the ':'
    if (i < s.size() && s[i] == ':') {
      if (gap >= 0) return false; // a second "::"
      gap = count;
      ++i;
      if (i == s.size()) break;
    } else if (i == s.size()) {
      return false; // a trailing single ':'
    }
  }
  if (gap < 0 && count != 8) return false;
  if (gap >= 0 && count > 7) return false;
  std::uint16_t full[8] = {};
  if (gap < 0) {
    for (int k = 0; k < 8; ++k)
      full[k] = groups[k];
  } else {
    int tail = count - gap;
    for (int k = 0; k < gap; ++k)
      full[k] = groups[k];
    for (int k = 0; k < tail; ++k)
      full[8 - tail + k] = groups[gap + k];
  }
  for (int k = 0; k < 8; ++k) {
    out[2 * k] = static_cast<std::uint8_t>(full[k] >> 8);
    out[2 * k + 1] = static_cast<std::uint8_t>(full[k] & 0xff);
  }
  return true;
}

} // namespace detail

inline std::optional<endpoint> endpoint::parse(std::string_view address, std::uint16_t port) {
  // Brackets are the URL form of an IPv6 address (RFC 3986); an IPv4 address has none.
  bool bracketed = false;
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
    bracketed = true;
  }
  std::array<std::uint8_t, 16> bytes{};
  if (address.find(':') == std::string_view::npos) {
    if (bracketed || !detail::parse_ipv4(address, bytes.data())) return std::nullopt;
    return v4({bytes[0], bytes[1], bytes[2], bytes[3]}, port);
  }
  std::uint32_t scope = 0;
  if (auto percent = address.find('%'); percent != std::string_view::npos) {
    // Numeric scope ids only, of any 32-bit value: what address() prints for one the kernel reports.
    std::string_view digits = address.substr(percent + 1);
    if (digits.empty()) return std::nullopt;
    std::uint64_t value = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + static_cast<std::uint64_t>(c - '0');
      if (value > UINT32_MAX) return std::nullopt;
    }
    scope = static_cast<std::uint32_t>(value);
    address = address.substr(0, percent);
  }
  if (!detail::parse_ipv6(address, bytes.data())) return std::nullopt;
  return v6(bytes, port, scope);
}

inline std::string endpoint::address() const {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  if (is_v4()) {
    for (int k = 0; k < 4; ++k) {
      if (k) out += '.';
      out += std::to_string(bytes_[k]);
    }
    return out;
  }
  std::uint16_t groups[8];
  for (int k = 0; k < 8; ++k)
    groups[k] = static_cast<std::uint16_t>(bytes_[2 * k] << 8 | bytes_[2 * k + 1]);
  // RFC 5952: compress the longest run (at least two) of zero groups, the first one on a tie.
  int best = -1, best_len = 1;
  for (int k = 0; k < 8;) {
    if (groups[k] != 0) {
      ++k;
      continue;
    }
    int start = k;
    while (k < 8 && groups[k] == 0)
      ++k;
    if (k - start > best_len) {
      best = start;
      best_len = k - start;
    }
  }
  bool mapped_v4 = best == 0 && best_len == 5 && groups[5] == 0xffff;
  for (int k = 0; k < 8; ++k) {
    if (k == best) {
      out += "::";
      k += best_len - 1;
      continue;
    }
    if (mapped_v4 && k == 6) {
      out += ':';
      for (int b = 12; b < 16; ++b) {
        if (b > 12) out += '.';
        out += std::to_string(bytes_[b]);
      }
      break;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      unsigned nibble = (groups[k] >> shift) & 0xf;
      if (nibble || started || shift == 0) {
        out += hex[nibble];
        started = true;
      }
    }
  }
  if (scope_id_) out += '%' + std::to_string(scope_id_);
  return out;
}

inline std::string endpoint::to_string() const {
  if (is_v4()) return address() + ':' + std::to_string(port_);
  return '[' + address() + "]:" + std::to_string(port_);
}

} // namespace iocp
