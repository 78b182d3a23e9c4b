#!/usr/bin/env python3
# Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
"""example/chat_server, tried as a user would: over loopback sockets, on each backend given.

    test_chat_server.py CHAT_SERVER [--backends io_uring,epoll]

For each backend, inline and with --relay-thread: the server prints one "listening on ADDRESS:PORT"
line; three members join (each sees the others' joins), a line sent in pieces reaches the two
others whole and not the sender; a member that leaves is announced; with --heartbeat a silent
member is pinged, then closed, while one that keeps talking stays; SIGINT stops it with exit 0.
Every wait is bounded; exit 1 on the first broken expectation."""

import argparse
import signal
import socket
import subprocess
import sys
import time

DEADLINE_S = 10.0


def fail(message):
    print(f"test_chat_server: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


class Member:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
        self.buffer = b""
        self.closed = False

    def read_until(self, done, what, timeout):
        """Reads until done() holds or the peer closes; fails with `what` once `timeout` has passed."""
        end = time.monotonic() + timeout
        while not done():
            left = end - time.monotonic()
            if left <= 0:
                fail(f"{what}; got {self.buffer!r}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            self.buffer += data

    def wait_for(self, needle, timeout=DEADLINE_S, count=1):
        """Reads until `needle` has arrived (`count` times); returns everything read so far."""
        self.read_until(lambda: self.buffer.count(needle) >= count or self.closed,
                        f"waited for {needle!r} x{count}", timeout)
        if self.buffer.count(needle) < count:
            fail(f"closed while waiting for {needle!r} x{count}; got {self.buffer!r}")
        return self.buffer

    def wait_closed(self, timeout=DEADLINE_S):
        self.read_until(lambda: self.closed, "the server did not close a silent member", timeout)

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()


def start(exe, args):
    p = subprocess.Popen([exe, "--port", "0"] + args, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if not line.startswith("listening on 127.0.0.1:"):
        p.kill()
        fail(f"first line {line!r}")
    return p, int(line.rsplit(":", 1)[1])


def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        code = p.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        p.kill()
        fail("did not stop on SIGINT")
    if code != 0:
        fail(f"exit status {code}")
    if p.stdout.read():
        fail("printed more than the listening line")


def run_room(exe, backend, extra):
    p, port = start(exe, ["--backend", backend] + extra)
    try:
        a = Member(port)
        a.wait_for(b"* welcome")
        b = Member(port)
        b.wait_for(b"* welcome")
        a.wait_for(b" joined\n")
        c = Member(port)
        c.wait_for(b"* welcome")
        a.wait_for(b" joined\n", count=2)  # b's and c's, in either order
        b.wait_for(b" joined\n", count=1)  # c's
        a.send(b"hel")
        time.sleep(0.05)
        a.send(b"lo from a\nand a second line\n")
        for m in (b, c):
            m.wait_for(b"hello from a\nand a second line\n")
        b.send(b"from b\n")
        a.wait_for(b"from b\n")
        c.wait_for(b"from b\n")
        time.sleep(0.1)
        if b"hello from a" in a.buffer or b"from b" in b.buffer:
            fail("a member got its own line back")
        c.close()
        a.wait_for(b" left\n")
        b.wait_for(b" left\n")
        a.close()
        b.close()
    finally:
        stop(p)


def run_heartbeat(exe, backend):
    p, port = start(exe, ["--backend", backend, "--heartbeat", "200"])
    try:
        silent = Member(port)
        talker = Member(port)
        silent.wait_for(b"* welcome")
        talker.wait_for(b"* welcome")
        started = time.monotonic()
        while not silent.closed and time.monotonic() - started < DEADLINE_S:
            talker.send(b"tick\n")
            silent.sock.settimeout(0.05)
            try:
                data = silent.sock.recv(65536)
                if not data:
                    silent.closed = True
                silent.buffer += data
            except socket.timeout:
                pass
            except ConnectionResetError:
                silent.closed = True
        if not silent.closed:
            fail(f"a silent member was not closed: {silent.buffer!r}")
        if b"* ping\n" not in silent.buffer or b"* no answer: closing\n" not in silent.buffer:
            fail(f"the silent member was not pinged before it was closed: {silent.buffer!r}")
        if time.monotonic() - started < 0.4:
            fail("closed before two heartbeat periods")
        silent.close()  # the server's close was graceful: it leaves once our side closes too
        talker.wait_for(b" left\n")
        talker.send(b"still here\n")
        talker.wait_for(b"* nobody else is here\n")  # it was kept, and is alone now
        if b"* no answer" in talker.buffer:
            fail(f"a member that kept talking was closed: {talker.buffer!r}")
        talker.close()
    finally:
        stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("chat_server")
    ap.add_argument("--backends", default="io_uring,epoll")
    args = ap.parse_args()
    for backend in args.backends.split(","):
        run_room(args.chat_server, backend, [])
        run_room(args.chat_server, backend, ["--relay-thread"])
        run_heartbeat(args.chat_server, backend)
        print(f"test_chat_server: {backend}: ok")


if __name__ == "__main__":
    main()
