"""pgbench 15 against EventDBX: custom append and read scripts in the three query modes.

Each run lasts PGBENCH_SECONDS (default 3) at a bounded rate; it passes when pgbench exits
0, reports `number of failed transactions: 0`, processed transactions, and (for appends)
the server holds exactly one new event per processed transaction. Also: version conflicts
are counted by pgbench as serialization failures (SQLSTATE 40001), and a wrong password
fails the connection.
"""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from compat_common import TOKEN, Reporter, conninfo, expect, expect_eq  # noqa: E402

import psycopg2  # noqa: E402  (Debian python3-psycopg2, only to seed and count)

CLIENT = "pgbench"
HOST = os.environ.get("EVENTDBX_HOST", "127.0.0.1")
PORT = os.environ.get("EVENTDBX_PORT", "6363")
SECONDS = os.environ.get("PGBENCH_SECONDS", "3")
RATE = os.environ.get("PGBENCH_RATE", "300")
MODES = ("simple", "extended", "prepared")

report = Reporter(CLIENT)


def pgbench(script, mode, *extra, password=TOKEN):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    cmd = ["pgbench", "-n", "-h", HOST, "-p", PORT, "-U", "compat", "-M", mode,
           "-f", os.path.join(HERE, script), *extra, "default"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=120,
                          check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def field(output, name):
    m = re.search(rf"^{re.escape(name)}: (.*)$", output, re.M)
    return m.group(1) if m else None


def check_run(code, output, mode):
    expect_eq(code, 0, f"exit code (output: {output[-300:]!r})")
    expect_eq(field(output, "query mode"), mode, "query mode")
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    expect(not errors, f"errors: {errors[:3]}")
    failed = field(output, "number of failed transactions")
    expect(failed is not None and failed.startswith("0 "), f"failed transactions: {failed}")
    processed = int(field(output, "number of transactions actually processed").split("/")[0])
    expect(processed > 0, "no transaction processed")
    return processed


def bench_events(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM events WHERE aggregate_type = 'bench'")
        return cur.fetchone()[0]


conn = psycopg2.connect(conninfo())
conn.autocommit = True
with conn.cursor() as cur:
    # One event in each of the 50 aggregates, so that every read finds its aggregate.
    cur.execute("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES "
                + ", ".join(f"('bench', '{i}', 'seeded', '{{}}')" for i in range(1, 51)))

for mode in MODES:
    with report.feature(f"append -M {mode}"):
        before = bench_events(conn)
        code, out = pgbench("append.pgbench", mode, "-c", "2", "-j", "1", "-T", SECONDS, "-R", RATE)
        processed = check_run(code, out, mode)
        expect_eq(bench_events(conn) - before, processed, "events appended vs transactions processed")

for mode in MODES:
    with report.feature(f"read -M {mode}"):
        code, out = pgbench("read.pgbench", mode, "-c", "2", "-j", "1", "-T", SECONDS, "-R", RATE)
        check_run(code, out, mode)

with report.feature("conflict 40001"):
    for n, mode in enumerate(MODES, start=1):
        code, out = pgbench("conflict.pgbench", mode, "-c", "1", "-t", "4", "-D", f"cid={9000 + n}",
                            "--failures-detailed")
        expect_eq(code, 0, f"exit code -M {mode}")
        expect_eq(field(out, "number of transactions actually processed"), "1/4", f"processed -M {mode}")
        ser = field(out, "number of serialization failures")
        expect(ser is not None and ser.startswith("3 "), f"serialization failures -M {mode}: {ser}")

with report.feature("wrong password 28P01"):
    code, out = pgbench("read.pgbench", "simple", "-t", "1", password=TOKEN[:-4] + "0000")
    expect(code != 0, "pgbench connected with a wrong password")
    expect("password authentication failed" in out, f"output: {out[-300:]!r}")

conn.close()
report.finish()
