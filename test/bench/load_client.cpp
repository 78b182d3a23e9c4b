// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// A loopback load generator for echo servers: plain sockets and one epoll thread, no library code.
//
//   load_client --port P [--host 127.0.0.1] [--mode echo|churn|room] [--connections N] [--size S]
//               [--depth D] [--fanout K] [--warmup W] [--duration T] [--server-pid PID]
//               [--close half|fin|rst] [--spread | --no-spread] [--verify] [--sync] [--label L]
//
// echo:  N connections each keep D messages of S bytes in flight (D = 1: ping-pong); a message is
//        done when its S echoed bytes are back. Reports messages/s, MB/s (one direction), p50/p99
//        round-trip latency, and the server's CPU time per message.
// churn: N connection slots, each looping connect, one S-byte echo, close; reports connections/s
//        and server CPU per connection. --close: half = shutdown(SHUT_WR) and wait for the server's
//        FIN (default), fin = close() at once, rst = abortive close (SO_LINGER 0). Source addresses
//        rotate over 127.0.0.2-127.0.0.250 (IP_BIND_ADDRESS_NO_PORT) so ephemeral ports last.
// room:  for example/chat_server --fixed S --echo (a broadcast room). N connections each keep one S-byte
// message in flight
//        (S >= 8; the first 8 bytes are a magic and the sending connection's index). The server
//        sends every message to K other members and echoes it to the sender; a connection sends
//        its next message when its own echo arrives. Every message received counts (echoes and
//        fan-out deliveries): reports delivered messages/s, the fan-out observed (deliveries per
//        echo, min(K, N-1) expected), p50/p99 echo round trip and server CPU per delivered message.
//        --fanout K only sets the expected fan-out in the report; the server's own --fanout rules.
//
// Server CPU: utime+stime of the whole process from /proc/PID/stat (clock ticks) sampled at the
// start and end of the measured window; also the sum of /proc/PID/task/*/schedstat (nanoseconds) as
// a finer cross-check. --sync (for instruction counting): after the warm-up and after the window,
// let every message in flight finish, print "SYNC warm" / "SYNC measured" and wait for a line on
// stdin, so that nothing moves while the caller zeroes or dumps counters.
//
// Output: one human-readable line, then one "RESULT key=value ..." line. Exit status: 0 when work
// was done, 1 when nothing completed or the server could not be reached, 2 for bad usage.

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace {

struct options {
  std::string host = "127.0.0.1";
  int port = -1;
  std::string mode = "echo";
  unsigned connections = 50;
  std::size_t size = 64;
  unsigned depth = 1;
  unsigned fanout = 0;
  double warmup = 1.0;
  double duration = 5.0;
  int server_pid = 0;
  std::string close_mode = "half";
  int spread = -1; // -1: default (on for churn, off for echo)
  bool verify = false;
  bool sync = false;
  std::string label;
};

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(
      stderr,
      "load_client: %s\n"
      "usage: load_client --port P [--host A] [--mode echo|churn|room] [--connections N] [--size S]\n"
      "                   [--depth D] [--fanout K] [--warmup W] [--duration T] [--server-pid PID]\n"
      "                   [--close half|fin|rst] [--spread|--no-spread] [--verify] [--sync]\n"
      "                   [--label L]\n",
      message.c_str());
  std::exit(2);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "load_client: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

std::int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

double to_number(std::string_view text, const char* what) {
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < 0)
    usage(std::string("bad ") + what);
  return v;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage("missing value for " + std::string(a));
      return argv[++i];
    };
    if (a == "--help" || a == "-h")
      usage("help");
    else if (a == "--host")
      o.host = value();
    else if (a == "--port")
      o.port = int(to_number(value(), "--port"));
    else if (a == "--mode")
      o.mode = value();
    else if (a == "--connections")
      o.connections = unsigned(to_number(value(), "--connections"));
    else if (a == "--size")
      o.size = std::size_t(to_number(value(), "--size"));
    else if (a == "--depth")
      o.depth = unsigned(to_number(value(), "--depth"));
    else if (a == "--fanout")
      o.fanout = unsigned(to_number(value(), "--fanout"));
    else if (a == "--warmup")
      o.warmup = to_number(value(), "--warmup");
    else if (a == "--duration")
      o.duration = to_number(value(), "--duration");
    else if (a == "--server-pid")
      o.server_pid = int(to_number(value(), "--server-pid"));
    else if (a == "--close")
      o.close_mode = value();
    else if (a == "--spread")
      o.spread = 1;
    else if (a == "--no-spread")
      o.spread = 0;
    else if (a == "--verify")
      o.verify = true;
    else if (a == "--sync")
      o.sync = true;
    else if (a == "--label")
      o.label = value();
    else
      usage("unknown option " + std::string(a));
  }
  if (o.port <= 0 || o.port > 65535) usage("--port is required (1-65535)");
  if (o.mode != "echo" && o.mode != "churn" && o.mode != "room") usage("--mode is echo, churn or room");
  if (o.mode == "room" && (o.size < 8 || o.size > 4096)) usage("--size: 8..4096 in room mode");
  if (o.mode == "room" && o.sync) usage("--sync is not available in room mode");
  if (o.close_mode != "half" && o.close_mode != "fin" && o.close_mode != "rst")
    usage("--close: half|fin|rst");
  if (o.connections == 0 || o.connections > 100000) usage("--connections: 1..100000");
  if (o.size == 0 || o.size > (64u << 20)) usage("--size: 1..64 MiB");
  if (o.depth == 0 || o.depth > 4096) usage("--depth: 1..4096");
  if (o.duration <= 0) usage("--duration must be > 0");
  if (o.spread < 0) o.spread = o.mode == "churn" ? 1 : 0;
  return o;
}

