// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Sends by id posted from threads that are not the connection's I/O thread ("posted sends"): what
// they cost, and how far their memory stays within the send-queue cap. Public API only
// (include/iocp/*.hpp), so that the same program measures the library before and after a rework.
//
//   posted_sends --mode burst [--backend io_uring|epoll|both] [--map mutex|lockfree]
//                [--threading single|pool] [--threads N] [--count 20000] [--size 64]
//                [--path callback|posted|both] [--repeat 3] [--warmup 1] [--seconds 20]
//   posted_sends --mode flood [--backend ...] [--map ...] [--threading ...] [--threads N]
//                [--max-send-queue-total 128MiB] [--max-send-queue-per-connection SIZE]
//                [--senders 8] [--connections 64] [--size 64] [--vector]
//                [--refused-for 1] [--seconds 20]
//
// --mode burst: one loopback client connection that reads everything. `posted`: a user thread (not
// an I/O thread) calls server.send(id, span) --count times with --size bytes each, as fast as it
// can; `callback`: the client sends one trigger byte and the handler's on_received calls conn.send
// --count times on the I/O thread. Each path runs on a fresh server (send-queue limits set to 1 GiB,
// so that none is refused), --warmup bursts (not counted) then --repeat bursts; the table shows the
// median of each figure: `ops`, the on_sent callbacks of the burst (one per completed kernel send
// operation); `ms`, from the first send until the client has read every byte (`calls ms`: until the
// last send call returned); `new/send`, calls of the global operator new (all threads; this program
// replaces it with a counting one) from the first send until the client has read everything and
// on_sent has reported every byte, divided by --count (`newB/send`: their bytes). The client checks
// the stream byte-exact (every message carries its sequence number, then a fixed pattern): missing,
// extra or reordered bytes fail the run.
//
// Policies (both modes): iocp::pooled_allocator with --map mutex (default) or lockfree, and
// --threading single (default) or pool (--threads N, default 2; giving --threads selects pool).
//
// --mode flood: --connections clients that never read (16 KiB receive buffers, so the kernel holds
// little of the flood); --senders user threads send --size bytes by id to them in turn (span
// copies, or with --vector moved std::vector<std::byte> buffers) until the cap is reached: every
// 10 ms sample for --refused-for seconds saw sends refused with errc::send_queue_full and the
// process's memory grew by less than max(1 MiB, cap/64) meanwhile (a few sends may still be
// accepted in that window, as the kernel takes a little more, and are reported) -- or --seconds
// pass, which fails the run. max_send_queue_total is --max-send-queue-total;
// max_send_queue_per_connection (default: the same) is too large to be the limit that binds. The
// process's VmRSS is sampled every 10 ms from before the flood to its end; reported: growth of the
// peak over the pre-flood baseline (MiB), growth / cap, sends accepted and refused, and
// server.send_queue_reserved() (at the end, and its peak). --progress prints the figures twice a
// second.
//
// Each backend runs in a child process of its own (fork), so that one flood's heap is not the next
// one's baseline.
//
// Everything runs on 127.0.0.1 with an ephemeral port; a watchdog ends a run (exit 3) that overruns
// --seconds by 15 s or more. Exit status: 0 on success; 1 on a failed check (bytes missing, extra
// or reordered, a send refused in burst mode, an unexpected error, flood mode never reaching the
// cap); 2 on a bad command line.
//
// Examples (from the top of the tree, after `ninja -C build test/bench/posted_sends`):
//   build/test/bench/posted_sends --mode burst --backend both
//   build/test/bench/posted_sends --mode flood --backend both
//   build/test/bench/posted_sends --mode flood --backend epoll --vector --max-send-queue-total 64MiB

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "iocp/iocp.hpp"

#include "counting_new.hpp" // counting::calls, counting::bytes, counting::enabled

namespace {

// ---- command line ----

struct settings {
  std::string mode = "burst";
  std::vector<iocp::backend> backends{iocp::backend::io_uring, iocp::backend::epoll};
  bool lockfree = false;
  bool pool = false;
  std::size_t threads = 2;
  double seconds = 20;
  std::size_t size = 64;
  // burst
  std::size_t count = 20000;
  bool path_callback = true;
  bool path_posted = true;
  unsigned repeat = 3;
  unsigned warmup = 1;
  // flood
  std::size_t cap = std::size_t{128} << 20;
  std::size_t per_connection = 0; // 0: the same as cap
  unsigned senders = 8;
  unsigned connections = 64;
  bool vector = false;
  bool progress = false;
  double refused_for = 1.0;
};

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(
      stderr,
      "posted_sends: %s\n"
      "usage: posted_sends --mode burst|flood [--backend io_uring|epoll|both] [--map mutex|lockfree]\n"
      "         [--threading single|pool] [--threads N] [--size S] [--seconds T]\n"
      "  burst: [--count 20000] [--path callback|posted|both] [--repeat 3] [--warmup 1]\n"
      "  flood: [--max-send-queue-total 128MiB] [--max-send-queue-per-connection SIZE]\n"
      "         [--senders 8] [--connections 64] [--vector] [--refused-for 1]\n"
      "(see the top of test/bench/posted_sends.cpp)\n",
      message.c_str());
  std::exit(2);
}

