// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Picks the platform's backends. Each is a class with the same operations (start_accept,
// start_recv, start_send, cancel, release, wake, run_once); the event loop calls them directly.

#if defined(__linux__)
#define IOCP_HAS_IO_URING 1
#define IOCP_HAS_EPOLL 1
#include "iocp/detail/linux/epoll_backend.hpp"
#include "iocp/detail/linux/io_object.hpp"
#include "iocp/detail/linux/io_uring_backend.hpp"
#include "iocp/detail/linux/socket_ops.hpp"
#elif defined(_WIN32)
#define IOCP_HAS_IOCP 1
#include "iocp/detail/win/io_object.hpp"
#include "iocp/detail/win/iocp_backend.hpp"
#include "iocp/detail/win/socket_ops.hpp"
#else
#error "iocp: this platform has no backend yet (Linux io_uring/epoll and Windows IOCP are supported)"
#endif