// ---- latency histogram: log-linear, 64 sub-buckets per power of two (under 1.6 % error) --------

class histogram {
public:
  histogram() : counts_(64 * 64, 0) {}
  void clear() {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = 0;
  }
  void add(std::int64_t ns) {
    auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(ns, 0));
    ++counts_[index(v)];
    ++total_;
  }
  std::uint64_t total() const { return total_; }
  /// The value at quantile q (0..1), in nanoseconds (the bucket's midpoint); 0 when empty.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * double(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return midpoint(i);
    }
    return midpoint(counts_.size() - 1);
  }

private:
  static std::size_t index(std::uint64_t v) {
    if (v < 64) return std::size_t(v);
    int msb = 63 - __builtin_clzll(v); // >= 6
    int shift = msb - 5;               // keeps 6 significant bits: 32..63
    std::size_t i = std::size_t(shift + 1) * 32 + std::size_t(v >> shift);
    return std::min<std::size_t>(i, 64 * 64 - 1);
  }
  static double midpoint(std::size_t i) {
    if (i < 64) return double(i);
    std::size_t shift = i / 32 - 2; // i = (shift + 2) * 32 + mantissa % 32
    std::uint64_t mantissa = i % 32 + 32;
    double low = double(mantissa << shift);
    return low + double((1ull << shift)) / 2;
  }
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
};

// ---- the server's CPU time -------------------------------------------------------------------

struct cpu_sample {
  unsigned long long ticks = 0; // utime+stime from /proc/PID/stat, in clock ticks
  double stat_us = 0;           // the same in microseconds
  double sched_us = 0;          // sum over /proc/PID/task/*/schedstat, in microseconds
  bool ok = false;
};

bool read_file(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out.clear();
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, std::size_t(n));
  }
  ::close(fd);
  return !out.empty();
}

cpu_sample read_server_cpu(int pid) {
  cpu_sample s;
  if (pid <= 0) return s;
  static const long ticks_per_second = sysconf(_SC_CLK_TCK);
  std::string text;
  std::string base = "/proc/" + std::to_string(pid);
  if (!read_file(base + "/stat", text)) return s;
  // Fields after the command name (which may hold spaces, hence the last ')'): state is field 3,
  // utime field 14 and stime field 15.
  auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return s;
  const char* p = text.c_str() + close_paren + 1;
  unsigned long long fields[13] = {};
  int field = 3;
  while (*p && field <= 15) {
    while (*p == ' ')
      ++p;
    const char* start = p;
    while (*p && *p != ' ')
      ++p;
    if (field >= 14) fields[field - 14] = std::strtoull(start, nullptr, 10);
    ++field;
  }
  if (field <= 15) return s;
  s.ticks = fields[0] + fields[1];
  s.stat_us = double(s.ticks) * 1e6 / double(ticks_per_second);
  s.ok = true;
  if (DIR* d = ::opendir((base + "/task").c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      if (read_file(base + "/task/" + e->d_name + "/schedstat", text))
        s.sched_us += double(std::strtoull(text.c_str(), nullptr, 10)) / 1e3;
    }
    ::closedir(d);
  }
  return s;
}

// ---- common ----------------------------------------------------------------------------------

volatile std::sig_atomic_t interrupted = 0;

sockaddr_in make_address(const std::string& host, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) usage("--host must be a numeric IPv4 address");
  return a;
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void epoll_set(int ep, int op, int fd, std::uint32_t events, std::uint64_t data) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  if (::epoll_ctl(ep, op, fd, &ev) != 0) die("epoll_ctl");
}

/// Blocks until a line (or EOF) arrives on stdin.
void wait_for_stdin_line() {
  char c;
  while (::read(0, &c, 1) == 1 && c != '\n') {}
}

