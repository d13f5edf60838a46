#!/usr/bin/env python3
"""EventDBX vs PostgreSQL 15 with pgbench: durable appends (1 and 32 clients), current-state
reads (1 and 32 clients), outbox pages of 1,000 events, the fdatasync floor, and the peak
RSS of both servers. Standard library only. See bench/run.sh and docs/BENCHMARKS.md."""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
AGGREGATES = 10_000
SEED_EVENTS = 100_000
PAYLOAD = ('{"status":"paid","amount":"12.50","customer":"customer-0042","note":"'
           + "0123456789" * 17 + '0"}')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env=None, check=True, user=None, stdin=None):
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, input=stdin)
    if check and out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return out


def wait_port(port, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port}")


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Postgres:
    def __init__(self, root):
        self.dir = os.path.join(root, "pg")
        os.makedirs(self.dir)
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.data = os.path.join(self.dir, "data")
        run([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            user="postgres")
        run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "-o",
             f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=100",
             "start"], user="postgres")
        self.env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres",
                        PGDATABASE="postgres")

    def psql(self, sql=None, file=None):
        cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-f", file or "-"]
        return run(cmd, env=self.env, stdin=None if file else sql).stdout

    def pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def rss(self):
        # Sum of the postmaster and its backends' peaks is not meaningful; report the largest.
        pids = run(["pgrep", "-u", "postgres", "-f", f"postgres.*{self.port}|postgres:"],
                   check=False).stdout.split()
        return max([peak_rss_mib(int(p)) for p in pids] or [float("nan")])

    def stop(self):
        run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "stop"], user="postgres", check=False)


class EventDBX:
    """A daemon with its workspace in root/edbx (dbx finds .dbx from its working directory)."""

    def __init__(self, root, dbx):
        self.dir = os.path.join(root, "edbx")
        os.makedirs(self.dir)
        self.dbx = dbx
        self.port = free_port()
        self.dbx_cmd("init", "--ttl", "0")
        self.dbx_cmd("config", "--port", str(self.port))
        self.dbx_cmd("serve", "start")
        wait_port(self.port)
        with open(os.path.join(self.dir, ".dbx", "cli.token")) as f:
            token = f.read().strip()
        self.env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="bench",
                        PGPASSWORD=token, PGDATABASE="default")

    def dbx_cmd(self, *args, check=True):
        return subprocess.run([self.dbx, *args], cwd=self.dir, check=check, capture_output=True,
                              text=True)

    def psql(self, sql):
        # SQL on stdin: seed batches are larger than one command-line argument may be.
        return run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-f", "-"],
                   env=self.env, stdin=sql).stdout

    def pid(self):
        with open(os.path.join(self.dir, ".dbx", "serve.pid")) as f:
            return int(f.read().split()[0])

    def stop(self):
        self.dbx_cmd("serve", "stop", check=False)


def seed_eventdbx(edbx):
    """100,000 events over the 10,000 aggregates (every read hits); returns the first event
    id and the average id gap, so the outbox script can pick random positions."""
    for start in range(0, SEED_EVENTS, 2_500):
        rows = ",".join(
            f"('order', 'order-{(i % AGGREGATES) + 1}', 'order_paid', '{PAYLOAD}')"
            for i in range(start, start + 2_500))
        edbx.psql("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES " + rows)
    base = int(edbx.psql("SELECT event_id FROM events ORDER BY event_id LIMIT 1").strip())
    last = int(edbx.psql("SHOW eventdbx.last_event_id").strip())
    return base, max(1, (last - base) // SEED_EVENTS)


def seed_postgres(pg, repo):
    pg.psql(file=os.path.join(repo, "..", "shared", "bench", "postgres_baseline.sql"))
    pg.psql(f"SELECT append_event('order', 'order-' || ((g % {AGGREGATES}) + 1), 'order_paid', "
            f"'{PAYLOAD}'::jsonb) FROM generate_series(0, {SEED_EVENTS - 1}) g")
    pg.psql("VACUUM ANALYZE")


def pgbench(env, script, clients, seconds, extra=()):
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
           "-T", str(seconds), "-f", script, *extra]
    out = run(cmd, env=env, check=False)
    text = out.stdout + out.stderr
    failed = re.search(r"number of failed transactions: (\d+)", text)
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    lat = re.search(r"latency average = ([0-9.]+) ms", text)
    if out.returncode != 0 or not tps or (failed and int(failed.group(1)) > 0):
        raise SystemExit(f"pgbench failed: {' '.join(cmd)}\n{text}")
    return float(tps.group(1)), float(lat.group(1)) if lat else float("nan")


