#!/usr/bin/env python3
"""Interleaved A/B of dbx binaries on one pgbench load, and the CPU each side spends.

One fresh EventDBX per binary, each seeded with the same 100,000 events; then RUNS rounds
of a pgbench run against every server in turn (the order reversed every other round), so
the machine's drift hits every binary alike. Prints each binary's median rate and, per
transaction, the server's CPU time (all its threads, from /proc) and pgbench's. On this
shared 2-core machine one client's rate moves ±5% from run to run; the CPU per
transaction moves far less, so it is the better judge of a change that saves work.

    bench/ab.py [--encrypted] [--load append|get|outbox|outbox-history|outbox-cold]
                [--clients N] [--seconds S] [--runs N] DBX...

`outbox` pages over the seeded events, which are the newest: a build with the opened tail
of the history (engine/tail.rs) answers them from memory. `outbox-history` seeds a second
100,000 events on top and pages over the first ones, which the tail no longer holds, as in
bench/run.sh's outbox row: a build with the opened history (engine/opened.rs) answers them
from memory once it has read them twice, an older one reads RocksDB and opens every value.
`outbox-cold` seeds 1,000,000 events and pages over all of them, far more than the opened
history holds (32 MiB by default), so RocksDB's scan and opening sealed values are what it
measures.

A binary may carry environment settings for its server: `path/to/dbx@TOKIO_WORKER_THREADS=1`.

`--perf DIR` adds, after the measured rounds, one more run of the load per binary during
which `perf record` samples that binary's server (call graphs through DWARF), so the
profile leaves the rounds' figures alone. It writes DIR/<n>-<binary name>.perf.data;
read it with `perf report -i FILE --no-children --sort symbol`.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402  (the harness's server wrapper and seeding)

SEED_EVENTS = 100_000
COLD_SEED_EVENTS = 1_000_000
PAGE_EVENTS = 1_000


def start(binary, encrypted, load):
    path, _, settings = binary.partition("@")
    root = sbs.scratch_root("edbx-ab-")
    saved = dict(os.environ)
    for setting in filter(None, settings.split(",")):
        name, value = setting.split("=", 1)
        os.environ[name] = value
    try:
        server = sbs.EventDBX(root, path, encryption=encrypted)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    base, step = sbs.seed_eventdbx(server, seeded_events(load))
    if load == "outbox-history":
        # Newer events on top push the first ones out of the opened tail (16 MiB by default,
        # ~40,000 of these events).
        sbs.seed_eventdbx(server, SEED_EVENTS)
    return server, root, base, step


def seeded_events(load):
    return COLD_SEED_EVENTS if load == "outbox-cold" else SEED_EVENTS


def run_pgbench(server, base, step, args):
    script_name = "outbox" if args.load.startswith("outbox") else args.load
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgbench",
                          f"{script_name}.pgbench")
    extra = ()
    if script_name == "outbox":
        extra = sbs.outbox_args(base, step, seeded_events(args.load) - PAGE_EVENTS)
    rate, _latency, server_us, client_us = sbs.pgbench(
        server.env, script, args.clients, args.seconds, extra,
        server_cpu=lambda: sbs.cpu_seconds(server.pid()))
    return rate, server_us, client_us


# Sampling rate and stack bytes of a profile: the rate keeps perf's own CPU small on two cores,
# and 16 KiB of stack is enough to unwind through tokio's poll frames to the handlers.
PERF_FREQUENCY_HZ = 1999
PERF_STACK_BYTES = 16384
# Seconds into the profiled run before sampling starts: past pgbench's connection set-up.
PERF_START_DELAY_S = 1.0


def profile(server, base, step, args, out):
    """One more run of the load while perf samples the server for all but its first second."""
    seconds = max(1.0, args.seconds - PERF_START_DELAY_S - 0.5)
    command = ["perf", "record", "-q", "-F", str(PERF_FREQUENCY_HZ),
               "--call-graph", f"dwarf,{PERF_STACK_BYTES}", "-p", str(server.pid()),
               "-o", out, "--", "sleep", f"{seconds:.1f}"]
    recorder = threading.Timer(PERF_START_DELAY_S, subprocess.run, args=(command,),
                               kwargs={"check": True, "stdout": subprocess.DEVNULL})
    recorder.start()
    try:
        return run_pgbench(server, base, step, args)
    finally:
        recorder.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encrypted", action="store_true", help="stores sealed at rest")
    parser.add_argument("--load", default="outbox", choices=["append", "get", "outbox", "outbox-history", "outbox-cold"])
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--perf", metavar="DIR", help="profile each server in one more run")
    parser.add_argument("dbx", nargs="+")
    args = parser.parse_args()
    if args.perf:
        if shutil.which("perf") is None:
            parser.error("--perf needs perf (apt-get install linux-perf)")
        os.makedirs(args.perf, exist_ok=True)
    servers = []
    try:
        for binary in args.dbx:
            servers.append((binary, *start(binary, args.encrypted, args.load)))
        results = {binary: [] for binary in args.dbx}
        for round_ in range(args.runs):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for binary, server, _root, base, step in order:
                results[binary].append(run_pgbench(server, base, step, args))
        for binary in args.dbx:
            rates, server_us, client_us = zip(*results[binary])
            print(f"{binary}: {args.load}, {args.clients} client(s), "
                  f"{'encrypted' if args.encrypted else 'plaintext'}: median "
                  f"{statistics.median(rates):,.0f}/s (runs {', '.join(f'{r:,.0f}' for r in rates)}); "
                  f"server {statistics.median(server_us):.1f} µs CPU per transaction "
                  f"(runs {', '.join(f'{u:.0f}' for u in server_us)}), "
                  f"pgbench {statistics.median(client_us):.1f} µs")
        if args.perf:
            for index, (binary, server, _root, base, step) in enumerate(servers):
                name = os.path.basename(binary.partition("@")[0])
                out = os.path.join(args.perf, f"{index}-{name}.perf.data")
                rate, server_us, _client_us = profile(server, base, step, args, out)
                print(f"{binary}: profiled at {rate:,.0f}/s, {server_us:.1f} µs per "
                      f"transaction: {out}")
    finally:
        for _binary, server, root, _base, _step in servers:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
