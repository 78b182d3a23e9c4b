#!/usr/bin/env python3
# Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
"""Echo-server benchmark: the iocp echo_server against reference servers, on loopback.

    run_bench.py BUILD_DIR [--quick] [--rounds N] [--slice S] [--workloads a,b] [--servers a,b]
                 [--json FILE] [--callgrind SERVER[,SERVER]] ...

Builds nothing: it runs the programs of BUILD_DIR (test/bench/* and example/echo_server). Every
server starts at once on its own port, pinned to one CPU; the load client runs pinned to another.
For each workload, the servers are driven in short slices, one after the other, in an order rotated
every round (round 0 is a warm-up and not counted). Each round gives every server's figures and their
ratio to the reference (raw_uring_echo) in that same round; the table shows the MEDIAN of those
per-round ratios, so that slow drifts of the machine cancel out. A second instance of the reference
(raw-uring-twin) shows how large the noise is: its ratios should be 1.00. On a shared machine,
--nice -10 (root) keeps other work from stalling the servers and the client.

Primary figure: server CPU time per message (utime+stime of the whole server process from
/proc/PID/stat, clock ticks); also from /proc/PID/task/*/schedstat (nanoseconds, finer).

--callgrind SERVER: instead of the timing benchmark, runs that server under
`valgrind --tool=callgrind`, zeroes its counters after the client's warm-up (while no message is in
flight), dumps them after the measured load (again quiesced), and reports user-space instructions
per message (Ir / messages). Kernel work is not counted, and a `rep movsb` memcpy (glibc's ERMS
variant) counts one instruction per iteration, so copies of large messages weigh far more in Ir than
in time. Servers are always stopped at the end, errors included.

--room: the contention comparison instead. example/chat_server in its benchmark form (--fixed S
--fanout K --echo --heartbeat 0: a broadcast room where every message of S bytes is sent by id,
server.send(id, span), to K other members and echoed to its sender) in its four policy
combinations, mutex_map|lockfree_map x single_threaded|thread_pool (--room-threads, default 2), plus a
twin of the reference (mutex-single) for the noise; load_client --mode room drives them (one message
in flight per connection). Figures are per DELIVERED message (echoes + fan-out deliveries). By
default every server is pinned to one CPU, so the pool's two threads share it: the map's
synchronization and the cross-thread posting are measured without parallelism. --room-server-cpus
all (or a list, e.g. 0,1) lets them run on several CPUs (the load client keeps its own CPU, which
the servers then share); the output says which was used.
"""

import argparse
import json
import os
import platform
import random
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REFERENCE = "raw-uring"
ROOM_REFERENCE = "mutex-single"

# name -> (mode, connections, size, depth)
WORKLOADS = {
    "echo-50x64": ("echo", 50, 64, 1),
    "echo-300x64": ("echo", 300, 64, 1),
    "echo-50x16k": ("echo", 50, 16384, 1),
    "echo-300x16k": ("echo", 300, 16384, 1),
    "churn-50": ("churn", 50, 64, 1),
}
QUICK_WORKLOADS = ["echo-50x64", "echo-300x16k", "churn-50"]

# Broadcast room (--room): name -> ("room", connections, size, fanout)
ROOM_WORKLOADS = {
    "room-50x64-k4": ("room", 50, 64, 4),
    "room-50x64-k16": ("room", 50, 64, 16),
    "room-300x64-k4": ("room", 300, 64, 4),
}
QUICK_ROOM_WORKLOADS = ["room-50x64-k4"]
ALL_WORKLOADS = {**WORKLOADS, **ROOM_WORKLOADS}


def describe(name):
    mode, conns, size, depth = ALL_WORKLOADS[name]
    size_text = f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"
    if mode == "room":
        return (f"broadcast room, {conns} connections x {size_text} ping-pong, each message sent by id "
                f"to {depth} other members and echoed")
    if mode == "churn":
        return f"connection churn, {conns} slots, one {size_text} echo each, client half-closes"
    kind = "ping-pong" if depth == 1 else f"pipelined x{depth}"
    return f"{conns} connections x {size_text} {kind}"


USED_PORTS = set()


