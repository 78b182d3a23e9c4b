// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Linux only: the kernel's count of connections dropped at a full listen queue.

#include <fstream>
#include <sstream>
#include <string>

namespace test_support {

/// The kernel's count of connections dropped because a listen queue was full (TcpExt
/// ListenDrops, which includes ListenOverflows), for the whole machine. A client may count such a
/// connection as made (its handshake completed) and then reset it before a retransmitted ACK gets
/// it queued: no server can see it. Tests that count connections allow for the drops that happened
/// while they ran (an upper bound: other processes' listeners count here too).
inline long listen_drops() {
  std::ifstream in("/proc/net/netstat");
  std::string names, values;
  while (std::getline(in, names) && std::getline(in, values)) {
    if (names.rfind("TcpExt:", 0) != 0) continue;
    std::istringstream n(names), v(values);
    std::string name, value;
    while (n >> name && v >> value)
      if (name == "ListenDrops") return std::stol(value);
  }
  return 0;
}

} // namespace test_support
