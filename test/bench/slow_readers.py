#!/usr/bin/env python3
# Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
"""Server memory under clients that send and never read (slow readers), on loopback.

    python3 test/bench/slow_readers.py BUILD_DIR [--echo-server PATH [--echo-server PATH2 ...]]
            [--backend io_uring|epoll|both] [--clients 1000] [--bytes 4MiB] [--rounds 1]

What it measures: it starts an echo server (default BUILD_DIR/example/echo_server; any binary that
takes `--address 127.0.0.1 --port P --backend B` and prints "listening on ADDRESS:PORT"), reads its
resident memory once idle (VmRSS, /proc/PID/status), then opens --clients connections from this one
process (non-blocking sockets on a selector) that each send --bytes and never read a byte. The echo
server queues the echoes it cannot deliver; the clients go on sending until every one of them has
sent everything, or none has been able to send anything for --stall seconds (TCP flow control), or
--seconds pass. The server's VmRSS and VmHWM are sampled the whole time. Reported per run: idle
RSS, peak growth over idle (the larger of the sampled VmRSS peak and VmHWM, minus idle), that growth
per connection, and the bytes the clients managed to send in all. Then every socket is closed, the
server gets SIGINT (by PID) and must exit 0 within --exit-timeout seconds.

Comparing builds: give --echo-server several times (an old and a new build). The servers run one
after the other, alternately for every round and backend (--rounds N repeats the alternation), and
the figures are printed side by side at the end; --label names them (default: the paths).

Everything stays on 127.0.0.1 and is bounded in time; servers are stopped (SIGINT, then SIGKILL
after the timeout) and sockets closed on every path, errors included. Exit status: 0 when every
server started, was measured and exited 0 on SIGINT; 1 otherwise.
"""

import argparse
import errno
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2, "mib": 1 << 20,
         "g": 1000**3, "gb": 1000**3, "gib": 1 << 30}
MIB = 1 << 20


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4MiB, 512KiB, 1000000)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def read_status(pid):
    """(VmRSS, VmHWM) in KiB, or None once the process is gone."""
    rss = hwm = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    if rss is None or hwm is None:
        return None
    return rss, hwm


