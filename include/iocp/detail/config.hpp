// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Every configuration macro of the library, one line each. Define the user macros for the whole
// program (every translation unit), before any iocp header; the others are the library's own.
//
// User macros (none is needed; each is off unless defined):
//   IOCP_FAULT_INJECTION          test builds: system calls of the I/O path can be made to fail
//                                 (iocp/testing/fault_injection.hpp; README, "Fault injection")
//   IOCP_DISABLE_IO_URING_DEFER_TASKRUN
//                                 io_uring: do not ask for IORING_SETUP_DEFER_TASKRUN (the ring
//                                 then runs its completion work with COOP_TASKRUN), for A/B runs
//   IOCP_NO_WIN32_LEAN_AND_MEAN   Windows: iocp.hpp does not define WIN32_LEAN_AND_MEAN around
//                                 <windows.h>
//   IOCP_NO_NOMINMAX              Windows: iocp.hpp does not define NOMINMAX around <windows.h>
//   IOCP_ENABLE_ASSERTS           the library's invariants are checked (IOCP_ASSERT, detail/assert.hpp):
//                                 on in the unit tests and the fuzzers, off by default
//   IOCP_TEST_BACKEND             the fuzzer only (test/fuzz/fuzz_event_loop.cpp): names a class
//                                 whose fake backends replace io_uring and epoll
//
// Defined here from the platform:
//   IOCP_HAS_IOCP                 Windows: the IOCP backend (else Linux: io_uring and epoll)
//
// Defined by the library for its own use:
//   IOCP_ALWAYS_INLINE, IOCP_NOINLINE      inlining on the per-message path (detail/inline.hpp)
//   IOCP_ASSERT                            an invariant, checked with IOCP_ENABLE_ASSERTS (detail/assert.hpp)
//   IOCP_DETAIL_CHECK_CALLBACK             a handler callback's signature check (handler.hpp)
//   IOCP_DEFINED_WIN32_LEAN_AND_MEAN, IOCP_DEFINED_NOMINMAX
//                                          what windows_headers.hpp defined, undefined after

#if defined(_WIN32)
#define IOCP_HAS_IOCP 1
#elif !defined(__linux__)
#error "iocp: this platform has no backend yet (Linux io_uring/epoll and Windows IOCP are supported)"
#endif
