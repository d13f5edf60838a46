#!/usr/bin/env python3
"""Peak server RSS under concurrent parameterized bulk loads (the extended protocol).

Starts a fresh EventDBX per `dbx` binary given (plaintext store), runs LOADERS psycopg 3
connections at once, each sending STATEMENTS parameterized INSERTs of ROWS events (~250-byte
payloads), and samples the server's VmRSS every 50 ms. Needs psycopg 3 (Debian:
python3-psycopg, hence /usr/bin/python3). See docs/BENCHMARKS.md, fourth pass.

    /usr/bin/python3 bench/bulk_rss.py [--loaders 16] [--statements 15] [--rows 3000] DBX...
"""

import argparse
import os
import shutil
import sys
import threading
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402  (the harness's server wrapper)


def measure(dbx, loaders, statements, rows):
    root = sbs.scratch_root("edbx-bulk-rss-")
    server = sbs.EventDBX(root, dbx, encryption=False)
    try:
        pid = server.pid()
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], sbs.current_rss_mib(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        text = ("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES "
                + ",".join("(%s, %s, %s, %s)" for _ in range(rows)))
        conninfo = (f"host=127.0.0.1 port={server.port} user=bench "
                    f"password={server.env['PGPASSWORD']} dbname=default sslmode=disable")

        def load(loader):
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for _ in range(statements):
                    params = []
                    for row in range(rows):
                        params += ["order", f"order-{(loader * rows + row) % sbs.AGGREGATES}",
                                   "order_paid", sbs.PAYLOAD]
                    conn.execute(text, params)

        started = time.time()
        threads = [threading.Thread(target=load, args=(n,)) for n in range(loaders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.time() - started
        done.set()
        sampler.join()
        print(f"{dbx}: {loaders} loaders x {statements} statements x {rows} rows in "
              f"{took:.1f} s, peak RSS {peak[0]:.0f} MiB", flush=True)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loaders", type=int, default=16)
    parser.add_argument("--statements", type=int, default=15)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("dbx", nargs="+", help="dbx binaries, measured in turn")
    args = parser.parse_args()
    for dbx in args.dbx:
        measure(dbx, args.loaders, args.statements, args.rows)


if __name__ == "__main__":
    main()