struct report {
  std::uint64_t ops = 0;
  std::uint64_t bytes = 0;
  std::uint64_t errors = 0;
  double seconds = 0;
  histogram latency;
  std::uint64_t echoes = 0;     // room: own messages back
  std::uint64_t deliveries = 0; // room: other members' messages
};

struct window {
  std::int64_t start_ns = 0, end_ns = 0;
  cpu_sample cpu_start, cpu_end;
};

/// Binds `fd` to the i-th of the source addresses 127.0.0.2-127.0.0.250 (--spread), so that
/// ephemeral ports last; the port is chosen at connect (IP_BIND_ADDRESS_NO_PORT).
bool bind_spread_source(int fd, std::uint64_t i) {
  sockaddr_in src{};
  src.sin_family = AF_INET;
  src.sin_addr.s_addr = htonl((127u << 24) | std::uint32_t(2 + i % 249));
  int one = 1;
  ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  return ::bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) == 0;
}

/// The i-th long-lived connection of echo and room mode: connected (blocking), then non-blocking,
/// TCP_NODELAY, and registered with `ep` for input under key i. Any failure ends the program.
int connect_client(const options& o, const sockaddr_in& server, int ep, unsigned i) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  if (o.spread > 0 && !bind_spread_source(fd, i)) die("bind");
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) die("connect");
  set_nodelay(fd);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  epoll_set(ep, EPOLL_CTL_ADD, fd, EPOLLIN, i);
  return fd;
}

/// The run's phases: warm-up, then the measured window. With --sync, the work in flight drains
/// before and after the window, and the caller is told ("SYNC warm" / "SYNC measured") and waited
/// for (a line on stdin), so that nothing moves while it zeroes or dumps counters.
/// `open_window` / `close_window` snapshot the mode's own totals at the window's edges.
template <class Open, class Close>
class phase_clock {
public:
  enum class step {
    go_on,   // keep working
    resumed, // the window just opened after a --sync drain: issue work again
    done,    // the window closed: report
    stuck,   // a --sync drain did not finish within 10 s
  };

  phase_clock(const options& o, Open open_window, Close close_window)
      : o_(o), open_(open_window), close_(close_window) {
    const std::int64_t t0 = now_ns();
    deadline_ = t0 + std::int64_t(o.warmup * 1e9);
    if (o.warmup <= 0 && !o.sync) open_at(t0);
  }

  /// Whether new work may start (false while draining).
  bool issuing() const noexcept { return phase_ == phase::warm_up || phase_ == phase::measure; }
  bool measuring() const noexcept { return measuring_; }

  /// Called every loop turn with the time and how much work is in flight.
  step advance(std::int64_t t, std::uint64_t in_flight) {
    switch (phase_) {
    case phase::warm_up:
      if (t < deadline_) return step::go_on;
      if (o_.sync) return drain(phase::drain_before, t);
      open_at(t);
      return step::go_on;
    case phase::drain_before:
      if (in_flight == 0) {
        std::printf("SYNC warm\n");
        std::fflush(stdout);
        wait_for_stdin_line();
        open_at(now_ns());
        return step::resumed;
      }
      return t > drain_limit_ ? step::stuck : step::go_on;
    case phase::measure:
      if (t < deadline_) return step::go_on;
      if (o_.sync) return drain(phase::drain_after, t);
      close_now();
      return step::done;
    case phase::drain_after:
      if (in_flight == 0) {
        close_now();
        std::printf("SYNC measured\n");
        std::fflush(stdout);
        wait_for_stdin_line();
        return step::done;
      }
      return t > drain_limit_ ? step::stuck : step::go_on;
    }
    return step::go_on;
  }

  /// The loop ended early (interrupted, every connection lost): close a window still open.
  /// False if no window was completed.
  bool finish() {
    if (measuring_) close_now();
    return closed_;
  }

private:
  enum class phase { warm_up, drain_before, measure, drain_after };

  step drain(phase next, std::int64_t t) {
    phase_ = next;
    drain_limit_ = t + 10'000'000'000;
    return step::go_on;
  }
  void open_at(std::int64_t t) {
    open_();
    measuring_ = true;
    phase_ = phase::measure;
    deadline_ = t + std::int64_t(o_.duration * 1e9);
  }
  void close_now() {
    close_();
    measuring_ = false;
    closed_ = true;
  }

  const options& o_;
  Open open_;
  Close close_;
  phase phase_ = phase::warm_up;
  std::int64_t deadline_ = 0;
  std::int64_t drain_limit_ = 0;
  bool measuring_ = false;
  bool closed_ = false;
};

