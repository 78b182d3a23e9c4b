// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The user's calls the input chooses in fuzz_event_loop.cpp, inside a callback or outside any:
// sends of every kind, shutdown, disconnect, abort, pause/resume, calls by live, stale or forged
// id (at once or posted), request_stop, stop, a throw; each checked against the model for what
// it must return and what it must do. Members of the driver (model.hpp), defined apart.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "iocp/iocp.hpp"

#include "../fuzz_checks.hpp"
#include "fake_world.hpp"
#include "model.hpp"

namespace fuzz {

struct injected_exception {};

/// Makes a call on the I/O thread take the path of a call from any other thread (posted, carried
/// out at the loop's next wake): the loop tells the two apart only by this thread-local.
struct as_another_thread {
  const void* saved = iocp::detail::current_event_loop;
  as_another_thread() { iocp::detail::current_event_loop = nullptr; }
  ~as_another_thread() { iocp::detail::current_event_loop = saved; }
  as_another_thread(const as_another_thread&) = delete;
  as_another_thread& operator=(const as_another_thread&) = delete;
};

inline std::chrono::milliseconds pick_duration(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
  case 0: return std::chrono::milliseconds(0);
  case 1:
  case 2:
  case 3: return std::chrono::milliseconds(in.ConsumeIntegralInRange<int>(1, 50));
  case 4:
  case 5: return std::chrono::milliseconds(in.ConsumeIntegralInRange<int>(51, 5000));
  case 6: return std::chrono::milliseconds(in.ConsumeIntegralInRange<std::int64_t>(5001, 3'600'000'000));
  default: return std::chrono::milliseconds::max(); // "for ever", as a user may write it
  }
}

template <class Server>
std::size_t driver<Server>::pick_size() {
  std::size_t n;
  switch (w_.in.ConsumeIntegralInRange<int>(0, 7)) {
  case 0: n = 0; break;
  case 1:
  case 2:
  case 3:
  case 4: n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 64); break;
  case 5: n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 2048); break;
  case 6: n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 70'000); break;
  default: n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 300'000); break;
  }
  n = std::min(n, w_.out_left);
  w_.out_left -= n;
  return n;
}

/// Bytes no other send carries (a running 64-bit counter, mixed): sends out of order, repeated
/// or mixed up between connections do not compare equal.
template <class Server>
std::vector<std::byte> driver<Server>::out_bytes(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t at = 0; at < n; at += 8) {
    std::uint64_t x = (w_.out_seed += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    std::memcpy(v.data() + at, &x, std::min<std::size_t>(8, n - at));
  }
  return v;
}

/// A send whose result the caller sees: `bytes` are what it carries.
template <class Server>
template <class Call>
void driver<Server>::send_checked(conn_type& c, model& m, std::span<const std::byte> bytes, Call&& call) {
  fake_socket& s = sock(m);
  const bool shut = s.cancelled || m.write_shut;
  const std::size_t queued_before = c.queued_bytes();
  const std::size_t reserved_before = server->send_queue_reserved();
  // The bytes are expected before the call: a readiness backend writes them during it.
  const std::size_t start = s.expected.size();
  s.expected.insert(s.expected.end(), bytes.begin(), bytes.end());
  const std::size_t end = s.expected.size();
  const std::error_code r = call();
  if (!r) {
    check(!shut, "a send succeeded after the send side was shut");
    check(bytes.size() <= options_.max_send_queue_per_connection - queued_before,
          "a send passed max_send_queue_per_connection");
    if (end > start) s.ends.insert(std::lower_bound(s.ends.begin(), s.ends.end(), end), end);
    s.certain = std::max(s.certain, end);
  } else {
    check(s.expected.size() == end, "the model lost track of a refused send");
    check(s.received.size() <= start, "a refused send put bytes on the wire");
    s.expected.resize(start);
    if (r == errc::connection_closing) {
      check(shut || m.maybe_write_shut || s.fin_fed,
            "connection_closing on a connection whose send side is open");
    } else if (r == errc::send_queue_full) {
      check(!shut, "send_queue_full where connection_closing was due");
      check(bytes.size() > options_.max_send_queue_per_connection - queued_before ||
                reserved_before + bytes.size() + 128 * 1024 > options_.max_send_queue_total,
            "send_queue_full below both limits");
    } else {
      fail("send() failed with an unexpected error");
    }
  }
  check(server->send_queue_reserved() <= options_.max_send_queue_total + cap_slack(),
        "max_send_queue_total passed");
  if (!m.disconnected)
    check(conn_of(m).queued_bytes() <= options_.max_send_queue_per_connection,
          "max_send_queue_per_connection passed");
}

