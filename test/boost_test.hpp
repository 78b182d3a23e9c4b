// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Boost.Test, as the build provides it: the shared library on Linux (BOOST_TEST_DYN_LINK); where
// there is no library to link (mingw), the runner compiled once from boost_test_runner.cpp.
// Define BOOST_TEST_MODULE before including this in the one file of a test program that has it.

#if defined(_WIN32)
// Boost.Test's headers pull in windows.h: winsock2.h must come first (through the library's one
// place for Windows headers), or the old winsock.h would clash with it.
#include "iocp/detail/win/windows_headers.hpp"
#endif

#include <boost/test/unit_test.hpp>
