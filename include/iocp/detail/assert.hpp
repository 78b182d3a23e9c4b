// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// IOCP_ASSERT(condition): an invariant of the library. With IOCP_ENABLE_ASSERTS (the unit tests
// and the fuzzers define it for the whole program) a false condition prints where and what, then
// aborts; otherwise the condition is not evaluated at all, so release builds pay nothing. It is
// not for errors a user or a peer can cause: those get an error code.

#include "iocp/detail/config.hpp"

#if defined(IOCP_ENABLE_ASSERTS)
#include <cstdio>
#include <cstdlib>

namespace iocp::detail {
[[noreturn]] inline void assertion_failed(const char* expression, const char* file, int line) noexcept {
  std::fprintf(stderr, "%s:%d: iocp: assertion failed: %s\n", file, line, expression);
  std::fflush(stderr);
  std::abort();
}
} // namespace iocp::detail

#define IOCP_ASSERT(condition)                                                                               \
  ((condition) ? static_cast<void>(0) : ::iocp::detail::assertion_failed(#condition, __FILE__, __LINE__))
#else
#define IOCP_ASSERT(condition) static_cast<void>(0)
#endif
