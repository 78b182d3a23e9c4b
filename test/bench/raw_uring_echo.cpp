// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Reference echo server for the benchmarks, the "no library" bar: raw io_uring through syscall(2)
// and <linux/io_uring.h> only (no liburing), one thread.
//
//  - one multishot accept on the listening socket;
//  - per connection one multishot recv that picks its buffers from a provided-buffer ring
//    (IORING_REGISTER_PBUF_RING, buffer group 0);
//  - each received buffer is sent back as it is (IORING_OP_SEND, one send in flight per
//    connection, the others queued in order), then handed back to the buffer ring;
//  - a recv that ran out of buffers (-ENOBUFS) is re-armed after the batch of completions in which
//    sends gave buffers back;
//  - ring set up with SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them (6.1+), else
//    COOP_TASKRUN, else plain.
//
//   raw_uring_echo [--port P] [--address A] [--buffers N] [--buffer-size B]
//
// Prints "listening on A:P" when ready and runs until SIGINT or SIGTERM.

#include <arpa/inet.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

volatile std::sig_atomic_t stop_requested = 0;

[[noreturn]] void die(const char* what, int error = errno) {
  std::fprintf(stderr, "raw_uring_echo: %s: %s\n", what, std::strerror(error));
  std::exit(1);
}

int io_uring_setup(unsigned entries, io_uring_params* p) {
  return int(::syscall(__NR_io_uring_setup, entries, p));
}
int io_uring_enter(int fd, unsigned submit, unsigned wait, unsigned flags) {
  return int(::syscall(__NR_io_uring_enter, fd, submit, wait, flags, nullptr, 0));
}
int io_uring_register(int fd, unsigned op, void* arg, unsigned n) {
  return int(::syscall(__NR_io_uring_register, fd, op, arg, n));
}

template <class T>
T load_acquire(const T* p) {
  return std::atomic_ref<const T>(*p).load(std::memory_order_acquire);
}
template <class T>
void store_release(T* p, T v) {
  std::atomic_ref<T>(*p).store(v, std::memory_order_release);
}

// ---- the ring --------------------------------------------------------------------------------

