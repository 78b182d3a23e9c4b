// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// What the input makes happen in the fake kernel in one round of the loop (fake_backend::run_once):
// an accept, a peer that sends, half-closes, resets or reads, a receive or send completing, an
// error, a cancellation landing, the wake, time passing, a user call, the fuzzer's thread called
// in; and, once the input runs out, the drain that lets the server finish. Members of
// fake_backend (fake_backends.hpp), defined apart so that each file stays readable.

#include <fuzzer/FuzzedDataProvider.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "iocp/detail/linux/io_object.hpp"

#include "../fuzz_checks.hpp"
#include "fake_backends.hpp"
#include "fake_world.hpp"

namespace fuzz {

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::event(long long timeout_ns, Sink& sink) {
  switch (w_.in.ConsumeIntegralInRange<int>(0, 18)) {
  case 0: accept_event(sink); break;
  case 1:
  case 2:
    if (fake_socket* s = w_.pick_live(); s && !s->peer_fin && !s->peer_reset) {
      std::uint64_t n = w_.in.ConsumeIntegralInRange<std::uint64_t>(1, w_.in.ConsumeBool() ? 64 : 4096);
      n = std::min(n, w_.peer_left);
      w_.peer_left -= n;
      s->peer_sent += n;
    }
    break;
  case 3:
    if (fake_socket* s = w_.pick_live()) s->peer_fin = true;
    break;
  case 4:
    if (fake_socket* s = w_.pick_live()) s->peer_reset = true;
    break;
  case 5:
  case 6:
  case 7:
    if (fake_socket* s = w_.pick_live()) receive_event(*s, false, sink);
    break;
  case 8:
  case 9:
  case 10:
    if (fake_socket* s = w_.pick_live()) send_event(*s, false, sink);
    break;
  case 11:
    if (fake_socket* s = w_.pick_live()) {
      if (w_.in.ConsumeBool())
        receive_event(*s, true, sink);
      else
        send_event(*s, true, sink);
    }
    break;
  case 12: cancellation_event(sink); break;
  case 13:
    if (wake_pending()) deliver_wake(sink);
    break;
  case 14:
    if (w_.in.ConsumeBool())
      advance(w_.in.ConsumeIntegralInRange<std::int64_t>(1, 2'000'000'000));
    else if (timeout_ns >= 0)
      advance(timeout_ns + w_.in.ConsumeIntegralInRange<std::int64_t>(0, 1));
    break;
  case 15:
  case 16: w_.driver->outside_action(); break;
  case 17:
    if (fake_socket* s = w_.pick_live()) { // the peer reads: its window opens, acknowledgements come
      std::size_t n = w_.in.ConsumeIntegralInRange<std::size_t>(1, 1 << 20);
      s->unacked = std::max<long>(0, s->unacked - static_cast<long>(n));
      s->window += n;
    }
    break;
  case 18:
    if (!w_.main_called && w_.in.ConsumeIntegralInRange<int>(0, 3) == 0) {
      main_call what = w_.in.ConsumeBool() ? main_call::stop : main_call::destroy;
      call_main(what, std::chrono::milliseconds(w_.in.ConsumeIntegralInRange<int>(0, 3000)), sink);
    }
    break;
  }
}

template <bool Readiness>
void fake_backend<Readiness>::advance(std::int64_t ns) {
  // Bounded, so that a deadline of "for ever" cannot overflow the clock.
  ns = std::clamp<std::int64_t>(ns, 0, std::int64_t{1} << 50);
  if (w_.now.load() < (std::int64_t{1} << 60)) w_.now.fetch_add(ns);
}

template <bool Readiness>
bool fake_backend<Readiness>::wake_pending() {
  std::lock_guard lock(w_.mutex);
  return w_.wake_pending;
}

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::deliver_wake(Sink& sink) {
  {
    std::lock_guard lock(w_.mutex);
    w_.wake_pending = false;
  }
  w_.driver->before_wake();
  sink.wake_completed();
  w_.driver->after_wake();
}

/// Tells the fuzzer's thread to call stop(timeout) or destroy the server, and waits until its
/// stop command is posted, so that it lands at this point of the input and nowhere else.
template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::call_main(main_call what, std::chrono::milliseconds timeout, Sink& sink) {
  // With the loop's queue empty, the post wakes it: that is what this thread waits for.
  if (wake_pending()) deliver_wake(sink);
  w_.driver->main_stop_posting(what == main_call::destroy ? std::chrono::milliseconds(0) : timeout);
  std::unique_lock lock(w_.mutex);
  w_.call = what;
  w_.call_timeout = timeout;
  w_.main_called = true;
  w_.changed.notify_all();
  w_.changed.wait(lock, [&] { return w_.wake_pending; });
}

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::accept_event(Sink& sink) {
  accept_context* ctx = nullptr;
  bool cancelling = false;
  if constexpr (Readiness) {
    ctx = armed_;
  } else {
    std::vector<accept_context*> pending;
    for (auto& [c, cancel] : accept_cancel_)
      if (c->pending) pending.push_back(c);
    if (!pending.empty()) ctx = pending[w_.in.ConsumeIntegralInRange<std::size_t>(0, pending.size() - 1)];
    if (ctx) cancelling = accept_cancel_[ctx];
  }
  if (!ctx) return;
  int result;
  int what = w_.in.ConsumeIntegralInRange<int>(0, 17);
  if (cancelling && what % 2 == 0) {
    result = -ECANCELED;
  } else if (what < 9) {
    result = w_.new_socket();
    auto& a = reinterpret_cast<sockaddr_in&>(ctx->address);
    ctx->address = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(1024 + result % 60000));
    a.sin_addr.s_addr = htonl(0x7F000001);
  } else {
    static constexpr int errors[] = {EMFILE,     ENFILE, ENOBUFS, ENOMEM,   ECONNABORTED,
                                     ECONNRESET, EPROTO, EPERM,   ETIMEDOUT};
    result = -errors[what - 9];
    w_.count_accept_error(-result);
  }
  if constexpr (Readiness) {
    armed_ = nullptr;
    ctx->pending = false;
  } else {
    ctx->pending = w_.multishot_accept && result >= 0; // a multishot accept goes on
    if (!ctx->pending) accept_cancel_[ctx] = false;
  }
  sink.accept_completed(*ctx, result);
}

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::receive_event(fake_socket& s, bool error, Sink& sink) {
  io_object* io = s.io;
  if (!io || !io->receive_pending) return;
  if (Readiness && s.cancelled) return; // no longer watched
  int result;
  if (error) {
    result = -pick_error({ETIMEDOUT, ECONNRESET, EHOSTUNREACH});
  } else if (s.peer_reset) {
    result = -ECONNRESET;
  } else if (s.fed < s.peer_sent) {
    std::uint64_t most = std::min<std::uint64_t>(s.peer_sent - s.fed, w_.receive_size);
    result =
        static_cast<int>(w_.in.ConsumeBool() ? most : w_.in.ConsumeIntegralInRange<std::uint64_t>(1, most));
  } else if (s.peer_fin) {
    result = 0;
  } else {
    return; // nothing to read
  }
  bool more = !Readiness && !ring_.empty() && result > 0 && w_.in.ConsumeIntegralInRange<int>(0, 7) != 0;
  deliver_receive(s, result, more, sink);
}

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::deliver_receive(fake_socket& s, int result, bool more, Sink& sink) {
  io_object& io = *s.io;
  std::byte* data = nullptr;
  int used = -1;
  if constexpr (Readiness) {
    data = shared_.data();
    io.receive_pending = false;
  } else {
    if (result > 0) {
      if (!ring_.empty()) {
        for (std::size_t i = 0; i < ring_.size() && used < 0; ++i)
          if (!ring_[i].in_use && !ring_[i].lent) used = static_cast<int>(i);
        if (used < 0) return; // the ring is empty: the real backend receives again, unseen
        data = ring_[static_cast<std::size_t>(used)].bytes.data();
      } else {
        data = io.receive_buffer;
        check(data != nullptr, "no receive buffer for a backend that needs one");
      }
    }
    if (!more) {
      // As io_uring_backend::receive_ended(): the end of a receive that a pause cancelled is no
      // error; if receiving resumed meanwhile, the receive is armed again and the loop never
      // hears of it.
      if (s.pause_cancelling) {
        s.pause_cancelling = false;
        if (result == -ECANCELED && !io.receive_paused && !s.cancelled) return;
      }
      io.receive_pending = false;
      s.receive_cancel = false;
    }
  }
  if (result > 0) {
    for (int i = 0; i < result; ++i)
      data[i] = peer_byte(s.fd, s.fed + static_cast<std::uint64_t>(i));
    s.fed += static_cast<std::uint64_t>(result);
    if (!s.cancelled) w_.bytes_received += static_cast<std::uint64_t>(result);
  } else if (result == 0) {
    s.fin_fed = true;
  } else if (result != -ECANCELED) {
    s.errors.insert(-result);
  }
  if constexpr (!Readiness) {
    if (used >= 0) {
      ring_[static_cast<std::size_t>(used)].in_use = true;
      current_ = {data, lendable_left_ ? (std::min)(static_cast<std::size_t>(result), lend_limit_) : 0,
                  static_cast<std::uint16_t>(used), false};
    }
  }
  sink.receive_completed(*this, io, result, data); // may free the connection
  if constexpr (Readiness) {
    scribble(shared_);
  } else if (used >= 0) {
    slot& b = ring_[static_cast<std::size_t>(used)];
    b.in_use = false;
    current_ = {};
    if (!b.lent) scribble(b.bytes);
  }
}

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::send_event(fake_socket& s, bool error, Sink& sink) {
  io_object* io = s.io;
  if (!io) return;
  if constexpr (Readiness) {
    if (!error) s.window += w_.in.ConsumeIntegralInRange<std::size_t>(1, 1 << 16);
    if (!s.waiting || s.cancelled) return;
    int r = error ? -pick_error({EPIPE, ECONNRESET, ETIMEDOUT}) : write_now(s, s.send_data, s.send_size);
    if (r == 0) return;
    if (r < 0) s.errors.insert(-r);
    s.waiting = false;
    io->send_pending = false;
    if (r > 0) w_.bytes_sent += static_cast<std::uint64_t>(r);
    sink.send_completed(*this, *io, r);
  } else {
    if (!io->send_pending) return;
    int result;
    if (error)
      result = -pick_error({EPIPE, ECONNRESET, ETIMEDOUT});
    else if (s.send_cancel && w_.in.ConsumeBool())
      result = -ECANCELED;
    else if (s.peer_reset)
      result = -(w_.in.ConsumeBool() ? EPIPE : ECONNRESET);
    else if (w_.in.ConsumeBool())
      result = static_cast<int>(s.send_size);
    else
      result = static_cast<int>(w_.in.ConsumeIntegralInRange<std::size_t>(1, s.send_size));
    complete_send(s, result, sink);
  }
}

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::complete_send(fake_socket& s, int result, Sink& sink) requires(!Readiness) {
  io_object& io = *s.io;
  if (result > 0) w_.peer_write(s, s.send_data, static_cast<std::size_t>(result));
  if (result < 0 && result != -ECANCELED) s.errors.insert(-result);
  if (result > 0 && !s.cancelled) w_.bytes_sent += static_cast<std::uint64_t>(result);
  io.send_pending = false;
  s.send_cancel = false;
  s.send_data = nullptr;
  s.send_size = 0;
  sink.send_completed(*this, io, result);
}

/// Completion: one cancellation lands (an accept's, a receive's, a pause's or a send's).
template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::cancellation_event(Sink& sink) {
  if constexpr (!Readiness) {
    std::vector<accept_context*> accepts;
    for (auto& [c, cancel] : accept_cancel_)
      if (c->pending && cancel) accepts.push_back(c);
    std::vector<int> fds;
    for (int fd : w_.live) {
      fake_socket& s = w_.socket(fd);
      if (s.io && ((s.io->receive_pending && (s.receive_cancel || s.pause_cancelling)) ||
                   (s.io->send_pending && s.send_cancel)))
        fds.push_back(fd);
    }
    std::size_t total = accepts.size() + fds.size();
    if (total == 0) return;
    std::size_t k = w_.in.ConsumeIntegralInRange<std::size_t>(0, total - 1);
    if (k < accepts.size())
      land_accept_cancel(*accepts[k], sink);
    else
      land_cancel(w_.socket(fds[k - accepts.size()]), sink);
  }
}

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::land_accept_cancel(accept_context& ctx, Sink& sink) {
  ctx.pending = false;
  accept_cancel_[&ctx] = false;
  sink.accept_completed(ctx, -ECANCELED);
}

/// Completion: the receive's cancel if one is on its way, else the send's.
template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::land_cancel(fake_socket& s, Sink& sink) {
  if (s.io->receive_pending && (s.receive_cancel || s.pause_cancelling))
    deliver_receive(s, -ECANCELED, false, sink);
  else if constexpr (!Readiness)
    complete_send(s, -ECANCELED, sink);
}

template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::deliver_ready(Sink& sink) {
  std::vector<ready_completion> batch;
  batch.swap(ready_);
  for (const ready_completion& r : batch) {
    switch (r.what) {
    case op::accept:
      r.ctx->pending = false;
      sink.accept_completed(*r.ctx, r.result);
      break;
    case op::recv:
      r.io->receive_pending = false;
      sink.receive_completed(*this, *r.io, r.result, nullptr);
      break;
    case op::send:
      if (r.result > 0 && !w_.socket(r.fd).cancelled) w_.bytes_sent += static_cast<std::uint64_t>(r.result);
      r.io->send_pending = false;
      sink.send_completed(*this, *r.io, r.result);
      break;
    case op::send_direct:
      r.io->send_pending = false;
      sink.send_completed_at_once(*this, *r.io, r.result);
      break;
    }
  }
}

/// The input has run out: stop the server, let every peer finish (FIN, read everything), land
/// every cancellation, and let time run to each deadline until the loop ends.
template <bool Readiness>
template <class Sink>
void fake_backend<Readiness>::drain(long long timeout_ns, Sink& sink) {
  check(++w_.drain_rounds < 1'000'000, "the server does not finish after the input ends");
  if (!w_.main_called) {
    call_main(main_call::stop, std::chrono::milliseconds(w_.drain_rounds % 2 ? 2000 : 0), sink);
    return;
  }
  if (wake_pending()) {
    deliver_wake(sink);
    return;
  }
  if constexpr (Readiness) {
    if (!ready_.empty()) return; // delivered at the end of this round
    if (armed_ && w_.loop_stopping) fail("the stop left an accept armed");
  } else {
    for (auto& [c, cancel] : accept_cancel_)
      if (c->pending && cancel) {
        land_accept_cancel(*c, sink);
        return;
      }
    for (int fd : w_.live) {
      fake_socket& s = w_.socket(fd);
      if (s.io && ((s.io->receive_pending && (s.receive_cancel || s.pause_cancelling)) ||
                   (s.io->send_pending && s.send_cancel))) {
        land_cancel(s, sink);
        return;
      }
    }
  }
  for (int fd : w_.live) {
    fake_socket& s = w_.socket(fd);
    if (!s.peer_fin && !s.peer_reset) s.peer_fin = true;
    s.window = std::size_t{1} << 31;
    s.unacked = 0;
    if (!s.io) continue;
    if constexpr (Readiness) {
      if (s.waiting && !s.cancelled) {
        send_event(s, false, sink);
        return;
      }
    } else {
      if (s.io->send_pending) {
        complete_send(s, s.peer_reset ? -EPIPE : static_cast<int>(s.send_size), sink);
        return;
      }
    }
    if (s.io->receive_pending && !(Readiness && s.cancelled)) {
      int result = s.peer_reset ? -ECONNRESET
                   : s.fed < s.peer_sent
                       ? static_cast<int>(std::min<std::uint64_t>(s.peer_sent - s.fed, w_.receive_size))
                       : 0;
      deliver_receive(s, result, false, sink);
      return;
    }
  }
  if (timeout_ns >= 0) {
    advance(timeout_ns);
    return;
  }
  fail("the loop would wait for ever, with nothing left that could wake it");
}

} // namespace fuzz
