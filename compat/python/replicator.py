"""An outbox replicator, written the way a user would: pull a page from EventDBX's outbox,
deliver it downstream, persist the checkpoint, repeat.

The downstream system here is a SQLite file; the delivered events and the checkpoint are
written in one SQLite transaction, so a crash at any point neither loses nor repeats an
event: the next start resumes after the last persisted checkpoint.

    python3 replicator.py CONNINFO SINK.sqlite [--batch N] [--until-idle-after FILE]

With --until-idle-after FILE it exits once FILE exists and the outbox has nothing more;
otherwise it runs until killed.
"""

import argparse
import json
import os
import sqlite3
import time

import psycopg


def open_sink(path):
    sink = sqlite3.connect(path)
    sink.execute("CREATE TABLE IF NOT EXISTS delivered (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                 "event_id INTEGER NOT NULL, aggregate_type TEXT, aggregate_id TEXT, version INTEGER, "
                 "event TEXT)")
    sink.execute("CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), "
                 "after_event_id INTEGER NOT NULL)")
    sink.commit()
    return sink


def load_checkpoint(sink):
    row = sink.execute("SELECT after_event_id FROM checkpoint WHERE id = 1").fetchone()
    return row[0] if row else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("conninfo")
    parser.add_argument("sink")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--until-idle-after")
    args = parser.parse_args()

    sink = open_sink(args.sink)
    after = load_checkpoint(sink)
    with psycopg.connect(args.conninfo, autocommit=True) as conn:
        while True:
            events, next_after = conn.execute(
                "SELECT events_json, next_after_event_id FROM read_outbox(%s, %s)",
                (after, args.batch)).fetchone()
            if not events:
                if args.until_idle_after and os.path.exists(args.until_idle_after):
                    break
                time.sleep(0.05)
                continue
            with sink:  # one transaction: the events and the checkpoint after them
                sink.executemany(
                    "INSERT INTO delivered (event_id, aggregate_type, aggregate_id, version, event) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(int(e["event_id"]), e["aggregate_type"], e["aggregate_id"], e["version"], json.dumps(e))
                     for e in events])
                sink.execute("INSERT INTO checkpoint (id, after_event_id) VALUES (1, ?) "
                             "ON CONFLICT (id) DO UPDATE SET after_event_id = excluded.after_event_id",
                             (next_after,))
            after = next_after
    sink.close()


if __name__ == "__main__":
    main()