std::uint64_t parse_count(std::string_view text, const char* what) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size()) usage(std::string("bad ") + what);
  return v;
}

std::size_t parse_size(std::string_view text, const char* what) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end == text.data()) usage(std::string("bad ") + what);
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::uint64_t mul = 1;
  if (unit.empty() || unit == "B")
    mul = 1;
  else if (unit == "KiB" || unit == "K")
    mul = 1ull << 10;
  else if (unit == "MiB" || unit == "M")
    mul = 1ull << 20;
  else if (unit == "GiB" || unit == "G")
    mul = 1ull << 30;
  else
    usage(std::string("bad unit in ") + what + " (B, KiB, MiB, GiB)");
  return static_cast<std::size_t>(v * mul);
}

double parse_seconds(std::string_view text, const char* what) {
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v > 0) || v > 3600) usage(std::string("bad ") + what);
  return v;
}

settings parse(int argc, char** argv) {
  settings o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") usage("help");
    if (a == "--vector") {
      o.vector = true;
      continue;
    }
    if (a == "--progress") {
      o.progress = true;
      continue;
    }
    if (i + 1 >= argc) usage("missing value for " + std::string(a));
    std::string_view v = argv[++i];
    if (a == "--mode") {
      if (v != "burst" && v != "flood") usage("bad --mode");
      o.mode = std::string(v);
    } else if (a == "--backend") {
      if (v == "both") {
        o.backends = {iocp::backend::io_uring, iocp::backend::epoll};
      } else {
        auto b = iocp::parse_backend(v);
        if (!b || *b == iocp::backend::iocp) usage("bad --backend");
        o.backends = {*b};
      }
    } else if (a == "--map") {
      if (v != "mutex" && v != "lockfree") usage("bad --map");
      o.lockfree = v == "lockfree";
    } else if (a == "--threading") {
      if (v != "single" && v != "pool") usage("bad --threading");
      o.pool = v == "pool";
    } else if (a == "--threads") {
      o.threads = parse_count(v, "--threads");
      if (o.threads == 0 || o.threads > 64) usage("--threads must be 1 to 64");
      o.pool = true;
    } else if (a == "--seconds") {
      o.seconds = parse_seconds(v, "--seconds");
    } else if (a == "--size") {
      o.size = parse_size(v, "--size");
    } else if (a == "--count") {
      o.count = parse_count(v, "--count");
    } else if (a == "--path") {
      if (v != "callback" && v != "posted" && v != "both") usage("bad --path");
      o.path_callback = v != "posted";
      o.path_posted = v != "callback";
    } else if (a == "--repeat") {
      o.repeat = static_cast<unsigned>(parse_count(v, "--repeat"));
    } else if (a == "--warmup") {
      o.warmup = static_cast<unsigned>(parse_count(v, "--warmup"));
    } else if (a == "--max-send-queue-total") {
      o.cap = parse_size(v, "--max-send-queue-total");
    } else if (a == "--max-send-queue-per-connection") {
      o.per_connection = parse_size(v, "--max-send-queue-per-connection");
    } else if (a == "--senders") {
      o.senders = static_cast<unsigned>(parse_count(v, "--senders"));
    } else if (a == "--connections") {
      o.connections = static_cast<unsigned>(parse_count(v, "--connections"));
    } else if (a == "--refused-for") {
      o.refused_for = parse_seconds(v, "--refused-for");
    } else {
      usage("unknown option " + std::string(a));
    }
  }
  if (o.mode == "burst" && (o.size < 8 || o.size > (1u << 20)))
    usage("--size must be 8 B to 1 MiB in burst mode (a message carries its 8-byte sequence number)");
  if (o.mode == "flood" && (o.size == 0 || o.size > (1u << 20))) usage("--size must be 1 B to 1 MiB");
  if (o.count == 0 || o.count > 10'000'000) usage("--count must be 1 to 10,000,000");
  if (o.repeat == 0 || o.repeat > 1000) usage("--repeat must be 1 to 1000");
  if (o.senders == 0 || o.senders > 256) usage("--senders must be 1 to 256");
  if (o.connections == 0 || o.connections > 4096) usage("--connections must be 1 to 4096");
  if (o.cap == 0) usage("--max-send-queue-total must be positive");
  if (o.per_connection == 0) o.per_connection = o.cap;
  return o;
}

// ---- helpers ----

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool failed_flag = false;
std::atomic<pid_t> running_child{0}; // the run in progress (main process only), for the watchdog

