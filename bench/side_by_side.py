#!/usr/bin/env python3
"""EventDBX vs PostgreSQL 15 with pgbench: durable appends (1 and 32 clients), current-state
reads (1 and 32 clients), outbox pages of 1,000 events (over the seeded history, and among
the newest 50,000 events), the fdatasync floor, the peak RSS of
both servers, and the CPU time each transaction costs the server and the client (pgbench).
With --bound, also the rate an ideal server would reach at 32 clients in each run (below).
Standard library only. See bench/run.sh and docs/BENCHMARKS.md."""

import argparse
import glob
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
AGGREGATES = 10_000
SEED_EVENTS = 100_000
# Concurrent psql streams for seeding EventDBX: each sends multi-row INSERTs of SEED_BATCH
# events, so group commit packs several statements into one synced write.
SEED_STREAMS = 4
SEED_BATCH = 2_500
# The recent-outbox load pages among this many of each server's newest events: a consumer
# up to this far behind the head. EventDBX's default opened tail (16 MiB since the eleventh
# pass) holds ~40,000 of the append script's events, so part of each window is older than
# the tail; those pages are read from RocksDB, or from the opened history once read twice
# (docs/BENCHMARKS.md).
RECENT_EVENTS = 50_000
PAYLOAD = ('{"status":"paid","amount":"12.50","customer":"customer-0042","note":"'
           + "0123456789" * 17 + '0"}')


def scratch_root(prefix, parent=None):
    """A fresh directory for one measurement's servers. `mkdtemp` makes it private to root;
    PostgreSQL's tools run as the `postgres` user and must reach its `pg` folder (see
    `Postgres`), so others may enter it."""
    root = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(root, 0o755)
    return root


def require_perf():
    """Stops with one line when perf, which the tracing tools drive, is not installed."""
    if shutil.which("perf") is None:
        raise SystemExit("perf not found (Debian: apt-get install linux-perf)")


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


def proc_status_mib(pid, field, missing):
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM) in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return missing


def current_rss_mib(pid):
    return proc_status_mib(pid, "VmRSS", 0.0)


class RssSampler:
    """Largest VmRSS of a process while the measured loads run (VmHWM also covers seeding),
    and since the last `take_recent` (each load's own, printed on its run line, so that a
    peak can be traced to the load that made it)."""

    def __init__(self, pid):
        self.pid, self.peak, self.recent, self.done = pid, 0.0, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.5):
            rss = current_rss_mib(self.pid)
            self.peak = max(self.peak, rss)
            self.recent = max(self.recent, rss)

    def take_recent(self):
        """The largest VmRSS sampled since the last call (or the start), and now."""
        recent = max(self.recent, current_rss_mib(self.pid))
        self.recent = 0.0
        return recent

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.peak


def peak_rss_mib(pid):
    return proc_status_mib(pid, "VmHWM", float("nan"))


# A server is idle once it uses less than this much CPU time in a second (5% of a core);
# the seeding's background work (RocksDB's flushes and compactions, PostgreSQL's
# checkpointer and autovacuum) takes far more while it lasts.
IDLE_CPU_SECONDS_PER_SECOND = 0.05
# How long to wait for that before measuring anyway (with a warning): a 10M-event load's
# compactions take a few minutes here.
IDLE_WAIT_LIMIT_SECONDS = 900


def wait_until_idle(name, server_cpu):
    """Waits until a server has finished the background work its seeding left (`server_cpu()`
    is its CPU seconds so far), so that the runs measure the stored history, not the
    aftermath of loading it; prints how long that took."""
    started = time.time()
    last = server_cpu()
    while time.time() - started < IDLE_WAIT_LIMIT_SECONDS:
        time.sleep(1)
        now = server_cpu()
        if now - last < IDLE_CPU_SECONDS_PER_SECOND:
            print(f"  {name} idle {time.time() - started:.0f} s after seeding", file=sys.stderr)
            return
        last = now
    print(f"  {name} still busy {IDLE_WAIT_LIMIT_SECONDS} s after seeding; measuring anyway",
          file=sys.stderr)