/// The window's edges in time and server CPU.
void open_window(const options& o, window& w) {
  w.cpu_start = read_server_cpu(o.server_pid);
  w.start_ns = now_ns();
}
void close_window(const options& o, window& w, report& r) {
  w.end_ns = now_ns();
  w.cpu_end = read_server_cpu(o.server_pid);
  r.seconds = double(w.end_ns - w.start_ns) / 1e9;
}

void print_room_report(const options& o, const report& r, const window& w) {
  double ops_per_s = r.seconds > 0 ? double(r.ops) / r.seconds : 0;
  double echoes_per_s = r.seconds > 0 ? double(r.echoes) / r.seconds : 0;
  double fanout = r.echoes ? double(r.deliveries) / double(r.echoes) : 0;
  unsigned expected = std::min(o.fanout, o.connections - 1);
  double p50 = r.latency.quantile(0.50) / 1e3, p99 = r.latency.quantile(0.99) / 1e3;
  bool cpu = w.cpu_start.ok && w.cpu_end.ok;
  double cpu_us = cpu ? w.cpu_end.stat_us - w.cpu_start.stat_us : 0;
  double sched_us = cpu ? w.cpu_end.sched_us - w.cpu_start.sched_us : 0;
  double per_op = cpu && r.ops ? cpu_us / double(r.ops) : 0;
  double sched_per_op = cpu && r.ops ? sched_us / double(r.ops) : 0;
  double util = cpu && r.seconds > 0 ? cpu_us / (r.seconds * 1e6) : 0;
  std::printf(
      "%s%sroom %s:%d conns=%u size=%zu fanout=%.2f (expected %u): %.0f delivered msg/s (%.0f echoes/s)",
      o.label.c_str(), o.label.empty() ? "" : ": ", o.host.c_str(), o.port, o.connections, o.size, fanout,
      expected, ops_per_s, echoes_per_s);
  std::printf(", echo p50 %.1f us, p99 %.1f us", p50, p99);
  if (cpu)
    std::printf(", server %.3f us CPU/delivered msg (schedstat %.3f), %.0f%% of a CPU", per_op, sched_per_op,
                util * 100);
  std::printf(", %.3f s, errors %llu\n", r.seconds, static_cast<unsigned long long>(r.errors));
  std::printf(
      "RESULT mode=room label=%s port=%d conns=%u size=%zu fanout_expected=%u fanout_observed=%.4f "
      "seconds=%.6f ops=%llu ops_per_s=%.3f echoes=%llu deliveries=%llu echoes_per_s=%.3f p50_us=%.3f "
      "p99_us=%.3f",
      o.label.empty() ? "-" : o.label.c_str(), o.port, o.connections, o.size, expected, fanout, r.seconds,
      static_cast<unsigned long long>(r.ops), ops_per_s, static_cast<unsigned long long>(r.echoes),
      static_cast<unsigned long long>(r.deliveries), echoes_per_s, p50, p99);
  if (cpu)
    std::printf(" server_cpu_ticks=%llu server_cpu_us=%.1f server_sched_us=%.1f server_cpu_util=%.4f "
                "server_cpu_us_per_op=%.5f server_sched_us_per_op=%.5f server_cpu_us_per_msg=%.5f",
                w.cpu_end.ticks - w.cpu_start.ticks, cpu_us, sched_us, util, per_op, sched_per_op, per_op);
  std::printf(" errors=%llu\n", static_cast<unsigned long long>(r.errors));
  std::fflush(stdout);
}

