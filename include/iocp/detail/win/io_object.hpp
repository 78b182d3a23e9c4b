// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// What the IOCP backend knows of a connection and of an accept operation. Each overlapped
// operation has its own OVERLAPPED (the kernel writes into it until the completion is dequeued),
// tagged with its kind and owner. A *_pending flag is set when an operation starts and cleared
// just before its completion is reported, so "no flag set" means the kernel holds no reference.

#include "iocp/detail/win/windows_headers.hpp"

#include <cstddef>
#include <cstdint>

namespace iocp::detail {

enum class win_op_kind : std::uint8_t { accept, receive, send };

/// An OVERLAPPED with what its completion is about. The OVERLAPPED comes first: the pointer the
/// port hands back is the operation's address.
struct win_operation {
  OVERLAPPED overlapped{};
  win_op_kind kind = win_op_kind::receive;
  void* owner = nullptr;
};

struct io_object {
  SOCKET fd = INVALID_SOCKET;
  bool receive_pending = false;
  bool send_pending = false;
  bool cancel_requested = false;
  // The loop paused receiving: a pending receive completes into the loop's hold, none is re-armed.
  bool receive_paused = false;
  // Receives are single-shot on IOCP anyway (the loop sets this for a throttled connection).
  bool receive_single_shot = false;
  // The socket is associated with the owning thread's completion port (on its first operation).
  bool associated = false;
  // Where a receive lands: an overlapped receive needs its own buffer until it completes.
  std::byte* receive_buffer = nullptr;
  win_operation receive_op;
  win_operation send_op;
};

/// Address space AcceptEx needs for each of the two addresses: the largest sockaddr plus 16.
inline constexpr DWORD accept_address_space = sizeof(sockaddr_storage) + 16;

struct accept_context {
  win_operation op;
  // The socket AcceptEx fills; the backend owns it until the completion hands it to the loop.
  SOCKET socket = INVALID_SOCKET;
  // The remote address, as GetAcceptExSockaddrs found it (what the Linux context holds too).
  sockaddr_storage address{};
  char buffer[2 * accept_address_space];
  bool pending = false;
};

} // namespace iocp::detail
