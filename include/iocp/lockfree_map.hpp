// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// A ConnectionMap with no lock. A lookup is three loads of the slot (state, payload, state) after
// two of the map; an insert is one compare-exchange on the live count and one on the free list's
// head (or on the slot counter); an erase one on the slot's state, two on the free list (link and
// tail) and one atomic decrement.
//
// Why it is safe without a reclamation scheme: a slot is never freed while the map lives (slots sit
// in segments allocated on first use and released only by the destructor), so a reader can always
// touch the slot an id names. What a slot holds is validated by its state word (generation and a
// live bit), read before and after the payload like a seqlock (find() says why that is correct).
//
// The free list is a FIFO, so that ids are not reused soon (connection_id.hpp): a Michael-Scott
// queue (PODC 1996) whose nodes are the slots themselves. head_, tail_ and each slot's `next` hold
// a tag and a slot index; every change to one of them bumps its tag, so a compare-exchange by a
// thread that read the word before a slot left the queue and came back (ABA) fails instead of
// corrupting the list, as in the paper, whose nodes are recycled the same way. The queue always
// holds a dummy node: the first is a sentinel that is not a slot; a dequeue moves head_ to the
// dummy's successor and takes the old dummy, a free slot, for the new entry. Each node also carries
// a ticket, its predecessor's plus one, so that tail's ticket minus the dummy's counts the slots
// freed after the dummy: an insert takes the dummy only if at least slot_quarantine were, and a
// fresh slot otherwise.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>

#include "iocp/connection_id.hpp"
#include "iocp/connection_map.hpp"

namespace iocp {

class lockfree_map {
public:
  static constexpr std::size_t segment_slots = 4096;

  /// At most `capacity` live entries (clamped to max_connection_capacity); slots number up to
  /// capacity + slot_quarantine, allocated segment_slots at a time as they are first used.
  explicit lockfree_map(std::size_t capacity)
      : capacity_(connection_map_capacity(capacity)),
        slot_limit_(static_cast<std::uint32_t>(capacity_ + slot_quarantine)),
        segment_count_((slot_limit_ + segment_slots - 1) / segment_slots),
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
    // Room first: the live count is reserved before a slot is taken, so that capacity bounds the
    // live entries exactly however many threads insert at once. Acquire, so that the erases whose
    // decrements it reads have queued their slots before take_slot() looks (see there).
    std::size_t live = size_.load(std::memory_order_relaxed);
    do {
      if (live >= capacity_) return {};
    } while (
        !size_.compare_exchange_weak(live, live + 1, std::memory_order_acquire, std::memory_order_relaxed));
    std::uint32_t index;
    bool taken;
    try {
      taken = take_slot(index);
    } catch (...) { // no memory for a new segment: std::bad_alloc, as mutex_map's growth throws it
      size_.fetch_sub(1, std::memory_order_release);
      throw;
    }
    if (!taken) { // the impossible, see take_slot()
      size_.fetch_sub(1, std::memory_order_release);
      return {};
    }
    slot& s = slot_at(index);
    // The slot is ours alone until published: only its generation is read by others meanwhile. The
    // erase that freed it happens before our dequeue, so this load sees its new generation.
    const std::uint64_t generation = generation_of(s.state.load(std::memory_order_relaxed));
    // Release, not relaxed: a reader whose (acquire) payload load reads these values must also see
    // the erase that freed the slot before us; find() explains why that is what makes it correct.
    s.owner.store(entry.owner, std::memory_order_release);
    s.object.store(entry.object, std::memory_order_release);
    s.state.store(live_state(generation), std::memory_order_release);
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
    // In this order: the state is dead before the slot is queued (find() relies on it), and the
    // slot is queued before the room is given back (take_slot() relies on it).
    enqueue(id.slot());
    size_.fetch_sub(1, std::memory_order_release);
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
    //   its store, I dequeued the slot: its load of head_ read the value written by the dequeue
    //   that made the slot the queue's dummy, which had read the link written by the erase of g
    //   when it queued the slot, after its CAS of the state from live(g) (each of these a
    //   seq_cst, so release, write read by a seq_cst, so acquire, load). So that state CAS
    //   happens before our second state load, which cannot read a value older than it
    //   (coherence): it reads a dead state or a later generation, never live(g), and we refuse.
    //   With relaxed payload stores nothing would order I's stores after the erase, and the
    //   second load could still read live(g): a new payload with an old id.
    // - Else both payload loads read g's payload, which is what we return.
    // The second load cannot be done before the payload loads: they are acquire loads, above which
    // nothing after them may move. On x86 every load is an acquire and every store a release, so
    // none of this costs an instruction there.
    if (s.state.load(std::memory_order_acquire) != expected) return std::nullopt;
    connection_entry entry{s.owner.load(std::memory_order_acquire), s.object.load(std::memory_order_acquire)};
    if (s.state.load(std::memory_order_relaxed) != expected) return std::nullopt;
    return entry;
  }