template <class Server>
template <class Call>
void driver<Server>::shutdown_checked(model& m, iocp::shutdown_type how, Call&& call) {
  const bool closing = sock(m).cancelled;
  const std::error_code r = call();
  check(r == (closing ? make_error_code(errc::connection_closing) : std::error_code{}),
        "shutdown(): connection_closing exactly when the connection is closing");
  if (!r) {
    if (how != iocp::shutdown_type::receive) m.write_shut = true;
    if (how != iocp::shutdown_type::send) m.read_shut = true;
  }
}

template <class Server>
template <class Call>
void driver<Server>::disconnect_checked(model& m, Call&& call) {
  const bool closing = sock(m).cancelled;
  const std::error_code r = call();
  check(r == (closing ? make_error_code(errc::connection_closing) : std::error_code{}),
        "disconnect(): connection_closing exactly when the connection is closing");
  if (!r) m.write_shut = m.read_shut = m.disconnect = true;
}

template <class Server>
template <class Call>
void driver<Server>::abort_checked(model& m, Call&& call) {
  // Recorded first: outside a callback the connection may be gone (on_disconnected run) on return.
  if (!sock(m).cancelled) m.expected_reason = make_error_code(std::errc::connection_aborted);
  m.aborted = true;
  call();
  check(sock(m).cancelled, "abort() left the connection open");
}

/// A stop command with this timeout is (about to be) posted.
template <class Server>
void driver<Server>::stop_posted(std::chrono::milliseconds timeout) {
  stop_requested_ = true;
  batch_.push_back({posted::stop, {}, {}, deadline_after(w_.now.load(), timeout)});
}

template <class Server>
void driver<Server>::request_stop() {
  if (w_.in.ConsumeBool()) {
    server->request_stop();
    stop_posted(options_.stop_timeout);
  } else {
    const std::chrono::milliseconds timeout = pick_duration(w_.in);
    server->request_stop(timeout);
    stop_posted(timeout);
  }
}

template <class Server>
void driver<Server>::stop_from_io_thread() {
  const std::chrono::milliseconds timeout = pick_duration(w_.in);
  std::error_code r = server->stop(timeout);
  check(r == errc::would_deadlock, "stop() on an I/O thread did not return would_deadlock");
  stop_posted(timeout);
}

/// A call by id, as any thread may make it; `self` is the connection whose callback runs, if any.
template <class Server>
void driver<Server>::by_id(const conn_type* self) {
  connection_id id;
  if (ids_.empty() || w_.in.ConsumeIntegralInRange<int>(0, 5) == 0)
    id = connection_id(w_.in.ConsumeIntegralInRange<std::uint32_t>(0, 7),
                       w_.in.ConsumeIntegralInRange<std::uint32_t>(0, 3)); // forged: may match one
  else
    id = ids_[w_.in.ConsumeIntegralInRange<std::size_t>(0, ids_.size() - 1)];
  auto it = models_.find(id);
  model* m = it == models_.end() || it->second.disconnected ? nullptr : &it->second;
  const bool posted_path = w_.in.ConsumeBool();
  const int what = w_.in.ConsumeIntegralInRange<int>(0, 8);
  const bool is_send = what <= 1;
  std::vector<std::byte> bytes;
  if (is_send) bytes = out_bytes(pick_size());
  std::span<const std::byte> span(bytes);

  auto call = [&]() -> std::error_code {
    switch (what) {
    case 0: return server->send(id, span);
    case 1: return server->send(id, std::vector<std::byte>(bytes));
    case 2: return server->shutdown(id, iocp::shutdown_type::send);
    case 3: return server->shutdown(id, iocp::shutdown_type::receive);
    case 4: return server->shutdown(id, iocp::shutdown_type::both);
    case 5: return server->disconnect(id);
    case 6: return server->abort(id);
    case 7: return server->pause_receiving(id);
    default: return server->resume_receiving(id);
    }
  };

  if (!m) {
    std::error_code r;
    if (posted_path) {
      as_another_thread other;
      r = call();
    } else {
      r = call();
    }
    check(r == errc::unknown_connection, "a call by a stale or forged id did not get unknown_connection");
    return;
  }
  if (posted_path) {
    if (is_send && batch_has_send_) return; // one posted send per wake, so a refusal names it
    const std::size_t reserved_before = server->send_queue_reserved();
    std::error_code r;
    {
      as_another_thread other;
      r = call();
    }
    if (stop_requested_) {
      check(r == errc::server_stopping, "a posted call after a stop did not get server_stopping");
      return;
    }
    // A posted send reserves the inbox chunk its record goes into (64 KiB, or its own size), or
    // a moved vector's memory and a block's overhead, from the total at once; and one that could
    // never fit one connection's queue is refused at once.
    if (is_send && r == errc::send_queue_full) {
      check(bytes.size() > options_.max_send_queue_per_connection ||
                reserved_before + bytes.size() + inbox_chunk + 512 > options_.max_send_queue_total,
            "a posted send was refused within the limits");
      return;
    }
    check(!r, "a posted call by a live id failed");
    static constexpr typename posted::kind kinds[] = {
        posted::send,          posted::send,       posted::shutdown_send, posted::shutdown_receive,
        posted::shutdown_both, posted::disconnect, posted::abort,         posted::other,
        posted::other};
    batch_.push_back({kinds[what], id, std::move(bytes)});
    if (is_send) batch_has_send_ = true;
    return;
  }
  // On the owning thread the call is carried out at once, as the connection's own would be.
  conn_type& c = conn_of(*m);
  // While posted work is carried out, only the target's own callbacks may send to it: the model
  // placed the posted send's bytes at the start of the wake.
  if (is_send && in_wake_ && wake_send_ && wake_send_->fd == m->fd && self != &c) return;
  switch (what) {
  case 0:
  case 1: send_checked(c, *m, bytes, call); break;
  case 2: shutdown_checked(*m, iocp::shutdown_type::send, call); break;
  case 3: shutdown_checked(*m, iocp::shutdown_type::receive, call); break;
  case 4: shutdown_checked(*m, iocp::shutdown_type::both, call); break;
  case 5: disconnect_checked(*m, call); break;
  case 6: abort_checked(*m, call); break;
  case 7: {
    const bool closing = sock(*m).cancelled;
    check(!call(), "pause_receiving() by a live id failed");
    if (!closing) check(c.receiving_paused(), "pause_receiving() did not pause");
    break;
  }
  default:
    check(!call(), "resume_receiving() by a live id failed");
    check(!c.receiving_paused(), "resume_receiving() did not resume");
    break;
  }
}