def free_port():
    """A free port outside the ephemeral range, where the clients' own ports (and their many
    TIME_WAITs after the churn workload) cannot collide with it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    candidates = range(10000, low) if low > 11000 else range(high + 1, 65536)
    for _ in range(1000):
        port = random.choice(candidates)
        if port in USED_PORTS:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        USED_PORTS.add(port)
        return port
    raise RuntimeError("no free port")


def poke(port):
    """Connects and closes at once: wakes a server whose I/O thread sleeps."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    except OSError:
        pass


def child_setup(cpu, nice):
    """cpu: one CPU number, a set of them, or None (no pinning)."""
    def setup():
        if cpu is not None:
            os.sched_setaffinity(0, cpu if isinstance(cpu, (set, frozenset)) else {cpu})
        if nice:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            except OSError:  # not allowed to raise priority: run as is
                pass
    return setup


class Server:
    def __init__(self, name, argv, log_dir):
        self.name = name
        self.argv = argv
        self.port = None
        self.proc = None
        self.log_path = os.path.join(log_dir, name + ".log")
        self.dead = False

    def start(self, cpu, nice=0, wrapper=(), timeout=15.0, probe=False):
        """Starts the server and waits for its "listening on" line; tries another port if the
        first one is taken. probe: also connect to the port now and then, which wakes a server
        whose start stalls under valgrind (an I/O thread blocked in io_uring_enter holds
        valgrind's big lock until a completion arrives)."""
        for attempt in range(3):
            self.port = free_port()
            argv = list(wrapper) + self.argv + ["--port", str(self.port)]
            self.log = open(self.log_path, "wb")
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=self.log, preexec_fn=child_setup(cpu, nice))
            text = self._wait_ready(timeout, probe)
            if text is None:
                return
            self.stop()
            if "in use" not in self.stderr_tail() or attempt == 2:
                raise RuntimeError(f"{self.name} did not start ({' '.join(argv)}): "
                                   f"{text.decode(errors='replace')} {self.stderr_tail()}")

    def _wait_ready(self, timeout, probe):
        started = time.monotonic()
        last_probe = started
        text = b""
        while time.monotonic() < started + timeout:
            if self.proc.poll() is not None:
                break
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                text += chunk
                if b"listening on" in text:
                    return None
            elif probe and time.monotonic() - last_probe > 2:
                poke(self.port)
                last_probe = time.monotonic()
        return text

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace").strip()
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                poke(self.port)  # see start(): under valgrind the signal may wait for I/O
                try:
                    self.proc.wait(timeout=8)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()


def parse_result(text):
    for line in text.splitlines():
        if line.startswith("RESULT "):
            fields = {}
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                try:
                    fields[key] = float(value)
                except ValueError:
                    fields[key] = value
            return fields
    return None


def client_argv(args, workload, server, warmup, duration, extra=()):
    mode, conns, size, depth = ALL_WORKLOADS[workload]
    argv = [args.load_client, "--port", str(server.port), "--server-pid", str(server.proc.pid),
            "--mode", mode, "--connections", str(conns), "--size", str(size),
            "--warmup", str(warmup), "--duration", str(duration), "--label", server.name]
    argv += ["--fanout", str(depth)] if mode == "room" else ["--depth", str(depth)]
    return argv + list(extra)


def run_slice(args, workload, server):
    argv = client_argv(args, workload, server, args.slice_warmup, args.slice)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=args.slice_warmup + args.slice + 30,
                              preexec_fn=child_setup(args.client_cpu, args.nice))
    except subprocess.TimeoutExpired:
        return None, "load_client timed out"
    result = parse_result(done.stdout)
    if done.returncode != 0 or result is None:
        lines = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()
        return None, lines[0]
    if args.verbose:
        print("   ", done.stdout.splitlines()[0], flush=True)
    return result, None


def median(values):
    return statistics.median(values) if values else float("nan")