  /// Live entries, counting inserts under way.
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  std::size_t capacity() const noexcept { return capacity_; }

private:
  // A queue word: tag << 32 | slot index (or one of these two, above every slot index).
  static constexpr std::uint32_t no_slot = UINT32_MAX;
  static constexpr std::uint32_t sentinel = UINT32_MAX - 1;
  static constexpr std::uint64_t word(std::uint32_t index, std::uint32_t tag) noexcept {
    return std::uint64_t{tag} << 32 | index;
  }
  static constexpr std::uint32_t index_of(std::uint64_t word) noexcept {
    return static_cast<std::uint32_t>(word);
  }
  static constexpr std::uint32_t tag_of(std::uint64_t word) noexcept {
    return static_cast<std::uint32_t>(word >> 32);
  }
  // The same index with the next tag.
  static constexpr std::uint64_t bumped(std::uint64_t old, std::uint32_t index) noexcept {
    return word(index, tag_of(old) + 1);
  }

  // state: generation << 1 | live
  static constexpr std::uint64_t live_state(std::uint64_t generation) noexcept {
    return (generation << 1) | 1;
  }
  static constexpr std::uint64_t dead_state(std::uint64_t generation) noexcept { return generation << 1; }
  static constexpr std::uint64_t generation_of(std::uint64_t state) noexcept { return state >> 1; }

  // 32 bytes.
  struct slot {
    std::atomic<std::uint64_t> state{dead_state(1)};
    std::atomic<void*> object{nullptr};
    std::atomic<std::uint32_t> owner{0};
    // The free list: this node's position (its predecessor's plus one, modulo 2^32) and successor.
    std::atomic<std::uint32_t> ticket{0};
    std::atomic<std::uint64_t> next{word(no_slot, 0)};
  };
  struct segment {
    slot slots[segment_slots];
  };

  slot& slot_at(std::uint32_t index) const noexcept {
    return segments_[index / segment_slots].load(std::memory_order_acquire)->slots[index % segment_slots];
  }
  // A queue node: a slot, or the sentinel. Every index found in the queue words is one of them.
  slot& node(std::uint32_t index) noexcept { return index == sentinel ? sentinel_ : slot_at(index); }

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

  // A slot for an insert that has reserved room (a live count below capacity_).
  bool take_slot(std::uint32_t& index) {
    // 1. The oldest free slot, if at least slot_quarantine others were freed after it.
    if (dequeue(slot_quarantine, index)) return true;
    // 2. Else a fresh slot. Its segment is allocated before its number is taken, so that a failed
    // allocation loses no number: every slot below high_water_ exists, and is live, in the hands
    // of an insert or erase under way, or queued.
    std::uint32_t fresh = high_water_.load(std::memory_order_relaxed);
    while (fresh < slot_limit_) {
      if (!ensure_segment(fresh / segment_slots)) throw std::bad_alloc();
      // Release: erase() and find() check an id against high_water_, then load its segment.
      if (high_water_.compare_exchange_weak(fresh, fresh + 1, std::memory_order_release,
                                            std::memory_order_relaxed)) {
        index = fresh;
        return true;
      }
    }
    // 3. All capacity_ + slot_quarantine slots exist (step 1 may have refused only because the
    // tail lagged, or an erase was queuing its slot). Each slot that is not queued belongs to a
    // live entry or an insert or erase under way, and each of those holds room (an erase gives it
    // back after queuing; we read the count with acquire). We hold room without a slot, so fewer
    // than capacity_ slots are not queued: more than slot_quarantine are, and the dummy we take has
    // slot_quarantine behind it. The queue cannot be empty; should it seem so, the insert fails.
    return dequeue(0, index);
  }

