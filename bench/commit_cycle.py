#!/usr/bin/env python3
"""The committer thread's timeline under concurrent appends: how long a group-commit cycle
takes and what fills it.

Starts one EventDBX (encrypted, seeded with 100,000 events like bench/ab.py), drives it with
the append script at CLIENTS clients for SECONDS seconds, and meanwhile records the
`eventdbx-commit` thread's fdatasync, write and futex system calls and its context switches
with `perf record` (tracepoints: run as root, with Debian's linux-perf). A cycle runs from
the end of one group's fdatasync to the end of the next one's. Per cycle it counts:

- the appends answered (the run's appends/s over its cycles/s: the mean group size);
- the wake-up system calls the committer makes while it answers the group: an 8-byte write
  (an eventfd: a runtime worker parked in epoll) or a FUTEX_WAKE (a worker parked on a
  condition variable). Waking a task whose worker is awake costs no system call;
- the times it was preempted (switched out while runnable) and the fdatasync's own time.

And over the whole recording, where the committer's time went: switched out in a sync (D),
preempted while runnable (R, by whom), asleep waiting for requests (S), or running. Prints
the totals, the CPU time each of the server's threads (by name) and pgbench spent per
append, how busy that kept the machine's cores, and a table of the cycles by wake-ups per
cycle. The fourteenth pass in docs/BENCHMARKS.md reads it.

    bench/commit_cycle.py [--clients N] [--seconds S] [--plaintext] DBX
"""

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402  (the harness's server wrapper and seeding)

SEED_EVENTS = 100_000
APPEND_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgbench", "append.pgbench")
TRACEPOINTS = [
    "syscalls:sys_enter_fdatasync", "syscalls:sys_exit_fdatasync",
    "syscalls:sys_enter_write", "syscalls:sys_enter_futex", "sched:sched_switch",
]
# FUTEX_WAKE | FUTEX_PRIVATE_FLAG, as the tracepoint prints it.
FUTEX_WAKE_PRIVATE = "op: 0x00000081"
# An eventfd is written 8 bytes at a time; the WAL's writes are larger.
EVENTFD_WRITE = "count: 0x00000008"


def cpu_by_thread_name(before, after):
    """Seconds of CPU per thread name between two `threads` readings."""
    ticks = collections.Counter()
    for tid, (name, spent) in after.items():
        ticks[name] += spent - before.get(tid, (name, 0))[1]
    return {name: spent / os.sysconf("SC_CLK_TCK") for name, spent in ticks.items() if spent}


def switched_out_state(line):
    """The state a `sched:sched_switch` line left the committer in: D, R or S (`R+`, a
    preempted runnable task on some kernels, counts as R)."""
    return line.split("prev_state=")[1].split()[0][:1]


def cycles_of(trace_lines):
    """Splits `perf script -F time,event,trace` lines into cycles (dicts)."""
    cycles, current = [], None
    for line in trace_lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        time, event = float(fields[0].rstrip(":")), fields[1].rstrip(":")
        if event == "syscalls:sys_exit_fdatasync":
            if current is not None and current["sync_began"] is not None:
                current["end"] = time
                current["sync"] = time - current["sync_began"]
                cycles.append(current)
            current = {"start": time, "wakes": 0, "preempted": 0, "sync_began": None,
                       "last_wake": time}
        elif current is None:
            continue
        elif event == "syscalls:sys_enter_fdatasync":
            current["sync_began"] = time
        elif (event == "syscalls:sys_enter_write" and EVENTFD_WRITE in line) or (
                event == "syscalls:sys_enter_futex" and FUTEX_WAKE_PRIVATE in line):
            current["wakes"] += 1
            current["last_wake"] = time
        elif event == "sched:sched_switch" and switched_out_state(line) == "R":
            current["preempted"] += 1
    return cycles


def time_off_cpu(trace_lines):
    """Shares of the recording the committer spent switched out, by state and by the thread
    that took its CPU. A switch-out lasts until the committer's next recorded event."""
    events = []
    for line in trace_lines:
        fields = line.split()
        if len(fields) >= 2:
            events.append((float(fields[0].rstrip(":")), fields[1].rstrip(":"), line))
    if len(events) < 2:
        return 0.0, collections.Counter()
    shares = collections.Counter()
    for (time, event, line), (next_time, _, _) in zip(events, events[1:]):
        if event != "sched:sched_switch":
            continue
        state = switched_out_state(line)
        taker = line.split("next_comm=")[1].split()[0]
        shares[state] += next_time - time
        shares[f"{state} ({taker})"] += next_time - time
    span = events[-1][0] - events[0][0]
    return span, shares


def report(cycles, appends_per_second):
    if not cycles:
        raise SystemExit("no complete cycle recorded (is perf allowed to trace?)")
    total = sum(c["end"] - c["start"] for c in cycles)
    per_second = len(cycles) / total
    us = lambda seconds: seconds * 1e6  # noqa: E731
    print(f"{appends_per_second:,.0f} appends/s; {per_second:,.0f} cycles/s, "
          f"{appends_per_second / per_second:.1f} appends per cycle; mean cycle "
          f"{us(total / len(cycles)):.0f} µs, median fdatasync "
          f"{us(statistics.median(c['sync'] for c in cycles)):.0f} µs")
    print("| wake-up calls in the cycle | cycles | share of the time | median cycle, µs | "
          "sync's end to last wake-up, µs | preemptions (median) |")
    print("| --- | --- | --- | --- | --- | --- |")
    by_wakes = collections.defaultdict(list)
    for c in cycles:
        by_wakes[min(c["wakes"], 10)].append(c)
    for wakes in sorted(by_wakes):
        group = by_wakes[wakes]
        label = f"{wakes}+" if wakes == 10 else str(wakes)
        print(f"| {label} | {len(group)} | "
              f"{sum(c['end'] - c['start'] for c in group) / total * 100:.1f}% | "
              f"{us(statistics.median(c['end'] - c['start'] for c in group)):.0f} | "
              f"{us(statistics.median(c['last_wake'] - c['start'] for c in group)):.0f} | "
              f"{statistics.median(c['preempted'] for c in group):g} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--plaintext", action="store_true", help="a store not sealed at rest")
    parser.add_argument("dbx")
    args = parser.parse_args()
    sbs.require_perf()
    root = sbs.scratch_root("edbx-cycle-")
    server = sbs.EventDBX(root, args.dbx, encryption=not args.plaintext)
    data = os.path.join(root, "cycle.data")
    try:
        sbs.seed_eventdbx(server, SEED_EVENTS)
        before = sbs.threads(server.pid())
        committer = sbs.committer_thread(before)
        # Recording starts with pgbench and stops a second before it, so that every recorded
        # cycle is under load.
        recorder = subprocess.Popen(
            ["perf", "record", "-q", "-e", ",".join(TRACEPOINTS), "-t", committer,
             "-o", data, "--", "sleep", str(max(1, args.seconds - 1))],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        rate, _latency, server_us, client_us = sbs.pgbench(
            server.env, APPEND_SCRIPT, args.clients, args.seconds,
            server_cpu=lambda: sbs.cpu_seconds(server.pid()))
        by_name = cpu_by_thread_name(before, sbs.threads(server.pid()))
        _, errors = recorder.communicate()
        if recorder.returncode != 0:
            raise SystemExit(f"perf record failed: {errors.strip()[-500:]}")
        script = subprocess.run(["perf", "script", "-i", data, "-F", "time,event,trace"],
                                capture_output=True, text=True, check=True)
        appends = rate * args.seconds
        print("CPU per append, µs: " + ", ".join(
            f"{name} {spent / appends * 1e6:.1f}"
            for name, spent in sorted(by_name.items(), key=lambda item: -item[1]))
              + f"; pgbench {client_us:.1f}. Cores kept busy: "
              f"{(server_us + client_us) * rate / 1e6:.2f} of {os.cpu_count()}")
        lines = script.stdout.splitlines()
        report(cycles_of(lines), rate)
        span, shares = time_off_cpu(lines)
        if span > 0:
            main_states = {state: shares.get(state, 0.0) for state in ("D", "R", "S")}
            running = span - sum(main_states.values())
            takers = [(key, spent) for key, spent in shares.items() if key.startswith("R (")]
            takers.sort(key=lambda item: -item[1])
            print(f"The committer's time: running {running / span * 100:.1f}%, in a sync (D) "
                  f"{main_states['D'] / span * 100:.1f}%, preempted (R) "
                  f"{main_states['R'] / span * 100:.1f}% ("
                  + ", ".join(f"{key[3:-1]} {spent / span * 100:.1f}%" for key, spent in takers[:3])
                  + f"), waiting for requests (S) {main_states['S'] / span * 100:.1f}%")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
