// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The ConnectionMap policy: the server-wide directory from a connection id to the I/O thread that
// owns the connection and the connection object. Every member may be called from any thread at the
// same time. Only the owning I/O thread erases an entry or dereferences `object`; other threads use
// `owner` to post work to it. That is why no thread can ever dereference a freed connection through
// the map, whichever policy synchronizes it.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "iocp/connection_id.hpp"

namespace iocp {

struct connection_entry {
  std::uint32_t owner = 0; // index of the owning I/O thread
  void* object = nullptr;  // the connection; only its owner dereferences it
};

template <class M>
concept connection_map = std::constructible_from<M, std::size_t> &&
    requires(M& m, const M& cm, connection_id id, connection_entry entry) {
  /// A new id for `entry`, or an empty id when the map is at capacity.
  { m.insert(entry) } -> std::same_as<connection_id>;
  /// Removes `id`; false if it was not there. After this, find(id) fails for ever.
  { m.erase(id) } -> std::same_as<bool>;
  { cm.find(id) } -> std::same_as<std::optional<connection_entry>>;
  { cm.size() } -> std::convertible_to<std::size_t>;
};

/// One mutex over a slot vector: the original library's design, and the reference for the others.
class mutex_map {
public:
  explicit mutex_map(std::size_t capacity) : capacity_(capacity ? capacity : 1) {}

  connection_id insert(connection_entry entry) {
    std::lock_guard lock(mutex_);
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      if (slots_.size() >= capacity_ || slots_.size() >= connection_id::max_slots) return {};
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.push_back({});
    }
    slot& s = slots_[index];
    s.entry = entry;
    s.live = true;
    ++size_;
    return connection_id(index, s.generation);
  }

  bool erase(connection_id id) {
    std::lock_guard lock(mutex_);
    slot* s = live_slot(id);
    if (!s) return false;
    s->live = false;
    s->generation = connection_id::next_generation(s->generation); // never 0: "no connection"
    free_.push_back(id.slot());
    --size_;
    return true;
  }

  std::optional<connection_entry> find(connection_id id) const {
    std::lock_guard lock(mutex_);
    const slot* s = const_cast<mutex_map*>(this)->live_slot(id);
    if (!s) return std::nullopt;
    return s->entry;
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return size_;
  }

private:
  struct slot {
    connection_entry entry;
    std::uint64_t generation = 1;
    bool live = false;
  };
  slot* live_slot(connection_id id) {
    if (id.slot() >= slots_.size()) return nullptr;
    slot& s = slots_[id.slot()];
    return s.live && s.generation == id.generation() ? &s : nullptr;
  }

  mutable std::mutex mutex_;
  std::vector<slot> slots_;
  std::vector<std::uint32_t> free_;
  std::size_t size_ = 0;
  std::size_t capacity_;
};

} // namespace iocp
