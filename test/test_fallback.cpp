// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The io_uring-to-epoll fallback. A container's seccomp profile typically makes io_uring_setup fail
// with EPERM, an old kernel with ENOSYS. Each case runs in a forked child that installs a seccomp
// filter refusing the io_uring system calls (the filter cannot be removed, hence the child), tries
// the backends there, and reports what it saw to the parent through a pipe as "key=value" lines;
// the parent makes the assertions. The child is killed if it does not finish in time.
#define BOOST_TEST_MODULE fallback
#include "boost_test.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "iocp/iocp.hpp"
#include "support/client.hpp"

using namespace test_support;

namespace {

#if defined(__x86_64__)
constexpr std::uint32_t audit_arch = AUDIT_ARCH_X86_64;
constexpr bool seccomp_supported = true;
#elif defined(__aarch64__)
constexpr std::uint32_t audit_arch = AUDIT_ARCH_AARCH64;
constexpr bool seccomp_supported = true;
#else
constexpr std::uint32_t audit_arch = 0;
constexpr bool seccomp_supported = false;
#endif

struct refusal {
  long syscall_nr;
  int error;
};

/// Makes each listed system call fail with its errno in this thread and every thread it creates
/// later; everything else is allowed. A system call of another architecture kills the process.
/// Returns 0 or the errno of the failure.
int install_seccomp_filter(const std::vector<refusal>& refusals) {
  std::vector<sock_filter> program;
  program.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  program.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, audit_arch, 1, 0));
  program.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  program.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  for (const refusal& r : refusals) {
    program.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(r.syscall_nr), 0, 1));
    program.push_back(BPF_STMT(BPF_RET | BPF_K,
                               SECCOMP_RET_ERRNO | (static_cast<std::uint32_t>(r.error) & SECCOMP_RET_DATA)));
  }
  program.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
    // Older kernels: the prctl interface.
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) return errno;
  }
  return 0;
}

/// What a child reports: "key=value" lines.
class report_writer {
public:
  explicit report_writer(int fd) : fd_(fd) {}
  template <class T>
  void operator()(const std::string& key, const T& value) {
    std::ostringstream line;
    line << key << '=' << value << '\n';
    std::string s = line.str();
    const char* p = s.data();
    std::size_t left = s.size();
    while (left) {
      ssize_t n = ::write(fd_, p, left);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }

private:
  int fd_;
};

struct child_result {
  std::map<std::string, std::string> values;
  std::string raw;
  bool timed_out = false;
  int exit_code = -1; // -1: did not exit normally
  int signal = 0;

