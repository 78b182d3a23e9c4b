// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The contract between the event loop and a backend, as two concepts. The loop checks every
// backend it runs (io_uring, epoll, IOCP, and the fuzzer's fakes) against backend_for, and itself
// against completion_sink for each, with static_assert in event_loop::run(): a backend that
// misses an operation, or a loop that renames a completion, fails to compile there, with the
// concept's name in the message.
//
// A backend only starts operations and reports what completed; every decision about a connection
// is the loop's. Completions are reported from run_once(), on the loop's own thread:
//   sink.begin_round()                            the wait returned; completions follow
//   sink.accept_completed(ctx, result)             result: the accepted socket or -errno
//   sink.receive_completed(backend, io, n, data)   n > 0 bytes at data, 0 for EOF, or -errno
//   sink.send_completed(backend, io, n)            n bytes of the started send were taken, or -errno
//   sink.wake_completed()                          wake() was called (from any thread)
//   sink.backend_failed(error)                     the wait or a submission failed (paced by the loop)
// Optional operations (the loop asks with `requires` before it uses them): lend / give_back of
// received buffers (io_uring), send_now (a send that completes at once), report_sent_later.

#include <concepts>
#include <cstddef>
#include <system_error>

#include "iocp/detail/backend.hpp"

namespace iocp::detail {

template <class Sink, class Backend>
concept completion_sink = requires(Sink& sink, Backend& backend, accept_context& ctx, io_object& io,
                                   int result, std::byte* data, std::error_code error) {
  sink.begin_round();
  sink.accept_completed(ctx, result);
  sink.receive_completed(backend, io, result, data);
  sink.send_completed(backend, io, result);
  sink.wake_completed();
  sink.backend_failed(error);
};

template <class Backend, class Sink>
concept backend_for = requires(Backend& b, const Backend& cb, Sink& sink, accept_context& ctx, io_object& io,
                               const std::byte* data, std::size_t size, long long timeout_ns) {
  { cb.needs_receive_buffers() } -> std::convertible_to<bool>;
  b.start_accept(ctx);
  b.cancel_accept(ctx);
  b.start_receive(io);
  b.pause_receive(io);
  b.start_send(io, data, size);
  b.cancel(io);
  { b.release(io) } -> std::convertible_to<int>; // 0 or an errno from closing the socket
  b.wake();                                      // from any thread
  b.run_once(timeout_ns, sink);                  // timeout: negative waits for ever, 0 only looks
};

} // namespace iocp::detail
