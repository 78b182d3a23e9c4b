// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// libFuzzer target for iocp::detail::send_queue. The input is a sequence of operations, as a
// connection makes them: copied sends, moved vectors, lent receive buffers (given back by id), a
// send started from front() that more appends may follow before it completes with any part of its
// bytes, and clear(). A model (the std::string of queued bytes) checks that the bytes come out in
// order and byte-exact, that bytes() and empty() are right, and that each lent buffer is given back
// exactly once, as soon as its last byte is consumed (or on clear), in order. A copied send's
// source and a given-back buffer are freed at once, so ASan reports any later read of them; an
// allocator wrapper checks every block is freed with the size it was allocated with, and ASan's
// leak check catches anything else left behind.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "iocp/allocator.hpp"
#include "iocp/detail/send_budget.hpp"
#include "iocp/detail/send_queue.hpp"

#include "fuzz_checks.hpp"

namespace {

using fuzz::check;
using fuzz::checked_allocator;

/// The bytes queued are a position-dependent pattern (repeating after more than the model can
/// hold), so bytes out of order or repeated do not compare equal.
constexpr std::size_t pattern_size = 1 << 19;
const std::vector<std::byte>& pattern() {
  static const std::vector<std::byte> bytes = [] {
    std::vector<std::byte> v(pattern_size);
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = static_cast<std::byte>((i * 0x9E3779B97F4A7C15ull) >> 56);
    return v;
  }();
  return bytes;
}

template <class Allocator>
class session {
public:
  explicit session(FuzzedDataProvider& in) : in_(in) {}

  void run() {
    while (in_.remaining_bytes() > 0) {
      switch (in_.ConsumeIntegralInRange<int>(0, 6)) {
      case 0: append_copy(); break;
      case 1: append_vector(); break;
      case 2: append_lent(); break;
      case 3: start_send(); break;
      case 4:
      case 5: complete_send(); break;
      default: clear(); break;
      }
      check(queue_.bytes() == unsent(), "bytes() differs from the model");
      // Empty exactly when nothing is left to send and no lent buffer (an empty one included)
      // waits to be given back.
      check(queue_.empty() == (unsent() == 0 && lent_order_.empty()), "empty() differs from the model");
    }
    clear();
  }

private:
  // Sizes around the queue's thresholds (256-byte small blocks, 16 KiB - 64 coalescing blocks).
  std::size_t next_size() {
    switch (in_.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
    case 1:
    case 2: return in_.ConsumeIntegralInRange<std::size_t>(0, 16);
    case 3:
    case 4: return in_.ConsumeIntegralInRange<std::size_t>(0, 600);
    case 5: return in_.ConsumeIntegralInRange<std::size_t>(16 * 1024 - 600, 16 * 1024 + 64);
    default: return in_.ConsumeIntegralInRange<std::size_t>(0, 3 * 16 * 1024);
    }
  }
  std::size_t unsent() const { return model_.size() - consumed_in_model_; }
  std::vector<std::byte> next_bytes(std::size_t n) {
    if (unsent() + n > max_queued) n = 0;
    std::vector<std::byte> bytes(n);
    for (std::size_t done = 0; done < n;) {
      const std::size_t at = (total_queued_ + done) % pattern_size;
      const std::size_t part = std::min(n - done, pattern_size - at);
      std::memcpy(bytes.data() + done, pattern().data() + at, part);
      done += part;
    }
    return bytes;
  }
  void model_append(const std::vector<std::byte>& bytes) {
    if (bytes.empty()) return;
    model_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    total_queued_ += bytes.size();
  }

  void append_copy() {
    auto bytes = std::make_unique<std::vector<std::byte>>(next_bytes(next_size()));
    const std::size_t before = queue_.bytes();
    if (queue_.append(alloc_, budget_, std::span<const std::byte>(*bytes)))
      model_append(*bytes);
    else
      check(queue_.bytes() == before, "a refused append queued something");
    bytes.reset(); // the queue must have copied them
  }

  void append_vector() {
    std::vector<std::byte> bytes = next_bytes(next_size());
    const std::vector<std::byte> copy = bytes;
    const std::size_t before = queue_.bytes();
    if (queue_.append(alloc_, budget_, std::move(bytes)))
      model_append(copy);
    else
      check(queue_.bytes() == before, "a refused append queued something");
  }

