// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The category of the Windows backend's errors (Win32 and Winsock codes). mingw's libstdc++
// std::system_category() knows no Winsock code: its message() says "Unknown error code" wherever
// FormatMessage has no text (Wine has almost none for WSA codes), and its default_error_condition()
// maps none of them, so WSAECONNRESET would not compare equal to std::errc::connection_reset. Here:
// - message(): FormatMessageA's text (trailing CR/LF trimmed), else a built-in text for the Winsock
//   codes this library can report, else "Windows error N";
// - default_error_condition(): the Winsock codes mapped to generic conditions as MSVC's
//   std::system_category() maps them (plus ERROR_OPERATION_ABORTED: operation_canceled); any other
//   code as std::system_category() maps it.

#include "iocp/detail/win/windows_headers.hpp"

#include <string>
#include <system_error>

namespace iocp::detail {

class windows_error_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "win32"; }

  std::string message(int value) const override {
    char text[512];
    DWORD n = ::FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr,
                               static_cast<DWORD>(value), 0, text, sizeof text, nullptr);
    while (n > 0 && (text[n - 1] == '\r' || text[n - 1] == '\n' || text[n - 1] == ' '))
      --n;
    if (n > 0) return std::string(text, n);
    if (const char* known = winsock_text(value)) return known;
    return "Windows error " + std::to_string(value);
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    std::errc generic;
    if (generic_of(value, generic)) return std::make_error_condition(generic);
    // Not a code mapped here: as the standard library maps it (a Win32 code it knows, or itself).
    std::error_condition std_condition = std::system_category().default_error_condition(value);
    if (std_condition.category() == std::generic_category()) return std_condition;
    return {value, *this};
  }

private:
  static bool generic_of(int value, std::errc& out) noexcept {
    struct entry {
      int code;
      std::errc condition;
    };
    static constexpr entry table[] = {
        {ERROR_OPERATION_ABORTED, std::errc::operation_canceled},
        {WSAEINTR, std::errc::interrupted},
        {WSAEBADF, std::errc::bad_file_descriptor},
        {WSAEACCES, std::errc::permission_denied},
        {WSAEFAULT, std::errc::bad_address},
        {WSAEINVAL, std::errc::invalid_argument},
        {WSAEMFILE, std::errc::too_many_files_open},
        {WSAEWOULDBLOCK, std::errc::operation_would_block},
        {WSAEINPROGRESS, std::errc::operation_in_progress},
        {WSAEALREADY, std::errc::connection_already_in_progress},
        {WSAENOTSOCK, std::errc::not_a_socket},
        {WSAEDESTADDRREQ, std::errc::destination_address_required},
        {WSAEMSGSIZE, std::errc::message_size},
        {WSAEPROTOTYPE, std::errc::wrong_protocol_type},
        {WSAENOPROTOOPT, std::errc::no_protocol_option},
        {WSAEPROTONOSUPPORT, std::errc::protocol_not_supported},
        {WSAEOPNOTSUPP, std::errc::operation_not_supported},
        {WSAEAFNOSUPPORT, std::errc::address_family_not_supported},
        {WSAEADDRINUSE, std::errc::address_in_use},
        {WSAEADDRNOTAVAIL, std::errc::address_not_available},
        {WSAENETDOWN, std::errc::network_down},
        {WSAENETUNREACH, std::errc::network_unreachable},
        {WSAENETRESET, std::errc::network_reset},
        {WSAECONNABORTED, std::errc::connection_aborted},
        {WSAECONNRESET, std::errc::connection_reset},
        {WSAENOBUFS, std::errc::no_buffer_space},
        {WSAEISCONN, std::errc::already_connected},
        {WSAENOTCONN, std::errc::not_connected},
        {WSAETIMEDOUT, std::errc::timed_out},
        {WSAECONNREFUSED, std::errc::connection_refused},
        {WSAENAMETOOLONG, std::errc::filename_too_long},
        {WSAEHOSTUNREACH, std::errc::host_unreachable},
    };
    for (const entry& e : table) {
      if (e.code == value) {
        out = e.condition;
        return true;
      }
    }
    return false;
  }

  /// Texts for the Winsock codes, for a system whose FormatMessage has none (Wine).
  static const char* winsock_text(int value) noexcept {
    switch (value) {
    case WSAEINTR: return "A blocking operation was interrupted.";
    case WSAEBADF: return "The file handle supplied is not valid.";
    case WSAEACCES:
      return "An attempt was made to access a socket in a way forbidden by its access permissions.";
    case WSAEFAULT: return "The system detected an invalid pointer address.";
    case WSAEINVAL: return "An invalid argument was supplied.";
    case WSAEMFILE: return "Too many open sockets.";
    case WSAEWOULDBLOCK: return "A non-blocking socket operation could not be completed immediately.";
    case WSAEINPROGRESS: return "A blocking operation is currently executing.";
    case WSAEALREADY:
      return "An operation was attempted on a non-blocking socket that already had an operation in progress.";
    case WSAENOTSOCK: return "An operation was attempted on something that is not a socket.";
    case WSAEMSGSIZE:
      return "A message sent on a datagram socket was larger than the buffer or another limit.";
    case WSAENOPROTOOPT: return "An unknown, invalid, or unsupported option or level was specified.";
    case WSAEOPNOTSUPP: return "The attempted operation is not supported for the type of object referenced.";
    case WSAEAFNOSUPPORT: return "An address incompatible with the requested protocol was used.";
    case WSAEADDRINUSE:
      return "Only one usage of each socket address (protocol/network address/port) is normally permitted.";
    case WSAEADDRNOTAVAIL: return "The requested address is not valid in its context.";
    case WSAENETDOWN: return "A socket operation encountered a dead network.";
    case WSAENETUNREACH: return "A socket operation was attempted to an unreachable network.";
    case WSAENETRESET:
      return "The connection has been broken due to keep-alive activity detecting a failure.";
    case WSAECONNABORTED:
      return "An established connection was aborted by the software in your host machine.";
    case WSAECONNRESET: return "An existing connection was forcibly closed by the remote host.";
    case WSAENOBUFS: return "No buffer space available for a socket operation.";
    case WSAEISCONN: return "A connect request was made on an already connected socket.";
    case WSAENOTCONN: return "The socket is not connected.";
    case WSAESHUTDOWN: return "The socket had already been shut down in that direction.";
    case WSAETIMEDOUT: return "The connection attempt or established connection timed out.";
    case WSAECONNREFUSED:
      return "No connection could be made because the target machine actively refused it.";
    case WSAEHOSTUNREACH: return "A socket operation was attempted to an unreachable host.";
    case WSA_OPERATION_ABORTED: return "The I/O operation has been aborted.";
    case WSANOTINITIALISED: return "WSAStartup has not been called.";
    }
    return nullptr;
  }
};

/// The one instance.
inline const std::error_category& windows_category() noexcept {
  static const windows_error_category category;
  return category;
}

} // namespace iocp::detail