  // The Michael-Scott queue. Every access to head_, tail_ and the nodes' `next` is seq_cst, so it
  // runs as in the paper, whose proof assumes sequential consistency; on x86 seq_cst loads are
  // plain loads and its compare-exchanges the same lock cmpxchg as acq_rel ones (the one seq_cst
  // store, in enqueue(), is an xchg), and on ARMv8 ldar, stlr and casal are what acquire/release
  // would use too. The seq_cst writes are also releases and the reads acquires: a node's ticket,
  // written before the node is linked, is seen by whoever reads the link or a tail that points to
  // it, and a dequeue happens after the erase that queued its slot (find() relies on that).

  // Takes the dummy, if the queue has a successor for it and at least `behind` nodes after it.
  bool dequeue(std::uint32_t behind, std::uint32_t& index) noexcept {
    for (;;) {
      std::uint64_t head = head_.load();
      const std::uint64_t tail = tail_.load();
      const std::uint64_t next = node(index_of(head)).next.load();
      if (head != head_.load()) continue; // head, tail and next were not read together: again
      if (index_of(head) == index_of(tail)) {
        if (index_of(next) == no_slot) return false; // empty: the dummy alone
        std::uint64_t lagging = tail;
        tail_.compare_exchange_strong(lagging, bumped(tail, index_of(next))); // help the enqueue
        continue;
      }
      // Nodes after the dummy: at least tail's ticket minus the dummy's. Both are stable while
      // head_ is unchanged: the tail is at or after the head, so neither node has left the queue,
      // and a node's ticket changes only when it is queued again. If head_ changed, the CAS fails.
      if (behind != 0) {
        const std::uint32_t after = node(index_of(tail)).ticket.load(std::memory_order_relaxed) -
                                    node(index_of(head)).ticket.load(std::memory_order_relaxed);
        if (after < behind) return false;
      }
      if (head_.compare_exchange_weak(head, bumped(head, index_of(next)))) {
        if (index_of(head) == sentinel) continue; // the first dummy is not a slot: take the next
        index = index_of(head);
        return true;
      }
    }
  }

  void enqueue(std::uint32_t index) noexcept {
    slot& n = node(index);
    // Ours alone: not in the queue (it left as a dummy, with a successor in `next`, or is fresh),
    // so no enqueue can link to it (they compare with a null `next` of an older tag). The tag
    // goes on, so that an enqueue that read this node's `next` in an earlier life fails.
    n.next.store(bumped(n.next.load(std::memory_order_relaxed), no_slot));
    for (;;) {
      std::uint64_t tail = tail_.load();
      slot& last = node(index_of(tail));
      std::uint64_t next = last.next.load();
      if (tail != tail_.load()) continue;
      if (index_of(next) != no_slot) { // the tail lags: help it on, and again
        tail_.compare_exchange_strong(tail, bumped(tail, index_of(next)));
        continue;
      }
      // `last` is the last node while its `next` is unchanged (it leaves the queue only after it
      // has a successor): its ticket is stable, and the link below succeeds only if it still is.
      n.ticket.store(last.ticket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      if (last.next.compare_exchange_weak(next, bumped(next, index))) {
        tail_.compare_exchange_strong(tail, bumped(tail, index)); // or another thread helps
        return;
      }
    }
  }

  std::size_t capacity_;
  std::uint32_t slot_limit_; // capacity_ + slot_quarantine, at most 2^24
  std::size_t segment_count_;
  std::unique_ptr<std::atomic<segment*>[]> segments_;
  std::atomic<std::uint32_t> high_water_{0}; // slots taken fresh so far
  slot sentinel_;                            // the queue's first dummy
  // Apart, so that inserts (at the head), erases (at the tail) and the live count do not share a
  // cache line.
  alignas(64) std::atomic<std::uint64_t> head_{word(sentinel, 0)};
  alignas(64) std::atomic<std::uint64_t> tail_{word(sentinel, 0)};
  alignas(64) std::atomic<std::size_t> size_{0};
};

static_assert(connection_map<lockfree_map>);

} // namespace iocp
