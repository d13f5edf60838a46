#!/usr/bin/env python3
"""CPU a bulk load costs the server, and the store it leaves.

For each round and each `dbx` binary given (alternating, so the machine's drift hits every
binary alike), starts a fresh EventDBX (encrypted at rest unless --no-encryption), loads
EVENTS events the way the harness seeds (4 psql streams of 2,500-row INSERTs over 10,000
aggregates), and prints the load's wall time, the server's CPU time (user + system, all
threads: flushes and compactions included) during the load and in the SETTLE seconds after
it, and the data directory's size. See docs/BENCHMARKS.md, fifth pass.

    bench/load_cpu.py [--events 1000000] [--rounds 2] [--settle 15] [--no-encryption] DBX...
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402  (the harness's server wrapper)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds to wait after the load for flushes and compactions")
    parser.add_argument("--no-encryption", action="store_true")
    parser.add_argument("dbx", nargs="+")
    args = parser.parse_args()
    for _ in range(args.rounds):
        for dbx in args.dbx:
            root = sbs.scratch_root("edbx-loadcpu-")
            server = sbs.EventDBX(root, dbx, encryption=not args.no_encryption)
            try:
                pid = server.pid()
                cpu_before, started = sbs.cpu_seconds(pid), time.time()
                sbs.seed_eventdbx(server, args.events)
                loaded, cpu_loaded = time.time(), sbs.cpu_seconds(pid)
                time.sleep(args.settle)
                cpu_settled = sbs.cpu_seconds(pid)
                print(f"{dbx}: {args.events:,} events loaded in {loaded - started:.1f} s; "
                      f"server CPU {cpu_loaded - cpu_before:.1f} s during the load, "
                      f"+{cpu_settled - cpu_loaded:.1f} s in the {args.settle:.0f} s after; "
                      f"data directory {sbs.dir_mib(server.dir):.0f} MiB", flush=True)
            finally:
                server.stop()
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
