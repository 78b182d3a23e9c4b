// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The work other threads post to one I/O thread: calls by id (send, shutdown, disconnect, abort,
// pause, resume), the user's posted functions and timers, and, on Windows, accepted sockets handed
// over. Records are appended, in order, to
// chunks of 64 KiB (a send's bytes copied into its record), so a burst of small sends costs one
// memcpy each and an allocation per chunk, not per send; the I/O thread takes every chunk at once,
// carries the records out in order and gives the chunks back, a few of them kept for reuse.
//
// Memory: chunks come from the Allocator policy (an instance of the inbox's own, used under its
// mutex) and are counted against the server-wide send budget (shared_send_budget) when they are
// allocated: a send that would need a chunk past the cap is refused (errc::send_queue_full) and
// posts nothing. The consuming thread takes a chunk's reservation over while it copies the chunk's
// sends into the connections' queues, so that what is counted moves with the bytes and nothing the
// inbox accepted is refused there for the cap's sake. Calls other than sends are never refused for
// the cap (a chunk they need is counted all the same, and takes no sends after them).
//
// The inbox holds at most `limit` bytes of standard chunks (the records of small sends): sends past
// it are refused too. A thread that posts small sends faster than the I/O thread takes them is told
// so early, and the memory such a burst leaves behind (freed chunks the allocator keeps for the
// threads that allocated them, as malloc's per-thread arenas do) stays small beside the cap. A
// large send's record has a chunk of its own, counted against the cap only.
//
// One lock per post, taken for a few dozen instructions and the copy of a small send; a large
// send's chunk is allocated under the lock and filled outside it, then linked (a second, short
// lock), so copying megabytes holds up neither other posters nor the I/O thread. One wake per batch
// (the first post into an empty inbox wakes the thread).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "iocp/allocator.hpp"
#include "iocp/connection_id.hpp"
#include "iocp/detail/send_budget.hpp"
#include "iocp/detail/send_queue.hpp"
#include "iocp/error.hpp"

namespace iocp::detail {

enum class command_kind : std::uint8_t {
  send,        // the bytes follow the record
  send_vector, // a posted_vector follows the record
  shutdown,    // `how` says which side
  disconnect,
  abort,
  pause,
  resume,
  adopt,        // an adopted_socket follows the record
  call,         // a posted_function for the connection `id` (run with nullptr if it has gone)
  run,          // a posted_function for the thread itself (server.post(f))
  arm_timer,    // a posted_timer; `id` is its connection's (empty: a server-wide timer)
  cancel_timer, // a posted_timer (only its sequence counts)
};

/// A timer armed or cancelled from another thread. The due time was read when it was posted, so
/// the time the record waits in the inbox does not make the timer late.
struct posted_timer {
  std::uint64_t sequence;
  std::int64_t due_ns;
  std::int64_t period_ns;
};

/// One posted call, followed by its payload (padded to `command_inbox::alignment`).
struct command_record {
  std::uint32_t payload_size;
  command_kind what;
  std::uint8_t how; // shutdown: the shutdown_type
  connection_id id;
  std::byte* payload() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
};
static_assert(sizeof(command_record) == 16);

/// A moved vector posted by id, with what was reserved for it from the send budget.
struct posted_vector {
  std::vector<std::byte> data;
  std::size_t reserved;
};

template <class Allocator>
class command_inbox {
public:
  static constexpr std::size_t alignment = alignof(std::max_align_t);
  static constexpr std::size_t chunk_size = 64 * 1024;
  /// Free chunks kept for reuse (not counted against the cap: they hold no sends).
  static constexpr unsigned cached_chunks = 2;

  /// `prototype`: the server's allocator to copy, or nullptr (see make_allocator).
  command_inbox(shared_send_budget& budget, std::size_t limit, const Allocator* prototype)
      : budget_(budget), alloc_(make_allocator(prototype)), limit_(limit < chunk_size ? chunk_size : limit) {}
  command_inbox(const command_inbox&) = delete;
  command_inbox& operator=(const command_inbox&) = delete;
  /// Records still inside must have been drained (the loop's destructor does it).
  ~command_inbox() {
    while (free_) {
      chunk* next = free_->next;
      alloc_.deallocate(free_, free_->size);
      free_ = next;
    }
  }

  /// Appends a record with `payload_size` bytes that `fill(std::byte*)` (noexcept) writes. A send
  /// (`counted`) is refused past the cap or the inbox's limit: errc::send_queue_full; without
  /// memory: not_enough_memory. `wake`: the inbox was empty: wake its thread.
  template <class Fill>
  std::error_code push(command_kind what, connection_id id, std::uint8_t how, std::size_t payload_size,
                       bool counted, Fill&& fill, bool& wake) {
    static_assert(std::is_nothrow_invocable_v<Fill&, std::byte*>);
    if (payload_size > UINT32_MAX - alignment) return make_error_code(std::errc::value_too_large);
    const std::size_t need = sizeof(command_record) + round_up(payload_size);
    if (need > chunk_size - header_size) {
      // A record of its own chunk (a large send): allocated under the lock, filled outside it, so
      // that copying megabytes holds up neither the other posters nor the thread's drain; linked
      // after. (The caller's later posts come after it; other threads' may come before.)
      chunk* c;
      {
        std::lock_guard lock(mutex_);
        if (std::error_code e = new_chunk(need, counted, c)) return e;
      }
      write_record(c, what, id, how, payload_size, need, fill);
      std::lock_guard lock(mutex_);
      link(c);
      wake = !has_work_;
      has_work_ = true;
      return {};
    }
    std::lock_guard lock(mutex_);
    if (!tail_ || tail_->size - tail_->used < need || (counted && tail_->uncounted)) {
      chunk* c;
      if (std::error_code e = new_chunk(need, counted, c)) return e;
      link(c);
    }
    write_record(tail_, what, id, how, payload_size, need, fill);
    wake = !has_work_;
    has_work_ = true;
    return {};
  }

