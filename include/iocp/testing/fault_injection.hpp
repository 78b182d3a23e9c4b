// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// Making the server's system calls fail, for tests. Build the whole program with
// IOCP_FAULT_INJECTION defined (without it, the hooks are compiled out and this header refuses to
// build). Then, from any thread:
//
//   using namespace iocp::testing;
//   inject_fault(fault_site::receive, fault_rule::on_call(1, EIO));  // the next receive fails
//   inject_fault(fault_site::send, fault_rule::at_random(0.05, EPIPE, 42));
//   ... faults_injected(fault_site::receive), fault_calls(fault_site::send) ...
//   clear_faults();
//
// The sites and what each is on each backend: iocp/detail/fault_injection.hpp (fault_site). Rules
// and counters are process-wide: every server in the process sees them.

#if !defined(IOCP_FAULT_INJECTION)
#error "iocp/testing/fault_injection.hpp needs IOCP_FAULT_INJECTION defined for the whole program"
#endif

#include <cstdint>

#include "iocp/detail/fault_injection.hpp"

namespace iocp::testing {

/// Sets the site's rule (replacing any it had; its progress starts from zero).
inline void inject_fault(fault_site site, const fault_rule& rule) {
  detail::fault_registry::instance().arm(site, rule);
}

/// The site stops failing; its counters stay.
inline void clear_fault(fault_site site) { detail::fault_registry::instance().disarm(site); }

/// No site fails any more, and every counter is back at zero.
inline void clear_faults() { detail::fault_registry::instance().reset(); }

/// How often the site was reached since the last clear_faults(), failed or not.
inline std::uint64_t fault_calls(fault_site site) noexcept {
  return detail::fault_registry::instance().calls(site);
}

/// How many of those calls were made to fail.
inline std::uint64_t faults_injected(fault_site site) noexcept {
  return detail::fault_registry::instance().injected(site);
}

} // namespace iocp::testing