/// The calls the input chooses, inside a callback of `c` (`data`: what on_received was given).
template <class Server>
void driver<Server>::act(conn_type& c, model& m, std::span<const std::byte> data, bool may_throw) {
  if (depth_ >= 3) return;
  ++depth_;
  struct leave {
    int& depth;
    ~leave() { --depth; }
  } guard{depth_};
  const unsigned n = w_.in.ConsumeIntegralInRange<unsigned>(0, 3);
  for (unsigned i = 0; i < n; ++i) {
    switch (w_.in.ConsumeIntegralInRange<int>(0, 19)) {
    case 0:
    case 1: {
      std::vector<std::byte> bytes = out_bytes(pick_size());
      send_checked(c, m, bytes, [&] { return c.send(std::span<const std::byte>(bytes)); });
      break;
    }
    case 2: {
      std::vector<std::byte> bytes = out_bytes(pick_size());
      std::vector<std::byte> moved = bytes;
      send_checked(c, m, bytes, [&] { return c.send(std::move(moved)); });
      break;
    }
    case 3: {
      std::vector<std::byte> bytes = out_bytes(pick_size());
      std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      send_checked(c, m, bytes, [&] { return c.send(text); });
      break;
    }
    case 4:
    case 5:
      if (!data.empty()) { // the bytes as they lie in the receive buffer (io_uring may lend it)
        std::size_t at = w_.in.ConsumeIntegralInRange<std::size_t>(0, data.size() - 1);
        std::span<const std::byte> part =
            data.subspan(at, w_.in.ConsumeIntegralInRange<std::size_t>(1, data.size() - at));
        std::vector<std::byte> bytes(part.begin(), part.end());
        send_checked(c, m, bytes, [&] { return c.send(part); });
      }
      break;
    case 6:
      shutdown_checked(m, iocp::shutdown_type::send, [&] { return c.shutdown(iocp::shutdown_type::send); });
      break;
    case 7:
      shutdown_checked(m, iocp::shutdown_type::receive,
                       [&] { return c.shutdown(iocp::shutdown_type::receive); });
      break;
    case 8:
      shutdown_checked(m, iocp::shutdown_type::both, [&] { return c.shutdown(iocp::shutdown_type::both); });
      break;
    case 9: disconnect_checked(m, [&] { return c.disconnect(); }); break;
    case 10: abort_checked(m, [&] { c.abort(); }); break;
    case 11: {
      const bool closing = sock(m).cancelled;
      c.pause_receiving();
      if (!closing) check(c.receiving_paused(), "pause_receiving() did not pause");
      break;
    }
    case 12:
      c.resume_receiving();
      check(!c.receiving_paused(), "resume_receiving() did not resume");
      break;
    case 13:
    case 14:
    case 15: by_id(&c); break;
    case 16: request_stop(); break;
    case 17: stop_from_io_thread(); break;
    case 18:
      if (may_throw) {
        if (!sock(m).cancelled) m.expected_reason = make_error_code(errc::handler_exception);
        m.threw = true;
        ++throws_;
        throw injected_exception{};
      }
      break;
    default:
      check(&c.server() == server, "conn.server() is another server");
      check(c.queued_bytes() <= options_.max_send_queue_per_connection, "queued_bytes() past the limit");
      break;
    }
  }
}

} // namespace fuzz
