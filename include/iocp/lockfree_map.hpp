// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A ConnectionMap with no lock: lookups are two atomic loads, insert and erase one compare-exchange
// each on the slot and one on the free list.
//
// Why it is safe without a reclamation scheme: a slot is never freed while the map lives (slots sit
// in segments allocated on first use and released only by the destructor), so a reader can always
// touch the slot an id names. What a slot holds is validated by its state word (generation and a
// live bit), read before and after the payload like a seqlock: a reader that sees the same live
// state twice read a payload that belonged to that very generation. The free list is a Treiber
// stack whose head carries a tag bumped on every change, so a pop racing with pop-push of the same
// slot (ABA) fails its compare-exchange instead of corrupting the list.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "iocp/connection_id.hpp"
#include "iocp/connection_map.hpp"

namespace iocp {

class lockfree_map {
public:
  static constexpr std::size_t segment_slots = 4096;

  explicit lockfree_map(std::size_t capacity)
      : capacity_(capacity == 0 ? 1 : (capacity > max_capacity ? max_capacity : capacity)),
        segment_count_((capacity_ + segment_slots - 1) / segment_slots),
        segments_(std::make_unique<std::atomic<segment*>[]>(segment_count_)) {
    for (std::size_t i = 0; i < segment_count_; ++i)
      segments_[i].store(nullptr, std::memory_order_relaxed);
  }
  lockfree_map(const lockfree_map&) = delete;
  lockfree_map& operator=(const lockfree_map&) = delete;
  ~lockfree_map() {
    for (std::size_t i = 0; i < segment_count_; ++i)
      delete segments_[i].load(std::memory_order_relaxed);
  }

  connection_id insert(connection_entry entry) {
    std::uint32_t index;
    if (!pop_free(index)) {
      std::uint32_t fresh = high_water_.load(std::memory_order_relaxed);
      do {
        if (fresh >= capacity_) return {};
      } while (!high_water_.compare_exchange_weak(fresh, fresh + 1, std::memory_order_relaxed));
      index = fresh;
      if (!ensure_segment(index / segment_slots)) {
        // No memory for the slot: give its number back if nobody took a later one (else it is lost,
        // which costs one slot of capacity, never correctness).
        std::uint32_t expected = index + 1;
        high_water_.compare_exchange_strong(expected, index, std::memory_order_relaxed);
        return {};
      }
    }
    slot& s = slot_at(index);
    // The slot is ours alone until published: only its generation is read by others meanwhile.
    std::uint64_t generation = generation_of(s.state.load(std::memory_order_relaxed));
    // Release, not relaxed: a reader whose (acquire) payload load reads these values must also see
    // the erase that freed the slot before us; find() explains why that is what makes it correct.
    s.owner.store(entry.owner, std::memory_order_release);
    s.object.store(entry.object, std::memory_order_release);
    s.state.store(live_state(generation), std::memory_order_release);
    size_.fetch_add(1, std::memory_order_relaxed);
    return connection_id(index, generation);
  }

  bool erase(connection_id id) {
    if (!id || id.slot() >= high_water_.load(std::memory_order_acquire)) return false;
    segment* seg = segments_[id.slot() / segment_slots].load(std::memory_order_acquire);
    if (!seg) return false; // an id this map never issued
    slot& s = seg->slots[id.slot() % segment_slots];
    std::uint64_t expected = live_state(id.generation());
    const std::uint64_t next = connection_id::next_generation(id.generation()); // never 0
    if (!s.state.compare_exchange_strong(expected, dead_state(next), std::memory_order_acq_rel)) return false;
    size_.fetch_sub(1, std::memory_order_relaxed);
    push_free(id.slot());
    return true;
  }

