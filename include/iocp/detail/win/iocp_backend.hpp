// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The IOCP backend of one I/O thread: a completion port of its own, waited on with
// GetQueuedCompletionStatusEx; wake-ups are PostQueuedCompletionStatus packets without an
// OVERLAPPED. A connection's socket is associated with its owner's port on its first operation, so
// all of its completions come back to the thread that owns its state.
//
// The listening socket can be associated with one port only: thread 0's. Thread 0 keeps every
// AcceptEx in flight (server_options::accepts_in_flight); the other threads serve the connections
// they are given. Every AcceptEx failure, in its completion or in SO_UPDATE_ACCEPT_CONTEXT
// (WSAENOTCONN, ERROR_NETNAME_DELETED, a reset...), closes that socket and is reported as a failed
// accept; the loop reports it and posts a new accept (after a back-off for resource errors), so the
// accept chain cannot break. A failure to start an AcceptEx is reported the same way.
//
// Connections are never reused with DisconnectEx (Wine does not implement TF_REUSE_SOCKET); a
// closed connection's socket is closed.

#include "iocp/detail/win/windows_headers.hpp"

#include <algorithm>
#include <cstdint>
#include <system_error>
#include <vector>

#include "iocp/detail/fault_injection.hpp"
#include "iocp/detail/win/io_object.hpp"
#include "iocp/detail/win/socket_ops.hpp"

namespace iocp::detail {

class iocp_backend {
public:
  iocp_backend(socket_handle listen_socket, std::size_t receive_size)
      : listen_(listen_socket),
        receive_size_(static_cast<ULONG>((std::min<std::size_t>)(receive_size, 1u << 30))) {
    port_ = ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
    if (!port_) throw_errno(static_cast<int>(::GetLastError()), "CreateIoCompletionPort()");
    listen_family_ = local_family(listen_);
    DWORD bytes = 0;
    GUID accept_ex = WSAID_ACCEPTEX;
    GUID sockaddrs = WSAID_GETACCEPTEXSOCKADDRS;
    if (::WSAIoctl(listen_, SIO_GET_EXTENSION_FUNCTION_POINTER, &accept_ex, sizeof accept_ex, &accept_ex_,
                   sizeof accept_ex_, &bytes, nullptr, nullptr) != 0 ||
        ::WSAIoctl(listen_, SIO_GET_EXTENSION_FUNCTION_POINTER, &sockaddrs, sizeof sockaddrs, &get_sockaddrs_,
                   sizeof get_sockaddrs_, &bytes, nullptr, nullptr) != 0) {
      int e = ::WSAGetLastError();
      ::CloseHandle(port_);
      throw_errno(e, "WSAIoctl(AcceptEx)");
    }
  }
  iocp_backend(const iocp_backend&) = delete;
  iocp_backend& operator=(const iocp_backend&) = delete;
  ~iocp_backend() { ::CloseHandle(port_); }

  /// Every overlapped receive needs a buffer of its own.
  bool needs_receive_buffers() const noexcept { return true; }

  void start_accept(accept_context& ctx) {
    ctx.pending = true;
    ctx.op.kind = win_op_kind::accept;
    ctx.op.owner = &ctx;
    ctx.op.overlapped = OVERLAPPED{};
    if (!listener_associated_) {
      if (int e = join_port(reinterpret_cast<HANDLE>(listen_))) {
        complete_later(ctx.op, -e);
        return;
      }
      listener_associated_ = true;
    }
    ctx.socket = open_overlapped_socket(listen_family_);
    if (ctx.socket == INVALID_SOCKET) {
      complete_later(ctx.op, -::WSAGetLastError()); // e.g. WSAENOBUFS: the loop backs off and retries
      return;
    }
    DWORD bytes = 0;
    if (!call_unless_fault(testing::fault_site::accept_start, FALSE, [&] {
          return accept_ex_(listen_, ctx.socket, ctx.buffer, 0, accept_address_space, accept_address_space,
                            &bytes, &ctx.op.overlapped);
        })) {
      int e = ::WSAGetLastError();
      if (e != ERROR_IO_PENDING) {
        ::closesocket(ctx.socket);
        ctx.socket = INVALID_SOCKET;
        complete_later(ctx.op, -e);
      }
    }
    // Success at once or pending: either way the completion comes through the port.
  }

  void cancel_accept(accept_context& ctx) {
    if (ctx.pending && ctx.socket != INVALID_SOCKET)
      ::CancelIoEx(reinterpret_cast<HANDLE>(listen_), &ctx.op.overlapped);
  }

