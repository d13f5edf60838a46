#!/usr/bin/env python3
"""One client's durable append, split into the parts of its round trip, on both servers.

The issue's single-client target is a ratio: an append's round trip against one
fdatasync. This measures what fills the round trip. It starts a fresh EventDBX (encrypted,
seeded with 100,000 events like bench/ab.py) and a throwaway PostgreSQL 15 with the
baseline (seeded alike), and for each runs the 1-client append script (pgbench -M
prepared) twice: once untraced, for the rate, and once while `perf record` records the
server's system calls (tracepoints: run as root, with Debian's linux-perf):
recvfrom, sendto, write, pwrite64 and fdatasync. Each append is cut at those calls:

- **before the sync**: from the request read (the recvfrom that returned it) to the
  fdatasync's entry: decoding, planning, checks, building and writing the WAL record.
  The WAL write's own time is shown apart, and is inside this part.
- **the fdatasync**: the synced write's wait and its kernel work.
- **after the sync**: from the fdatasync's return to the answer's sendto: what a server
  does after its sync and before it answers (RocksDB's memtable inserts, publishing).
- **the answer's sendto**.
- **until the next request**: from the answer sent to the next request read: pgbench's
  turn, loopback TCP both ways, and the server's wake-up.

Each part is a median over a run's traced appends (so the parts need not add up to the
median round trip, which is printed too), then over the runs (both servers in every run,
alternating which goes first); `pg_test_fsync` gives the disk's fdatasync in each run.
Tracing adds a few microseconds to every traced call: compare the traced rate with the
untraced one.

    bench/append_timeline.py [--runs N] [--seconds S] [--plaintext] [--eventdbx-only] DBX
"""

import argparse
import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402  (the harness's server wrappers and seeding)

SEED_EVENTS = 100_000
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
EDBX_APPEND = os.path.join(HERE, "pgbench", "append.pgbench")
PG_APPEND = os.path.join(REPO, "..", "shared", "bench", "pg_append.pgbench")
SYSCALLS = ["recvfrom", "sendto", "write", "pwrite64", "fdatasync"]
# A request is a Bind/Execute/Sync of tens of bytes; smaller reads are a 1-byte peek or an
# eventfd.
MIN_REQUEST_BYTES = 9
PARTS = ["before the sync", "WAL write (inside the above)", "fdatasync", "after the sync",
         "answer's sendto", "until the next request"]
# pgbench's connection is made within this; the tracing starts after it.
CONNECT_SECONDS = 1
LINE = re.compile(r"^\s*(\S+)\s+(\d+)\s+([\d.]+):\s+syscalls:sys_(enter|exit)_(\w+):\s*(.*)$")


def calls(data):
    """Every completed call, in the order they began: start and end times, thread, name,
    the entry's fields and the return value."""
    script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,time,event,trace"],
                            capture_output=True, text=True, check=True)
    pending, done = {}, []
    for line in script.stdout.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        comm, tid, stamp, edge, name, rest = m.groups()
        key = (tid, name)
        if edge == "enter":
            pending[key] = (float(stamp), rest)
        elif key in pending:
            began, fields = pending.pop(key)
            ret = int(rest.strip(), 16) if rest.strip().startswith("0x") else int(rest.strip())
            if ret >= 1 << 63:
                ret -= 1 << 64
            done.append({"start": began, "end": float(stamp), "tid": tid, "comm": comm,
                         "name": name, "fields": fields, "ret": ret})
    done.sort(key=lambda c: c["start"])
    return done


def field(call, name):
    m = re.search(rf"\b{name}: (0x[0-9a-f]+)", call["fields"])
    return int(m.group(1), 16) if m else None


def appends(traced):
    """Cuts the calls, in order, into appends: request read, WAL write, fdatasync, answer,
    next read. A stretch between two request reads with other than one fdatasync is not one
    append (e.g. the connection's first messages) and is left out."""
    found, current = [], None
    for call in traced:
        name = call["name"]
        if name == "recvfrom" and call["ret"] >= MIN_REQUEST_BYTES:
            if current and len(current["syncs"]) == 1 and current["send"]:
                found.append(parts(current, call))
            current = {"read": call, "writes": [], "syncs": [], "send": None}
        elif current is None:
            continue
        elif name in ("write", "pwrite64") and not current["syncs"]:
            current["writes"].append(call)
        elif name == "fdatasync":
            current["syncs"].append(call)
        elif name == "sendto" and current["syncs"] and current["send"] is None:
            current["send"] = call
    return found


def parts(append, next_read):
    read, sync, send = append["read"], append["syncs"][0], append["send"]
    wal_fd = field(sync, "fd")
    wal_writes = [c for c in append["writes"] if field(c, "fd") == wal_fd]
    return {
        "before the sync": sync["start"] - read["end"],
        "WAL write (inside the above)": sum(c["end"] - c["start"] for c in wal_writes),
        "fdatasync": sync["end"] - sync["start"],
        "after the sync": send["start"] - sync["end"],
        "answer's sendto": send["end"] - send["start"],
        "until the next request": next_read["end"] - send["end"],
        "round trip": next_read["end"] - read["end"],
    }


