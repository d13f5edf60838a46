#!/usr/bin/env python3
"""How long a `dbx` command takes, end to end, as a user at a shell waits for it.

Starts a daemon in a fresh workspace (encrypted at rest, the default) and times each
command several times, each a new process (start-up, config and token lookup, connection,
authentication, the statement, the answer printed). Prints a Markdown table of medians.

    bench/cli_latency.py [--runs N] <path to dbx>

Standard library only; reuses the harness's daemon set-up from side_by_side.py."""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402

# What a user types, in the order they would; `{i}` differs from run to run so that each
# apply creates or extends its own aggregate. The reads name `order-0`, which the first
# apply creates, so that one run (`--runs 1`) has it too.
COMMANDS = [
    ("dbx --version (process start-up only)", ["--version"]),
    ("dbx aggregate apply (one durable event)",
     ["aggregate", "apply", "order", "order-{i}", "order_paid", "--field", "status=paid"]),
    ("dbx aggregate get", ["aggregate", "get", "order", "order-0"]),
    ("dbx aggregate list", ["aggregate", "list", "order"]),
    ("dbx events list", ["events", "list", "--take", "100"]),
    ("dbx aggregate verify (recomputes the Merkle root)",
     ["aggregate", "verify", "order", "order-0"]),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("dbx")
    args = parser.parse_args()
    root = sbs.scratch_root("edbx-cli-")
    server = None
    try:
        server = sbs.EventDBX(root, args.dbx)
        print(f"| command (median of {args.runs} runs, milliseconds, wall clock) | median | "
              "fastest | slowest |")
        print("| --- | --- | --- | --- |")
        for name, template in COMMANDS:
            samples = []
            for i in range(args.runs):
                argv = [part.replace("{i}", str(i)) for part in template]
                started = time.perf_counter()
                done = server.dbx_cmd(*argv, check=False)
                samples.append((time.perf_counter() - started) * 1000)
                if done.returncode != 0:
                    raise SystemExit(f"dbx {' '.join(argv)} failed: {done.stderr.strip()}")
            print(f"| {name} | {statistics.median(samples):.1f} | {min(samples):.1f} | "
                  f"{max(samples):.1f} |")
    finally:
        if server:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
