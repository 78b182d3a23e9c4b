// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#pragma once

// The server-wide cap on queued send bytes (server_options::max_send_queue_total), without an
// atomic operation per message: each I/O thread reserves from the shared total in chunks and
// counts its own connections' bytes against what it holds. A thread gives chunks back once it
// holds several more than it uses, so the slack is a few chunks per thread.

#include <atomic>
#include <cstddef>

namespace iocp::detail {

class shared_send_budget {
public:
  explicit shared_send_budget(std::size_t limit) noexcept : limit_(limit) {}

  bool reserve(std::size_t n) noexcept {
    std::size_t before = reserved_.fetch_add(n, std::memory_order_relaxed);
    if (before + n <= limit_ && before + n >= before) return true;
    reserved_.fetch_sub(n, std::memory_order_relaxed);
    return false;
  }
  /// Counts `n` bytes even past the limit: memory that work other than sends needs (a posted
  /// abort must not be refused because sends filled the cap), which sends then find taken.
  void add_over_limit(std::size_t n) noexcept { reserved_.fetch_add(n, std::memory_order_relaxed); }
  void release(std::size_t n) noexcept { reserved_.fetch_sub(n, std::memory_order_relaxed); }
  std::size_t reserved() const noexcept { return reserved_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::size_t> reserved_{0};
  std::size_t limit_;
};

/// One I/O thread's share: touched only by that thread.
class local_send_budget {
public:
  static constexpr std::size_t chunk = 64 * 1024;

  explicit local_send_budget(shared_send_budget& shared) noexcept : shared_(shared) {}
  local_send_budget(const local_send_budget&) = delete;
  local_send_budget& operator=(const local_send_budget&) = delete;
  ~local_send_budget() { shared_.release(reserved_); }

  /// Whether `n` more bytes may be queued; reserves what is missing from the shared total.
  bool admit(std::size_t n) noexcept {
    if (n <= reserved_ - queued_) return true;
    std::size_t missing = n - (reserved_ - queued_);
    std::size_t want = (missing + chunk - 1) / chunk * chunk;
    if (want < missing) return false;
    if (!shared_.reserve(want)) {
      if (!over_limit_allowed_) return false;
      shared_.add_over_limit(want);
    }
    reserved_ += want;
    return true;
  }
  /// While it lives, admit() takes what it needs past the limit too: for sends that were counted
  /// when they were posted (their record in the inbox), and that the queues they join may need a
  /// little more for (a block opened for a few bytes). Later sends then find the cap taken.
  class allow_over_limit {
  public:
    explicit allow_over_limit(local_send_budget& b) noexcept : b_(b) { b_.over_limit_allowed_ = true; }
    ~allow_over_limit() { b_.over_limit_allowed_ = false; }
    allow_over_limit(const allow_over_limit&) = delete;
    allow_over_limit& operator=(const allow_over_limit&) = delete;

  private:
    local_send_budget& b_;
  };
  /// Takes over `n` bytes that another thread reserved from the shared total on this thread's
  /// behalf (a send posted to it); settle() gives back what is not used.
  void adopt(std::size_t n) noexcept { reserved_ += n; }
  /// Bytes admitted and now queued; bytes sent or dropped.
  void add(std::size_t n) noexcept { queued_ += n; }
  void remove(std::size_t n) noexcept {
    queued_ -= n;
    settle();
  }
  /// Gives back what this thread holds beyond a few chunks it does not use: after remove(), and
  /// after bytes admitted were not queued after all (the kernel took them at once).
  void settle() noexcept {
    if (reserved_ - queued_ > 4 * chunk) {
      std::size_t give = (reserved_ - queued_ - chunk) / chunk * chunk;
      shared_.release(give);
      reserved_ -= give;
    }
  }
  std::size_t queued() const noexcept { return queued_; }

private:
  shared_send_budget& shared_;
  std::size_t queued_ = 0;
  std::size_t reserved_ = 0;
  bool over_limit_allowed_ = false;
};

} // namespace iocp::detail