def fmt(value, digits=2):
    if value != value:  # NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def summarize(workload, servers, rounds, min_ticks, reference=REFERENCE):
    """rounds: list of {server name: result dict}. Returns {server: summary dict}."""
    out = {}
    for s in servers:
        rows = [r[s.name] for r in rounds if s.name in r]
        pairs = [(r[s.name], r[reference]) for r in rounds if s.name in r and reference in r]

        def ratio(key, usable=lambda a, b: True):
            return [a[key] / b[key] for a, b in pairs
                    if key in a and key in b and b[key] > 0 and usable(a, b)]

        # /proc/PID/stat counts whole clock ticks (10 ms at 100 Hz): a round in which either
        # server got fewer than min_ticks is too coarse to compare and is left out of the stat ratio.
        def enough_ticks(a, b):
            return min(a.get("server_cpu_ticks", 0), b.get("server_cpu_ticks", 0)) >= min_ticks

        cpu_ratios = ratio("server_cpu_us_per_op", enough_ticks)
        sched_ratios = ratio("server_sched_us_per_op")
        out[s.name] = {
            "workload": workload,
            "server": s.name,
            "rounds": len(rounds),
            "ok_rounds": len(rows),
            "ops_per_s": median([r["ops_per_s"] for r in rows]),
            "cpu_us_per_op": median([r.get("server_cpu_us_per_op", float("nan")) for r in rows]),
            "sched_us_per_op": median([r.get("server_sched_us_per_op", float("nan")) for r in rows]),
            "cpu_util": median([r.get("server_cpu_util", float("nan")) for r in rows]),
            "p50_us": median([r["p50_us"] for r in rows]),
            "p99_us": median([r["p99_us"] for r in rows]),
            "errors": sum(int(r.get("errors", 0)) for r in rows),
            "ratio_cpu": median(cpu_ratios),
            "ratio_cpu_min": min(cpu_ratios) if cpu_ratios else float("nan"),
            "ratio_cpu_max": max(cpu_ratios) if cpu_ratios else float("nan"),
            "ratio_cpu_rounds": len(cpu_ratios),
            "ratio_cpu_sched": median(sched_ratios),
            "ratio_cpu_sched_min": min(sched_ratios) if sched_ratios else float("nan"),
            "ratio_cpu_sched_max": max(sched_ratios) if sched_ratios else float("nan"),
            "ratio_rate": median(ratio("ops_per_s")),
            "fanout": median([r.get("fanout_observed", float("nan")) for r in rows]),
        }
    return out


def print_table(workload, servers, summary, args):
    mode = ALL_WORKLOADS[workload][0]
    unit = {"echo": "msg", "churn": "conn", "room": "dlv"}[mode]
    room = mode == "room"
    print(f"\n### {workload}: {describe(workload)}\n")
    print(f"{args.rounds} rounds x {args.slice:g} s per server (+{args.slice_warmup:g} s client warm-up each); "
          f"x ref = median of the per-round ratios to `{args.reference}` (min-max over rounds). "
          f"CPU = server CPU time per {unit}: /proc/PID/stat (primary; rounds with < {args.min_ticks} ticks "
          f"left out) and schedstat (ns).\n")
    if room:
        print("dlv = a delivered message: an echo or a fan-out delivery, as received by the client; "
              "p50/p99 = echo round trip.\n")
    print(f"| server | rounds | {unit}/s | x ref {unit}/s | CPU us/{unit} | **x ref CPU** (min-max) | "
          f"x ref CPU schedstat (min-max) | server CPU use | p50 us | p99 us | errors |"
          + (" fan-out |" if room else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if room else ""))
    for s in servers:
        m = summary[s.name]
        if m["ok_rounds"] == 0:
            print(f"| {s.name} | 0 | failed | | | | | | | | |" + (" |" if room else ""))
            continue
        print(f"| {s.name} | {m['ok_rounds']} | {fmt(m['ops_per_s'])} | {fmt(m['ratio_rate'])} | "
              f"{fmt(m['cpu_us_per_op'], 3)} | "
              f"**{fmt(m['ratio_cpu'])}** ({fmt(m['ratio_cpu_min'])}-{fmt(m['ratio_cpu_max'])}) | "
              f"{fmt(m['ratio_cpu_sched'])} ({fmt(m['ratio_cpu_sched_min'])}-{fmt(m['ratio_cpu_sched_max'])}) | "
              f"{m['cpu_util'] * 100:.0f}% | {fmt(m['p50_us'], 1)} | {fmt(m['p99_us'], 1)} | {m['errors']} |"
              + (f" {fmt(m['fanout'])} |" if room else ""))
    sys.stdout.flush()


