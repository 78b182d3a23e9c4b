// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The one place that includes the Windows headers: winsock2.h before windows.h (which would
// otherwise pull in the old winsock.h), with WIN32_LEAN_AND_MEAN and NOMINMAX unless the user
// opted out (IOCP_NO_WIN32_LEAN_AND_MEAN, IOCP_NO_NOMINMAX). What we defined is undefined again,
// so the user's own code sees the macro environment it set up.

#if !defined(IOCP_NO_WIN32_LEAN_AND_MEAN) && !defined(WIN32_LEAN_AND_MEAN)
#define WIN32_LEAN_AND_MEAN
#define IOCP_DEFINED_WIN32_LEAN_AND_MEAN
#endif
#if !defined(IOCP_NO_NOMINMAX) && !defined(NOMINMAX)
#define NOMINMAX
#define IOCP_DEFINED_NOMINMAX
#endif

// clang-format off
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>
// clang-format on

#if defined(IOCP_DEFINED_WIN32_LEAN_AND_MEAN)
#undef WIN32_LEAN_AND_MEAN
#undef IOCP_DEFINED_WIN32_LEAN_AND_MEAN
#endif
#if defined(IOCP_DEFINED_NOMINMAX)
#undef NOMINMAX
#undef IOCP_DEFINED_NOMINMAX
#endif
