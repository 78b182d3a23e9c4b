// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Boost.Test's runner (its implementation and main()), compiled once into a static library for
// builds that have no Boost.Test library to link (mingw). Each test program includes the plain
// headers through boost_test.hpp and defines BOOST_TEST_MODULE, which supplies the
// init_unit_test_suite() this main() calls. Compiling the runner into every program instead (the
// header-only variant) cost about 45 s of CPU per program.

#if defined(_WIN32)
#include "iocp/detail/win/windows_headers.hpp"
#endif

#include <boost/test/included/unit_test.hpp>