void print_report(const options& o, const report& r, const window& w) {
  double ops_per_s = r.seconds > 0 ? double(r.ops) / r.seconds : 0;
  double mb_per_s = r.seconds > 0 ? double(r.bytes) / r.seconds / 1e6 : 0;
  double p50 = r.latency.quantile(0.50) / 1e3, p99 = r.latency.quantile(0.99) / 1e3;
  bool cpu = w.cpu_start.ok && w.cpu_end.ok;
  double cpu_us = cpu ? w.cpu_end.stat_us - w.cpu_start.stat_us : 0;
  double sched_us = cpu ? w.cpu_end.sched_us - w.cpu_start.sched_us : 0;
  double per_op = cpu && r.ops ? cpu_us / double(r.ops) : 0;
  double sched_per_op = cpu && r.ops ? sched_us / double(r.ops) : 0;
  double util = cpu && r.seconds > 0 ? cpu_us / (r.seconds * 1e6) : 0;
  if (o.mode == "room") {
    print_room_report(o, r, w);
    return;
  }
  const bool echo = o.mode == "echo";
  const char* unit = echo ? "msg" : "conn";

  std::printf("%s%s%s %s:%d conns=%u size=%zu %s%s: %.0f %s/s", o.label.c_str(), o.label.empty() ? "" : ": ",
              o.mode.c_str(), o.host.c_str(), o.port, o.connections, o.size,
              echo ? "depth=" : "close=", echo ? std::to_string(o.depth).c_str() : o.close_mode.c_str(),
              ops_per_s, unit);
  if (echo) std::printf(", %.2f MB/s", mb_per_s);
  std::printf(", p50 %.1f us, p99 %.1f us", p50, p99);
  if (cpu)
    std::printf(", server %.3f us CPU/%s (schedstat %.3f), %.0f%% of a CPU", per_op, unit, sched_per_op,
                util * 100);
  std::printf(", %.3f s, errors %llu\n", r.seconds, static_cast<unsigned long long>(r.errors));

  std::printf("RESULT mode=%s label=%s port=%d conns=%u size=%zu depth=%u close=%s seconds=%.6f ops=%llu "
              "ops_per_s=%.3f",
              o.mode.c_str(), o.label.empty() ? "-" : o.label.c_str(), o.port, o.connections, o.size, o.depth,
              o.close_mode.c_str(), r.seconds, static_cast<unsigned long long>(r.ops), ops_per_s);
  if (echo)
    std::printf(" messages=%llu msgs_per_s=%.3f mb_per_s=%.4f", static_cast<unsigned long long>(r.ops),
                ops_per_s, mb_per_s);
  else
    std::printf(" connections_done=%llu conns_per_s=%.3f", static_cast<unsigned long long>(r.ops), ops_per_s);
  std::printf(" p50_us=%.3f p99_us=%.3f", p50, p99);
  if (cpu) {
    std::printf(" server_cpu_ticks=%llu server_cpu_us=%.1f server_sched_us=%.1f server_cpu_util=%.4f "
                "server_cpu_us_per_op=%.5f server_sched_us_per_op=%.5f",
                w.cpu_end.ticks - w.cpu_start.ticks, cpu_us, sched_us, util, per_op, sched_per_op);
    if (echo)
      std::printf(" server_cpu_us_per_msg=%.5f server_sched_us_per_msg=%.5f", per_op, sched_per_op);
    else
      std::printf(" server_cpu_us_per_conn=%.5f server_sched_us_per_conn=%.5f", per_op, sched_per_op);
  }
  std::printf(" errors=%llu\n", static_cast<unsigned long long>(r.errors));
  std::fflush(stdout);
}

// ---- echo mode -------------------------------------------------------------------------------

struct echo_conn {
  int fd = -1;
  std::uint64_t to_send = 0;        // bytes queued but not yet written
  std::uint64_t sent = 0;           // bytes written in all
  std::uint64_t received = 0;       // bytes read in all
  std::uint64_t completed = 0;      // messages fully echoed
  unsigned outstanding = 0;         // messages queued and not yet echoed
  std::vector<std::int64_t> stamps; // ring of the outstanding messages' start times
  unsigned head = 0;
  bool want_out = false;
};