  /// A receive buffer the backend lends (it may lend an empty span of it, as send() of an empty
  /// span would): exactly the bytes, so ASan sees a read past them, and freed when given back.
  void append_lent() {
    std::uint16_t id = in_.ConsumeIntegral<std::uint16_t>();
    if (lent_.count(id)) return; // the backend lends each buffer once until it is given back
    auto bytes = next_bytes(next_size());
    auto buffer = std::make_unique<std::byte[]>(std::max<std::size_t>(bytes.size(), 1));
    if (!bytes.empty()) std::memcpy(buffer.get(), bytes.data(), bytes.size());
    // Sometimes the backend would not lend it (outside on_received, half the ring out): nothing
    // is queued then, and the node allocated for it is freed.
    const std::size_t before = queue_.bytes();
    if (!queue_.append_borrowed(alloc_, std::span<const std::byte>(buffer.get(), bytes.size()),
                                [&](std::uint16_t& lent) noexcept {
                                  lent = id;
                                  return !in_.ConsumeBool();
                                })) {
      check(queue_.bytes() == before, "a refused loan queued something");
      return;
    }
    lent_.emplace(id, std::move(buffer));
    lent_order_.push_back({id, total_queued_, total_queued_ + bytes.size()});
    model_append(bytes);
  }

  void start_send() {
    if (in_flight_ || queue_.empty()) return;
    in_flight_ = queue_.front();
    check_front_bytes(*in_flight_);
  }

  /// The kernel took `n` bytes of the send in flight (0 included); appends may have happened since
  /// it started, and the range it was given must still hold the same bytes.
  void complete_send() {
    if (!in_flight_) return;
    const std::span<const std::byte> sent = *in_flight_;
    in_flight_.reset();
    check_front_bytes(sent);
    const std::span<const std::byte> front = queue_.front();
    check(front.data() == sent.data() && front.size() >= sent.size(), "the block in flight moved or shrank");
    const std::size_t n = in_.ConsumeIntegralInRange<std::size_t>(0, sent.size());
    consuming_to_ = total_consumed_ + n;
    queue_.consume(alloc_, budget_, n, give_back());
    total_consumed_ += n;
    consumed_in_model_ += n;
    if (consumed_in_model_ > max_queued) {
      model_.erase(0, consumed_in_model_);
      consumed_in_model_ = 0;
    }
    // Lent buffers: given back once the consumed position passed their last byte, and only then (an
    // empty one at the position just reached may wait for the next consume).
    for (const lent_range& r : lent_order_) {
      check(r.end > total_consumed_ || (r.end == total_consumed_ && r.start == r.end),
            "a lent buffer whose bytes were all sent was not given back");
    }
  }

  void clear() {
    in_flight_.reset();
    clearing_ = true;
    queue_.clear(alloc_, budget_, give_back());
    clearing_ = false;
    check(budget_.queued() == 0, "the budget still counts memory after clear()");
    check(lent_.empty() && lent_order_.empty(), "clear() did not give back every lent buffer");
    total_consumed_ += unsent();
    model_.clear();
    consumed_in_model_ = 0;
  }

  auto give_back() {
    return [this](std::uint16_t id) noexcept {
      check(!lent_order_.empty(), "gave back a buffer that is not lent");
      const lent_range r = lent_order_.front();
      check(r.id == id, "gave back a buffer out of order, or one that is not lent");
      check(clearing_ || r.end <= consuming_to_, "gave back a lent buffer before its bytes were sent");
      lent_order_.pop_front();
      lent_.erase(id); // frees it: a later read of it is a use after free
    };
  }

  void check_front_bytes(std::span<const std::byte> span) {
    check(span.size() <= unsent(), "front() holds more bytes than were queued");
    check(std::memcmp(span.data(), model_.data() + consumed_in_model_, span.size()) == 0,
          "front() bytes differ from the model: out of order or corrupted");
  }

  static constexpr std::size_t max_queued = 256 * 1024;

  struct lent_range {
    std::uint16_t id;
    std::uint64_t start, end; // positions in everything ever queued
  };

  FuzzedDataProvider& in_;
  Allocator alloc_;
  // The server-wide send-memory limit, sometimes small enough to refuse appends.
  iocp::detail::shared_send_budget shared_budget_{
      in_.ConsumeBool() ? SIZE_MAX : in_.ConsumeIntegralInRange<std::size_t>(0, 512 * 1024)};
  iocp::detail::local_send_budget budget_{shared_budget_};
  iocp::detail::send_queue<Allocator, iocp::detail::local_send_budget> queue_;
  std::string model_; // queued bytes; the first consumed_in_model_ are already sent
  std::size_t consumed_in_model_ = 0;
  std::uint64_t total_queued_ = 0, total_consumed_ = 0, consuming_to_ = 0;
  std::optional<std::span<const std::byte>> in_flight_;
  std::map<std::uint16_t, std::unique_ptr<std::byte[]>> lent_;
  std::deque<lent_range> lent_order_;
  bool clearing_ = false;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeBool()) {
    session<checked_allocator<iocp::pooled_allocator>>(in).run();
  } else {
    session<checked_allocator<iocp::plain_allocator>>(in).run();
  }
  return 0;
}