def machine_line(m):
    keys = ["workload", "server", "rounds", "ok_rounds", "ops_per_s", "cpu_us_per_op", "sched_us_per_op",
            "cpu_util", "ratio_cpu", "ratio_cpu_min", "ratio_cpu_max", "ratio_cpu_rounds", "ratio_cpu_sched",
            "ratio_cpu_sched_min", "ratio_cpu_sched_max", "ratio_rate", "p50_us",
            "p99_us", "errors", "fanout"]
    parts = []
    for k in keys:
        v = m[k]
        parts.append(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}")
    return "BENCH " + " ".join(parts)


def make_servers(args, log_dir):
    servers = [
        Server(REFERENCE, [os.path.join(args.bin_dir, "raw_uring_echo")], log_dir),
        Server("raw-uring-twin", [os.path.join(args.bin_dir, "raw_uring_echo")], log_dir),
        Server("raw-epoll", [os.path.join(args.bin_dir, "raw_epoll_echo")], log_dir),
        Server("asio", [os.path.join(args.bin_dir, "asio_echo")], log_dir),
        Server("iocp-uring", [args.echo_server, "--backend", "io_uring", "--threads", "1", "--address", "127.0.0.1"],
               log_dir),
        Server("iocp-epoll", [args.echo_server, "--backend", "epoll", "--threads", "1", "--address", "127.0.0.1"],
               log_dir),
    ]
    # Other builds of our echo server, side by side in the same rounds (A/B of a change or a macro).
    for spec in args.extra_echo_server or []:
        name, _, rest = spec.partition("=")
        path, _, backend = rest.partition(":")
        servers.append(Server(name, [path, "--backend", backend or "io_uring", "--threads", "1",
                                     "--address", "127.0.0.1"], log_dir))
    chosen = []
    for s in servers:
        if args.servers and s.name not in args.servers and s.name != REFERENCE:
            continue
        if not os.access(s.argv[0], os.X_OK):
            if s.name == REFERENCE:
                raise SystemExit(f"run_bench: {s.argv[0]} is missing: build the benchmarks first")
            print(f"run_bench: skipping {s.name}: {s.argv[0]} is missing", file=sys.stderr)
            continue
        chosen.append(s)
    return chosen


def make_room_servers(args, log_dir):
    """The room server in its four policy combinations, and a twin of the reference."""
    path = args.chat_server
    if not os.access(path, os.X_OK):
        raise SystemExit(f"run_bench: {path} is missing: build the benchmarks first")
    combos = [(ROOM_REFERENCE, "mutex", "single"), (ROOM_REFERENCE + "-twin", "mutex", "single"),
              ("lockfree-single", "lockfree", "single"), ("mutex-pool", "mutex", "pool"),
              ("lockfree-pool", "lockfree", "pool")]
    servers = []
    for name, map_kind, threading in combos:
        if args.servers and name not in args.servers and name != ROOM_REFERENCE:
            continue
        servers.append(Server(name, [path, "--address", "127.0.0.1", "--backend", args.room_backend,
                                     "--map", map_kind, "--threading", threading,
                                     "--threads", str(args.room_threads), "--echo", "--heartbeat", "0"],
                             log_dir))
    return servers


def run_timing(args, servers):
    if args.room:
        return run_room_timing(args, servers)
    for s in servers:
        s.start(args.server_cpu, args.nice)
    print(f"servers on CPU {args.server_cpu}, load client on CPU {args.client_cpu}; "
          + ", ".join(f"{s.name} :{s.port} (pid {s.proc.pid})" for s in servers), flush=True)
    summaries = {}
    failures = 0
    for workload in args.workloads:
        summaries[workload], failed = run_workload(args, workload, servers)
        failures += failed
    return finish_timing(args, servers, summaries, failures)