int run_echo(const options& o) {
  const sockaddr_in server = make_address(o.host, o.port);
  const std::size_t S = o.size;
  // The byte stream is the pattern repeated: byte k of the stream is pattern(k % S).
  auto pattern = [&](std::uint64_t k) { return static_cast<char>('a' + (k % S) % 23); };
  const std::size_t chunk = std::max<std::size_t>(S, 256 * 1024);
  std::vector<char> out(chunk + S);
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = pattern(i);
  std::vector<char> in(256 * 1024);

  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<echo_conn> conns(o.connections);
  for (unsigned i = 0; i < o.connections; ++i) {
    conns[i].fd = connect_client(o, server, ep, i);
    conns[i].stamps.assign(o.depth, 0);
  }

  report r;
  window w;
  std::uint64_t completed_total = 0, completed_at_start = 0;
  std::uint64_t in_flight = 0; // messages outstanding over all connections
  unsigned open_conns = o.connections;

  auto flush = [&](unsigned i) {
    auto& c = conns[i];
    while (c.to_send > 0) {
      std::size_t off = c.sent % S;
      std::size_t len = std::min<std::uint64_t>(c.to_send, chunk);
      ssize_t n = ::send(c.fd, out.data() + off, len, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += std::uint64_t(n);
        c.to_send -= std::uint64_t(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      return false;
    }
    bool want = c.to_send > 0;
    if (want != c.want_out) {
      c.want_out = want;
      epoll_set(ep, EPOLL_CTL_MOD, c.fd, EPOLLIN | (want ? EPOLLOUT : 0u), i);
    }
    return true;
  };
  auto issue = [&](echo_conn& c, std::int64_t t) {
    c.stamps[(c.head + c.outstanding) % o.depth] = t;
    ++c.outstanding;
    ++in_flight;
    c.to_send += S;
  };
  auto lose = [&](unsigned i) {
    auto& c = conns[i];
    if (c.fd < 0) return;
    ++r.errors;
    ::close(c.fd);
    c.fd = -1;
    in_flight -= c.outstanding;
    c.outstanding = 0;
    --open_conns;
  };
  auto prime = [&]() {
    std::int64_t t = now_ns();
    for (unsigned i = 0; i < o.connections; ++i) {
      if (conns[i].fd < 0) continue;
      while (conns[i].outstanding < o.depth)
        issue(conns[i], t);
      if (!flush(i)) lose(i);
    }
  };
  phase_clock clock(
      o,
      [&] {
        open_window(o, w);
        completed_at_start = completed_total;
        r.latency.clear();
        r.errors = 0;
      },
      [&] {
        close_window(o, w, r);
        r.ops = completed_total - completed_at_start;
        r.bytes = r.ops * S;
      });
  prime();
  std::vector<epoll_event> events(1024);
  bool verify_failed = false;
  for (;;) {
    if (interrupted) break;
    if (open_conns == 0) break;
    const auto step = clock.advance(now_ns(), in_flight);
    if (step == decltype(clock)::step::done) break;
    if (step == decltype(clock)::step::resumed) {
      prime();
      continue;
    }
    if (step == decltype(clock)::step::stuck) {
      std::fprintf(stderr, "load_client: %llu messages never came back\n",
                   static_cast<unsigned long long>(in_flight));
      return 1;
    }
    int n = ::epoll_wait(ep, events.data(), int(events.size()), 5);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int k = 0; k < n; ++k) {
      unsigned i = static_cast<unsigned>(events[k].data.u64);
      auto& c = conns[i];
      if (c.fd < 0) continue;
      if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        ssize_t got = ::recv(c.fd, in.data(), in.size(), 0);
        if (got <= 0) {
          if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
          lose(i);
          continue;
        }
        if (o.verify) {
          for (ssize_t j = 0; j < got; ++j)
            if (in[std::size_t(j)] != pattern(c.received + std::uint64_t(j))) verify_failed = true;
        }
        c.received += std::uint64_t(got);
        std::uint64_t done = c.received / S;
        if (done > c.completed) {
          std::int64_t tn = now_ns();
          while (c.completed < done) {
            if (c.outstanding == 0) { // more came back than was sent: not an echo
              verify_failed = true;
              break;
            }
            std::int64_t stamp = c.stamps[c.head];
            c.head = (c.head + 1) % o.depth;
            --c.outstanding;
            --in_flight;
            ++c.completed;
            ++completed_total;
            if (clock.measuring()) r.latency.add(tn - stamp);
            if (clock.issuing()) issue(c, tn);
          }
        }
      }
      if (c.fd >= 0 && (c.to_send > 0) && !flush(i)) lose(i);
    }
    if (verify_failed) {
      std::fprintf(stderr, "load_client: the echoed bytes differ from the ones sent\n");
      return 1;
    }
  }
  if (!clock.finish()) {
    std::fprintf(stderr, "load_client: stopped before the measured window ended\n");
    return 1;
  }
  print_report(o, r, w);
  for (auto& c : conns)
    if (c.fd >= 0) ::close(c.fd);
  ::close(ep);
  return r.ops > 0 ? 0 : 1;
}

// ---- churn mode ------------------------------------------------------------------------------

enum class slot_state { idle, connecting, await_echo, await_eof };

struct churn_slot {
  int fd = -1;
  slot_state state = slot_state::idle;
  std::uint32_t generation = 0;
  std::size_t got = 0;
  std::int64_t started = 0;
};