  void start_receive(io_object& io) {
    io.receive_pending = true;
    io.cancel_requested = false;
    io.receive_op.kind = win_op_kind::receive;
    io.receive_op.owner = &io;
    io.receive_op.overlapped = OVERLAPPED{};
    if (!associate(io, io.receive_op)) return;
    WSABUF buffer{receive_size_, reinterpret_cast<char*>(io.receive_buffer)};
    DWORD flags = 0;
    if (call_unless_fault(testing::fault_site::receive_start, SOCKET_ERROR, [&] {
          return ::WSARecv(io.fd, &buffer, 1, nullptr, &flags, &io.receive_op.overlapped, nullptr);
        }) != 0) {
      int e = ::WSAGetLastError();
      if (e != WSA_IO_PENDING) complete_later(io.receive_op, -e);
    }
  }

  void start_send(io_object& io, const std::byte* data, std::size_t size) {
    io.send_pending = true;
    io.send_op.kind = win_op_kind::send;
    io.send_op.owner = &io;
    io.send_op.overlapped = OVERLAPPED{};
    if (!associate(io, io.send_op)) return;
    // At most max_send_size per operation; the loop sends the rest when this completes.
    WSABUF buffer{static_cast<ULONG>((std::min<std::size_t>)(size, max_send_size)),
                  const_cast<char*>(reinterpret_cast<const char*>(data))};
    if (call_unless_fault(testing::fault_site::send_start, SOCKET_ERROR, [&] {
          return ::WSASend(io.fd, &buffer, 1, nullptr, 0, &io.send_op.overlapped, nullptr);
        }) != 0) {
      int e = ::WSAGetLastError();
      if (e != WSA_IO_PENDING) complete_later(io.send_op, -e);
    }
  }

  /// Every pending operation of `io` completes soon, with ERROR_OPERATION_ABORTED if it had not
  /// finished.
  /// Receiving paused: the pending receive completes when data comes (the loop holds it) and is
  /// not re-armed. Cancelling it instead could lose the bytes it had already taken.
  void pause_receive(io_object&) noexcept {}

  void cancel(io_object& io) {
    io.cancel_requested = true;
    if ((io.receive_pending || io.send_pending) && io.fd != INVALID_SOCKET)
      ::CancelIoEx(reinterpret_cast<HANDLE>(io.fd), nullptr);
  }

  /// The kernel holds nothing of `io` any more: close its socket. 0, or the error closing failed with.
  int release(io_object& io) noexcept {
    int e = 0;
    if (io.fd != INVALID_SOCKET) e = close_socket(io.fd);
    io.fd = INVALID_SOCKET;
    return e;
  }

  /// Thread-safe: makes a waiting run_once() return and report wake_completed().
  void wake() noexcept { ::PostQueuedCompletionStatus(port_, 0, wake_key, nullptr); }