class ring {
public:
  void open(unsigned entries) {
    const std::uint32_t attempts[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
            IORING_SETUP_CQSIZE,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
        IORING_SETUP_CQSIZE,
    };
    io_uring_params p{};
    for (std::uint32_t flags : attempts) {
      std::memset(&p, 0, sizeof p);
      p.flags = flags;
      p.cq_entries = entries * 8;
      fd_ = io_uring_setup(entries, &p);
      if (fd_ >= 0 || errno != EINVAL) break;
    }
    if (fd_ < 0) die("io_uring_setup");
    setup_flags_ = p.flags;

    std::size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(std::uint32_t);
    std::size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    bool single = p.features & IORING_FEAT_SINGLE_MMAP;
    if (single) sq_size = cq_size = std::max(sq_size, cq_size);
    void* sq =
        ::mmap(nullptr, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) die("mmap sq");
    void* cq = sq;
    if (!single) {
      cq = ::mmap(nullptr, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                  IORING_OFF_CQ_RING);
      if (cq == MAP_FAILED) die("mmap cq");
    }
    sqes_ = static_cast<io_uring_sqe*>(::mmap(nullptr, p.sq_entries * sizeof(io_uring_sqe),
                                              PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                                              IORING_OFF_SQES));
    if (sqes_ == MAP_FAILED) die("mmap sqes");
    auto* s = static_cast<char*>(sq);
    sq_head_ = reinterpret_cast<std::uint32_t*>(s + p.sq_off.head);
    sq_tail_ = reinterpret_cast<std::uint32_t*>(s + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<std::uint32_t*>(s + p.sq_off.ring_mask);
    sq_entries_ = p.sq_entries;
    auto* array = reinterpret_cast<std::uint32_t*>(s + p.sq_off.array);
    for (std::uint32_t i = 0; i < p.sq_entries; ++i)
      array[i] = i;
    auto* c = static_cast<char*>(cq);
    cq_head_ = reinterpret_cast<std::uint32_t*>(c + p.cq_off.head);
    cq_tail_ = reinterpret_cast<std::uint32_t*>(c + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<std::uint32_t*>(c + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(c + p.cq_off.cqes);
    local_tail_ = *sq_tail_;
  }

  int fd() const { return fd_; }
  std::uint32_t setup_flags() const { return setup_flags_; }

  io_uring_sqe* sqe() {
    for (;;) {
      if (local_tail_ - load_acquire(sq_head_) < sq_entries_) {
        io_uring_sqe* e = &sqes_[local_tail_ & sq_mask_];
        ++local_tail_;
        std::memset(e, 0, sizeof *e);
        return e;
      }
      enter(0); // full: submit what is there
    }
  }

  /// Publishes the queued SQEs, submits them and waits for `wait` completions.
  int enter(unsigned wait) {
    store_release(sq_tail_, local_tail_);
    unsigned pending = local_tail_ - load_acquire(sq_head_);
    unsigned flags = wait || (setup_flags_ & IORING_SETUP_DEFER_TASKRUN) ? IORING_ENTER_GETEVENTS : 0u;
    int r = io_uring_enter(fd_, pending, wait, flags);
    return r < 0 ? -errno : r;
  }

  template <class F>
  void for_each_cqe(F&& f) {
    std::uint32_t head = *cq_head_;
    for (;;) {
      std::uint32_t tail = load_acquire(cq_tail_);
      if (head == tail) break;
      for (; head != tail; ++head) {
        io_uring_cqe cqe = cqes_[head & cq_mask_];
        store_release(cq_head_, head + 1);
        f(cqe);
      }
    }
  }

private:
  int fd_ = -1;
  std::uint32_t setup_flags_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  std::uint32_t *sq_head_ = nullptr, *sq_tail_ = nullptr;
  std::uint32_t sq_mask_ = 0, sq_entries_ = 0, local_tail_ = 0;
  std::uint32_t *cq_head_ = nullptr, *cq_tail_ = nullptr;
  std::uint32_t cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
};

// ---- the provided-buffer ring ----------------------------------------------------------------

class buffer_ring {
public:
  static constexpr std::uint16_t group = 0;

  void open(ring& r, unsigned count, unsigned size) {
    count_ = count;
    size_ = size;
    mask_ = count - 1;
    std::size_t ring_bytes = count * sizeof(io_uring_buf);
    ring_bytes = (ring_bytes + 4095) & ~std::size_t(4095);
    void* ring_memory = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (ring_memory == MAP_FAILED) die("mmap buffer ring");
    // Not through struct io_uring_buf_ring: in C++ its __DECLARE_FLEX_ARRAY wraps an empty struct
    // of size 1, which moves `bufs` to offset 8. The ring is an array of io_uring_buf whose first
    // entry's `resv` field is the tail.
    bufs_ = static_cast<io_uring_buf*>(ring_memory);
    static_assert(sizeof(io_uring_buf) == 16 && offsetof(io_uring_buf, resv) == 14);
    memory_ = static_cast<char*>(::mmap(nullptr, std::size_t(count) * size, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
    if (memory_ == MAP_FAILED) die("mmap buffers");
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(bufs_);
    reg.ring_entries = count;
    reg.bgid = group;
    if (io_uring_register(r.fd(), IORING_REGISTER_PBUF_RING, &reg, 1) != 0)
      die("io_uring_register(PBUF_RING)");
    held_ = count;
    for (unsigned i = 0; i < count; ++i)
      put(std::uint16_t(i));
    publish();
  }

  char* data(std::uint16_t bid) const { return memory_ + std::size_t(bid) * size_; }

  /// A completion handed us a buffer.
  void took() { ++held_; }
  /// Buffers the kernel can pick from (once published).
  unsigned available() const { return count_ - held_; }

  /// Hands a buffer back to the kernel (visible after publish()).
  void put(std::uint16_t bid) {
    --held_;
    io_uring_buf& b = bufs_[tail_ & mask_];
    b.addr = reinterpret_cast<std::uint64_t>(data(bid));
    b.len = size_;
    b.bid = bid;
    ++tail_;
    dirty_ = true;
  }
  void publish() {
    if (!dirty_) return;
    store_release(&bufs_[0].resv, tail_);
    dirty_ = false;
  }

private:
  io_uring_buf* bufs_ = nullptr;
  char* memory_ = nullptr;
  unsigned count_ = 0, size_ = 0, mask_ = 0;
  unsigned held_ = 0; // buffers given to us and not yet put back
  std::uint16_t tail_ = 0;
  bool dirty_ = false;
};

// ---- the server ------------------------------------------------------------------------------

enum : std::uint64_t { op_accept = 1, op_recv = 2, op_send = 3, op_mask = 7 };

struct chunk {
  std::uint16_t bid;
  std::uint32_t offset, length;
};

struct connection {
  int fd = -1;
  bool recv_armed = false;
  bool sending = false;
  bool eof = false;
  bool failed = false;
  bool starved = false;
  std::vector<chunk> queue; // received buffers waiting to go back, in order; queue[head] in flight
  std::size_t head = 0;
};

class server {
public:
  server(int listener, unsigned buffers, unsigned buffer_size) : listener_(listener) {
    ring_.open(1024);
    buffers_.open(ring_, buffers, buffer_size);
    arm_accept();
  }

  void run() {
    while (!stop_requested) {
      buffers_.publish();
      int r = ring_.enter(1);
      if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) die("io_uring_enter", -r);
      ring_.for_each_cqe([&](const io_uring_cqe& cqe) { dispatch(cqe); });
      // A recv may have run dry before the sends of this batch gave buffers back.
      if (!starved_.empty() && buffers_.available() > 0) rearm_starved();
    }
  }

  std::uint32_t setup_flags() const { return ring_.setup_flags(); }

private:
  void arm_accept() {
    io_uring_sqe* e = ring_.sqe();
    e->opcode = IORING_OP_ACCEPT;
    e->fd = listener_;
    e->ioprio = IORING_ACCEPT_MULTISHOT;
    e->accept_flags = SOCK_CLOEXEC;
    e->user_data = op_accept;
  }

  void arm_recv(connection* c) {
    c->recv_armed = true;
    io_uring_sqe* e = ring_.sqe();
    e->opcode = IORING_OP_RECV;
    e->fd = c->fd;
    e->ioprio = IORING_RECV_MULTISHOT;
    e->flags = IOSQE_BUFFER_SELECT;
    e->buf_group = buffer_ring::group;
    e->user_data = reinterpret_cast<std::uint64_t>(c) | op_recv;
  }

  void send_head(connection* c) {
    const chunk& k = c->queue[c->head];
    c->sending = true;
    io_uring_sqe* e = ring_.sqe();
    e->opcode = IORING_OP_SEND;
    e->fd = c->fd;
    e->addr = reinterpret_cast<std::uint64_t>(buffers_.data(k.bid) + k.offset);
    e->len = k.length - k.offset;
    e->msg_flags = MSG_NOSIGNAL;
    e->user_data = reinterpret_cast<std::uint64_t>(c) | op_send;
  }

  void dispatch(const io_uring_cqe& cqe) {
    switch (cqe.user_data & op_mask) {
    case op_accept: return on_accept(cqe);
    case op_recv: return on_recv(reinterpret_cast<connection*>(cqe.user_data & ~op_mask), cqe);
    case op_send: return on_send(reinterpret_cast<connection*>(cqe.user_data & ~op_mask), cqe);
    default: return;
    }
  }

  void on_accept(const io_uring_cqe& cqe) {
    if (cqe.res >= 0) {
      auto* c = new connection;
      c->fd = cqe.res;
      c->queue.reserve(4);
      arm_recv(c);
    } else if (cqe.res != -EAGAIN && cqe.res != -ECONNABORTED && cqe.res != -EINTR) {
      std::fprintf(stderr, "raw_uring_echo: accept: %s\n", std::strerror(-cqe.res));
    }
    if (!(cqe.flags & IORING_CQE_F_MORE)) arm_accept();
  }

  void on_recv(connection* c, const io_uring_cqe& cqe) {
    const bool more = cqe.flags & IORING_CQE_F_MORE;
    if (cqe.flags & IORING_CQE_F_BUFFER) buffers_.took();
    if (!more) c->recv_armed = false;
    if (cqe.res > 0) {
      auto bid = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
      if (c->failed) {
        buffers_.put(bid);
      } else {
        c->queue.push_back({bid, 0, static_cast<std::uint32_t>(cqe.res)});
        if (!c->sending) send_head(c);
      }
      if (!more && !c->failed) arm_recv(c);
    } else {
      if (cqe.flags & IORING_CQE_F_BUFFER)
        buffers_.put(static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
      if (cqe.res == 0) {
        c->eof = true;
      } else if (cqe.res == -ENOBUFS) {
        if (!more && !c->starved) { // every buffer waits to be sent: try again when one is back
          c->starved = true;
          starved_.push_back(c);
        }
      } else {
        fail(c);
      }
    }
    maybe_close(c);
  }

  void on_send(connection* c, const io_uring_cqe& cqe) {
    c->sending = false;
    if (cqe.res < 0) {
      fail(c);
    } else {
      chunk& k = c->queue[c->head];
      k.offset += static_cast<std::uint32_t>(cqe.res);
      if (k.offset >= k.length) {
        buffers_.put(k.bid);
        if (++c->head == c->queue.size()) {
          c->queue.clear();
          c->head = 0;
        }
      }
      if (!c->failed && c->head < c->queue.size()) send_head(c);
    }
    maybe_close(c);
  }

  void rearm_starved() {
    if (starved_.empty()) return;
    for (connection* s : starved_) {
      s->starved = false;
      if (!s->eof && !s->failed && !s->recv_armed) arm_recv(s);
    }
    starved_.clear();
  }

  void fail(connection* c) {
    if (c->failed) return;
    c->failed = true;
    // Buffers not in flight go back now; the recv (if armed) ends with the shutdown.
    std::size_t keep = c->sending ? c->head + 1 : c->head;
    for (std::size_t i = keep; i < c->queue.size(); ++i)
      buffers_.put(c->queue[i].bid);
    c->queue.resize(keep);
    if (c->recv_armed) ::shutdown(c->fd, SHUT_RDWR);
  }

  void maybe_close(connection* c) {
    if (!(c->eof || c->failed) || c->recv_armed || c->sending) return;
    if (c->eof && !c->failed && c->head < c->queue.size()) return; // finish echoing first
    for (std::size_t i = c->head; i < c->queue.size(); ++i)
      buffers_.put(c->queue[i].bid);
    if (c->starved) starved_.erase(std::find(starved_.begin(), starved_.end(), c));
    ::close(c->fd);
    delete c;
  }

  ring ring_;
  buffer_ring buffers_;
  int listener_;
  std::vector<connection*> starved_;
};

} // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1";
  int port = 50003;
  unsigned buffers = 1024, buffer_size = 16 * 1024;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i + 1 < argc && a == "--port")
      port = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--address")
      address = argv[++i];
    else if (i + 1 < argc && a == "--buffers")
      buffers = unsigned(std::atoi(argv[++i]));
    else if (i + 1 < argc && a == "--buffer-size")
      buffer_size = unsigned(std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: raw_uring_echo [--port P] [--address A] [--buffers N (power of 2)] "
                           "[--buffer-size B]\n");
      return 2;
    }
  }
  if (buffers == 0 || buffers > 32768 || (buffers & (buffers - 1)) != 0 || buffer_size == 0) {
    std::fprintf(stderr, "raw_uring_echo: --buffers must be a power of two up to 32768\n");
    return 2;
  }

  struct sigaction sa {};
  sa.sa_handler = [](int) { stop_requested = 1; };
  sigaction(SIGINT, &sa, nullptr); // no SA_RESTART: io_uring_enter returns EINTR
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket");
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY from the listener (as the library sets it per connection).
  ::setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &sin.sin_addr) != 1) die("inet_pton");
  if (::bind(listener, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) die("bind");
  if (::listen(listener, SOMAXCONN) != 0) die("listen");

  server s(listener, buffers, buffer_size);
  std::printf("listening on %s:%d\n", address.c_str(), port);
  std::fflush(stdout);
  s.run();
  ::close(listener);
  return 0;
}