  /// On the owning thread: takes every record posted so far and calls visit(command_record&) for
  /// each, in order. Before a chunk's records, `local` takes over the chunk's reservation; after
  /// them the chunk is given back (and local.settle() returns what its records did not keep).
  template <class Visit>
  void drain(local_send_budget& local, Visit&& visit) {
    chunk* list;
    {
      std::lock_guard lock(mutex_);
      list = std::exchange(head_, nullptr);
      tail_ = nullptr;
      has_work_ = false;
    }
    while (list) {
      chunk* c = list;
      list = c->next;
      local.adopt(std::exchange(c->reserved, 0));
      for (std::size_t at = header_size; at < c->used;) {
        auto& record = *reinterpret_cast<command_record*>(reinterpret_cast<std::byte*>(c) + at);
        at += sizeof(command_record) + round_up(record.payload_size);
        visit(record);
      }
      local.settle();
      give_back(c);
    }
  }

  /// Whether anything was posted that drain() has not taken (for tests and the destructor).
  bool empty() const {
    std::lock_guard lock(mutex_);
    return head_ == nullptr;
  }

private:
  struct chunk {
    chunk* next = nullptr;
    std::size_t size = 0;     // bytes allocated, this header included
    std::size_t used = 0;     // bytes in use, this header included
    std::size_t reserved = 0; // counted against the send budget for it
    bool uncounted = false;   // allocated past the cap for a call that is not a send: no sends in it
  };
  static constexpr std::size_t round_up(std::size_t n) noexcept {
    return (n + alignment - 1) & ~(alignment - 1);
  }
  static constexpr std::size_t header_size = round_up(sizeof(chunk));

  template <class Fill>
  static void write_record(chunk* c, command_kind what, connection_id id, std::uint8_t how,
                           std::size_t payload_size, std::size_t need, Fill& fill) noexcept {
    auto* record = ::new (reinterpret_cast<std::byte*>(c) + c->used) command_record{};
    record->payload_size = static_cast<std::uint32_t>(payload_size);
    record->what = what;
    record->how = how;
    record->id = id;
    fill(record->payload());
    c->used += need;
  }

  /// Under the lock: the list's new tail.
  void link(chunk* c) noexcept {
    if (tail_)
      tail_->next = c;
    else
      head_ = c;
    tail_ = c;
  }

  /// Under the lock: a chunk (not linked yet) for a record of `need` bytes: a standard one (from
  /// the cache if it has one), or one of the record's own size.
  std::error_code new_chunk(std::size_t need, bool counted, chunk*& result) {
    std::size_t size =
        need <= chunk_size - header_size ? chunk_size : allocation_size(alloc_, header_size + need);
    if (counted && size == chunk_size && held_ + size > limit_) return make_error_code(errc::send_queue_full);
    // A large send's record becomes a queue block of about its size: the reservation covers that
    // block's header too, so that taking it over never falls short.
    std::size_t reserve = size + (size > chunk_size ? send_block_overhead : 0);
    const bool within_cap = budget_.reserve(reserve);
    if (!within_cap) {
      if (counted) return make_error_code(errc::send_queue_full);
      // A call that is not a send, past the cap: a small chunk (room for a few such calls),
      // counted all the same.
      size = reserve = allocation_size(alloc_, header_size + 8 * need);
      budget_.add_over_limit(reserve);
    }
    chunk* c = nullptr;
    if (size == chunk_size && free_) {
      c = std::exchange(free_, free_->next);
      --free_count_;
    } else {
      try {
        c = static_cast<chunk*>(alloc_.allocate(size));
      } catch (const std::bad_alloc&) {
        budget_.release(reserve);
        return make_error_code(std::errc::not_enough_memory);
      }
    }
    if (size == chunk_size) held_ += size;
    ::new (c) chunk{};
    c->size = size;
    c->used = header_size;
    c->reserved = reserve;
    c->uncounted = !within_cap;
    result = c;
    return {};
  }

  void give_back(chunk* c) noexcept {
    std::lock_guard lock(mutex_);
    if (c->size == chunk_size) held_ -= c->size;
    if (c->size == chunk_size && free_count_ < cached_chunks) {
      c->next = free_;
      free_ = c;
      ++free_count_;
      return;
    }
    alloc_.deallocate(c, c->size);
  }

  mutable std::mutex mutex_;
  shared_send_budget& budget_;
  Allocator alloc_; // guarded by mutex_ (not [[no_unique_address]]: make_allocator returns it)
  chunk* head_ = nullptr;
  chunk* tail_ = nullptr;
  chunk* free_ = nullptr;
  unsigned free_count_ = 0;
  std::size_t held_ = 0; // bytes of standard chunks posted into and not given back yet
  const std::size_t limit_;
  bool has_work_ = false; // records were posted since the last drain: the thread was woken
};

} // namespace iocp::detail
