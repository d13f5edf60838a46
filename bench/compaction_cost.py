#!/usr/bin/env python3
"""RocksDB compaction CPU per append, by column family, on a large seeded store.

    bench/compaction_cost.py seed DBX EVENTS DIR [--idempotency-keys]
        seeds a fresh encrypted store with EVENTS events like bench/run.sh (10,000
        aggregates; with --idempotency-keys one event per statement, each with its own
        random key, through append_keyed.pgbench at 32 clients), waits until
        it is idle, stops it and keeps its workspace in DIR.
    bench/compaction_cost.py run DBX DIR [--rounds N] [--seconds S] [--clients C]
                                         [--read-script F] [--append-script F]
        serves a copy of DIR with DBX (so several builds start from the same files), runs N
        rounds of the 32-client append script (bench/pgbench/append.pgbench, or F:
        append_keyed.pgbench sends an idempotency key with each append), waits for the trailing flushes and
        compactions, and prints each round's rate and server CPU per append, the server's
        CPU per append with that trailing work, its peak RSS, and per column family the compactions that
        finished during the rounds (RocksDB's LOG: `compaction_finished` events, their
        `compaction_time_cpu_micros` and output bytes) per append. With --read-script it
        then runs that pgbench script at 1 and 32 clients (N/2 rounds each).

Compaction work at a large history shows up as a spread of slow runs in bench/run.sh's
history-size rows; this names the column family and how much CPU it takes per append.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402  (the harness's server wrapper and seeding)

APPEND_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgbench", "append.pgbench")
KEYED_APPEND_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgbench",
                                   "append_keyed.pgbench")
# Clients appending one keyed event per statement while seeding: enough for group commit.
KEYED_SEED_CLIENTS = 32


def rocksdb_log(root):
    for directory, _dirs, files in os.walk(root):
        if "LOG" in files and "CURRENT" in files:
            return os.path.join(directory, "LOG")
    raise SystemExit(f"no RocksDB LOG under {root}")


def compactions_since(log, start_micros):
    """Per column family: [compactions, CPU µs, output bytes] finished since start_micros."""
    with open(log, errors="replace") as f:
        text = f.read()
    # Older RocksDB versions leave cf_name out of compaction_finished: map jobs to names.
    job_cf = {int(m.group(2)): m.group(1)
              for m in re.finditer(r"\[([a-z_]+)\] \[JOB (\d+)\] Compacting", text)}
    totals = {}
    for line in text.splitlines():
        if "EVENT_LOG_v1" not in line:
            continue
        event = json.loads(line[line.index("{"):])
        if event.get("event") != "compaction_finished" or event["time_micros"] < start_micros:
            continue
        cf = event.get("cf_name") or job_cf.get(event["job"], "?")
        entry = totals.setdefault(cf, [0, 0, 0])
        entry[0] += 1
        entry[1] += event["compaction_time_cpu_micros"]
        entry[2] += event["total_output_size"]
    return totals


def seed_keyed(server, events):
    """Appends `events` one per statement, each with its own random idempotency key (a key
    names a whole INSERT, so the harness's multi-row seeding cannot carry one per event):
    KEYED_SEED_CLIENTS pgbench clients running append_keyed.pgbench."""
    started = time.time()
    per_client = -(-events // KEYED_SEED_CLIENTS)
    out = sbs.run(["pgbench", "-n", "-M", "prepared", "-c", str(KEYED_SEED_CLIENTS), "-j", "2",
                   "-t", str(per_client), "-P", "30", "-f", KEYED_APPEND_SCRIPT],
                  env=server.env, check=False)
    if out.returncode != 0 or "number of failed transactions: 0" not in out.stdout:
        raise SystemExit(f"seeding with idempotency keys failed:\n{out.stdout}{out.stderr}")
    for line in out.stderr.splitlines():
        if line.startswith("progress:"):
            print(f"  {line}", file=sys.stderr)
    print(f"  seeded {per_client * KEYED_SEED_CLIENTS:,} keyed events in "
          f"{time.time() - started:.0f} s", file=sys.stderr)


def seed(args):
    root = sbs.scratch_root("edbx-compaction-seed-", os.path.dirname(os.path.abspath(args.dir)))
    try:
        server = sbs.EventDBX(root, args.dbx, encryption=True)
        try:
            if args.idempotency_keys:
                seed_keyed(server, args.events)
            else:
                sbs.seed_eventdbx(server, args.events)
            sbs.wait_until_idle("EventDBX", lambda: sbs.cpu_seconds(server.pid()))
        finally:
            server.stop()
        time.sleep(2)
        os.rename(os.path.join(root, "edbx"), args.dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args):
    work = tempfile.mkdtemp(prefix="edbx-compaction-run-", dir=os.path.dirname(os.path.abspath(args.dir)))
    os.rmdir(work)
    subprocess.run(["cp", "-a", args.dir, work], check=True)
    server = sbs.EventDBX.existing(work, args.dbx, start_seconds=120)
    cpu = lambda: sbs.cpu_seconds(server.pid())  # noqa: E731
    try:
        sbs.wait_until_idle("EventDBX", cpu)
        log = rocksdb_log(work)
        start_micros = int(time.time() * 1e6)
        cpu_before = cpu()
        rates, server_us = [], []
        for round_ in range(args.rounds):
            rate, _latency, per_append, client_us = sbs.pgbench(
                server.env, args.append_script, args.clients, args.seconds, (), server_cpu=cpu)
            rates.append(rate)
            server_us.append(per_append)
            print(f"round {round_}: {rate:,.0f} appends/s, server {per_append:.1f} µs, "
                  f"pgbench {client_us:.1f} µs per append", flush=True)
        appended = sum(rates) * args.seconds
        time.sleep(1)
        sbs.wait_until_idle("EventDBX", cpu)
        with_trailing = (cpu() - cpu_before) * 1e6 / appended
        print(f"median {statistics.median(rates):,.0f} appends/s, server "
              f"{statistics.median(server_us):.1f} µs per append (median of rounds), "
              f"{with_trailing:.1f} µs with the trailing flushes and compactions; "
              f"~{appended:,.0f} appended")
        print(f"  server peak RSS {sbs.peak_rss_mib(server.pid()):.0f} MiB (VmHWM since it started)")
        for cf, (count, cpu_micros, output) in sorted(compactions_since(log, start_micros).items()):
            print(f"  {cf}: {count} compactions, {cpu_micros / 1e6:.2f} s CPU = "
                  f"{cpu_micros / appended:.2f} µs per append, output {output / 2**20:.0f} MiB = "
                  f"{output / appended:.0f} B per append")
        if args.read_script:
            for clients in (1, 32):
                reads, read_us = [], []
                for _ in range(max(1, args.rounds // 2)):
                    rate, _latency, per_read, _client_us = sbs.pgbench(
                        server.env, args.read_script, clients, args.seconds, (), server_cpu=cpu)
                    reads.append(rate)
                    read_us.append(per_read)
                print(f"  {os.path.basename(args.read_script)}, {clients} client(s): median "
                      f"{statistics.median(reads):,.0f}/s (runs {', '.join(f'{r:,.0f}' for r in reads)}), "
                      f"server {statistics.median(read_us):.1f} µs each")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    seeding = sub.add_parser("seed")
    seeding.add_argument("dbx")
    seeding.add_argument("events", type=int)
    seeding.add_argument("dir")
    seeding.add_argument("--idempotency-keys", action="store_true")
    running = sub.add_parser("run")
    running.add_argument("dbx")
    running.add_argument("dir")
    running.add_argument("--rounds", type=int, default=10)
    running.add_argument("--seconds", type=int, default=5)
    running.add_argument("--clients", type=int, default=32)
    running.add_argument("--read-script")
    running.add_argument("--append-script", default=APPEND_SCRIPT)
    args = parser.parse_args()
    seed(args) if args.command == "seed" else run(args)


if __name__ == "__main__":
    main()