def cpu_seconds(pid):
    """User plus system CPU time of a process so far, all threads."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The name of the server's commit thread (src/engine/mod.rs).
COMMITTER_THREAD = "eventdbx-commit"


def threads(pid):
    """{thread id: (name, user + system clock ticks)} of every thread of `pid`."""
    found = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(task + "/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found[task.rsplit("/", 1)[1]] = (stat[stat.index("(") + 1:stat.rindex(")")],
                                         int(fields[11]) + int(fields[12]))
    return found


def committer_thread(found):
    """The thread id (a string) of the server's committer among `threads(pid)`'s."""
    committer = [tid for tid, (name, _) in found.items() if name == COMMITTER_THREAD]
    if len(committer) != 1:
        raise SystemExit(f"expected one {COMMITTER_THREAD} thread, found {len(committer)}")
    return committer[0]


def client_cpu_seconds():
    """User plus system CPU time of this script's finished child processes (pgbench)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
        # Same transport on both sides: plaintext TCP on loopback (initdb's default is
        # ssl=off; EventDBX offers TLS, which libpq's sslmode=prefer would otherwise take).
        self.env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres",
                        PGDATABASE="postgres", PGSSLMODE="disable")

    def psql(self, sql=None, file=None):
        cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-f", file or "-"]
        return run(cmd, env=self.env, stdin=None if file else sql).stdout

    def pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def cpu_seconds(self):
        """CPU time of the whole cluster so far: the postmaster, its live children
        (backends, WAL writer, checkpointer, ...) and the children it has reaped (a
        benchmark's backends, once pgbench has disconnected)."""
        postmaster = self.pid()
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile: its time is in the postmaster's reaped total
            if int(entry) == postmaster:
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            elif int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss(self):
        # Sum of the postmaster and its backends' peaks is not meaningful; report the largest.
        pids = run(["pgrep", "-u", "postgres", "-f", f"postgres.*{self.port}|postgres:"],
                   check=False).stdout.split()
        return max([peak_rss_mib(int(p)) for p in pids] or [float("nan")])

    def stop(self):
        run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "stop"], user="postgres", check=False)


class EventDBX:
    """A daemon with its workspace in root/edbx (dbx finds .dbx from its working directory)."""

    def __init__(self, root, dbx, encryption=True):
        self.dir = os.path.join(root, "edbx")
        os.makedirs(self.dir)
        self.dbx = dbx
        # `dbx init` seals data at rest by default; --no-encryption measures plaintext.
        self.dbx_cmd("init", "--ttl", "0", *([] if encryption else ["--no-encryption"]))
        self.serve()

    @classmethod
    def existing(cls, directory, dbx, start_seconds=30):
        """A daemon over a workspace that already holds a store (e.g. a copy of a seeded
        one); `start_seconds` covers opening a large one."""
        server = cls.__new__(cls)
        server.dir, server.dbx = directory, dbx
        server.serve(start_seconds)
        return server

    def serve(self, start_seconds=30):
        """Starts the daemon on a free port and sets `env` for clients."""
        self.port = free_port()
        self.dbx_cmd("config", "--port", str(self.port))
        started = self.dbx_cmd("serve", "start", check=False)
        if started.returncode:
            raise SystemExit(f"dbx serve start failed: {started.stderr.strip()}")
        wait_port(self.port, start_seconds)
        with open(os.path.join(self.dir, ".dbx", "cli.token")) as f:
            token = f.read().strip()
        self.env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="bench",
                        PGPASSWORD=token, PGDATABASE="default", PGSSLMODE="disable")

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


