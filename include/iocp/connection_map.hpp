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
  /// A new id for `entry`, or an empty id when the map is at capacity (live entries). May throw
  /// std::bad_alloc (a map that grows): the server refuses that connection as out of memory.
  { m.insert(entry) } -> std::same_as<connection_id>;
  /// Removes `id`; false if it was not there. After this, find(id) fails for ever.
  { m.erase(id) } -> std::same_as<bool>;
  { cm.find(id) } -> std::same_as<std::optional<connection_entry>>;
  { cm.size() } -> std::convertible_to<std::size_t>;
};

/// The capacity a map constructed with `requested` has: at least 1, at most max_connection_capacity.
constexpr std::size_t connection_map_capacity(std::size_t requested) noexcept {
  return requested == 0 ? 1 : requested > max_connection_capacity ? max_connection_capacity : requested;
}

/// One mutex over a slot vector: the original library's design, and the reference for the others.
/// The capacity bounds the live entries; slots number up to capacity + slot_quarantine, and a
/// freed slot waits in a FIFO until more than slot_quarantine others do (connection_id.hpp says
/// why). Costs 4 bytes per slot beyond the slot itself, for the FIFO. `Mutex` is std::mutex
/// (mutex_map) or one that counts its contention (iocp::counting_mutex, counting_policies.hpp).
template <class Mutex>
class basic_mutex_map {
public:
  using mutex_type = Mutex;

  explicit basic_mutex_map(std::size_t capacity)
      : capacity_(connection_map_capacity(capacity)), slot_limit_(capacity_ + slot_quarantine) {}

  connection_id insert(connection_entry entry) {
    std::lock_guard lock(mutex_);
    if (size_ >= capacity_) return {};
    std::uint32_t index;
    // Slots are the live ones and the free ones: with fewer than capacity live, either more than
    // the quarantine are free or fewer than slot_limit_ slots exist.
    if (free_count_ > slot_quarantine || slots_.size() >= slot_limit_) {
      index = free_[free_head_];
      free_head_ = (free_head_ + 1) & (free_.size() - 1);
      --free_count_;
    } else {
      // The FIFO has room for every slot, so that erase() never allocates.
      if (free_.size() <= slots_.size()) grow_free();
      slots_.push_back({});
      index = static_cast<std::uint32_t>(slots_.size() - 1);
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
    free_[(free_head_ + free_count_) & (free_.size() - 1)] = id.slot();
    ++free_count_;
    --size_;
    return true;
  }

  std::optional<connection_entry> find(connection_id id) const {
    std::lock_guard lock(mutex_);
    const slot* s = const_cast<basic_mutex_map*>(this)->live_slot(id);
    if (!s) return std::nullopt;
    return s->entry;
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return size_;
  }
  std::size_t capacity() const noexcept { return capacity_; }
  /// The map's mutex (for its counters, when it counts; never lock it from outside).
  const Mutex& mutex() const noexcept { return mutex_; }

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
  void grow_free() {
    std::vector<std::uint32_t> bigger(free_.empty() ? 64 : 2 * free_.size());
    for (std::size_t i = 0; i < free_count_; ++i)
      bigger[i] = free_[(free_head_ + i) & (free_.size() - 1)];
    free_ = std::move(bigger);
    free_head_ = 0;
  }

  mutable Mutex mutex_;
  std::vector<slot> slots_;
  // The free slots, oldest first: a ring of free_count_ from free_head_, a power of two long.
  std::vector<std::uint32_t> free_;
  std::size_t free_head_ = 0;
  std::size_t free_count_ = 0;
  std::size_t size_ = 0;
  std::size_t capacity_;
  std::size_t slot_limit_;
};

/// The original library's map: one std::mutex, taken once per operation.
using mutex_map = basic_mutex_map<std::mutex>;

} // namespace iocp