int run_churn(const options& o) {
  const sockaddr_in server = make_address(o.host, o.port);
  const std::size_t S = o.size;
  std::vector<char> message(S, 'c');
  std::vector<char> in(std::max<std::size_t>(S, 64 * 1024));
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<churn_slot> slots(o.connections);
  std::uint64_t source_counter = 0;

  report r;
  window w;
  bool measuring = false; // mirrors the phase clock's, for finish() (defined before the clock)
  std::uint64_t done_total = 0, done_at_start = 0, errors_total = 0, errors_at_start = 0;
  unsigned busy = 0;
  std::uint64_t consecutive_failures = 0;

  auto key = [&](unsigned i) { return (std::uint64_t(slots[i].generation) << 32) | i; };
  auto finish = [&](unsigned i, bool ok, bool abortive) {
    auto& s = slots[i];
    if (abortive) {
      linger l{1, 0};
      ::setsockopt(s.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    ::close(s.fd);
    s.fd = -1;
    s.state = slot_state::idle;
    --busy;
    if (ok) {
      ++done_total;
      consecutive_failures = 0;
      if (measuring) r.latency.add(now_ns() - s.started);
    } else {
      ++errors_total;
      ++consecutive_failures;
    }
  };
  auto start = [&](unsigned i) {
    auto& s = slots[i];
    ++s.generation;
    s.got = 0;
    s.started = now_ns();
    s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) die("socket");
    ++busy;
    if (o.spread > 0 && !bind_spread_source(s.fd, source_counter++)) {
      finish(i, false, false);
      return;
    }
    set_nodelay(s.fd);
    if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0 &&
        errno != EINPROGRESS) {
      finish(i, false, false);
      return;
    }
    s.state = slot_state::connecting;
    epoll_set(ep, EPOLL_CTL_ADD, s.fd, EPOLLOUT, key(i));
  };
  phase_clock clock(
      o,
      [&] {
        open_window(o, w);
        done_at_start = done_total;
        errors_at_start = errors_total;
        r.latency.clear();
        measuring = true;
      },
      [&] {
        close_window(o, w, r);
        measuring = false;
        r.ops = done_total - done_at_start;
        r.errors = errors_total - errors_at_start;
        r.bytes = r.ops * S;
      });
  auto fill = [&]() {
    if (!clock.issuing()) return;
    for (unsigned i = 0; i < o.connections; ++i)
      if (slots[i].state == slot_state::idle) start(i);
  };
  fill();
  std::vector<epoll_event> events(1024);
  for (;;) {
    if (interrupted) break;
    if (consecutive_failures > 10000) {
      std::fprintf(stderr, "load_client: connections keep failing (%s)\n", std::strerror(errno));
      return 1;
    }
    const auto step = clock.advance(now_ns(), busy);
    if (step == decltype(clock)::step::done) break;
    if (step == decltype(clock)::step::stuck) {
      std::fprintf(stderr, "load_client: %u connections never finished\n", busy);
      return 1;
    }
    fill();
    int n = ::epoll_wait(ep, events.data(), int(events.size()), 5);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int k = 0; k < n; ++k) {
      unsigned i = static_cast<unsigned>(events[k].data.u64 & 0xffffffffu);
      auto& s = slots[i];
      if (s.fd < 0 || s.generation != std::uint32_t(events[k].data.u64 >> 32)) continue;
      switch (s.state) {
      case slot_state::connecting: {
        int error = 0;
        socklen_t len = sizeof error;
        ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error != 0) {
          errno = error;
          finish(i, false, false);
          break;
        }
        if (::send(s.fd, message.data(), S, MSG_NOSIGNAL) != ssize_t(S)) {
          finish(i, false, false);
          break;
        }
        s.state = slot_state::await_echo;
        epoll_set(ep, EPOLL_CTL_MOD, s.fd, EPOLLIN, key(i));
        break;
      }
      case slot_state::await_echo: {
        ssize_t got = ::recv(s.fd, in.data(), in.size(), 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (got <= 0) {
          finish(i, false, false);
          break;
        }
        s.got += std::size_t(got);
        if (s.got < S) break;
        if (o.close_mode == "half") {
          ::shutdown(s.fd, SHUT_WR);
          s.state = slot_state::await_eof;
        } else {
          finish(i, true, o.close_mode == "rst");
        }
        break;
      }
      case slot_state::await_eof: {
        ssize_t got = ::recv(s.fd, in.data(), in.size(), 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (got == 0)
          finish(i, true, false);
        else if (got < 0)
          finish(i, false, false);
        break;
      }
      case slot_state::idle: break;
      }
    }
  }
  if (!clock.finish()) {
    std::fprintf(stderr, "load_client: stopped before the measured window ended\n");
    return 1;
  }
  print_report(o, r, w);
  for (auto& s : slots)
    if (s.fd >= 0) ::close(s.fd);
  ::close(ep);
  return r.ops > 0 ? 0 : 1;
}

// ---- room mode -------------------------------------------------------------------------------

constexpr std::uint32_t room_magic = 0x4d4f4f52; // "ROOM"

struct room_conn {
  int fd = -1;
  std::vector<char> message; // our message: magic, our index, then a pattern
  std::size_t unsent = 0;    // bytes of `message` still to write (0: nothing pending)
  std::size_t pos = 0;       // bytes of the incoming message read so far
  char header[8] = {};       // the incoming message's first 8 bytes
  bool outstanding = false;  // our message is out and its echo has not come back
  std::int64_t stamp = 0;
  bool want_out = false;
};

