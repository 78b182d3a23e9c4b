// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// IOCP_ALWAYS_INLINE marks the few small functions on the per-message path that compilers leave
// out of line because a caller is large (each out-of-line call saves and restores registers:
// measured at 10-13 instructions per call under callgrind). Nothing else should use it.
// IOCP_NOINLINE keeps a rarely taken path (copying sends, closing) out of the per-message code, so
// that the compiler's inlining budget for the large dispatch function goes to what runs every time.
#if defined(_MSC_VER) && !defined(__clang__)
#define IOCP_ALWAYS_INLINE __forceinline
#define IOCP_NOINLINE __declspec(noinline)
#else
#define IOCP_ALWAYS_INLINE [[gnu::always_inline]] inline
#define IOCP_NOINLINE [[gnu::noinline]]
#endif
