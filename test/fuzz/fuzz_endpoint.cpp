// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// libFuzzer target for iocp::endpoint. The input, as it is (no terminating NUL, so ASan sees any read
// past its end), is parsed and must be accepted exactly when the documented grammar accepts it:
// what glibc's inet_pton accepts (AF_INET dotted quads, AF_INET6), plus the library's two extensions
// for IPv6 only: "[...]" around the address and a numeric "%scope" of at most 32 bits. The endpoint
// it gives must hold the same bytes and scope. Whatever parses prints in the canonical form
// (inet_ntop's, which is RFC 5952's for IPv6) and that text parses back to the same endpoint. The
// same input, read as raw bytes, also makes an endpoint (as the kernel would report one) whose
// printed form must be canonical and parse back.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "iocp/endpoint.hpp"

namespace {

constexpr std::uint16_t test_port = 8080;

std::string escaped(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    }
  }
  return out;
}

[[noreturn]] void fail(const char* what, std::string_view input, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_endpoint: %s\n  input: \"%s\"\n  %s\n", what, escaped(input).c_str(),
               detail.c_str());
  std::abort();
}

std::string describe(const std::optional<iocp::endpoint>& e) {
  if (!e) return "nothing";
  return e->to_string() + " (scope " + std::to_string(e->scope_id()) + ")";
}

/// What parse() is documented to accept, built on inet_pton.
std::optional<iocp::endpoint> expected_parse(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return std::nullopt; // inet_pton would stop there
  bool bracketed = false;
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
    bracketed = true;
  }
  bool scoped = false;
  std::uint64_t scope = 0;
  if (auto percent = text.find('%'); percent != std::string_view::npos) {
    std::string_view digits = text.substr(percent + 1);
    if (digits.empty()) return std::nullopt;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      scope = scope * 10 + static_cast<std::uint64_t>(c - '0');
      if (scope > UINT32_MAX) return std::nullopt;
    }
    text = text.substr(0, percent);
    scoped = true;
  }
  const std::string address(text);
  std::array<std::uint8_t, 16> bytes{};
  if (::inet_pton(AF_INET6, address.c_str(), bytes.data()) == 1)
    return iocp::endpoint::v6(bytes, test_port, static_cast<std::uint32_t>(scope));
  if (!bracketed && !scoped && ::inet_pton(AF_INET, address.c_str(), bytes.data()) == 1)
    return iocp::endpoint::v4({bytes[0], bytes[1], bytes[2], bytes[3]}, test_port);
  return std::nullopt;
}

std::string hex_group(unsigned g) {
  char text[8];
  std::snprintf(text, sizeof text, "%x", g);
  return text;
}

/// The canonical text: inet_ntop's, except that glibc prints the deprecated IPv4-compatible form
/// (::a.b.c.d) in dotted notation where RFC 5952 keeps dotted notation for IPv4-mapped addresses only.
std::string canonical(const iocp::endpoint& e) {
  const auto& b = e.bytes();
  char text[INET6_ADDRSTRLEN];
  if (e.is_v4()) {
    if (!::inet_ntop(AF_INET, b.data(), text, sizeof text)) std::abort();
    return text;
  }
  if (!::inet_ntop(AF_INET6, b.data(), text, sizeof text)) std::abort();
  std::string out = text;
  bool ipv4_compatible = b[12] || b[13];
  for (int k = 0; k < 12; ++k)
    ipv4_compatible = ipv4_compatible && b[k] == 0;
  if (ipv4_compatible)
    out = "::" + hex_group(static_cast<unsigned>(b[12] << 8 | b[13])) + ":" +
          hex_group(static_cast<unsigned>(b[14] << 8 | b[15]));
  if (e.scope_id()) out += "%" + std::to_string(e.scope_id());
  return out;
}

void check_printing(const iocp::endpoint& e, std::string_view input) {
  const std::string printed = e.address();
  const std::string expected = canonical(e);
  if (printed != expected)
    fail("address() is not canonical", input, "printed " + printed + ", expected " + expected);
  const std::string full = e.to_string();
  const std::string port = std::to_string(e.port());
  const std::string expected_full = e.is_v4() ? printed + ":" + port : "[" + printed + "]:" + port;
  if (full != expected_full)
    fail("to_string() is wrong", input, "printed " + full + ", expected " + expected_full);
  auto back = iocp::endpoint::parse(printed, e.port());
  if (!back || !(*back == e))
    fail("printing does not round-trip", input,
         printed + " parses as " + describe(back) + ", not " + describe(e));
  if (e.is_v6()) {
    back = iocp::endpoint::parse("[" + printed + "]", e.port());
    if (!back || !(*back == e)) fail("the bracketed form does not round-trip", input, printed);
  }
}

void check_text(std::string_view text) {
  const std::optional<iocp::endpoint> parsed = iocp::endpoint::parse(text, test_port);
  const std::optional<iocp::endpoint> expected = expected_parse(text);
  if (parsed.has_value() != expected.has_value())
    fail(parsed ? "parse() accepts what the grammar refuses" : "parse() refuses a valid address", text,
         "parse() gives " + describe(parsed));
  if (!parsed) return;
  if (!(*parsed == *expected))
    fail("parse() gives another endpoint", text, describe(parsed) + ", expected " + describe(expected));
  check_printing(*parsed, text);
}

/// An endpoint from raw bytes, as the kernel could report it: byte 0 picks the family and the shape
/// (zero groups from the mask in byte 1, IPv4-mapped, a scope), the rest fill address, scope, port.
void check_raw(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return;
  const std::uint8_t mode = data[0], zero_mask = data[1];
  std::size_t at = 2;
  auto next = [&]() -> std::uint8_t { return at < size ? data[at++] : 0; };
  iocp::endpoint e;
  if ((mode & 1) == 0) {
    e = iocp::endpoint::v4({next(), next(), next(), next()}, 0);
  } else {
    std::array<std::uint8_t, 16> b{};
    for (int k = 0; k < 8; ++k) {
      bool zero = zero_mask >> k & 1;
      if ((mode & 2) && k < 6) zero = k < 5; // IPv4-mapped: five zero groups, then ffff
      std::uint8_t hi = zero ? 0 : next(), lo = zero ? 0 : next();
      if ((mode & 2) && k == 5) hi = lo = 0xff;
      b[2 * k] = hi;
      b[2 * k + 1] = lo;
    }
    std::uint32_t scope = 0;
    if (mode & 4)
      for (int k = 0; k < 4; ++k)
        scope = scope << 8 | next();
    e = iocp::endpoint::v6(b, 0, scope);
  }
  const std::uint8_t port_high = next(), port_low = next();
  e.port(static_cast<std::uint16_t>(port_high << 8 | port_low));
  check_printing(e, std::string_view(reinterpret_cast<const char*>(data), size));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_text(std::string_view(reinterpret_cast<const char*>(data), size));
  check_raw(data, size);
  return 0;
}
