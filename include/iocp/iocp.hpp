// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Everything a user of the library needs.

#include "iocp/allocator.hpp"
#include "iocp/connection.hpp"
#include "iocp/connection_id.hpp"
#include "iocp/connection_map.hpp"
#include "iocp/endpoint.hpp"
#include "iocp/error.hpp"
#include "iocp/handler.hpp"
#include "iocp/lockfree_map.hpp"
#include "iocp/options.hpp"
#include "iocp/server.hpp"
#include "iocp/statistics.hpp"
#include "iocp/threading.hpp"
