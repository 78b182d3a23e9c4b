#!/usr/bin/env python3
# Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
"""Server memory per idle connection: opens N loopback connections to echo_server (each echoes one
64-byte message, then stays idle) and reports the growth of the server's resident memory per
connection, for each backend. Target: at most 1 KiB.

    python3 test/bench/idle_memory.py BUILD_DIR [--connections 10000] [--backends io_uring,epoll]
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_fd_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def measure(echo_server, backend, count):
    server = subprocess.Popen([echo_server, "--port", "0", "--backend", backend, "--threads", "2"],
                              stdout=subprocess.PIPE, text=True, preexec_fn=raise_fd_limit)
    sockets = []
    try:
        port = int(server.stdout.readline().strip().rsplit(":", 1)[1])
        # Warm up: pools, rings and thread stacks are touched before the baseline.
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            s.sendall(b"w" * 64)
            s.recv(64)
            sockets.append(s)
        time.sleep(0.3)
        before = rss_kib(server.pid)
        for i in range(count):
            s = socket.socket()
            s.settimeout(20)
            s.bind((f"127.0.0.{2 + i % 200}", 0))  # spread four-tuples: no ephemeral-port shortage
            s.connect(("127.0.0.1", port))
            sockets.append(s)
        for s in sockets[50:]:
            s.sendall(b"y" * 64)
        for s in sockets[50:]:
            if len(s.recv(64)) != 64:
                raise RuntimeError("short echo")
        time.sleep(0.5)
        after = rss_kib(server.pid)
        return (after - before) * 1024 / count
    finally:
        for s in sockets:
            s.close()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build_dir")
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--backends", default="io_uring,epoll")
    p.add_argument("--limit", type=float, default=1024.0, help="bytes per connection; above it, exit 1")
    args = p.parse_args()
    hard = raise_fd_limit()
    count = min(args.connections, hard - 200)
    echo_server = os.path.join(args.build_dir, "example", "echo_server")
    failed = False
    for backend in args.backends.split(","):
        per_connection = measure(echo_server, backend, count)
        ok = per_connection <= args.limit
        failed |= not ok
        print(f"{backend}: {count} idle connections: {per_connection:.0f} bytes of server memory each "
              f"({'within' if ok else 'OVER'} {args.limit:.0f})")
        print(f"BENCH workload=idle-{count} server=iocp-{backend} bytes_per_connection={per_connection:.0f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