  bool has(const std::string& key) const { return values.count(key) != 0; }
  std::string get(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? std::string("<missing>") : it->second;
  }
};

/// Runs `body` in a forked child with a pipe to report through; collects the report until the
/// child closes the pipe or `timeout` passes (then kills it), and reaps it.
child_result run_in_child(const std::function<void(report_writer&)>& body,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  int fds[2];
  BOOST_REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    report_writer report(fds[1]);
    int code = 0;
    try {
      body(report);
    } catch (const std::exception& e) {
      report("exception", e.what());
      code = 2;
    } catch (...) {
      report("exception", "unknown");
      code = 2;
    }
    report("done", 1);
    ::_exit(code); // no atexit handlers, no Boost.Test teardown in the child
  }
  ::close(fds[1]);
  child_result result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[4096];
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; // the child closed its end: it has exited (or is exiting)
    result.raw.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (result.timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  std::istringstream lines(result.raw);
  std::string line;
  while (std::getline(lines, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) result.values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  BOOST_TEST_MESSAGE("child report:\n" << result.raw);
  return result;
}

/// Echoes, and counts connections (no recording_handler: these servers are iocp::iocp_server).
struct counting_echo_handler {
  std::atomic<int>* connected;
  void on_connected(auto&, const iocp::connection_info&) { ++*connected; }
  void on_received(auto& conn, std::span<const std::byte> data) { conn.send(data); }
};

using server_type = iocp::iocp_server<counting_echo_handler>;

iocp::server_options options_for(iocp::backend b) {
  iocp::server_options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.io_backend = b;
  o.threads = 2;
  return o;
}

/// Whether a server on `port` echoes a short message from a fresh client.
bool echoes(std::uint16_t port) {
  socket_fd s = connect_local(port);
  set_timeouts(s.get(), 5);
  std::string message = "fallback echo " + std::to_string(port);
  send_all(s.get(), message);
  std::vector<std::byte> back = recv_exact(s.get(), message.size());
  shutdown_write(s.get());
  return std::string(reinterpret_cast<const char*>(back.data()), back.size()) == message &&
         recv_until_eof(s.get()).empty();
}

/// The child's part for one set of refused system calls: probe, automatic, explicit io_uring,
/// explicit epoll.
void exercise_backends(report_writer& report, const std::vector<refusal>& refusals) {
  int e = install_seccomp_filter(refusals);
  report("filter", e);
  if (e) return;
  report("probe", iocp::detail::probe_io_uring().value());
  {
    std::atomic<int> connected{0};
    server_type server(options_for(iocp::backend::automatic), counting_echo_handler{&connected});
    report("auto_backend", iocp::to_string(server.backend()));
    report("auto_echo", echoes(server.local_endpoint().port()));
    report("auto_connected", connected.load());
    report("auto_stop", server.stop(std::chrono::seconds(2)).value());
  }
  try {
    std::atomic<int> connected{0};
    server_type server(options_for(iocp::backend::io_uring), counting_echo_handler{&connected});
    report("uring_throws", 0);
    report("uring_backend", iocp::to_string(server.backend()));
  } catch (const std::system_error& x) {
    report("uring_throws", 1);
    report("uring_code", x.code().value());
    report("uring_category", x.code().category().name());
    report("uring_what", x.what());
  }
  {
    std::atomic<int> connected{0};
    server_type server(options_for(iocp::backend::epoll), counting_echo_handler{&connected});
    report("epoll_backend", iocp::to_string(server.backend()));
    report("epoll_echo", echoes(server.local_endpoint().port()));
  }
}

void check_fallback(const child_result& r, int expected_error) {
  BOOST_TEST(!r.timed_out, "the child did not finish in time; its report:\n" << r.raw);
  BOOST_TEST(r.signal == 0);
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.get("exception") == "<missing>");
  BOOST_REQUIRE(r.get("filter") == "0");
  // The probe sees the refusal, with the errno the filter gave.
  BOOST_TEST(r.get("probe") == std::to_string(expected_error));
  // automatic: epoll serves instead, and serves correctly.
  BOOST_TEST(r.get("auto_backend") == "epoll");
  BOOST_TEST(r.get("auto_echo") == "1");
  BOOST_TEST(r.get("auto_connected") == "1");
  BOOST_TEST(r.get("auto_stop") == "0");
  // io_uring asked for explicitly: the constructor throws the real cause.
  BOOST_TEST(r.get("uring_throws") == "1");
  BOOST_TEST(r.get("uring_code") == std::to_string(expected_error));
  BOOST_TEST(r.get("uring_category") == std::system_category().name());
  // epoll asked for explicitly is unaffected.
  BOOST_TEST(r.get("epoll_backend") == "epoll");
  BOOST_TEST(r.get("epoll_echo") == "1");
  BOOST_TEST(r.get("done") == "1");
}

} // namespace

BOOST_AUTO_TEST_CASE(without_a_filter_automatic_follows_the_probe) {
  std::error_code probe = iocp::detail::probe_io_uring();
  BOOST_TEST_MESSAGE("io_uring probe here: " << (probe ? probe.message() : std::string("usable")));
  std::atomic<int> connected{0};
  {
    server_type server(options_for(iocp::backend::automatic), counting_echo_handler{&connected});
    BOOST_TEST(iocp::to_string(server.backend()) ==
               iocp::to_string(probe ? iocp::backend::epoll : iocp::backend::io_uring));
    BOOST_TEST(echoes(server.local_endpoint().port()));
  }
  if (probe) {
    try {
      server_type server(options_for(iocp::backend::io_uring), counting_echo_handler{&connected});
      BOOST_ERROR("the io_uring backend started although the probe failed: " << probe.message());
    } catch (const std::system_error& e) {
      BOOST_TEST(e.code() == probe);
    }
  } else {
    server_type server(options_for(iocp::backend::io_uring), counting_echo_handler{&connected});
    BOOST_TEST((server.backend() == iocp::backend::io_uring));
    BOOST_TEST(echoes(server.local_endpoint().port()));
  }
}