  std::optional<connection_entry> find(connection_id id) const {
    if (!id || id.slot() >= high_water_.load(std::memory_order_acquire)) return std::nullopt;
    const segment* seg = segments_[id.slot() / segment_slots].load(std::memory_order_acquire);
    if (!seg) return std::nullopt;
    const slot& s = seg->slots[id.slot() % segment_slots];
    const std::uint64_t expected = live_state(id.generation());
    // Seqlock-style validation: state, payload, state again. Why an entry returned here is the one
    // inserted under `id` (of generation g; live(g) is written once, by the insert that issued id,
    // until the generation wraps: see connection_id.hpp):
    // - The first load (acquire) reads live(g), so it synchronizes with that insert's release store
    //   of the state: its payload stores happen before our payload loads, which therefore read
    //   that payload or a later one.
    // - If a payload load reads a later one, written by the insert I of a later occupant: that
    //   store is a release and our load an acquire, so I's store happens before our load. Before
    //   its store, I popped the slot from the free list, and that acquire CAS read the head that
    //   the erase of g wrote with a release CAS when it pushed the slot, after its CAS of the
    //   state from live(g). So that state CAS happens before our second state load, which cannot
    //   read a value older than it (coherence): it reads a dead state or a later generation, never
    //   live(g), and we refuse. With relaxed payload stores nothing would order I's stores after
    //   the erase, and the second load could still read live(g): a new payload with an old id.
    // - Else both payload loads read g's payload, which is what we return.
    // The second load cannot be done before the payload loads: they are acquire loads, above which
    // nothing after them may move. On x86 every load is an acquire and every store a release, so
    // none of this costs an instruction there.
    if (s.state.load(std::memory_order_acquire) != expected) return std::nullopt;
    connection_entry entry{s.owner.load(std::memory_order_acquire), s.object.load(std::memory_order_acquire)};
    if (s.state.load(std::memory_order_relaxed) != expected) return std::nullopt;
    return entry;
  }

  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  std::size_t capacity() const noexcept { return capacity_; }

private:
  static constexpr std::size_t max_capacity = connection_id::max_slots;
  static constexpr std::uint32_t no_slot = UINT32_MAX;

  // state: generation << 1 | live
  static constexpr std::uint64_t live_state(std::uint64_t generation) noexcept {
    return (generation << 1) | 1;
  }
  static constexpr std::uint64_t dead_state(std::uint64_t generation) noexcept { return generation << 1; }
  static constexpr std::uint64_t generation_of(std::uint64_t state) noexcept { return state >> 1; }

  struct slot {
    std::atomic<std::uint64_t> state{dead_state(1)};
    std::atomic<std::uint32_t> owner{0};
    std::atomic<std::uint32_t> next_free{no_slot};
    std::atomic<void*> object{nullptr};
  };
  struct segment {
    slot slots[segment_slots];
  };

  slot& slot_at(std::uint32_t index) const noexcept {
    return segments_[index / segment_slots].load(std::memory_order_acquire)->slots[index % segment_slots];
  }

  bool ensure_segment(std::size_t n) {
    if (segments_[n].load(std::memory_order_acquire)) return true;
    segment* fresh = new (std::nothrow) segment;
    if (!fresh) return false;
    segment* expected = nullptr;
    if (!segments_[n].compare_exchange_strong(expected, fresh, std::memory_order_acq_rel,
                                              std::memory_order_acquire))
      delete fresh; // another thread installed it first
    return true;
  }

  // Free-list head: tag << 32 | index.
  void push_free(std::uint32_t index) noexcept {
    slot& s = slot_at(index);
    std::uint64_t head = free_head_.load(std::memory_order_relaxed);
    for (;;) {
      s.next_free.store(static_cast<std::uint32_t>(head), std::memory_order_relaxed);
      std::uint64_t next = ((head >> 32) + 1) << 32 | index;
      if (free_head_.compare_exchange_weak(head, next, std::memory_order_release, std::memory_order_relaxed))
        return;
    }
  }

  bool pop_free(std::uint32_t& index) noexcept {
    std::uint64_t head = free_head_.load(std::memory_order_acquire);
    for (;;) {
      std::uint32_t top = static_cast<std::uint32_t>(head);
      if (top == no_slot) return false;
      // May read a stale link if `top` was popped and pushed meanwhile; the tag then fails the CAS.
      std::uint32_t next = slot_at(top).next_free.load(std::memory_order_relaxed);
      std::uint64_t desired = ((head >> 32) + 1) << 32 | next;
      if (free_head_.compare_exchange_weak(head, desired, std::memory_order_acquire,
                                           std::memory_order_acquire)) {
        index = top;
        return true;
      }
    }
  }

  std::size_t capacity_;
  std::size_t segment_count_;
  std::unique_ptr<std::atomic<segment*>[]> segments_;
  std::atomic<std::uint32_t> high_water_{0};
  std::atomic<std::uint64_t> free_head_{no_slot};
  std::atomic<std::size_t> size_{0};
};

static_assert(connection_map<lockfree_map>);

} // namespace iocp
