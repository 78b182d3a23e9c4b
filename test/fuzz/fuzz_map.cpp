// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// libFuzzer target for the ConnectionMap policies (mutex_map and lockfree_map), on one thread: the
// input is a capacity and a sequence of inserts, erases and lookups, by ids that are live, stale
// (erased, or with an older or newer generation than issued), of slots never used, or random. The
// model is the set of live ids: find() and erase() succeed for exactly those ids (so a stale id
// never reaches a later occupant of its slot), with the entry inserted under that id; an id is never
// issued twice; size() is the number of live ids; insert() succeeds while fewer than the capacity
// are live, in a slot below capacity + slot_quarantine that no live id holds, a fresh one with
// generation 1 or a freed one with its next generation after slot_quarantine other slots were freed
// since, and a full map refuses with an empty id and stays as it was. Churns (insert one, erase one,
// thousands of times from a few bytes) reach the reuse of slots. Capacities near lockfree_map's
// 4096-slot segments make the slots cross into a third segment.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "iocp/connection_id.hpp"
#include "iocp/connection_map.hpp"
#include "iocp/lockfree_map.hpp"

namespace {

[[noreturn]] void fail(const char* map, const char* what, iocp::connection_id id) {
  std::fprintf(stderr, "fuzz_map (%s): %s (id slot %u, generation %llu)\n", map, what, id.slot(),
               static_cast<unsigned long long>(id.generation()));
  std::abort();
}

/// A set of non-zero ids, flat (open addressing): an input makes thousands of inserts, and a node
/// per id would spend the fuzzer's time in ASan's allocator.
class id_set {
public:
  /// False if `value` was there already.
  bool insert(std::uint64_t value) {
    if ((count_ + 1) * 2 > table_.size()) grow();
    const std::size_t mask = table_.size() - 1;
    for (std::size_t i = (value * 0x9E3779B97F4A7C15ull) >> 32 & mask;; i = (i + 1) & mask) {
      if (table_[i] == value) return false;
      if (table_[i] == 0) {
        table_[i] = value;
        ++count_;
        return true;
      }
    }
  }

private:
  void grow() {
    std::vector<std::uint64_t> old = std::move(table_);
    table_.assign(old.empty() ? 256 : 2 * old.size(), 0);
    count_ = 0;
    for (std::uint64_t value : old)
      if (value) insert(value);
  }

  std::vector<std::uint64_t> table_; // a power of two long; 0 marks a free place
  std::size_t count_ = 0;
};

struct slot_model {
  iocp::connection_id id; // empty: no live id in this slot
  iocp::connection_entry entry;
  std::uint64_t generation = 0; // the last one issued in this slot; 0: never used
  std::uint64_t freed_at = 0;   // the ordinal of the erase that freed it
};

constexpr std::size_t quarantine = iocp::slot_quarantine;
/// Bounds the loops over every issued id: churns issue thousands.
constexpr std::size_t max_sweep = 2048;

template <class Map>
class session {
public:
  session(const char* name, FuzzedDataProvider& in)
      : name_(name), in_(in), capacity_(in.ConsumeIntegralInRange<int>(0, 7) != 7
                                            ? in.ConsumeIntegralInRange<std::size_t>(0, 40)
                                            : in.ConsumeIntegralInRange<std::size_t>(4090, 4100)),
        map_(capacity_) {
    if (capacity_ == 0) capacity_ = 1; // both maps make room for one
    slots_.resize(capacity_ + quarantine);
  }

  void run() {
    if constexpr (requires { map_.capacity(); })
      if (map_.capacity() != capacity_) fail(name_, "capacity() is not the one asked for", {});
    while (in_.remaining_bytes() > 0) {
      switch (in_.ConsumeIntegralInRange<int>(0, 8)) {
      case 0:
      case 1: insert(in_.ConsumeIntegral<std::uint32_t>()); break;
      case 2: erase(pick_id()); break;
      case 3:
      case 4: find(pick_id()); break;
      case 5: // fill to capacity, and one more that must be refused
        for (std::size_t k = live_count_; k <= capacity_; ++k)
          insert(in_.ConsumeIntegral<std::uint32_t>());
        break;
      case 6: // erase the live ids from one issued at random on: slots go back to the free list
        for (std::size_t k = in_.ConsumeIntegralInRange<std::size_t>(0, issued_.size()), n = 0;
             k < issued_.size() && n < max_sweep; ++k, ++n)
          erase(issued_[k]);
        break;
      case 7: // issued ids, live or stale, from one at random on
        for (std::size_t k = in_.ConsumeIntegralInRange<std::size_t>(0, issued_.size()), n = 0;
             k < issued_.size() && n < max_sweep; ++k, ++n)
          find(issued_[k]);
        break;
      default: churn(); break;
      }
      if (map_.size() != live_count_) fail(name_, "size() differs from the number of live ids", {});
    }
  }

private:
  void insert(std::uint32_t owner) {
    const iocp::connection_entry entry{owner, reinterpret_cast<void*>(std::uintptr_t{++inserts_} * 16)};
    const iocp::connection_id id = map_.insert(entry);
    if (live_count_ == capacity_) {
      if (id) fail(name_, "a full map gave an id", id);
      return;
    }
    if (!id) fail(name_, "a map with room refused an insert", id);
    if (!ever_issued_.insert(id.value())) fail(name_, "an id was issued twice", id);
    if (id.slot() >= slots_.size()) fail(name_, "a slot beyond capacity + quarantine", id);
    slot_model& s = slots_[id.slot()];
    if (s.id) fail(name_, "a slot that a live id holds was issued again", id);
    if (s.generation == 0) {
      if (id.generation() != 1) fail(name_, "a fresh slot's first generation is not 1", id);
    } else {
      if (frees_ - s.freed_at < quarantine)
        fail(name_, "a slot was reused before slot_quarantine others were freed", id);
      if (id.generation() != iocp::connection_id::next_generation(s.generation))
        fail(name_, "a reused slot did not take its next generation", id);
    }
    s.id = id;
    s.entry = entry;
    s.generation = id.generation();
    ++live_count_;
    issued_.push_back(id);
  }