BOOST_AUTO_TEST_CASE(io_uring_setup_refused_with_eperm_falls_back_to_epoll) {
  if (!seccomp_supported) {
    BOOST_TEST_MESSAGE("no seccomp filter for this architecture here; skipped");
    return;
  }
  child_result r = run_in_child([](report_writer& report) {
    exercise_backends(report, {{__NR_io_uring_setup, EPERM}});
  });
  check_fallback(r, EPERM);
}

BOOST_AUTO_TEST_CASE(io_uring_setup_refused_with_enosys_falls_back_to_epoll) {
  if (!seccomp_supported) {
    BOOST_TEST_MESSAGE("no seccomp filter for this architecture here; skipped");
    return;
  }
  child_result r = run_in_child([](report_writer& report) {
    exercise_backends(report, {{__NR_io_uring_setup, ENOSYS}});
  });
  check_fallback(r, ENOSYS);
}

BOOST_AUTO_TEST_CASE(all_io_uring_calls_refused_as_by_dockers_profile_falls_back_to_epoll) {
  // Docker's default profile (25.0 on) refuses all three io_uring system calls.
  if (!seccomp_supported) {
    BOOST_TEST_MESSAGE("no seccomp filter for this architecture here; skipped");
    return;
  }
  child_result r = run_in_child([](report_writer& report) {
    exercise_backends(
        report,
        {{__NR_io_uring_setup, EPERM}, {__NR_io_uring_enter, EPERM}, {__NR_io_uring_register, EPERM}});
  });
  check_fallback(r, EPERM);
}

BOOST_AUTO_TEST_CASE(io_uring_setup_refused_with_einval_falls_back_to_epoll) {
  // EINVAL is what a kernel answers to flags it does not know; the ring retries with fewer flags,
  // then gives up with EINVAL, and automatic must still find epoll.
  if (!seccomp_supported) {
    BOOST_TEST_MESSAGE("no seccomp filter for this architecture here; skipped");
    return;
  }
  child_result r = run_in_child([](report_writer& report) {
    exercise_backends(report, {{__NR_io_uring_setup, EINVAL}});
  });
  check_fallback(r, EINVAL);
}

BOOST_AUTO_TEST_CASE(io_uring_enter_refused_falls_back_to_epoll) {
  // A profile may let io_uring_setup through and refuse io_uring_enter (the ring can be created but
  // never used). The kernel does not allow io_uring then either: the probe must notice, automatic
  // must choose epoll, and an explicit io_uring must throw, rather than start I/O threads that can
  // never submit anything (and a stop() that could never be carried out).
  if (!seccomp_supported) {
    BOOST_TEST_MESSAGE("no seccomp filter for this architecture here; skipped");
    return;
  }
  child_result r = run_in_child(
      [](report_writer& report) {
        exercise_backends(report, {{__NR_io_uring_enter, EPERM}});
      },
      std::chrono::seconds(15));
  check_fallback(r, EPERM);
}

BOOST_AUTO_TEST_CASE(choosing_io_uring_leaves_the_callers_thread_undisturbed) {
  // Closing an io_uring ring makes the kernel queue task work with TWA_SIGNAL to every thread that
  // holds a context for it, the thread that created it included: that thread's next interruptible
  // wait (epoll_wait, a connect or recv with a timeout...) fails with EINTR although no signal was
  // sent. The probe and the I/O threads' rings are the server's business: constructing and
  // destroying a server must not make the application's own blocking calls fail that way.
  if (iocp::detail::probe_io_uring()) {
    BOOST_TEST_MESSAGE("io_uring is not usable here; nothing to check");
    return;
  }
  auto interrupted = [] {
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    BOOST_REQUIRE(ep >= 0);
    epoll_event ev{};
    int r = ::epoll_wait(ep, &ev, 1, 200);
    int e = errno;
    ::close(ep);
    return r < 0 && e == EINTR;
  };
  // The probe above did the same on this thread: let its interruption pass first.
  int pending = 0;
  while (interrupted() && ++pending < 10) {}
  BOOST_REQUIRE(pending < 10);
  std::atomic<int> connected{0};
  auto server =
      std::make_unique<server_type>(options_for(iocp::backend::automatic), counting_echo_handler{&connected});
  BOOST_TEST((server->backend() == iocp::backend::io_uring));
  BOOST_TEST(!interrupted(),
             "epoll_wait() on the constructing thread failed with EINTR after the constructor");
  BOOST_TEST(echoes(server->local_endpoint().port()));
  server.reset();
  BOOST_TEST(!interrupted(), "epoll_wait() on the destroying thread failed with EINTR after the destructor");
}
