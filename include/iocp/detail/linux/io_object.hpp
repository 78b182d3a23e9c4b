// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// What a Linux backend knows of a connection and of an accept operation. The backend sets a
// *_pending flag when it starts an operation and clears it just before it reports the completion,
// so "no flag set" means the kernel holds no reference to the object and it may be freed.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

namespace iocp::detail {

struct io_object {
  int fd = -1;
  bool receive_pending = false;
  bool send_pending = false;
  // io_uring: the loop asked for the pending operations to end; never re-arm them on its behalf.
  bool cancel_requested = false;
  // The loop paused receiving: no receive is re-armed on its behalf. io_uring: a cancel of the
  // multishot receive is on its way.
  bool receive_paused = false;
  bool receive_pause_cancelling = false;
  // io_uring: the receive ran dry of ring buffers and waits, still pending, to be re-armed.
  bool receive_starved = false;
  // io_uring: arm single-shot receives, not multishot (the loop's choice: a throttled connection).
  bool receive_single_shot = false;
  // epoll only: the send is waiting for EPOLLOUT, and the interest set registered for fd.
  bool send_waiting = false;
  std::uint32_t registered_events = 0;
  bool registered = false;
  // io_uring without provided buffers: where a receive lands.
  std::byte* receive_buffer = nullptr;
  // epoll only: what the pending send carries.
  const std::byte* send_data = nullptr;
  std::size_t send_size = 0;
  // io_uring: the next receive waiting for ring buffers (see receive_starved).
  io_object* starved_next = nullptr;
};

struct accept_context {
  sockaddr_storage address{};
  socklen_t address_length = sizeof(sockaddr_storage);
  bool pending = false;
  // Fault injection only (io_uring): a failure was injected into this multishot accept, whose cancel
  // is on its way; and the loop asked for a new accept meanwhile.
  bool fault_ending = false;
  bool restart_when_ended = false;
};

} // namespace iocp::detail