class Server:
    """An echo server process on 127.0.0.1 with an ephemeral port; stop() always ends it."""

    def __init__(self, path, backend, threads, start_timeout):
        self.log = tempfile.TemporaryFile(mode="w+")
        cmd = [path, "--address", "127.0.0.1", "--port", "0", "--backend", backend]
        if threads:
            cmd += ["--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, preexec_fn=raise_fd_limit)
        self.port = None
        try:
            self.port = self._read_port(start_timeout)
        except BaseException:
            self.stop(2)
            raise

    def _read_port(self, timeout):
        deadline = time.monotonic() + timeout
        out = self.proc.stdout
        line = b""
        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ)
        try:
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("the server did not print 'listening on' in time")
                if not sel.select(left):
                    continue
                chunk = os.read(out.fileno(), 1)
                if not chunk:
                    raise RuntimeError(f"the server exited before listening: {self.stderr_tail()}")
                line += chunk
        finally:
            sel.close()
        m = re.search(rb"listening on (\S+):(\d+)", line)
        if not m:
            raise RuntimeError(f"unexpected first line from the server: {line!r}")
        return int(m.group(2))

    def stderr_tail(self, n=600):
        self.log.seek(0)
        text = self.log.read()
        return text[-n:].strip() or "(nothing on stderr)"

    def stop(self, timeout):
        """SIGINT by PID, wait up to `timeout`; SIGKILL if it does not end. Returns (code, in_time)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            code = self.proc.wait(timeout=timeout)
            in_time = True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            in_time = False
        if self.proc.stdout:
            self.proc.stdout.close()
        return code, in_time


class Sampler:
    def __init__(self, pid, interval):
        self.pid = pid
        self.interval = interval
        self.next = 0.0
        self.peak_rss = 0
        self.hwm = 0
        self.samples = 0

    def maybe(self, now, force=False):
        if not force and now < self.next:
            return
        self.next = now + self.interval
        s = read_status(self.pid)
        if s is None:
            return
        self.peak_rss = max(self.peak_rss, s[0])
        self.hwm = max(self.hwm, s[1])
        self.samples += 1


def run_clients(port, clients, total_bytes, stall, seconds, settle, sampler, chunk_size):
    """Connects `clients` sockets, sends until all done / stalled / out of time. Returns a dict."""
    payload = memoryview(bytes(i & 0xFF for i in range(chunk_size)))
    socks = []
    sel = selectors.DefaultSelector()
    try:
        start = time.monotonic()
        deadline = start + seconds
        for i in range(clients):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.settimeout(max(1.0, deadline - time.monotonic()))
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            sampler.maybe(time.monotonic())
        connected = time.monotonic()
        left = {}
        for i, s in enumerate(socks):
            left[s.fileno()] = [s, total_bytes]
            sel.register(s, selectors.EVENT_WRITE)
        sent = 0
        last_progress = time.monotonic()
        reason = "all bytes sent"
        while left:
            now = time.monotonic()
            sampler.maybe(now)
            if now >= deadline:
                reason = f"--seconds {seconds:g} reached"
                break
            if now - last_progress >= stall:
                reason = f"no client could send for {stall:g} s"
                break
            for key, _ in sel.select(timeout=min(sampler.interval, stall)):
                entry = left.get(key.fd)
                if entry is None:
                    continue
                s = entry[0]
                while entry[1] > 0:
                    n = min(entry[1], chunk_size)
                    try:
                        k = s.send(payload[:n])
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        raise RuntimeError(f"client send failed: {e}") from e
                    if k <= 0:
                        break
                    entry[1] -= k
                    sent += k
                    last_progress = time.monotonic()
                    if k < n:
                        break
                if entry[1] == 0:
                    sel.unregister(s)
                    del left[key.fd]
        send_end = time.monotonic()
        # The server may still be reading what arrived last: go on sampling for a moment.
        settle_end = send_end + settle
        while time.monotonic() < settle_end:
            sampler.maybe(time.monotonic())
            time.sleep(min(0.05, sampler.interval))
        sampler.maybe(time.monotonic(), force=True)
        return {"sent": sent, "complete": clients - len(left), "reason": reason,
                "connect_s": connected - start, "send_s": send_end - connected}
    finally:
        sel.close()
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def measure(path, backend, args):
    try:
        server = Server(path, backend, args.threads, args.start_timeout)
    except Exception as e:
        return {"ok": False, "error": f"could not start {path}: {e}"}
    result = {"ok": False}
    try:
        time.sleep(args.idle_wait)
        idle = read_status(server.proc.pid)
        if idle is None:
            raise RuntimeError(f"the server died before the baseline: {server.stderr_tail()}")
        sampler = Sampler(server.proc.pid, args.interval)
        sampler.maybe(time.monotonic(), force=True)
        r = run_clients(server.port, args.clients, args.bytes, args.stall, args.seconds, args.settle, sampler,
                        args.chunk)
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited during the run (code {server.proc.returncode}): "
                               f"{server.stderr_tail()}")
        peak = max(sampler.peak_rss, sampler.hwm)
        growth_kib = peak - idle[0]
        result.update(r)
        result.update({"idle_kib": idle[0], "peak_rss_kib": sampler.peak_rss, "hwm_kib": sampler.hwm,
                       "growth_kib": growth_kib, "per_conn_kib": growth_kib / args.clients,
                       "samples": sampler.samples})
    except Exception as e:
        result["error"] = str(e)
    finally:
        # The sockets are closed (run_clients): SIGINT, and the server must exit 0 in time.
        code, in_time = server.stop(args.exit_timeout)
        result["exit"] = code
        result["exit_in_time"] = in_time
        if code != 0 or not in_time:
            result.setdefault("error", f"server exit code {code}{'' if in_time else ' (killed: no exit in time)'}"
                              f": {server.stderr_tail()}")
        result["ok"] = "error" not in result
        server.log.close()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build_dir")
    p.add_argument("--echo-server", action="append", default=None,
                   help="server binary; repeat to compare builds (default BUILD_DIR/example/echo_server)")
    p.add_argument("--label", action="append", default=None, help="a name per --echo-server, same order")
    p.add_argument("--backend", choices=["io_uring", "epoll", "both"], default="both")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--bytes", type=parse_size, default=4 * MIB, help="bytes each client sends (default 4MiB)")
    p.add_argument("--threads", type=int, default=0, help="pass --threads N to the server (default: its own)")
    p.add_argument("--rounds", type=int, default=1, help="alternations of the servers per backend")
    p.add_argument("--stall", type=float, default=3.0, help="seconds without progress that end the send phase")
    p.add_argument("--seconds", type=float, default=40.0, help="upper bound of one run's connect+send phase")
    p.add_argument("--settle", type=float, default=1.0, help="seconds of sampling after the send phase")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between memory samples")
    p.add_argument("--idle-wait", type=float, default=0.5, help="seconds before the idle baseline")
    p.add_argument("--chunk", type=parse_size, default=64 * 1024, help="bytes per send() call")
    p.add_argument("--start-timeout", type=float, default=10.0)
    p.add_argument("--exit-timeout", type=float, default=15.0, help="seconds the server has to exit on SIGINT")
    args = p.parse_args()

    servers = args.echo_server or [os.path.join(args.build_dir, "example", "echo_server")]
    labels = args.label or []
    if len(labels) > len(servers):
        p.error("more --label than --echo-server")
    labels = labels + servers[len(labels):]
    for path in servers:
        if not os.access(path, os.X_OK):
            p.error(f"not an executable: {path}")
    if args.clients < 1 or args.rounds < 1 or args.chunk < 1:
        p.error("--clients, --rounds and --chunk must be positive")
    hard = raise_fd_limit()
    if args.clients + 64 > hard:
        p.error(f"--clients {args.clients} needs more descriptors than RLIMIT_NOFILE allows ({hard})")
    backends = ["io_uring", "epoll"] if args.backend == "both" else [args.backend]

    print(f"slow readers: {args.clients} clients x {args.bytes / MIB:g} MiB each, never reading; "
          f"stall {args.stall:g} s, limit {args.seconds:g} s", flush=True)
    results = {}  # (backend, server index) -> list of results
    failed = False
    for backend in backends:
        for rnd in range(args.rounds):
            for i, path in enumerate(servers):
                r = measure(path, backend, args)
                results.setdefault((backend, i), []).append(r)
                tag = f"{backend} {labels[i]} round {rnd + 1}"
                if not r["ok"]:
                    failed = True
                    print(f"{tag}: FAILED: {r['error']}", flush=True)
                    continue
                print(f"{tag}: idle {r['idle_kib'] / 1024:.1f} MiB, peak RSS {r['peak_rss_kib'] / 1024:.1f} MiB, "
                      f"HWM {r['hwm_kib'] / 1024:.1f} MiB, growth {r['growth_kib'] / 1024:.1f} MiB "
                      f"({r['per_conn_kib']:.0f} KiB/connection); clients sent {r['sent'] / MIB:.1f} MiB "
                      f"of {args.clients * args.bytes / MIB:.0f} MiB, {r['complete']} complete "
                      f"({r['reason']}; connect {r['connect_s']:.1f} s, send {r['send_s']:.1f} s); "
                      f"exit {r['exit']}", flush=True)
                print(f"BENCH workload=slow-readers-{args.clients}x{args.bytes} server={labels[i]} "
                      f"backend={backend} growth_mib={r['growth_kib'] / 1024:.1f} "
                      f"per_connection_kib={r['per_conn_kib']:.0f} sent_mib={r['sent'] / MIB:.1f}", flush=True)

    # Side by side: the median over rounds of each figure.
    def med(values):
        values = sorted(values)
        return values[len(values) // 2] if values else None

    print()
    header = f"{'backend':<9} {'figure':<22}" + "".join(f" {label[-28:]:>28}" for label in labels)
    print(header)
    print("-" * len(header))
    rows = [("growth MiB", lambda r: r["growth_kib"] / 1024, "{:.1f}"),
            ("per connection KiB", lambda r: r["per_conn_kib"], "{:.0f}"),
            ("idle RSS MiB", lambda r: r["idle_kib"] / 1024, "{:.1f}"),
            ("clients sent MiB", lambda r: r["sent"] / MIB, "{:.1f}"),
            ("clients complete", lambda r: r["complete"], "{:.0f}")]
    for backend in backends:
        for name, get, fmt in rows:
            cells = []
            for i in range(len(servers)):
                ok = [get(r) for r in results.get((backend, i), []) if r["ok"]]
                cells.append(fmt.format(med(ok)) if ok else "failed")
            print(f"{backend:<9} {name:<22}" + "".join(f" {c:>28}" for c in cells))
    if args.rounds > 1:
        print(f"(median of {args.rounds} rounds)")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