def seed_eventdbx(edbx, total):
    """`total` events over the 10,000 aggregates (every read hits); returns the first event
    id and the average id gap, so the outbox script can pick random positions."""
    streams = []
    for stream in range(SEED_STREAMS):
        proc = subprocess.Popen(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-q", "-o", "/dev/null"],
                                env=edbx.env, stdin=subprocess.PIPE, text=True)
        streams.append(proc)
    started = time.time()
    for n, start in enumerate(range(0, total, SEED_BATCH)):
        rows = ",".join(
            f"('order', 'order-{(i % AGGREGATES) + 1}', 'order_paid', '{PAYLOAD}')"
            for i in range(start, min(start + SEED_BATCH, total)))
        streams[n % SEED_STREAMS].stdin.write(
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES "
            + rows + ";\n")
        if start and start % 1_000_000 == 0:
            print(f"  {start:,} events sent ({start / (time.time() - started):,.0f}/s)",
                  file=sys.stderr)
    for proc in streams:
        proc.stdin.close()
        if proc.wait() != 0:
            raise SystemExit("seeding EventDBX failed")
    print(f"  seeded {total:,} events in {time.time() - started:.0f} s", file=sys.stderr)
    base = int(edbx.psql("SELECT event_id FROM events ORDER BY event_id LIMIT 1").strip())
    last = int(edbx.psql("SHOW eventdbx.last_event_id").strip())
    return base, max(1, (last - base) // total)


def seed_postgres(pg, repo, total):
    pg.psql(file=os.path.join(repo, "..", "shared", "bench", "postgres_baseline.sql"))
    pg.psql(f"SELECT append_event('order', 'order-' || ((g % {AGGREGATES}) + 1), 'order_paid', "
            f"'{PAYLOAD}'::jsonb) FROM generate_series(0, {total - 1}) g")
    pg.psql("VACUUM ANALYZE")


def outbox_args(base, step, span):
    """pgbench's -D arguments for bench/pgbench/outbox*.pgbench: pages start after
    `base + random(0, span) * step` (snowflake ids are not 1..N, so positions are drawn in
    steps of the average id gap)."""
    return ("-D", f"base={base}", "-D", f"step={step}", "-D", f"span={span}")


class RecentWindow:
    """Where each server's newest RECENT_EVENTS events start, found before each recent-outbox
    load (the append loads before it keep moving it). EventDBX's ids are snowflakes, so its
    window is found by counting events with the outbox, from where the last count ended."""

    def __init__(self, edbx, pg, seeded):
        self.edbx, self.pg = edbx, pg
        # (event id, how many events have ids up to it): where the next count starts. First
        # the end of the seeded history, so that no count reads the whole of a large one (a
        # statement examines at most 1,000,000 rows).
        last = int(edbx.psql("SHOW eventdbx.last_event_id").strip())
        self.anchor = (last, seeded)

    def edbx_id_at(self, position):
        """The id of the event at 1-based `position` in id order."""
        anchor_id, anchor_position = self.anchor
        if position <= anchor_position:
            anchor_id, anchor_position = 0, 0
        offset = position - anchor_position - 1
        return int(self.edbx.psql(
            f"SELECT event_id FROM outbox WHERE event_id > {anchor_id} ORDER BY event_id "
            f"LIMIT 1 OFFSET {offset}").strip())

    def __call__(self):
        total = int(self.edbx.psql("SHOW eventdbx.event_count").strip())
        if total < RECENT_EVENTS + 1:
            raise SystemExit(f"the recent-outbox load needs more than {RECENT_EVENTS:,} events")
        first = total - RECENT_EVENTS + 1
        low = self.edbx_id_at(first)
        self.anchor = (low, first)
        span = RECENT_EVENTS - 1_000
        high = self.edbx_id_at(total - 1_000)  # the last position with a full page after it
        edbx_extra = outbox_args(low, max(1, (high - low) // span), span)
        pg_extra = ()
        if self.pg:
            newest = int(self.pg.psql("SELECT max(event_id) FROM events").strip())
            pg_extra = ("-D", f"lo={newest - RECENT_EVENTS}", "-D", f"hi={newest - 1_000}")
        return edbx_extra, pg_extra


# How long a server is given after pgbench exits for its backends to exit and be reaped, so
# their CPU time is counted (PostgreSQL) and nothing from the run is still being done.
SETTLE_SECONDS = 0.5


def pgbench(env, script, clients, seconds, extra=(), server_cpu=None):
    """Runs one pgbench load; returns transactions/s, mean latency (ms), and the CPU µs per
    transaction of the server (`server_cpu()` is its CPU seconds so far) and of pgbench."""
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
           "-T", str(seconds), "-f", script, *extra]
    server_before = server_cpu() if server_cpu else 0.0
    client_before = client_cpu_seconds()
    out = run(cmd, env=env, check=False)
    client_seconds = client_cpu_seconds() - client_before
    time.sleep(SETTLE_SECONDS)
    server_seconds = (server_cpu() - server_before) if server_cpu else float("nan")
    text = out.stdout + out.stderr
    failed = re.search(r"number of failed transactions: (\d+)", text)
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    lat = re.search(r"latency average = ([0-9.]+) ms", text)
    if out.returncode != 0 or not tps or (failed and int(failed.group(1)) > 0):
        raise SystemExit(f"pgbench failed: {' '.join(cmd)}\n{text}")
    rate = float(tps.group(1))
    transactions = max(rate * seconds, 1.0)
    return (rate, float(lat.group(1)) if lat else float("nan"),
            server_seconds * 1e6 / transactions, client_seconds * 1e6 / transactions)


APPENDS_32 = "durable appends/s, 32 clients"
SELECT_1 = "wire ceiling: SELECT 1/s, 32 clients"


def ideal_bound(r, results, cpu, cores, pg, grouped_us):
    """The rate at which an ideal server, doing nothing but the wire protocol and RocksDB's
    write, would keep every core busy at 32 clients in run `r`: the cores over the CPU per
    append of pgbench (against EventDBX), of a bare protocol round trip (EventDBX's server on
    SELECT 1) and of RocksDB's synced write grouped 32 at a time. Real servers add parsing,
    checks, hashing and hand-offs on top, and never keep every core busy, so it bounds from
    above what any server could reach against this harness on this machine; the eighth pass
    in docs/BENCHMARKS.md derived it. Printed per run and returned."""
    client_us = cpu[APPENDS_32][1][-1]
    protocol_us = cpu[SELECT_1][0][-1]
    bound = cores * 1e6 / (client_us + protocol_us + grouped_us)
    line = (f"run {r}: ideal server at 32 clients: {bound:,.0f} appends/s = {cores} cores ÷ "
            f"(pgbench {client_us:.1f} + SELECT 1's server {protocol_us:.1f} + RocksDB's "
            f"grouped write {grouped_us:.1f} µs per append); EventDBX reached "
            f"{results[APPENDS_32][0][-1] / bound:.0%} of it")
    if pg:
        line += f"; {bound / results[APPENDS_32][1][-1]:.2f}x PostgreSQL's rate in this run"
    print(line, file=sys.stderr)
    return bound


def grouped_write_cpu(floor_bin, directory, seconds, encrypted):
    """CPU µs per append of RocksDB alone writing what the committer writes for a group of 32
    single-event appends, synced, with EventDBX's options (bench/src/bin/storage_floor.rs),
    on a fresh store seeded with the default history."""
    out = run([floor_bin, "--runs", "1", "--seconds", str(seconds), "--phases", "groups-32",
               "--encryption", "on" if encrypted else "off", "--dir", directory]).stdout
    m = re.search(r"^\| groups of 32 \| [0-9]+ \| ([0-9.]+) \|", out, re.MULTILINE)
    if not m:
        raise SystemExit(f"storage_floor printed no 'groups of 32' row:\n{out[-2000:]}")
    return float(m.group(1))


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
    ap.add_argument("--seed-events", type=int, default=SEED_EVENTS,
                    help="events stored before measuring (history size)")
    ap.add_argument("--no-encryption", action="store_true",
                    help="create the EventDBX store without a data key (dbx init --no-encryption)")
    ap.add_argument("--eventdbx-only", action="store_true",
                    help="skip PostgreSQL (scale runs: seeding it with millions of events "
                         "through append_event takes longer than the measurement)")
    ap.add_argument("--bound", action="store_true",
                    help="in every run, also bound what an ideal server could reach at 32 "
                         "clients: the cores divided by the CPU per append of pgbench, of a "
                         "server's bare protocol round trip (EventDBX's SELECT 1) and of "
                         "RocksDB's grouped synced write (storage_floor, beside --dbx)")
    args = ap.parse_args()
    floor_bin = os.path.join(os.path.dirname(os.path.abspath(args.dbx)), "storage_floor")
    if args.bound and not os.access(floor_bin, os.X_OK):
        ap.error(f"--bound needs {floor_bin} (cargo build -p eventdbx-bench --bin storage_floor)")
    if not args.eventdbx_only and args.seed_events != SEED_EVENTS:
        # Comparing outbox pages against a history where most of PostgreSQL's pages would be
        # short or empty would flatter it; refuse rather than print a meaningless ratio.
        ap.error(f"PostgreSQL's outbox script (shared/bench/pg_outbox.pgbench) draws positions "
                 f"in 0..{SEED_EVENTS:,}, so a side-by-side run needs the default "
                 f"--seed-events {SEED_EVENTS}; use --eventdbx-only for other history sizes")
    shared = os.path.join(args.repo, "..", "shared", "bench")
    scripts = os.path.join(args.repo, "bench", "pgbench")
    root = scratch_root("edbx-bench-")
    pg = edbx = None
    try:
        floor = fdatasync_floor(root)
        if not args.eventdbx_only:
            pg = Postgres(root)
        edbx = EventDBX(root, args.dbx, encryption=not args.no_encryption)
        print(f"seeding {args.seed_events:,} events ...", file=sys.stderr)
        if pg:
            seed_postgres(pg, args.repo, args.seed_events)
        base, step = seed_eventdbx(edbx, args.seed_events)
        wait_until_idle("EventDBX", lambda: cpu_seconds(edbx.pid()))
        if pg:
            wait_until_idle("PostgreSQL", pg.cpu_seconds)
        # Outbox positions are drawn over the whole history (the PostgreSQL script draws
        # ids in 0..100,000, its whole history at the default seed).
        outbox = outbox_args(base, step, max(1, args.seed_events - 1_000))
        measures = [
            ("durable appends/s, 1 client", "pg_append.pgbench", "append.pgbench", 1, ()),
            (APPENDS_32, "pg_append.pgbench", "append.pgbench", 32, ()),
            ("state reads/s, 1 client", "pg_get.pgbench", "get.pgbench", 1, ()),
            ("state reads/s, 32 clients", "pg_get.pgbench", "get.pgbench", 32, ()),
            ("outbox pages/s (1,000 events), 1 client", "pg_outbox.pgbench", "outbox.pgbench", 1,
             outbox),
            # The same pages near the head of the history, where a consumer that keeps up
            # reads (EventDBX answers these from its opened tail, engine/tail.rs).
            (f"outbox pages/s (1,000 events) among the newest {RECENT_EVENTS:,}, 1 client",
             "pg_outbox_recent.pgbench", "outbox_recent.pgbench", 1,
             RecentWindow(edbx, pg, args.seed_events)),
            (SELECT_1, "select1.pgbench", "select1.pgbench", 32, ()),
        ]
        results = {m[0]: ([], [], [], []) for m in measures}
        # CPU µs per transaction: EventDBX server, pgbench against it, PostgreSQL, pgbench.
        cpu = {m[0]: ([], [], [], []) for m in measures}
        sampler = RssSampler(edbx.pid())
        # The disk's fdatasync rate moves from minute to minute on a shared machine (9,500 to
        # 11,500/s between invocations here): it is read again in every run, so the
        # 1-client append is set against the floor of its own run.
        floors = [floor]
        # --bound: the ideal server's rate in each run, appends/s (its parts are printed per run).
        bounds = []
        cores = os.cpu_count() or 1
        for r in range(args.runs):
            if r > 0:
                floors.append(fdatasync_floor(root))
            for name, pg_script, edbx_script, clients, extra in measures:
                # Fixed arguments for EventDBX's script, or a window found now for both.
                edbx_extra, pg_extra = extra() if callable(extra) else (extra, ())
                pg_path = os.path.join(shared, pg_script)
                if not os.path.exists(pg_path):
                    pg_path = os.path.join(scripts, pg_script)  # same script for both
                # Per server: its column in `results` and `cpu`, label, connection, script,
                # extra pgbench arguments and CPU clock.
                sides = [(0, "EventDBX", edbx.env, os.path.join(scripts, edbx_script), edbx_extra,
                          lambda: cpu_seconds(edbx.pid()))]
                if pg:
                    sides.append((1, "PostgreSQL", pg.env, pg_path, pg_extra, pg.cpu_seconds))

                def measure(side):
                    column, label, env, script, script_extra, server_cpu = side
                    if column == 0:
                        sampler.take_recent()
                    tps, lat, server_us, client_us = pgbench(
                        env, script, clients, args.seconds, script_extra, server_cpu=server_cpu)
                    results[name][column].append(tps)
                    results[name][2 + column].append(lat)
                    cpu[name][2 * column].append(server_us)
                    cpu[name][2 * column + 1].append(client_us)
                    # EventDBX's largest RSS during this load: a peak in the summary can then
                    # be traced to the load that made it.
                    rss = f"; RSS up to {sampler.take_recent():.0f} MiB" if column == 0 else ""
                    return (f"{label} {tps:.0f} ({lat:.2f} ms; CPU µs/tx server "
                            f"{server_us:.1f}, pgbench {client_us:.1f}{rss})")

                # Odd runs measure PostgreSQL first, so a machine that slows down or speeds
                # up during a run does not always favour the same server.
                order = sides[::-1] if r % 2 == 1 else sides
                parts = {side[0]: measure(side) for side in order}
                parts = [parts[column] for column in sorted(parts)]
                line = f"run {r}: {name}: " + ", ".join(parts)
                if pg:
                    line += f", ratio {results[name][0][-1] / results[name][1][-1]:.2f}"
                print(line, file=sys.stderr)
            if args.bound:
                bounds.append(ideal_bound(r, results, cpu, cores, pg, grouped_write_cpu(
                    floor_bin, root, args.seconds, not args.no_encryption)))
        history = (f"{args.seed_events:,} events stored before the first run; EventDBX "
                   + ("plaintext" if args.no_encryption else "encrypted at rest (the default)"))
        if pg:
            print(f"| measure (median of {args.runs} runs, pgbench -M prepared, {args.seconds} s "
                  f"each; {history}) | EventDBX | PostgreSQL 15 | ratio |")
            print("| --- | --- | --- | --- |")
        else:
            print(f"| measure (median of {args.runs} runs, pgbench -M prepared, {args.seconds} s "
                  f"each; {history}) | EventDBX |")
            print("| --- | --- |")
        for name, *_ in measures:
            e, p, el, pl = results[name]
            cell = f"{statistics.median(e):,.0f} ({statistics.median(el):.2f} ms)"
            if pg:
                ratios = [a / b for a, b in zip(e, p)]
                print(f"| {name} | {cell} | {statistics.median(p):,.0f} "
                      f"({statistics.median(pl):.2f} ms) | {statistics.median(ratios):.2f}x |")
            else:
                print(f"| {name} | {cell} |")
        if bounds:
            reached = statistics.median(e / b for e, b in zip(results[APPENDS_32][0], bounds))
            line = (f"| ideal server, appends/s at 32 clients (per run: {cores} cores ÷ the CPU "
                    f"µs per append of pgbench, SELECT 1's server and RocksDB's grouped write; "
                    f"median) | {statistics.median(bounds):,.0f} (EventDBX reached "
                    f"{reached:.0%} of it) |")
            if pg:
                over_pg = statistics.median(b / p for b, p in zip(bounds, results[APPENDS_32][1]))
                line += f" | {over_pg:.2f}x |"
            print(line)
        print(f"| fdatasync/s (pg_test_fsync, the floor; median of one reading per run) | "
              f"{statistics.median(floors):,.0f} |" + (" | |" if pg else ""))
        # Each run's 1-client append latency in that run's fdatasyncs (the issue's "within 2x
        # of one fdatasync", measured in one run), then the median over the runs.
        appends = results["durable appends/s, 1 client"]
        line = (f"| 1-client append latency in fdatasyncs (per run: fdatasync/s ÷ appends/s; "
                f"median) | {statistics.median(f / a for f, a in zip(floors, appends[0])):.2f} |")
        if pg:
            line += f" {statistics.median(f / a for f, a in zip(floors, appends[1])):.2f} | |"
        print(line)
        measured_rss = sampler.stop()
        rss = f"| peak RSS, MiB (VmHWM, seeding included) | {peak_rss_mib(edbx.pid()):.0f} |"
        print(rss + (f" {pg.rss():.0f} (largest process) | |" if pg else ""))
        print(f"| largest RSS while the measured loads ran, MiB | {measured_rss:.0f} |"
              + (" | |" if pg else ""))
        print(f"| data directory after the runs, MiB | {dir_mib(os.path.join(edbx.dir, '.dbx')):,.0f} |"
              + (" | |" if pg else ""))
        print()
        print(f"| CPU per transaction, µs (user + system, every thread and process; median of "
              f"{args.runs} runs; {cores} cores) | EventDBX server | pgbench, against EventDBX"
              + (" | PostgreSQL server | pgbench, against PostgreSQL |" if pg else " |"))
        print("| --- | --- | ---" + (" | --- | --- |" if pg else " |"))
        for name, *_ in measures:
            columns = cpu[name] if pg else cpu[name][:2]
            print(f"| {name} | " + " | ".join(f"{statistics.median(c):.1f}" for c in columns)
                  + " |")
    finally:
        if edbx:
            edbx.stop()
        if pg:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def dir_mib(path):
    total = 0
    for parent, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(parent, name))
            except OSError:
                pass
    return total / (1024 * 1024)


if __name__ == "__main__":
    main()
