// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// What the fuzz targets share: a failed check aborts, so libFuzzer keeps the input as a crash, and
// an allocator that checks every block the library takes comes back once.

#include <cerrno> // program_invocation_short_name (glibc)
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

namespace fuzz {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what);
  std::abort();
}
inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

/// Forwards to `Inner` (plain_allocator: ASan then sees every block) and checks each block is
/// aligned, is freed once, with the size it was allocated with, and that none is left at the end.
template <class Inner>
class checked_allocator {
public:
  checked_allocator() = default;
  checked_allocator(const checked_allocator&) = delete;
  checked_allocator& operator=(const checked_allocator&) = delete;
  ~checked_allocator() { check(live_.empty(), "blocks still allocated when their allocator goes"); }

  void* allocate(std::size_t n) {
    void* p = inner_.allocate(n);
    check(reinterpret_cast<std::uintptr_t>(p) % alignof(std::max_align_t) == 0, "misaligned block");
    live_.emplace(p, n);
    return p;
  }
  void deallocate(void* p, std::size_t n) noexcept {
    auto it = live_.find(p);
    check(it != live_.end(), "freed a block that is not allocated");
    check(it->second == n, "freed a block with another size than it was allocated with");
    live_.erase(it);
    inner_.deallocate(p, n);
  }

private:
  Inner inner_;
  std::unordered_map<void*, std::size_t> live_;
};

} // namespace fuzz
