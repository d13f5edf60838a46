"""Drives replicator.py against a live EventDBX while two producers keep appending.

1. Two producer threads append 600 events to 12 aggregates (single rows, multi-row
   INSERTs, BEGIN/COMMIT blocks, and blocks that are rolled back).
2. replicator.py starts from checkpoint 0 and pulls pages with read_outbox while that goes
   on. Once it has delivered a few pages it is killed with SIGKILL and started again,
   resuming from its persisted checkpoint; the producers pause half-way until that
   restart, so it always happens mid-way.
3. When the producers are done, it drains the outbox and exits.
4. The delivered stream must be exactly the server's outbox: every committed event once,
   in ascending event_id order, every aggregate's versions 1..n in order, and none of the
   rolled-back events.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import psycopg
from psycopg.types.json import Jsonb

from compat_common import Reporter, conninfo, expect, expect_eq

CLIENT = "replicator"
HERE = os.path.dirname(os.path.abspath(__file__))
report = Reporter(CLIENT)

ROUNDS = 250  # per producer: every 5 rounds commit 6 events and roll back 1
INSERT = ("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) "
          "VALUES (%s, %s, %s, %s, %s)")


def producer(worker, rounds, errors, rolled_back, resume):
    try:
        with psycopg.connect(conninfo(), autocommit=True) as conn:
            versions = {}
            for i in range(rounds):
                if i == rounds // 2 and not resume.wait(60):
                    raise TimeoutError("the replicator was not restarted within 60 s")
                agg = f"repl-{worker}-{i % 6}"
                v = versions.get(agg, 0)
                kind = i % 5
                if kind in (0, 1):
                    conn.execute(INSERT, ("order", agg, "order_created" if v == 0 else "order_paid",
                                          Jsonb({"status": f"s{v + 1}"}), v))
                    versions[agg] = v + 1
                elif kind == 2:
                    conn.execute(INSERT.replace("VALUES (%s, %s, %s, %s, %s)",
                                                "VALUES (%s, %s, %s, %s, %s), (%s, %s, %s, %s, %s)"),
                                 ("order", agg, "order_created" if v == 0 else "order_paid",
                                  Jsonb({"status": f"s{v + 1}"}), v,
                                  "order", agg, "order_paid", Jsonb({"status": f"s{v + 2}"}), v + 1))
                    versions[agg] = v + 2
                elif kind == 3:
                    with conn.transaction():
                        conn.execute(INSERT, ("order", agg, "order_created" if v == 0 else "order_paid",
                                              Jsonb({"status": f"s{v + 1}"}), v))
                        conn.execute(INSERT, ("order", agg, "order_paid", Jsonb({"status": f"s{v + 2}"}), v + 1))
                    versions[agg] = v + 2
                else:
                    ghost = f"repl-ghost-{worker}-{i}"
                    rolled_back.append(ghost)
                    conn.execute("BEGIN")
                    conn.execute(INSERT, ("order", ghost, "order_created", Jsonb({"status": "never"}), 0))
                    conn.execute("ROLLBACK")
                time.sleep(0.004)
    except Exception as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(f"producer {worker}: {type(exc).__name__}: {exc}")


def delivered(sink_path):
    if not os.path.exists(sink_path):
        return []
    with sqlite3.connect(sink_path) as db:
        try:
            return db.execute("SELECT event_id, aggregate_type, aggregate_id, version FROM delivered "
                              "ORDER BY seq").fetchall()
        except sqlite3.OperationalError:
            return []


def checkpoint(sink_path):
    if not os.path.exists(sink_path):
        return 0
    with sqlite3.connect(sink_path) as db:
        try:
            row = db.execute("SELECT after_event_id FROM checkpoint").fetchone()
        except sqlite3.OperationalError:
            return 0
    return row[0] if row else 0


def start_replicator(sink, done_flag):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "replicator.py"), conninfo(), sink,
                             "--batch", "25", "--until-idle-after", done_flag])


def main():
    work = tempfile.mkdtemp(prefix="compat-replicator-")
    sink = os.path.join(work, "sink.sqlite")
    done_flag = os.path.join(work, "producers-done")
    errors, rolled_back = [], []
    resume = threading.Event()  # the producers pause half-way until the restart
    restarts = 0
    first = second = None
    try:
        with report.feature("pulls pages from 0 while appends continue"):
            producers = [threading.Thread(target=producer, args=(w, ROUNDS, errors, rolled_back, resume))
                         for w in (1, 2)]
            for t in producers:
                t.start()
            first = start_replicator(sink, done_flag)
            deadline = time.time() + 30
            while time.time() < deadline and (len(delivered(sink)) < 100 or checkpoint(sink) == 0):
                expect(first.poll() is None, f"replicator exited early with {first.returncode}")
                time.sleep(0.02)
            expect(checkpoint(sink) > 0, "no checkpoint persisted within 30 s")
            expect(all(t.is_alive() for t in producers), "a producer stopped early: " + "; ".join(errors))

        with report.feature("checkpoint persisted, restarted mid-way (SIGKILL)"):
            if first is not None and first.poll() is None:
                first.send_signal(signal.SIGKILL)
                first.wait(10)
            before = checkpoint(sink)
            count_before = len(delivered(sink))
            expect(before > 0 and count_before > 0, "nothing delivered before the restart")
            second = start_replicator(sink, done_flag)
            restarts += 1
            resume.set()
            for t in producers:
                t.join(60)
            expect(not errors, "; ".join(errors))
            with open(done_flag, "w", encoding="utf-8"):
                pass
            second.wait(60)
            expect_eq(second.returncode, 0, "replicator exit code after draining")
            expect(checkpoint(sink) > before, "the checkpoint did not move after the restart")
            expect(len(delivered(sink)) > count_before, "nothing delivered after the restart")

        with report.feature("every event exactly once, in order"):
            got = delivered(sink)
            with psycopg.connect(conninfo(), autocommit=True) as conn:
                server = conn.execute("SELECT event_id, aggregate_type, aggregate_id, version FROM outbox "
                                      "ORDER BY event_id").fetchall()
                mine = conn.execute("SELECT COUNT(*) FROM events WHERE aggregate_type = 'order' "
                                    "AND aggregate_id IN (%s)" % ", ".join(
                                        f"'repl-{w}-{k}'" for w in (1, 2) for k in range(6))).fetchone()[0]
                last = conn.execute("SELECT next_after_event_id FROM read_outbox(%s, 10)",
                                    (checkpoint(sink),)).fetchone()[0]
            ids = [g[0] for g in got]
            expect_eq(len(set(ids)), len(ids), "duplicates in the delivered stream")
            expect(ids == sorted(ids), "delivered event ids are not ascending")
            expect_eq(len(got), len(server), "events delivered vs events in the outbox")
            expect(got == [tuple(r) for r in server], "delivered stream differs from the server's outbox")
            expect_eq(mine, 2 * (ROUNDS // 5) * 6, "events the producers committed")
            repl = [g for g in got if g[2].startswith("repl-") and not g[2].startswith("repl-ghost")]
            expect_eq(len(repl), mine, "producer events delivered")
            by_agg = {}
            for _, _, agg, version in repl:
                by_agg.setdefault(agg, []).append(version)
            for agg, versions in by_agg.items():
                expect_eq(versions, list(range(1, len(versions) + 1)), f"versions of {agg}")
            expect_eq(last, checkpoint(sink), "checkpoint at the end of the outbox")

        with report.feature("rolled-back events never delivered"):
            expect(len(rolled_back) >= 50, f"only {len(rolled_back)} rolled-back blocks")
            ghosts = [g for g in delivered(sink) if g[2].startswith("repl-ghost")]
            expect_eq(ghosts, [], "delivered rolled-back events")
    finally:
        resume.set()
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
    print(f"replicator: {len(delivered(sink))} events delivered across {restarts + 1} runs", file=sys.stderr)
    report.finish()


if __name__ == "__main__":
    main()