  /// The model's live entry under `id`, if any.
  const slot_model* live(iocp::connection_id id) const {
    if (!id || id.slot() >= slots_.size() || slots_[id.slot()].id != id) return nullptr;
    return &slots_[id.slot()];
  }

  void erase(iocp::connection_id id) {
    const bool erased = map_.erase(id);
    if (erased != (live(id) != nullptr))
      fail(name_, erased ? "erase() removed an id that is not live" : "erase() missed a live id", id);
    if (!erased) return;
    slots_[id.slot()].id = {};
    slots_[id.slot()].freed_at = ++frees_;
    --live_count_;
  }

  /// Inserts and erases one at a time, `rounds` times: each round erases the id issued `lag` inserts
  /// before (the one just issued if 0), so that about `lag` stay live while slots go round the
  /// quarantine; enough rounds reuse every slot.
  void churn() {
    const std::size_t rounds = in_.ConsumeIntegralInRange<std::size_t>(1, 3 * (quarantine + 1));
    const std::size_t lag = in_.ConsumeIntegralInRange<std::size_t>(0, 50);
    for (std::size_t r = 0; r < rounds; ++r) {
      insert(static_cast<std::uint32_t>(r));
      if (issued_.size() > lag) erase(issued_[issued_.size() - 1 - lag]);
    }
  }

  void find(iocp::connection_id id) const {
    const auto found = map_.find(id);
    const slot_model* expected = live(id);
    if (found.has_value() != (expected != nullptr))
      fail(name_, found ? "find() found an id that is not live" : "find() missed a live id", id);
    if (found && (found->owner != expected->entry.owner || found->object != expected->entry.object))
      fail(name_, "find() gave another entry than the one inserted", id);
  }

  iocp::connection_id pick_id() {
    const auto random_issued = [&] {
      return issued_[in_.ConsumeIntegralInRange<std::size_t>(0, issued_.size() - 1)];
    };
    const int kind = in_.ConsumeIntegralInRange<int>(0, 6);
    if (issued_.empty() || kind == 0) {
      if (in_.ConsumeBool()) return {}; // "no connection"
      // A slot that may never have been used, with a small generation, or anything at all.
      if (in_.ConsumeBool())
        return iocp::connection_id(
            in_.ConsumeIntegralInRange<std::uint32_t>(0, static_cast<std::uint32_t>(slots_.size() + 2)),
            in_.ConsumeIntegralInRange<std::uint64_t>(0, 4));
      return iocp::connection_id(in_.ConsumeIntegral<std::uint64_t>());
    }
    const iocp::connection_id id = random_issued();
    const std::uint32_t delta = in_.ConsumeIntegralInRange<std::uint32_t>(1, 3);
    switch (kind) {
    case 1: return iocp::connection_id(id.slot(), id.generation() - delta); // older (or 0, or 2^40 - k)
    case 2: return iocp::connection_id(id.slot(), id.generation() + delta); // not issued yet
    case 3: return iocp::connection_id(id.slot(), 0u);
    default: return id; // as issued: live or stale
    }
  }

  const char* name_;
  FuzzedDataProvider& in_;
  std::size_t capacity_;
  Map map_;
  // The model: each slot's live id (and its entry) and history, and every id issued.
  std::vector<slot_model> slots_;
  std::size_t live_count_ = 0;
  std::uint64_t frees_ = 0;
  std::vector<iocp::connection_id> issued_;
  id_set ever_issued_;
  std::uint64_t inserts_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The same operations on both policies.
  {
    FuzzedDataProvider in(data, size);
    session<iocp::mutex_map>("mutex_map", in).run();
  }
  {
    FuzzedDataProvider in(data, size);
    session<iocp::lockfree_map>("lockfree_map", in).run();
  }
  return 0;
}
