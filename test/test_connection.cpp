// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The connection state machine on every backend (io_uring and epoll on Linux, IOCP on Windows,
// where it runs under Wine), over real loopback sockets: half-close in either direction, graceful
// disconnect after queued data, the linger timeout, abort, stale ids, constructor failures, stop and
// destruction with busy connections, sends from other threads, per-connection state, throwing
// callbacks, stopping from inside a callback, shutdown(receive), peer resets, and a server leaving
// the thread that made it undisturbed.
//
// This file holds the module and its watchdog; the cases are in connection/*.cpp, one
// BOOST_AUTO_TEST_SUITE per area (--list_content shows them; --run_test=half_close/* runs one).
#define BOOST_TEST_MODULE connection
#include "boost_test.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

/// Ends the program, naming the case, when one test case runs longer than two minutes: a server
/// call that hangs (stop(), the destructor) must fail the run, not stall it. A passing run of the
/// whole program takes seconds; a failing wait in a case gives up after 20 s on its own.
class watchdog : public boost::unit_test::test_observer {
public:
  static constexpr std::chrono::seconds case_limit{120};

  watchdog() { boost::unit_test::framework::register_observer(*this); }
  ~watchdog() {
    boost::unit_test::framework::deregister_observer(*this);
    {
      std::lock_guard l(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void test_unit_start(const boost::unit_test::test_unit& unit) override {
    if (unit.p_type != boost::unit_test::TUT_CASE) return;
    std::lock_guard l(mutex_);
    name_ = unit.full_name();
    started_ = std::chrono::steady_clock::now();
    running_ = true;
  }
  void test_unit_finish(const boost::unit_test::test_unit& unit, unsigned long) override {
    if (unit.p_type != boost::unit_test::TUT_CASE) return;
    std::lock_guard l(mutex_);
    running_ = false;
  }

private:
  void watch() {
    std::unique_lock l(mutex_);
    while (!done_) {
      wake_.wait_for(l, 250ms);
      if (running_ && std::chrono::steady_clock::now() - started_ > case_limit) {
        std::fprintf(stderr, "FATAL: test case %s still running after %lld s: the server hangs\n",
                     name_.c_str(), static_cast<long long>(case_limit.count()));
        std::_Exit(124);
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::string name_;
  std::chrono::steady_clock::time_point started_;
  bool running_ = false;
  bool done_ = false;
  std::thread thread_{[this] { watch(); }};
};

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(watchdog);
