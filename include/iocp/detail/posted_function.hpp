// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A function posted to an I/O thread, stored in its inbox record: one function pointer, then the
// callable itself, moved in (no heap allocation of its own, no std::function). The pointer both
// runs and destroys it, so the record needs no vtable and the callable's type is known only here.

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace iocp::detail {

struct posted_function {
  /// run: call the function with `arg` (a connection*, maybe null, or unused), then destroy it;
  /// otherwise only destroy it (the server stopped first). The destructor runs even if the call
  /// throws; the exception reaches the caller (the loop, which handles it like a callback's).
  void (*invoke)(posted_function* self, void* arg, bool run);

  static constexpr std::size_t header_size = alignof(std::max_align_t);
  std::byte* storage() noexcept { return reinterpret_cast<std::byte*>(this) + header_size; }

  template <class F>
  static constexpr std::size_t size_for() noexcept {
    return header_size + sizeof(F);
  }

  /// Builds one at `to` (aligned to max_align_t, size_for<F>() bytes) from `f`; `Call` adapts the
  /// stored F to the argument: call(F&, void* arg).
  template <class F, class Call>
  static void construct(std::byte* to, F&& f) noexcept {
    using stored = std::decay_t<F>;
    static_assert(std::is_nothrow_constructible_v<stored, F&&>);
    auto* self = ::new (to) posted_function{&invoke_as<stored, Call>};
    ::new (self->storage()) stored(std::forward<F>(f));
  }

private:
  template <class F, class Call>
  static void invoke_as(posted_function* self, void* arg, bool run) {
    F& f = *std::launder(reinterpret_cast<F*>(self->storage()));
    struct destroy_on_exit {
      F& f;
      ~destroy_on_exit() { f.~F(); }
    } guard{f};
    if (run) Call{}(f, arg);
  }
};

/// How a stored function is called: server.post(f) runs f(); server.post(id, f) runs f(conn*).
struct call_without_argument {
  template <class F>
  void operator()(F& f, void*) const {
    f();
  }
};
template <class Connection>
struct call_with_connection {
  template <class F>
  void operator()(F& f, void* c) const {
    f(static_cast<Connection*>(c));
  }
};

} // namespace iocp::detail
