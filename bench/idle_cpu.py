#!/usr/bin/env python3
"""When the cores sit idle under concurrent appends, and what the committer is doing then.

Starts one EventDBX (encrypted unless --plaintext, seeded with 100,000 events like
bench/ab.py), drives it with the append script at CLIENTS clients for SECONDS seconds, and
records every CPU's scheduling for RECORD seconds in the middle of the load
(`perf sched record -a`: run as root, with Debian's linux-perf). From
`perf sched timehist --state` it prints:

- how much of the cores' time was idle, and what the `eventdbx-commit` thread was doing
  during it: running (the other core had nothing to run), in its fdatasync (D), waiting
  for a core (R) or asleep waiting for requests (S);
- the committer's own time in those four states;
- per class of thread (committer, runtime workers, RocksDB background, pgbench, others):
  its CPU time per append over the recording and its mean wait for a core once woken;
- and, over the whole load, how the cores' time divided (`/proc/stat`: user, system,
  softirq, idle, iowait, steal). `--record 0` records nothing else, so that `perf` itself
  (a few % of the cores while it records) is not in the figures.

`--committer fifo` puts the committer under SCHED_FIFO (priority 1) and `--committer nice=N`
gives it nice value N, once the server is up: what a committer that never waits for a
core does to the loop. Both need root (CAP_SYS_NICE). The twenty-fifth pass in
docs/BENCHMARKS.md reads it.

    bench/idle_cpu.py [--clients N] [--seconds S] [--record S] [--plaintext]
                      [--committer fifo|nice=N] DBX
"""

import argparse
import bisect
import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402  (the harness's server wrapper and seeding)

SEED_EVENTS = 100_000
APPEND_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgbench", "append.pgbench")
# A `perf sched timehist --state` row: time, [cpu], task, wait, sch delay, run time (ms), state.
ROW = re.compile(r"\s*([\d.]+)\s+\[(\d+)\]\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s*$")
# How far inside the load the cores' split (/proc/stat) starts and ends.
CPU_SPLIT_MARGIN_SECONDS = 0.5
# Idle time is attributed to the committer's state at points this far apart.
IDLE_STEP_SECONDS = 10e-6


def thread_class(task):
    if task.startswith("<idle>"):
        return "idle"
    if sbs.COMMITTER_THREAD in task:
        return "committer"
    if "tokio-rt-worker" in task:
        return "runtime workers"
    if "rocksdb" in task:
        return "RocksDB background"
    if task.startswith("pgbench"):
        return "pgbench"
    return "others"


def set_committer_policy(pid, policy):
    tid = int(sbs.committer_thread(sbs.threads(pid)))
    if policy == "fifo":
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))
    elif policy.startswith("nice="):
        os.setpriority(os.PRIO_PROCESS, tid, int(policy.split("=", 1)[1]))
    else:
        raise SystemExit(f"--committer: fifo or nice=N, not {policy!r}")


def cpu_times():
    """The machine's cumulative user, nice, system, idle, iowait, irq, softirq and steal
    ticks (`/proc/stat`)."""
    with open("/proc/stat") as f:
        return [int(field) for field in f.readline().split()[1:9]]


def print_cpu_split(before, after):
    ticks = [b - a for a, b in zip(before, after)]
    total = sum(ticks) or 1
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    print(f"the cores over the whole load: user {100 * (user + nice) / total:.1f}%, system "
          f"{100 * system / total:.1f}%, softirq {100 * (softirq + irq) / total:.1f}%, idle "
          f"{100 * idle / total:.1f}%, iowait {100 * iowait / total:.1f}%, steal "
          f"{100 * steal / total:.1f}%")


def rows_of(timehist):
    rows = []
    for line in timehist.splitlines():
        m = ROW.match(line)
        if m:
            rows.append((float(m.group(1)), int(m.group(2)), m.group(3).strip(),
                         float(m.group(5)) / 1e3, float(m.group(6)) / 1e3, m.group(7)))
    return rows


def committer_segments(rows):
    """The committer's timeline as (start, end, state): 'running', the state it was switched
    out in (D, S, ...) until it was woken, then 'R' for its wait for a core."""
    mine = [r for r in rows if thread_class(r[2]) == "committer"]
    segments = []
    for here, after in zip(mine, mine[1:] + [None]):
        end, _cpu, _task, _delay, run, state = here
        segments.append((end - run, end, "running"))
        if after is None:
            break
        next_start = after[0] - after[4]
        woken = max(end, next_start - after[3])
        segments.append((end, woken, state))
        if woken < next_start:
            segments.append((woken, next_start, "R"))
    return segments


