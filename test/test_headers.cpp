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

// ---- the library's invariants are checked in test builds (IOCP_ASSERT) ----

#include "iocp/detail/assert.hpp"
#include "iocp/detail/close_state.hpp"

#if !defined(_WIN32)
#include <csignal>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#endif

// The close sequence's table: closing is final, nothing returns to open, and a FIN goes out once.
namespace close_table {
using iocp::detail::close_state;
using iocp::detail::legal_close_transition;
constexpr close_state all[] = {close_state::open,     close_state::fin_owed,           close_state::lingering,
                               close_state::fin_sent, close_state::lingering_fin_sent, close_state::closing};
constexpr bool closing_is_final() {
  for (close_state to : all)
    if (legal_close_transition(close_state::closing, to)) return false;
  return true;
}
constexpr bool nothing_reopens() {
  for (close_state from : all)
    if (legal_close_transition(from, close_state::open)) return false;
  return true;
}
constexpr bool every_state_may_close() {
  for (close_state from : all)
    if (from != close_state::closing && !legal_close_transition(from, close_state::closing)) return false;
  return true;
}
static_assert(closing_is_final() && nothing_reopens() && every_state_may_close());
static_assert(!legal_close_transition(close_state::fin_sent, close_state::fin_owed));
static_assert(!legal_close_transition(close_state::lingering, close_state::fin_owed));
static_assert(!legal_close_transition(close_state::lingering_fin_sent, close_state::lingering));
} // namespace close_table

BOOST_AUTO_TEST_CASE(invariants_are_checked_in_test_builds) {
#if !defined(IOCP_ENABLE_ASSERTS)
  BOOST_FAIL("the tests are built without IOCP_ENABLE_ASSERTS: the library's invariants go unchecked");
#elif !defined(_WIN32)
  // A failed IOCP_ASSERT says where and what on stderr, then aborts: seen from a child process.
  int out[2];
  BOOST_REQUIRE(::pipe(out) == 0);
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    ::dup2(out[1], 2);
    std::signal(SIGABRT, SIG_DFL); // Boost.Test's handler would report the abort as a failure here
    IOCP_ASSERT(1 + 1 == 3);
    ::_exit(0); // not reached while asserts are on
  }
  ::close(out[1]);
  std::string said;
  char buffer[256];
  for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;)
    said.append(buffer, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_TEST(WIFSIGNALED(status));
  BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT));
  BOOST_TEST(said.find("iocp: assertion failed: 1 + 1 == 3") != std::string::npos, said);
  BOOST_TEST(said.find("test_headers.cpp") != std::string::npos, said);
#endif
}