void fail(const char* format, const std::string& detail = {}) {
  std::fprintf(stderr, "posted_sends: FAILED: %s%s%s\n", format, detail.empty() ? "" : ": ", detail.c_str());
  failed_flag = true;
}

/// Ends the process if a run does not finish in time (a hang is a failure, not a wait for ever).
class watchdog {
public:
  explicit watchdog(double seconds)
      : thread_([this, seconds] {
          std::unique_lock lock(mutex_);
          if (!changed_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return done_; })) {
            std::fprintf(stderr, "posted_sends: FAILED: watchdog: the run took more than %.0f s\n", seconds);
            if (pid_t child = running_child.load(); child > 0) ::kill(child, SIGKILL);
            std::_Exit(3);
          }
        }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }

private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool done_ = false;
  std::thread thread_;
};

/// A blocking loopback client socket connected to `port`, or -1.
int connect_client(std::uint16_t port, int rcvbuf = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Waits until `done()` or the deadline (steady clock, ns); true if done.
template <class F>
bool wait_until(std::int64_t deadline_ns, F&& done) {
  while (!done()) {
    if (now_ns() >= deadline_ns) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

std::string error_text(std::error_code e) { return e.message() + " (" + e.category().name() + ")"; }

const char* backend_name(iocp::backend b) { return iocp::to_string(b).data(); }

// ---- burst mode ----

/// Message `seq` of a burst: its sequence number (8 bytes, little-endian), then bytes that depend on
/// their place only. `message` holds the tail already (make_message); a send rewrites the head.
std::vector<std::byte> make_message(std::size_t size) {
  std::vector<std::byte> m(size);
  for (std::size_t j = 8; j < size; ++j)
    m[j] = static_cast<std::byte>(static_cast<unsigned char>(j * 7 + 1));
  return m;
}

inline void set_sequence(std::span<std::byte> message, std::uint64_t seq) noexcept {
  for (std::size_t j = 0; j < 8; ++j)
    message[j] = static_cast<std::byte>(static_cast<unsigned char>(seq >> (8 * j)));
}

struct burst_context {
  std::size_t count = 0;
  std::size_t size = 0;
  std::atomic<std::uint64_t> id{0};
  std::atomic<std::uint64_t> sent_calls{0};
  std::atomic<std::uint64_t> sent_bytes{0};
  std::atomic<std::uint64_t> send_errors{0};
  std::atomic<int> first_send_error{0};
  std::atomic<std::uint64_t> server_errors{0};
  std::atomic<bool> disconnected{false};
  // Set where a burst starts (the I/O thread for `callback`, the posting thread for `posted`).
  std::atomic<std::int64_t> start_ns{0};
  std::atomic<std::uint64_t> start_new_calls{0};
  std::atomic<std::uint64_t> start_new_bytes{0};
  std::atomic<std::int64_t> sends_done_ns{0}; // when the last send call of the burst returned
  std::uint64_t next_seq = 0;                 // used by one burst at a time
  std::vector<std::byte> message;

  void mark_start() {
    start_new_calls.store(counting::calls.load(std::memory_order_relaxed), std::memory_order_relaxed);
    start_new_bytes.store(counting::bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
    start_ns.store(now_ns(), std::memory_order_release);
  }
  void note_send(std::error_code e) {
    if (!e) return;
    if (send_errors.fetch_add(1, std::memory_order_relaxed) == 0)
      first_send_error.store(e.value(), std::memory_order_relaxed);
  }
};

struct burst_handler {
  burst_context* ctx;
  explicit burst_handler(burst_context* c) : ctx(c) {}

  void on_connected(auto& conn, const iocp::connection_info&) {
    ctx->id.store(conn.id().value(), std::memory_order_release);
  }
  // The callback path: every trigger byte ('T') is one burst of conn.send calls on this I/O thread.
  void on_received(auto& conn, std::span<const std::byte> data) {
    for (std::byte b : data) {
      if (b != std::byte{'T'}) continue;
      ctx->mark_start();
      for (std::size_t i = 0; i < ctx->count; ++i) {
        set_sequence(ctx->message, ctx->next_seq++);
        ctx->note_send(conn.send(std::span<const std::byte>(ctx->message)));
      }
      ctx->sends_done_ns.store(now_ns(), std::memory_order_release);
    }
  }
  void on_sent(auto&, std::size_t bytes) {
    ctx->sent_calls.fetch_add(1, std::memory_order_relaxed);
    ctx->sent_bytes.fetch_add(bytes, std::memory_order_relaxed);
  }
  void on_disconnected(auto&, std::error_code) { ctx->disconnected.store(true, std::memory_order_release); }
  void on_server_error(std::error_code e, iocp::operation where) {
    ctx->server_errors.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "posted_sends: on_server_error(%s): %s\n", iocp::to_string(where),
                 e.message().c_str());
  }
};

/// The client: reads the stream and checks it byte by byte; publishes how far it got and when a target
/// was reached. Allocates nothing while it runs.
class stream_reader {
public:
  stream_reader(int fd, std::size_t size) : fd_(fd), size_(size), thread_([this] { run(); }) {}
  ~stream_reader() {
    stop_.store(true);
    thread_.join();
  }
  /// Arms the next burst: reached() becomes non-zero once `total` bytes have arrived.
  void expect(std::uint64_t total) {
    reached_ns_.store(0, std::memory_order_relaxed);
    target_.store(total, std::memory_order_release);
  }
  std::int64_t reached() const { return reached_ns_.load(std::memory_order_acquire); }
  std::uint64_t received() const { return received_.load(std::memory_order_acquire); }
  bool broken() const { return broken_.load(std::memory_order_acquire); }
  const char* what() const { return what_; }
  std::uint64_t bad_offset() const { return bad_offset_; }

private:
  void run() {
    std::vector<std::byte> buffer(256 * 1024);
    // The message expected next; compared with memcmp, so that checking costs little of the time.
    std::vector<std::byte> expected = make_message(size_);
    std::uint64_t pos = 0;
    std::uint64_t seq = 0;
    std::size_t j = 0; // offset in the current message
    set_sequence(expected, seq);
    timeval tv{0, 20'000}; // wake every 20 ms to see stop_
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!stop_.load(std::memory_order_relaxed)) {
      ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (n < 0) return set_broken("recv failed", pos);
      if (n == 0) return set_broken("the server closed the connection", pos);
      for (std::size_t k = 0; k < static_cast<std::size_t>(n);) {
        const std::size_t take = std::min(static_cast<std::size_t>(n) - k, size_ - j);
        if (std::memcmp(buffer.data() + k, expected.data() + j, take) != 0) {
          std::size_t at = 0;
          while (buffer[k + at] == expected[j + at])
            ++at;
          return set_broken("wrong byte (missing, extra or reordered data)", pos + k + at);
        }
        k += take;
        j += take;
        if (j == size_) {
          j = 0;
          set_sequence(expected, ++seq);
        }
      }
      pos += static_cast<std::uint64_t>(n);
      received_.store(pos, std::memory_order_release);
      if (pos >= target_.load(std::memory_order_acquire) && reached_ns_.load(std::memory_order_relaxed) == 0)
        reached_ns_.store(now_ns(), std::memory_order_release);
    }
  }
  void set_broken(const char* what, std::uint64_t at) {
    what_ = what;
    bad_offset_ = at;
    broken_.store(true, std::memory_order_release);
  }

  int fd_;
  std::size_t size_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> broken_{false};
  std::atomic<std::uint64_t> target_{UINT64_MAX};
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::int64_t> reached_ns_{0};
  const char* what_ = "";
  std::uint64_t bad_offset_ = 0;
  std::thread thread_; // last: starts after the rest is built
};

struct burst_result {
  double ms = 0;
  double calls_ms = 0;
  std::uint64_t ops = 0;
  double new_per_send = 0;
  double new_bytes_per_send = 0;
};

template <class T>
T median(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string describe_policies(const settings& s) {
  return std::string(s.lockfree ? "lockfree" : "mutex") + " " +
         (s.pool ? "pool/" + std::to_string(s.threads) : std::string("single"));
}

template <class Map, class Threading>
bool run_burst_path(const settings& s, iocp::backend backend, bool posted) {
  using server_type = iocp::basic_iocp_server<burst_handler, iocp::pooled_allocator, Map, Threading>;
  const char* path = posted ? "posted" : "callback";
  burst_context ctx;
  ctx.count = s.count;
  ctx.size = s.size;
  ctx.message = make_message(s.size);
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(s.seconds * 1e9);

  iocp::server_options options;
  options.address = "127.0.0.1";
  options.port = 0;
  options.io_backend = backend;
  options.threads = s.threads;
  // Far above a burst (20,000 x 64 B is 1.25 MiB, plus per-block overheads): no send may be refused.
  options.max_send_queue_per_connection = std::size_t{1} << 30;
  options.max_send_queue_total = std::size_t{1} << 30;
  std::optional<server_type> server;
  try {
    server.emplace(options, &ctx);
  } catch (const std::exception& e) {
    fail("the server did not start", e.what());
    return false;
  }
  int fd = connect_client(server->local_endpoint().port());
  if (fd < 0) {
    fail("the client could not connect", std::strerror(errno));
    return false;
  }
  bool ok = true;
  std::vector<burst_result> results;
  {
    stream_reader reader(fd, s.size);
    if (!wait_until(deadline, [&] { return ctx.id.load(std::memory_order_acquire) != 0; })) {
      fail("on_connected did not run in time");
      ok = false;
    }
    const iocp::connection_id id(ctx.id.load(std::memory_order_acquire));
    const std::uint64_t burst_bytes = static_cast<std::uint64_t>(s.count) * s.size;
    std::uint64_t expected = 0;
    counting::enabled.store(true);
    for (unsigned round = 0; ok && round < s.warmup + s.repeat; ++round) {
      ctx.sent_calls.store(0);
      ctx.sent_bytes.store(0);
      ctx.start_ns.store(0);
      expected += burst_bytes;
      reader.expect(expected);
      if (posted) {
        ctx.mark_start();
        for (std::size_t i = 0; i < s.count; ++i) {
          set_sequence(ctx.message, ctx.next_seq++);
          ctx.note_send(server->send(id, std::span<const std::byte>(ctx.message)));
        }
        ctx.sends_done_ns.store(now_ns(), std::memory_order_release);
      } else {
        const char trigger = 'T';
        if (::send(fd, &trigger, 1, MSG_NOSIGNAL) != 1) {
          fail("the client could not send its trigger byte", std::strerror(errno));
          ok = false;
          break;
        }
      }
      const bool done = wait_until(deadline, [&] {
        return reader.broken() || ctx.send_errors.load() != 0 ||
               (reader.reached() != 0 && ctx.sent_bytes.load(std::memory_order_relaxed) >= burst_bytes);
      });
      const std::uint64_t new_calls = counting::calls.load() - ctx.start_new_calls.load();
      const std::uint64_t new_bytes = counting::bytes.load() - ctx.start_new_bytes.load();
      if (reader.broken()) {
        fail("the client's stream check failed",
             std::string(reader.what()) + " at byte " + std::to_string(reader.bad_offset()));
        ok = false;
      } else if (ctx.send_errors.load() != 0) {
        fail("sends were refused",
             std::to_string(ctx.send_errors.load()) + ", first: " +
                 error_text(std::error_code(ctx.first_send_error.load(), iocp::error_category())));
        ok = false;
      } else if (!done) {
        fail("the burst did not complete within --seconds",
             "client read " + std::to_string(reader.received()) + " of " + std::to_string(expected) +
                 " bytes; on_sent reported " + std::to_string(ctx.sent_bytes.load()) + " of " +
                 std::to_string(burst_bytes));
        ok = false;
      }
      if (!ok) break;
      if (round >= s.warmup) {
        burst_result r;
        r.ms = static_cast<double>(reader.reached() - ctx.start_ns.load()) / 1e6;
        r.calls_ms = static_cast<double>(ctx.sends_done_ns.load() - ctx.start_ns.load()) / 1e6;
        r.ops = ctx.sent_calls.load();
        r.new_per_send = static_cast<double>(new_calls) / static_cast<double>(s.count);
        r.new_bytes_per_send = static_cast<double>(new_bytes) / static_cast<double>(s.count);
        results.push_back(r);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    counting::enabled.store(false);
    if (ok) {
      // Nothing beyond the last burst may arrive.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (reader.broken() || reader.received() != expected) {
        fail("extra or broken bytes after the last burst",
             std::to_string(reader.received()) + " bytes read, " + std::to_string(expected) + " sent");
        ok = false;
      }
      if (ctx.disconnected.load()) {
        fail("the connection closed during the bursts");
        ok = false;
      }
    }
  } // the reader stops
  ::close(fd);
  server->stop(std::chrono::seconds(2));
  if (ctx.server_errors.load() != 0) {
    fail("on_server_error was called");
    ok = false;
  }
  if (!ok) return false;
  std::vector<double> ms, calls_ms, nps, nbps;
  std::vector<std::uint64_t> ops;
  for (const auto& r : results) {
    ms.push_back(r.ms);
    calls_ms.push_back(r.calls_ms);
    ops.push_back(r.ops);
    nps.push_back(r.new_per_send);
    nbps.push_back(r.new_bytes_per_send);
  }
  const double ms_min = *std::min_element(ms.begin(), ms.end());
  const double ms_max = *std::max_element(ms.begin(), ms.end());
  std::printf("%-9s %-9s %-16s %6zu %5zu %6llu %8.2f %7.2f-%-7.2f %8.2f %9.2f %10.1f\n", path,
              backend_name(backend), describe_policies(s).c_str(), s.count, s.size,
              static_cast<unsigned long long>(median(ops)), median(ms), ms_min, ms_max, median(calls_ms),
              median(nps), median(nbps));
  std::printf("BENCH workload=posted-burst-%zux%zu path=%s backend=%s policies=%s ops=%llu ms=%.3f "
              "new_per_send=%.3f\n",
              s.count, s.size, path, backend_name(backend), describe_policies(s).c_str(),
              static_cast<unsigned long long>(median(ops)), median(ms), median(nps));
  std::fflush(stdout);
  return true;
}

void print_burst_header(const settings& s) {
  std::printf("burst: %zu sends of %zu B to one reading client; median of %u burst(s) after %u warm-up\n",
              s.count, s.size, s.repeat, s.warmup);
  std::printf("%-9s %-9s %-16s %6s %5s %6s %8s %-15s %8s %9s %10s\n", "path", "backend", "map threads",
              "sends", "size", "ops", "ms", "  ms min-max", "calls ms", "new/send", "newB/send");
}

template <class Map, class Threading>
bool run_burst(const settings& s, iocp::backend b) {
  bool ok = true;
  if (s.path_callback) ok &= run_burst_path<Map, Threading>(s, b, false);
  if (s.path_posted) ok &= run_burst_path<Map, Threading>(s, b, true);
  return ok;
}

// ---- flood mode ----

struct flood_context {
  std::mutex mutex;
  std::vector<std::uint64_t> ids;
  std::atomic<std::uint64_t> server_errors{0};
  std::atomic<std::uint64_t> disconnected{0};
};

struct flood_handler {
  flood_context* ctx;
  explicit flood_handler(flood_context* c) : ctx(c) {}

  void on_connected(auto& conn, const iocp::connection_info&) {
    std::lock_guard lock(ctx->mutex);
    ctx->ids.push_back(conn.id().value());
  }
  void on_received(auto&, std::span<const std::byte>) {}
  void on_disconnected(auto&, std::error_code) { ctx->disconnected.fetch_add(1, std::memory_order_relaxed); }
  void on_server_error(std::error_code, iocp::operation) {
    // A posted send the connection's queue refused when its thread carried it out, for example.
    ctx->server_errors.fetch_add(1, std::memory_order_relaxed);
  }
};

/// VmRSS and VmHWM of this process, KiB (0 if unreadable).
std::pair<std::uint64_t, std::uint64_t> own_memory_kib() {
  char buf[4096];
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return {0, 0};
  std::uint64_t rss = 0, hwm = 0;
  while (std::fgets(buf, sizeof buf, f)) {
    if (std::strncmp(buf, "VmRSS:", 6) == 0) rss = std::strtoull(buf + 6, nullptr, 10);
    if (std::strncmp(buf, "VmHWM:", 6) == 0) hwm = std::strtoull(buf + 6, nullptr, 10);
  }
  std::fclose(f);
  return {rss, hwm};
}

struct alignas(64) sender_counters {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> other{0};
  std::atomic<int> other_code{0};
};

template <class Map, class Threading>
bool run_flood_backend(const settings& s, iocp::backend backend) {
  using server_type = iocp::basic_iocp_server<flood_handler, iocp::pooled_allocator, Map, Threading>;
  flood_context ctx;
  iocp::server_options options;
  options.address = "127.0.0.1";
  options.port = 0;
  options.io_backend = backend;
  options.threads = s.threads;
  options.max_send_queue_total = s.cap;
  options.max_send_queue_per_connection = s.per_connection;
  options.backlog = static_cast<int>(std::max(1024u, s.connections));
  std::optional<server_type> server;
  try {
    server.emplace(options, &ctx);
  } catch (const std::exception& e) {
    fail("the server did not start", e.what());
    return false;
  }
  bool ok = true;
  std::vector<int> clients;
  const std::int64_t setup_deadline = now_ns() + 10'000'000'000;
  for (unsigned i = 0; i < s.connections; ++i) {
    // A small receive buffer: the kernel takes less of the flood, the server's queues fill sooner.
    int fd = connect_client(server->local_endpoint().port(), 16 * 1024);
    if (fd < 0) {
      fail("a client could not connect", std::strerror(errno));
      ok = false;
      break;
    }
    clients.push_back(fd);
  }
  std::vector<iocp::connection_id> ids;
  if (ok && !wait_until(setup_deadline, [&] {
        std::lock_guard lock(ctx.mutex);
        return ctx.ids.size() >= s.connections;
      })) {
    fail("not every connection was announced in time");
    ok = false;
  }
  {
    std::lock_guard lock(ctx.mutex);
    for (auto v : ctx.ids)
      ids.emplace_back(v);
  }

  std::vector<sender_counters> counters(s.senders);
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> senders;
  if (ok) {
    for (unsigned t = 0; t < s.senders; ++t) {
      senders.emplace_back([&, t] {
        while (!go.load(std::memory_order_acquire)) {
          if (stop.load()) return;
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        sender_counters& c = counters[t];
        std::vector<std::byte> bytes(s.size, std::byte{'f'});
        std::vector<std::byte> buffer;
        std::size_t next = t % ids.size();
        std::uint64_t accepted = 0, refused = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          std::error_code e;
          const iocp::connection_id id = ids[next];
          if (++next == ids.size()) next = 0;
          if (s.vector) {
            if (buffer.size() != s.size) buffer.assign(s.size, std::byte{'v'});
            e = server->send(id, std::move(buffer));
          } else {
            e = server->send(id, std::span<const std::byte>(bytes));
          }
          if (!e) {
            c.accepted.store(++accepted, std::memory_order_relaxed);
          } else if (e == iocp::errc::send_queue_full) {
            c.refused.store(++refused, std::memory_order_relaxed);
          } else {
            if (c.other.fetch_add(1) == 0) c.other_code.store(e.value());
          }
        }
      });
    }
  }

  std::uint64_t baseline_kib = 0, peak_kib = 0, end_kib = 0, hwm_kib = 0;
  std::size_t peak_reserved = 0, end_reserved = 0;
  std::uint64_t accepted = 0, refused = 0, other = 0;
  int other_code = 0;
  double flood_s = 0;
  bool reached_cap = false;
  std::uint64_t window_accepted = 0; // accepted during the final window of steady refusals
  double window_s = 0;
  if (ok) {
    // Baseline: everything is set up (server, connections, sender threads parked); let it settle.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    baseline_kib = own_memory_kib().first;
    peak_kib = baseline_kib;
    const std::int64_t start = now_ns();
    const std::int64_t deadline = start + static_cast<std::int64_t>(s.seconds * 1e9);
    const auto quiet_ns = static_cast<std::int64_t>(s.refused_for * 1e9);
    std::int64_t next_report = start + 500'000'000;
    // The current streak of samples that each saw refusals: since when, and the accepted count then.
    std::int64_t streak_ns = start;
    std::uint64_t streak_accepted = 0, last_refused = 0, streak_rss_kib = baseline_kib;
    // Memory that still grows by more than this during the streak starts it again: the flood ends
    // once refusals are steady and the memory has stopped growing.
    const std::uint64_t tolerance_kib = std::max<std::uint64_t>(1024, s.cap / 64 / 1024);
    go.store(true, std::memory_order_release);
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      const std::int64_t now = now_ns();
      auto [rss, hwm] = own_memory_kib();
      peak_kib = std::max(peak_kib, rss);
      hwm_kib = std::max(hwm_kib, hwm);
      peak_reserved = std::max(peak_reserved, server->send_queue_reserved());
      std::uint64_t acc = 0;
      refused = 0;
      other = 0;
      for (auto& c : counters) {
        acc += c.accepted.load(std::memory_order_relaxed);
        refused += c.refused.load(std::memory_order_relaxed);
        other += c.other.load(std::memory_order_relaxed);
      }
      if (other != 0) break;
      if (refused == last_refused || rss > streak_rss_kib + tolerance_kib) {
        // No refusal in this sample, or the memory still grows: the streak starts again.
        streak_ns = now;
        streak_accepted = acc;
        streak_rss_kib = rss;
      }
      last_refused = refused;
      if (refused != 0 && now - streak_ns >= quiet_ns) {
        reached_cap = true;
        window_accepted = acc - streak_accepted;
        window_s = static_cast<double>(now - streak_ns) / 1e9;
        break;
      }
      if (s.progress && now >= next_report) {
        std::printf("  %5.1f s: RSS %.1f MiB, accepted %llu, refused %llu, reserved %.1f MiB, "
                    "bytes_sent %.1f MiB\n",
                    static_cast<double>(now - start) / 1e9, static_cast<double>(rss) / 1024.0,
                    static_cast<unsigned long long>(acc), static_cast<unsigned long long>(refused),
                    static_cast<double>(server->send_queue_reserved()) / (1024.0 * 1024.0),
                    static_cast<double>(server->statistics().bytes_sent) / (1024.0 * 1024.0));
        std::fflush(stdout);
        next_report += 500'000'000;
      }
      if (now >= deadline) break;
    }
    stop.store(true);
    for (auto& t : senders)
      t.join();
    flood_s = static_cast<double>(now_ns() - start) / 1e9;
    auto [rss, hwm] = own_memory_kib();
    end_kib = rss;
    peak_kib = std::max(peak_kib, rss);
    hwm_kib = std::max(hwm_kib, hwm);
    end_reserved = server->send_queue_reserved();
    peak_reserved = std::max(peak_reserved, end_reserved);
    accepted = refused = other = 0;
    for (auto& c : counters) {
      accepted += c.accepted.load();
      refused += c.refused.load();
      other += c.other.load();
      if (!other_code) other_code = c.other_code.load();
    }
  } else {
    stop.store(true);
    for (auto& t : senders)
      t.join();
  }
  const std::uint64_t disconnected_during_flood = ctx.disconnected.load();
  const std::uint64_t kernel_took = server->statistics().bytes_sent;
  // The clients never read: no graceful drain, reset everything now.
  server->stop(std::chrono::milliseconds(0));
  for (int fd : clients)
    ::close(fd);
  if (!ok) return false;

  const double mib = 1024.0 * 1024.0;
  const double growth_mib = static_cast<double>(peak_kib - baseline_kib) / 1024.0;
  const double cap_mib = static_cast<double>(s.cap) / mib;
  std::printf("%-9s %-16s %-6s %8.0f %8.1f %8.1f %7.2f %10llu %10llu %10.1f %10.1f %7.1f\n",
              backend_name(backend), describe_policies(s).c_str(), s.vector ? "vector" : "span", cap_mib,
              static_cast<double>(baseline_kib) / 1024.0, growth_mib, growth_mib / cap_mib,
              static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(refused),
              static_cast<double>(end_reserved) / mib, static_cast<double>(peak_reserved) / mib, flood_s);
  std::printf("  end RSS %.1f MiB, VmHWM %.1f MiB; accepted %.1f MiB of payload, the kernel took %.1f MiB "
              "(statistics().bytes_sent); %llu accepted in the last %.1f s of steady refusals; "
              "on_server_error %llu; disconnected during the flood %llu\n",
              static_cast<double>(end_kib) / 1024.0, static_cast<double>(hwm_kib) / 1024.0,
              static_cast<double>(accepted) * static_cast<double>(s.size) / mib,
              static_cast<double>(kernel_took) / mib, static_cast<unsigned long long>(window_accepted),
              window_s, static_cast<unsigned long long>(ctx.server_errors.load()),
              static_cast<unsigned long long>(disconnected_during_flood));
  std::printf(
      "BENCH workload=posted-flood-%ux%u-%zuB send=%s backend=%s policies=%s cap_mib=%.0f growth_mib=%.1f "
      "ratio=%.2f accepted=%llu refused=%llu reserved_mib=%.1f\n",
      s.senders, s.connections, s.size, s.vector ? "vector" : "span", backend_name(backend),
      describe_policies(s).c_str(), cap_mib, growth_mib, growth_mib / cap_mib,
      static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(refused),
      static_cast<double>(end_reserved) / mib);
  std::fflush(stdout);
  if (other != 0) {
    fail("a send failed with an unexpected error",
         error_text(std::error_code(other_code, iocp::error_category())) + ", " + std::to_string(other) +
             " times");
    return false;
  }
  if (!reached_cap) {
    fail("sends were not refused steadily for --refused-for before --seconds ran out (cap not reached)");
    return false;
  }
  if (disconnected_during_flood != 0) {
    fail("connections closed during the flood");
    return false;
  }
  return true;
}

void print_flood_header(const settings& s) {
  std::printf(
      "flood: %u sender threads, %u clients that never read, %zu B sends (%s), until every 10 ms sample "
      "sees refusals for %.1f s; max_send_queue_per_connection %.0f MiB\n",
      s.senders, s.connections, s.size, s.vector ? "moved std::vector" : "span copies", s.refused_for,
      static_cast<double>(s.per_connection) / (1024.0 * 1024.0));
  std::printf("%-9s %-16s %-6s %8s %8s %8s %7s %10s %10s %10s %10s %7s\n", "backend", "map threads", "send",
              "cap MiB", "base MiB", "grow MiB", "grow/cap", "accepted", "refused", "resv MiB", "resv peak",
              "s");
}

template <class Map, class Threading>
bool run(const settings& s, iocp::backend b) {
  return s.mode == "burst" ? run_burst<Map, Threading>(s, b) : run_flood_backend<Map, Threading>(s, b);
}

bool run_policies(const settings& s, iocp::backend b) {
  if (s.lockfree)
    return s.pool ? run<iocp::lockfree_map, iocp::thread_pool>(s, b)
                  : run<iocp::lockfree_map, iocp::single_threaded>(s, b);
  return s.pool ? run<iocp::mutex_map, iocp::thread_pool>(s, b)
                : run<iocp::mutex_map, iocp::single_threaded>(s, b);
}

} // namespace

int main(int argc, char** argv) {
  const settings s = parse(argc, argv);
  if (s.mode == "burst")
    print_burst_header(s);
  else
    print_flood_header(s);
  // Every backend runs in a child process of its own, so that one run's heap (which the allocator
  // keeps after a flood) is not the next one's baseline. --seconds bounds each wait of a run; a
  // watchdog in the child and one here (which also kills the child) allow that plus a margin.
  const double per_run = (s.mode == "burst" ? 2.0 : 1.0) * (s.seconds + 15.0) + 15.0;
  watchdog guard(static_cast<double>(s.backends.size()) * (per_run + 5.0) + 10.0);
  bool ok = true;
  for (iocp::backend b : s.backends) {
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      fail("fork failed", std::strerror(errno));
      return 1;
    }
    if (pid == 0) {
      bool child_ok = false;
      {
        watchdog child_guard(per_run);
        child_ok = run_policies(s, b) && !failed_flag;
      }
      std::fflush(stdout);
      std::fflush(stderr);
      std::_Exit(child_ok ? 0 : 1);
    }
    running_child.store(pid);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    running_child.store(0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "posted_sends: FAILED: the %s run %s %d\n", backend_name(b),
                   WIFEXITED(status) ? "exited with" : "was ended by signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      ok = false;
    }
  }
  return ok ? 0 : 1;
}