def fdatasync_floor(directory):
    out = run([f"{PG_BIN}/pg_test_fsync", "-s", "2", "-f", os.path.join(directory, "fsync.test")]).stdout
    m = re.search(r"fdatasync\s+([0-9.,]+) ops/sec", out)
    return float(m.group(1).replace(",", "")) if m else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dbx", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    shared = os.path.join(args.repo, "..", "shared", "bench")
    scripts = os.path.join(args.repo, "bench", "pgbench")
    root = tempfile.mkdtemp(prefix="edbx-bench-")
    os.chmod(root, 0o755)
    pg = edbx = None
    try:
        floor = fdatasync_floor(root)
        pg = Postgres(root)
        edbx = EventDBX(root, args.dbx)
        print("seeding 100,000 events into each ...", file=sys.stderr)
        seed_postgres(pg, args.repo)
        base, step = seed_eventdbx(edbx)
        measures = [
            ("durable appends/s, 1 client", "pg_append.pgbench", "append.pgbench", 1, ()),
            ("durable appends/s, 32 clients", "pg_append.pgbench", "append.pgbench", 32, ()),
            ("state reads/s, 1 client", "pg_get.pgbench", "get.pgbench", 1, ()),
            ("state reads/s, 32 clients", "pg_get.pgbench", "get.pgbench", 32, ()),
            ("outbox pages/s (1,000 events), 1 client", "pg_outbox.pgbench", "outbox.pgbench", 1,
             ("-D", f"base={base}", "-D", f"step={step}")),
        ]
        results = {m[0]: ([], [], [], []) for m in measures}
        for r in range(args.runs):
            for name, pg_script, edbx_script, clients, extra in measures:
                e_tps, e_lat = pgbench(edbx.env, os.path.join(scripts, edbx_script), clients, args.seconds, extra)
                p_tps, p_lat = pgbench(pg.env, os.path.join(shared, pg_script), clients, args.seconds)
                results[name][0].append(e_tps)
                results[name][1].append(p_tps)
                results[name][2].append(e_lat)
                results[name][3].append(p_lat)
                print(f"run {r}: {name}: EventDBX {e_tps:.0f} ({e_lat:.2f} ms), "
                      f"PostgreSQL {p_tps:.0f} ({p_lat:.2f} ms), ratio {e_tps / p_tps:.2f}",
                      file=sys.stderr)
        print(f"| measure (median of {args.runs} runs, pgbench -M prepared, {args.seconds} s each) "
              f"| EventDBX | PostgreSQL 15 | ratio |")
        print("| --- | --- | --- | --- |")
        for name, *_ in measures:
            e, p, el, pl = results[name]
            ratios = [a / b for a, b in zip(e, p)]
            print(f"| {name} | {statistics.median(e):,.0f} ({statistics.median(el):.2f} ms) | "
                  f"{statistics.median(p):,.0f} ({statistics.median(pl):.2f} ms) | "
                  f"{statistics.median(ratios):.2f}x |")
        print(f"| fdatasync/s (pg_test_fsync, the floor) | {floor:,.0f} | | |")
        print(f"| peak RSS, MiB | {peak_rss_mib(edbx.pid()):.0f} | {pg.rss():.0f} (largest process) | |")
    finally:
        if edbx:
            edbx.stop()
        if pg:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