def run_workload(args, workload, servers):
    """Rotated rounds of slices over `servers` (already started); prints and returns the summary."""
    started = time.monotonic()
    failures = 0
    rounds = []
    for r in range(args.rounds + 1):  # round 0: warm-up
        live = [s for s in servers if not s.dead]
        shift = r % len(live)
        order = live[shift:] + live[:shift]
        figures = {}
        for s in order:
            if not s.alive():
                print(f"run_bench: {s.name} died: {s.stderr_tail()}", file=sys.stderr)
                s.dead = True
                failures += 1
                if s.name == args.reference:
                    raise RuntimeError("the reference server died")
                continue
            result, error = run_slice(args, workload, s)
            if result is None:
                failures += 1
                print(f"run_bench: {workload} round {r} {s.name}: {error}", file=sys.stderr)
                continue
            figures[s.name] = result
        if r > 0:
            rounds.append(figures)
    summary = summarize(workload, servers, rounds, args.min_ticks, args.reference)
    print_table(workload, servers, summary, args)
    if args.verbose:
        print(f"({workload}: {time.monotonic() - started:.1f} s)")
    return summary, failures


def run_room_timing(args, servers):
    """The room servers take their fan-out on the command line: they are (re)started per workload."""
    cpus = args.room_cpu_set
    where = (f"CPU {args.server_cpu} (all servers, and both threads of each pool variant, on one core: "
             f"contention without parallelism)" if cpus == {args.server_cpu}
             else f"CPUs {','.join(map(str, sorted(cpus)))} (pool threads may run in parallel)")
    print(f"room servers ({args.room_backend}, pool = {args.room_threads} threads) pinned to {where}; "
          f"load client on CPU {args.client_cpu}", flush=True)
    summaries = {}
    failures = 0
    base_argv = {s.name: list(s.argv) for s in servers}
    for workload in args.workloads:
        fanout = ALL_WORKLOADS[workload][3]
        try:
            for s in servers:
                s.argv = base_argv[s.name] + ["--fanout", str(fanout), "--fixed", str(ALL_WORKLOADS[workload][2])]
                s.dead = False
                s.start(cpus, args.nice)
            if args.verbose:
                print(", ".join(f"{s.name} :{s.port} (pid {s.proc.pid})" for s in servers), flush=True)
            summaries[workload], failed = run_workload(args, workload, servers)
            failures += failed
        finally:
            for s in servers:
                s.stop()
    return finish_timing(args, servers, summaries, failures)


def finish_timing(args, servers, summaries, failures):
    print()
    for workload, summary in summaries.items():
        for s in servers:
            print(machine_line(summary[s.name]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": settings(args), "results": summaries}, f, indent=1)
    for workload, summary in summaries.items():
        if any(m["ok_rounds"] == 0 for m in summary.values()):
            return 1
    return 1 if failures and args.strict else 0


def callgrind_total(path):
    ir = None
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                ir = int(line.split()[1])
    if ir is None:
        raise RuntimeError(f"no totals in {path}")
    return ir


def run_callgrind(args, servers, work_dir):
    valgrind = shutil.which("valgrind")
    control = shutil.which("callgrind_control")
    if not valgrind or not control:
        raise SystemExit("run_bench: --callgrind needs valgrind and callgrind_control")
    chosen = [s for s in servers if s.name in args.callgrind]
    missing = set(args.callgrind) - {s.name for s in chosen}
    if missing:
        raise SystemExit(f"run_bench: unknown or unavailable server(s) {', '.join(sorted(missing))}")
    status = 0
    lines = []
    print(f"| server | workload | messages | Ir (user space) | Ir per op |")
    print("|---|---|---:|---:|---:|")
    for s in chosen:
        out_file = os.path.join(work_dir, f"callgrind.{s.name}.out")
        # IOCP_BENCH_DUMP_INSTR=yes (with --keep): per-instruction costs, to read against objdump -d.
        dump_instr = os.environ.get("IOCP_BENCH_DUMP_INSTR", "no")
        wrapper = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out_file}", f"--dump-instr={dump_instr}",
                   "--compress-strings=no"]
        try:
            s.start(args.server_cpu, args.nice, wrapper=wrapper, timeout=120, probe=True)
            for workload in args.workloads:
                before = set(os.listdir(work_dir))
                argv = client_argv(args, workload, s, args.callgrind_warmup, args.callgrind_duration, ["--sync"])
                client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                          preexec_fn=child_setup(args.client_cpu, args.nice))
                output = []
                try:
                    for line in client.stdout:
                        output.append(line)
                        if line.startswith("SYNC warm"):
                            subprocess.run([control, "-z", str(s.proc.pid)], check=True, capture_output=True,
                                           timeout=60)
                            client.stdin.write("\n")
                            client.stdin.flush()
                        elif line.startswith("SYNC measured"):
                            subprocess.run([control, "-d", str(s.proc.pid)], check=True, capture_output=True,
                                           timeout=60)
                            client.stdin.write("\n")
                            client.stdin.flush()
                    client.wait(timeout=60)
                finally:
                    if client.poll() is None:
                        client.kill()
                        client.wait()
                result = parse_result("".join(output))
                dumps = sorted(set(os.listdir(work_dir)) - before)
                dumps = [d for d in dumps if d.startswith(os.path.basename(out_file))]
                if client.returncode != 0 or result is None or not dumps:
                    print(f"run_bench: callgrind {s.name} {workload} failed: {''.join(output)[-500:]}",
                          file=sys.stderr)
                    status = 1
                    continue
                ir = callgrind_total(os.path.join(work_dir, dumps[-1]))
                ops = int(result["ops"])
                per_op = ir / ops if ops else float("nan")
                print(f"| {s.name} | {workload} | {ops} | {ir:,} | {per_op:,.0f} |", flush=True)
                lines.append(f"CALLGRIND server={s.name} workload={workload} ops={ops} ir={ir} ir_per_op={per_op:.1f}")
        finally:
            s.stop()
    print()
    for line in lines:
        print(line)
    return status