  /// Waits up to timeout_ns (negative: no limit, 0: just look) and reports every completion.
  template <class Sink>
  void run_once(long long timeout_ns, Sink& sink) {
    DWORD timeout_ms =
        timeout_ns < 0
            ? INFINITE
            : static_cast<DWORD>((std::min<long long>)((timeout_ns + 999'999) / 1'000'000, INFINITE - 1));
    if (!ready_.empty()) timeout_ms = 0;
    ULONG count = 0;
    if (!call_unless_fault(testing::fault_site::wait, FALSE, [&] {
          return ::GetQueuedCompletionStatusEx(port_, entries_, max_entries, &count, timeout_ms, FALSE);
        })) {
      DWORD e = ::GetLastError();
      count = 0;
      if (e != WAIT_TIMEOUT) sink.backend_failed(errno_code(static_cast<int>(e)));
    }
    sink.begin_round();
    for (ULONG i = 0; i < count; ++i) {
      const OVERLAPPED_ENTRY& entry = entries_[i];
      if (!entry.lpOverlapped) {
        sink.wake_completed();
        continue;
      }
      auto& op = *reinterpret_cast<win_operation*>(entry.lpOverlapped);
      int result = static_cast<int>(entry.dwNumberOfBytesTransferred);
      // The entry's own Internal is reserved: the status is the OVERLAPPED's (an NTSTATUS).
      if (op.overlapped.Internal != 0) result = operation_result(op, result);
      // A failed accept's socket, connected or not, is closed by deliver().
      if (int e = injected_fault(completion_site(op.kind))) result = -e;
      deliver(op, result, sink);
    }
    // Operations that failed to start, found while starting them. Those that these reports start
    // wait for the next round.
    // Two lists taking turns, both keeping their capacity: no allocation once they have grown.
    delivering_.swap(ready_);
    for (const ready_completion& c : delivering_)
      deliver(*c.op, c.result, sink);
    delivering_.clear();
  }

private:
  static constexpr ULONG_PTR wake_key = 1;
  /// An overlapped send completes only once all of its bytes are taken, and its pages stay locked
  /// until then: one of many MiB to a peer that reads slowly would report nothing (no on_sent, no
  /// drop in queued_bytes) for as long as the peer takes, and could fail with WSAENOBUFS. So a send
  /// carries at most 64 KiB (as Asio's composed writes do), and completions follow the peer's pace.
  static constexpr std::size_t max_send_size = 64 * 1024;
  static constexpr ULONG max_entries = 256;

  struct ready_completion {
    win_operation* op;
    int result;
  };

  static int local_family(socket_handle s) noexcept {
    sockaddr_storage a{};
    int len = sizeof a;
    if (::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) return AF_INET;
    return a.ss_family;
  }

  void complete_later(win_operation& op, int result) { ready_.push_back({&op, result}); }

  /// The socket joins this thread's port before its first operation. Refused: that operation fails.
  bool associate(io_object& io, win_operation& op) {
    if (io.associated) return true;
    if (int e = join_port(reinterpret_cast<HANDLE>(io.fd))) {
      complete_later(op, -e);
      return false;
    }
    io.associated = true;
    return true;
  }

  /// Associates a socket with this thread's port: 0, or the Win32 error.
  int join_port(HANDLE socket) noexcept {
    if (int e = injected_fault(testing::fault_site::submit)) return e;
    if (!::CreateIoCompletionPort(socket, port_, 0, 0)) return static_cast<int>(::GetLastError());
    return 0;
  }

  static testing::fault_site completion_site(win_op_kind kind) noexcept {
    switch (kind) {
    case win_op_kind::accept: return testing::fault_site::accept;
    case win_op_kind::receive: return testing::fault_site::receive;
    case win_op_kind::send: return testing::fault_site::send;
    }
    return testing::fault_site::send;
  }

  /// The byte count, or the negated Winsock error, of an operation whose status is not plain
  /// success (the port only gives an NTSTATUS). The socket is still open: a connection's closes only
  /// after its last completion, and the listener after the threads.
  int operation_result(win_operation& op, int bytes_reported) noexcept {
    SOCKET s = listen_;
    if (op.kind != win_op_kind::accept) s = static_cast<io_object*>(op.owner)->fd;
    DWORD bytes = 0, flags = 0;
    if (::WSAGetOverlappedResult(s, &op.overlapped, &bytes, FALSE, &flags)) return bytes_reported;
    int e = ::WSAGetLastError();
    return e ? -e : -ERROR_GEN_FAILURE;
  }

  template <class Sink>
  void deliver(win_operation& op, int result, Sink& sink) {
    switch (op.kind) {
    case win_op_kind::accept: {
      auto& ctx = *static_cast<accept_context*>(op.owner);
      ctx.pending = false;
      if (result >= 0) result = finish_accept(ctx);
      if (result < 0 && ctx.socket != INVALID_SOCKET) {
        ::closesocket(ctx.socket); // whatever failed, this socket is dropped; the loop posts anew
        ctx.socket = INVALID_SOCKET;
      }
      sink.accept_completed(ctx, result);
      break;
    }
    case win_op_kind::receive: {
      auto& io = *static_cast<io_object*>(op.owner);
      io.receive_pending = false;
      sink.receive_completed(*this, io, result, io.receive_buffer); // may free `io`
      break;
    }
    case win_op_kind::send: {
      auto& io = *static_cast<io_object*>(op.owner);
      io.send_pending = false;
      sink.send_completed(*this, io, result); // may free `io`
      break;
    }
    }
  }

  /// After AcceptEx completed: the accepted socket inherits the listener's properties
  /// (SO_UPDATE_ACCEPT_CONTEXT, which getsockname, shutdown and friends need), and its remote address
  /// is read. 0, or a negated error (the connection may already be gone: WSAENOTCONN).
  int finish_accept(accept_context& ctx) noexcept {
    if (int e = injected_fault(testing::fault_site::accept_context)) return -e;
    if (::setsockopt(ctx.socket, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                     reinterpret_cast<const char*>(&listen_), sizeof listen_) != 0)
      return -::WSAGetLastError();
    sockaddr* local = nullptr;
    sockaddr* remote = nullptr;
    int local_length = 0, remote_length = 0;
    get_sockaddrs_(ctx.buffer, 0, accept_address_space, accept_address_space, &local, &local_length, &remote,
                   &remote_length);
    ctx.address = sockaddr_storage{};
    if (remote && remote_length > 0)
      std::memcpy(&ctx.address, remote,
                  (std::min<std::size_t>)(sizeof ctx.address, static_cast<std::size_t>(remote_length)));
    return 0;
  }

  socket_handle listen_;
  ULONG receive_size_;
  HANDLE port_ = nullptr;
  int listen_family_ = AF_INET;
  bool listener_associated_ = false;
  LPFN_ACCEPTEX accept_ex_ = nullptr;
  LPFN_GETACCEPTEXSOCKADDRS get_sockaddrs_ = nullptr;
  OVERLAPPED_ENTRY entries_[max_entries];
  std::vector<ready_completion> ready_;
  std::vector<ready_completion> delivering_; // the previous round's ready_, being delivered
};

} // namespace iocp::detail
