// Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Reference echo server for the benchmarks: the textbook Boost.Asio echo, one thread running one
// io_context; each session reads up to 16 KiB with async_read_some and writes it back with
// async_write before reading again.
//
//   asio_echo [--port P] [--address A]
//
// Prints "listening on A:P" when ready and runs until SIGINT or SIGTERM.

#include <utility> // before Asio: Debian's Boost 1.74 Asio misses it in C++20 mode

#include <boost/asio.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

class session : public std::enable_shared_from_this<session> {
public:
  explicit session(tcp::socket socket) : socket_(std::move(socket)) {}
  void start() { read(); }

private:
  void read() {
    socket_.async_read_some(asio::buffer(data_),
                            [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                              if (!ec) self->write(n);
                            });
  }
  void write(std::size_t n) {
    asio::async_write(socket_, asio::buffer(data_, n),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket socket_;
  std::array<char, 16 * 1024> data_;
};

class server {
public:
  server(asio::io_context& io, const tcp::endpoint& where) : acceptor_(io) {
    acceptor_.open(where.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    // Accepted sockets inherit TCP_NODELAY from the listener (as the library sets it per connection).
    acceptor_.set_option(tcp::no_delay(true));
    acceptor_.bind(where);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    accept();
  }
  tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  void close() { acceptor_.close(); }

private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) std::make_shared<session>(std::move(socket))->start();
      accept();
    });
  }

  tcp::acceptor acceptor_;
};

} // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1";
  unsigned short port = 50002;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i + 1 < argc && a == "--port")
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    else if (i + 1 < argc && a == "--address")
      address = argv[++i];
    else {
      std::fprintf(stderr, "usage: asio_echo [--port P] [--address A]\n");
      return 2;
    }
  }
  try {
    asio::io_context io(1);
    server s(io, tcp::endpoint(asio::ip::make_address(address), port));
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
    std::printf("listening on %s:%u\n", s.local_endpoint().address().to_string().c_str(),
                unsigned(s.local_endpoint().port()));
    std::fflush(stdout);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