def settings(args):
    return {
        "kernel": platform.release(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
        "rounds": args.rounds,
        "slice_s": args.slice,
        "slice_warmup_s": args.slice_warmup,
        "workloads": args.workloads,
        "loadavg": os.getloadavg(),
        "room_server_cpus": sorted(args.room_cpu_set) if args.room else None,
        "room_backend": args.room_backend if args.room else None,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build_dir", help="Meson build directory of the iocp project")
    p.add_argument("--bin-dir", help="where the bench programs are (default: BUILD_DIR/test/bench)")
    p.add_argument("--echo-server", help="the iocp echo server (default: BUILD_DIR/example/echo_server)")
    p.add_argument("--chat-server", help="the room benchmark's server (default: BUILD_DIR/example/chat_server)")
    p.add_argument("--extra-echo-server", action="append", metavar="NAME=PATH[:BACKEND]",
                   help="also run another build of echo_server under NAME (backend io_uring unless given); "
                   "may repeat; name it in --servers too when --servers is used")
    p.add_argument("--quick", action="store_true", help="smoke test: 3 rounds of 0.4 s, 3 workloads (< 60 s)")
    p.add_argument("--rounds", type=int, help="measured rounds per workload (default 12; quick 3)")
    p.add_argument("--slice", type=float, help="measured seconds per server per round (default 1; quick 0.4)")
    p.add_argument("--slice-warmup", type=float, help="client warm-up before each slice (default 0.25; quick 0.15)")
    p.add_argument("--workloads", help="comma-separated, from: " + ", ".join(WORKLOADS))
    p.add_argument("--servers", help="comma-separated subset (the reference always runs): raw-uring-twin, "
                   "raw-epoll, asio, iocp-uring, iocp-epoll; with --room: mutex-single-twin, lockfree-single, "
                   "mutex-pool, lockfree-pool")
    p.add_argument("--server-cpu", type=int, help="CPU for every server (default: the first allowed)")
    p.add_argument("--client-cpu", type=int, help="CPU for the load client (default: the second allowed)")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness of servers and client (e.g. -10 to be less disturbed by other work)")
    p.add_argument("--min-ticks", type=int, default=5,
                   help="rounds where a server used fewer clock ticks are left out of the stat ratio")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the server logs and callgrind dumps")
    p.add_argument("--strict", action="store_true", help="exit 1 if any slice failed")
    p.add_argument("--verbose", action="store_true", help="print every slice's line")
    p.add_argument("--callgrind", help="comma-separated server names: count their instructions per message "
                   "under callgrind instead of timing")
    p.add_argument("--callgrind-warmup", type=float, default=1.0)
    p.add_argument("--callgrind-duration", type=float, default=2.0)
    p.add_argument("--room", action="store_true",
                   help="the broadcast-room comparison of the map and threading policies (example/chat_server) "
                   "instead of the echo servers; workloads: " + ", ".join(ROOM_WORKLOADS))
    p.add_argument("--room-backend", default="io_uring", help="chat_server --backend (default io_uring)")
    p.add_argument("--room-threads", type=int, default=2, help="I/O threads of the pool variants (default 2)")
    p.add_argument("--room-server-cpus", default="one",
                   help="'one' (default: every room server on --server-cpu), 'all' (every allowed CPU) "
                   "or a comma-separated list")
    args = p.parse_args()

    build = os.path.abspath(args.build_dir)
    if not args.bin_dir:
        args.bin_dir = os.path.join(build, "test", "bench")
    if not args.echo_server:
        args.echo_server = os.path.join(build, "example", "echo_server")
    if not args.chat_server:
        args.chat_server = os.path.join(build, "example", "chat_server")
    args.load_client = os.path.join(args.bin_dir, "load_client")
    if not os.access(args.load_client, os.X_OK):
        raise SystemExit(f"run_bench: {args.load_client} is missing: build the benchmarks first")
    args.rounds = args.rounds or (3 if args.quick else 12)
    args.slice = args.slice or (0.4 if args.quick else 1.0)
    args.slice_warmup = args.slice_warmup if args.slice_warmup is not None else (0.15 if args.quick else 0.25)
    known = ROOM_WORKLOADS if args.room else WORKLOADS
    if args.workloads:
        args.workloads = args.workloads.split(",")
        unknown = [w for w in args.workloads if w not in known]
        if unknown:
            raise SystemExit(f"run_bench: unknown workload(s) {', '.join(unknown)}"
                             + (" (--room takes room-... workloads)" if args.room else ""))
    elif args.room:
        args.workloads = QUICK_ROOM_WORKLOADS if args.quick else list(ROOM_WORKLOADS)
    else:
        args.workloads = QUICK_WORKLOADS if args.quick else list(WORKLOADS)
    args.reference = ROOM_REFERENCE if args.room else REFERENCE
    if args.room and args.callgrind:
        raise SystemExit("run_bench: --callgrind does not apply to --room")
    args.servers = args.servers.split(",") if args.servers else None
    args.callgrind = args.callgrind.split(",") if args.callgrind else None

    cpus = sorted(os.sched_getaffinity(0))
    if args.server_cpu is None:
        args.server_cpu = cpus[0]
    if args.client_cpu is None:
        args.client_cpu = cpus[1] if len(cpus) > 1 else None
    if args.client_cpu is None or args.client_cpu == args.server_cpu:
        print("run_bench: warning: one CPU only; the client shares it with the servers", file=sys.stderr)
    if args.room_server_cpus == "one":
        args.room_cpu_set = {args.server_cpu}
    elif args.room_server_cpus == "all":
        args.room_cpu_set = set(cpus)
    else:
        try:
            args.room_cpu_set = {int(c) for c in args.room_server_cpus.split(",")}
        except ValueError:
            raise SystemExit("run_bench: --room-server-cpus: one, all or a list such as 0,1")

    # A SIGTERM (e.g. meson's timeout) must still run the finally clauses that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print(f"# iocp {'room (map and threading policies)' if args.room else 'echo'} benchmark "
          f"({'quick' if args.quick else 'full'})\n")
    print(f"kernel {platform.release()}, {len(cpus)} CPUs allowed, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    work_dir = tempfile.mkdtemp(prefix="iocp-bench-")
    servers = []
    status = 1
    try:
        servers = make_room_servers(args, work_dir) if args.room else make_servers(args, work_dir)
        if args.callgrind:
            status = run_callgrind(args, servers, work_dir)
        else:
            status = run_timing(args, servers)
    except RuntimeError as e:
        print(f"run_bench: {e}", file=sys.stderr)
        status = 1
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                print(f"run_bench: stopping {s.name}: {e}", file=sys.stderr)
        if status == 0 and not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            print(f"run_bench: logs (and callgrind dumps) kept in {work_dir}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