def measure(label, env, script, pids_of, seconds, root):
    """The untraced rate, the traced rate, and the traced appends cut into parts. The
    recording starts once pgbench is connected (`pids_of` may look for the process that
    serves it) and stops a second before pgbench does, so every traced append is under
    load."""
    untraced = sbs.pgbench(env, script, 1, seconds)[0]
    data = os.path.join(root, f"{label}.perf.data")
    outcome = {}
    load = threading.Thread(
        target=lambda: outcome.update(rate=sbs.pgbench(env, script, 1, seconds)[0]))
    load.start()
    time.sleep(CONNECT_SECONDS)
    recorder = subprocess.Popen(
        ["perf", "record", "-q", "-e",
         ",".join(f"syscalls:sys_{edge}_{call}" for call in SYSCALLS for edge in ("enter", "exit")),
         "-p", ",".join(str(p) for p in pids_of()), "-o", data,
         "--", "sleep", str(max(1, seconds - 1 - CONNECT_SECONDS))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, errors = recorder.communicate()
    load.join()
    if recorder.returncode != 0:
        raise SystemExit(f"perf record failed: {errors.strip()[-500:]}")
    if "rate" not in outcome:
        raise SystemExit(f"{label}: pgbench failed while traced")
    cut = appends(calls(data))
    if not cut:
        raise SystemExit(f"{label}: no complete append traced (is perf allowed to trace?)")
    return untraced, outcome["rate"], cut


def postgres_backend(pg):
    """The backend serving pgbench: the postmaster's child that is a client connection."""
    out = subprocess.run(["pgrep", "-P", str(pg.pid()), "-f", "postgres: postgres"],
                         capture_output=True, text=True)
    backends = [int(p) for p in out.stdout.split()]
    if len(backends) != 1:
        raise SystemExit(f"expected one PostgreSQL backend, found {len(backends)}")
    return backends


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--plaintext", action="store_true", help="an EventDBX store not sealed")
    parser.add_argument("--eventdbx-only", action="store_true")
    parser.add_argument("dbx")
    args = parser.parse_args()
    sbs.require_perf()
    root = sbs.scratch_root("edbx-timeline-")
    # Per server, one entry per run: (untraced rate, traced rate, {part: median seconds}).
    results, floors, servers = collections.OrderedDict(), [], []
    try:
        edbx = sbs.EventDBX(root, args.dbx, encryption=not args.plaintext)
        servers.append(edbx)
        sbs.seed_eventdbx(edbx, SEED_EVENTS)
        sides = [("EventDBX", lambda: measure("eventdbx", edbx.env, EDBX_APPEND,
                                              lambda: [edbx.pid()], args.seconds, root))]
        if not args.eventdbx_only:
            pg = sbs.Postgres(root)
            servers.append(pg)
            sbs.seed_postgres(pg, REPO, SEED_EVENTS)
            sides.append(("PostgreSQL 15", lambda: measure(
                "postgres", pg.env, PG_APPEND, lambda: postgres_backend(pg), args.seconds, root)))
        for run in range(args.runs):
            floors.append(sbs.fdatasync_floor(root))
            # Each server first in every other run, as bench/run.sh alternates them.
            for name, side in (sides if run % 2 == 0 else sides[::-1]):
                untraced, traced, cut = side()
                medians = {part: statistics.median(a[part] for a in cut)
                           for part in PARTS + ["round trip"]}
                results.setdefault(name, []).append((untraced, traced, medians))
                print(f"run {run} {name}: {untraced:,.0f} appends/s untraced "
                      f"({floors[-1] / untraced:.2f} fdatasyncs of {floors[-1]:,.0f}/s), "
                      f"{traced:,.0f}/s traced, {len(cut):,} appends cut, median round trip "
                      f"{medians['round trip'] * 1e6:.1f} µs", flush=True)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)

    floor = statistics.median(floors)
    print(f"fdatasync (pg_test_fsync, median of {len(floors)}): {floor:,.0f}/s = "
          f"{1e6 / floor:.1f} µs")
    for name, runs in results.items():
        untraced = statistics.median(r[0] for r in runs)
        print(f"{name}: {untraced:,.0f} appends/s untraced ({1e6 / untraced:.1f} µs mean, "
              f"{floor / untraced:.2f} fdatasyncs), {statistics.median(r[1] for r in runs):,.0f}"
              f"/s traced")
    names = list(results)
    print("| part of one append (median of the runs' medians, µs; the runs') | "
          + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for part in PARTS + ["round trip"]:
        cells = []
        for name in names:
            values = [r[2][part] * 1e6 for r in results[name]]
            cells.append(f"{statistics.median(values):.1f} ("
                         + ", ".join(f"{v:.0f}" for v in values) + ")")
        print(f"| {part} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
