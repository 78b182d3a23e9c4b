// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Picks the platform's backends. Each is a class with the same operations (start_accept,
// start_receive, start_send, cancel, release, wake, run_once: the concept backend_for in
// backend_contract.hpp); the event loop calls them directly, without virtual functions.

#include "iocp/detail/config.hpp"

#if defined(IOCP_HAS_IOCP)
#include "iocp/detail/win/io_object.hpp"
#include "iocp/detail/win/iocp_backend.hpp"
#include "iocp/detail/win/socket_ops.hpp"
#else
#include "iocp/detail/linux/epoll_backend.hpp"
#include "iocp/detail/linux/io_object.hpp"
#include "iocp/detail/linux/io_uring_backend.hpp"
#include "iocp/detail/linux/socket_ops.hpp"
#endif