int run_room(const options& o) {
  const sockaddr_in server = make_address(o.host, o.port);
  const std::size_t S = o.size;
  std::vector<char> in(256 * 1024);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<room_conn> conns(o.connections);
  for (unsigned i = 0; i < o.connections; ++i) {
    auto& c = conns[i];
    c.message.resize(S);
    for (std::size_t k = 8; k < S; ++k)
      c.message[k] = static_cast<char>('a' + k % 23);
    std::memcpy(c.message.data(), &room_magic, 4);
    std::memcpy(c.message.data() + 4, &i, 4);
    c.fd = connect_client(o, server, ep, i);
  }

  report r;
  window w;
  bool bad_frame = false;
  std::uint64_t echoes = 0, deliveries = 0, echoes_at_start = 0, deliveries_at_start = 0;
  unsigned open_conns = o.connections;

  auto lose = [&](unsigned i) {
    auto& c = conns[i];
    if (c.fd < 0) return;
    ++r.errors;
    ::close(c.fd);
    c.fd = -1;
    --open_conns;
  };
  auto flush = [&](unsigned i) {
    auto& c = conns[i];
    while (c.unsent > 0) {
      ssize_t n = ::send(c.fd, c.message.data() + (S - c.unsent), c.unsent, MSG_NOSIGNAL);
      if (n > 0) {
        c.unsent -= std::size_t(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      return false;
    }
    bool want = c.unsent > 0;
    if (want != c.want_out) {
      c.want_out = want;
      epoll_set(ep, EPOLL_CTL_MOD, c.fd, EPOLLIN | (want ? EPOLLOUT : 0u), i);
    }
    return true;
  };
  auto issue = [&](unsigned i, std::int64_t t) {
    auto& c = conns[i];
    c.outstanding = true;
    c.stamp = t;
    c.unsent = S;
    if (!flush(i)) lose(i);
  };
  // Room mode has no --sync (parse refuses it): the clock only times the warm-up and the window.
  phase_clock clock(
      o,
      [&] {
        open_window(o, w);
        echoes_at_start = echoes;
        deliveries_at_start = deliveries;
        r.latency.clear();
        r.errors = 0;
      },
      [&] {
        close_window(o, w, r);
        r.echoes = echoes - echoes_at_start;
        r.deliveries = deliveries - deliveries_at_start;
        r.ops = r.echoes + r.deliveries;
        r.bytes = r.ops * S;
      });
  const std::int64_t t0 = now_ns();
  for (unsigned i = 0; i < o.connections; ++i)
    issue(i, t0);
  std::vector<epoll_event> events(1024);
  // A hard bound, whatever the server does.
  const std::int64_t give_up = t0 + std::int64_t((o.warmup + o.duration + 10) * 1e9);
  for (;;) {
    if (interrupted || open_conns == 0) break;
    std::int64_t t = now_ns();
    if (t > give_up) break;
    if (clock.advance(t, 0) == decltype(clock)::step::done) break;
    int n = ::epoll_wait(ep, events.data(), int(events.size()), 5);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int k = 0; k < n; ++k) {
      unsigned i = static_cast<unsigned>(events[k].data.u64);
      auto& c = conns[i];
      if (c.fd < 0) continue;
      if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        ssize_t got = ::recv(c.fd, in.data(), in.size(), 0);
        if (got <= 0) {
          if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
          lose(i);
          continue;
        }
        std::size_t at = 0, end = std::size_t(got);
        while (at < end) {
          if (c.pos < 8) {
            std::size_t take = std::min<std::size_t>(8 - c.pos, end - at);
            std::memcpy(c.header + c.pos, in.data() + at, take);
            c.pos += take;
            at += take;
            if (c.pos < 8) break;
          }
          std::size_t take = std::min(S - c.pos, end - at);
          c.pos += take;
          at += take;
          if (c.pos < S) break;
          c.pos = 0;
          std::uint32_t magic, sender;
          std::memcpy(&magic, c.header, 4);
          std::memcpy(&sender, c.header + 4, 4);
          if (magic != room_magic || sender >= o.connections) {
            bad_frame = true;
            break;
          }
          if (sender != i) {
            ++deliveries;
            continue;
          }
          if (!c.outstanding) { // an echo we did not ask for
            bad_frame = true;
            break;
          }
          ++echoes;
          c.outstanding = false;
          std::int64_t tn = now_ns();
          if (clock.measuring()) r.latency.add(tn - c.stamp);
          issue(i, tn);
          if (c.fd < 0) break;
        }
      }
      if (c.fd >= 0 && c.unsent > 0 && !flush(i)) lose(i);
    }
    if (bad_frame) {
      std::fprintf(stderr, "load_client: a room message arrived out of frame (bad magic or sender)\n");
      return 1;
    }
  }
  if (!clock.finish()) {
    std::fprintf(stderr, "load_client: stopped before the measured window ended\n");
    return 1;
  }
  print_report(o, r, w);
  for (auto& c : conns)
    if (c.fd >= 0) ::close(c.fd);
  ::close(ep);
  return r.ops > 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  options o = parse(argc, argv);
  struct sigaction sa {};
  sa.sa_handler = [](int) { interrupted = 1; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  if (o.mode == "room") return run_room(o);
  return o.mode == "echo" ? run_echo(o) : run_churn(o);
}