def report(rows, appends, cores):
    if not rows:
        raise SystemExit("perf sched timehist printed no rows")
    span = rows[-1][0] - rows[0][0]
    segments = committer_segments(rows)
    starts = [s[0] for s in segments]

    def committer_state(at):
        i = bisect.bisect_right(starts, at) - 1
        if i >= 0 and segments[i][0] <= at <= segments[i][1]:
            return segments[i][2]
        return "unknown"

    idle_by_state = collections.Counter()
    idle_total = 0.0
    for end, _cpu, task, _delay, run, _state in rows:
        if thread_class(task) != "idle":
            continue
        idle_total += run
        at = end - run
        while at < end:
            idle_by_state[committer_state(at)] += IDLE_STEP_SECONDS
            at += IDLE_STEP_SECONDS
    print(f"recorded {span:.2f} s, {appends / span:,.0f} appends/s: the cores were idle "
          f"{100 * idle_total / (cores * span):.1f}% of their time")
    attributed = sum(idle_by_state.values()) or 1.0
    for state, seconds in idle_by_state.most_common():
        print(f"  idle while the committer was {state}: {100 * seconds / attributed:.1f}%")
    in_state = collections.Counter()
    for start, end, state in segments:
        in_state[state] += end - start
    total = sum(in_state.values()) or 1.0
    print("the committer's time: " + ", ".join(
        f"{state} {100 * seconds / total:.1f}%" for state, seconds in in_state.most_common()))
    run = collections.Counter()
    delay = collections.Counter()
    switches = collections.Counter()
    for _end, _cpu, task, wait, ran, _state in rows:
        name = thread_class(task)
        run[name] += ran
        delay[name] += wait
        switches[name] += 1
    print("| threads | CPU per append, µs | share of the cores | mean wait for a core once woken, µs |")
    print("| --- | --- | --- | --- |")
    for name in ("committer", "runtime workers", "RocksDB background", "pgbench", "others"):
        print(f"| {name} | {1e6 * run[name] / max(appends, 1):.1f} | "
              f"{100 * run[name] / (cores * span):.1f}% | "
              f"{1e6 * delay[name] / max(switches[name], 1):.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--record", type=float, default=1.5,
                        help="seconds of scheduling recorded, starting 2 s into the load")
    parser.add_argument("--plaintext", action="store_true", help="a store not sealed at rest")
    parser.add_argument("--committer", help="fifo or nice=N for the committer thread")
    parser.add_argument("dbx")
    args = parser.parse_args()
    sbs.require_perf()
    if args.seconds < 2:
        raise SystemExit("--seconds must be at least 2")
    if args.record and args.record + 2 > args.seconds:
        raise SystemExit("--record must end before the load does (it starts 2 s in)")
    root = sbs.scratch_root("edbx-idle-")
    server = sbs.EventDBX(root, os.path.abspath(args.dbx), encryption=not args.plaintext)
    try:
        sbs.seed_eventdbx(server, SEED_EVENTS)
        pid = server.pid()
        if args.committer:
            set_committer_policy(pid, args.committer)
        data = os.path.join(tempfile.mkdtemp(prefix="edbx-sched-"), "sched.data")

        def record():
            time.sleep(2)
            subprocess.run(["perf", "sched", "record", "-a", "-o", data, "--", "sleep",
                            str(args.record)], capture_output=True, check=True)

        recorder = threading.Thread(target=record)
        if args.record:
            recorder.start()
        # The cores' split is read inside the load, away from its start (connections) and
        # its end (pgbench's summary, and the settling pause after it).
        split = []

        def read_split():
            time.sleep(CPU_SPLIT_MARGIN_SECONDS)
            split.append(cpu_times())
            time.sleep(args.seconds - 2 * CPU_SPLIT_MARGIN_SECONDS)
            split.append(cpu_times())

        reader = threading.Thread(target=read_split)
        reader.start()
        rate, _latency, server_us, client_us = sbs.pgbench(
            server.env, APPEND_SCRIPT, args.clients, args.seconds,
            server_cpu=lambda: sbs.cpu_seconds(pid))
        reader.join()
        before, after = split
        print(f"{args.clients} clients: {rate:,.0f} appends/s over the whole load; "
              f"server {server_us:.1f} µs and pgbench {client_us:.1f} µs of CPU per append "
              f"(/proc)")
        print_cpu_split(before, after)
        if not args.record:
            return
        recorder.join()
        timehist = subprocess.run(["perf", "sched", "timehist", "-i", data, "--state"],
                                  capture_output=True, text=True, check=True).stdout
        # The recording's appends, at the load's mean rate.
        report(rows_of(timehist), rate * args.record, os.cpu_count() or 1)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
