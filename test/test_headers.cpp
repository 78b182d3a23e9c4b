// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Linked with one translation unit per public header, each including only that header: this program
// building at all proves the headers are self-contained and free of ODR violations. The test case
// then instantiates the whole server in this second TU too.
#define BOOST_TEST_MODULE headers
#include "boost_test.hpp"

#include "iocp/iocp.hpp"

namespace {
struct empty_handler {};
} // namespace

BOOST_AUTO_TEST_CASE(server_with_an_empty_handler_builds_and_runs) {
  iocp::server_options options;
  options.address = "127.0.0.1";
  options.threads = 1;
  iocp::iocp_server<empty_handler> server(options);
  BOOST_TEST(server.local_endpoint().port() != 0);
  BOOST_TEST(!server.stop());
}
