"""psycopg 3 (Debian python3-psycopg) against EventDBX.

psycopg 3 binds parameters on the server (extended protocol): a Python int goes as a
binary int2/int4/int8 by magnitude, a str as untyped (oid 0) text, Jsonb as binary jsonb.
After prepare_threshold (5) executions of one query it switches to a named prepared
statement. It also has cursor.stream() (single-row mode), conn.cancel() and pipeline mode.
"""

import threading

import psycopg
import psycopg.errors
from psycopg import pq
from psycopg.types.json import Jsonb

from compat_common import (READER_TOKEN, TOKEN, Reporter, conninfo, expect, expect_eq,
                           schema_source, token_id)

CLIENT = "psycopg3"
report = Reporter(CLIENT)
AGG = "psycopg3-order-1"

INSERT = ("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) "
          "VALUES (%s, %s, %s, %s, %s) RETURNING event_id, version, payload")


def count_events(conn, aggregate_id):
    return conn.execute("SELECT COUNT(*) FROM events WHERE aggregate_type = 'order' AND aggregate_id = %s",
                        (aggregate_id,)).fetchone()[0]


conn = None
first_event_id = None

with report.feature("connect (cleartext)"):
    conn = psycopg.connect(conninfo(), autocommit=True)
    row = conn.execute("SELECT current_database(), current_setting('server_version_num')").fetchone()
    expect_eq(row, ("default", str(conn.info.server_version)), "database and version")
    expect_eq(conn.info.parameter_status("client_encoding"), "UTF8", "client_encoding")

with report.feature("connect (SCRAM-SHA-256)"):
    with psycopg.connect(conninfo(user=token_id(TOKEN))) as c:
        expect_eq(c.execute("SELECT 1").fetchone(), (1,), "SELECT 1")

if conn is None:
    conn = psycopg.connect(conninfo(), autocommit=True)

with report.feature("apply schema"):
    rows = conn.execute("CALL apply_schema(%s)", (schema_source(),)).fetchall()
    expect_eq([r[0] for r in rows], ["order"], "aggregate types")

with report.feature("create aggregate"):
    event_id, version, payload = conn.execute(
        INSERT, ("order", AGG, "order_created", Jsonb({"status": "open"}), 0)).fetchone()
    first_event_id = event_id
    expect_eq((version, payload), (1, {"status": "open"}), "version and payload")
    expect(isinstance(event_id, int) and event_id > 2**31, f"event_id {event_id!r}")

with report.feature("server-side parameters (int2 binary, untyped text, Jsonb)"):
    cur = conn.cursor()
    # expected_version 1 is a Python int: binary int2. The strings go as untyped text and
    # the payload as binary jsonb.
    cur.execute(INSERT, ("order", AGG, "order_paid", Jsonb({"status": "paid \u2603"}), 1))
    _, version, payload = cur.fetchone()
    expect_eq((version, payload), (2, {"status": "paid \u2603"}), "appended")
    # What psycopg sent (oid 0 = untyped; 3802 = jsonb; 21 = int2 in binary).
    expect_eq((tuple(cur._query.types), [int(f) for f in cur._query.formats]),
              ((0, 0, 0, 3802, 21), [0, 0, 0, 0, 1]), "parameter oids and formats sent")
    # A parameter beyond 32 bits goes as int8, a small one as int2, next to text ones.
    rows = conn.execute("SELECT event_id, version FROM events WHERE aggregate_type = %s AND aggregate_id = %s "
                        "AND event_id >= %s AND version >= %s ORDER BY version",
                        ("order", AGG, first_event_id, 1)).fetchall()
    expect_eq([r[1] for r in rows], [1, 2], "versions")
    expect_eq(rows[0][0], first_event_id, "event_id")
    # Explicit text (%t) and binary (%b) placeholders.
    row = conn.execute("SELECT version FROM aggregates WHERE aggregate_type = %t AND aggregate_id = %b",
                       ("order", AGG)).fetchone()
    expect_eq(row, (2,), "%t/%b parameters")

with report.feature("binary results"):
    cur = conn.cursor(binary=True)
    row = cur.execute("SELECT event_id, version, payload, created_at, aggregate_id FROM events "
                      "WHERE aggregate_type = %s AND aggregate_id = %s AND version = %s", ("order", AGG, 1)).fetchone()
    expect_eq(cur.pgresult.fformat(0), pq.Format.BINARY, "result format")
    expect_eq((row[0], row[1], row[2], row[4]), (first_event_id, 1, {"status": "open"}, AGG), "binary row")
    expect(row[3].tzinfo is not None, "created_at is timezone-aware")
    ok = cur.execute("CALL verify('order', %s)", (AGG,)).fetchone()[5]
    expect_eq(ok, True, "binary boolean")

with report.feature("apply events"):
    with conn.transaction():
        conn.execute("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) "
                     "VALUES (%s, %s, %s, %s, %s), (%s, %s, %s, %s, %s)",
                     ("order", AGG, "order_shipped", Jsonb({"status": "shipped"}), 2,
                      "order", AGG, "order_priced", Jsonb({"amount": 1250}), 3))
    expect_eq(count_events(conn, AGG), 4, "events")

with report.feature("read state"):
    row = conn.execute("SELECT version, state, state ->> 'status' AS status FROM aggregates "
                       "WHERE aggregate_type = %s AND aggregate_id = %s", ("order", AGG)).fetchone()
    expect_eq(row, (4, {"status": "shipped", "amount": 1250}, "shipped"), "state row")

with report.feature("read history"):
    rows = conn.execute("SELECT version, event_type, payload ->> 'status' FROM events "
                        "WHERE aggregate_type = %s AND aggregate_id = %s ORDER BY version DESC", ("order", AGG)).fetchall()
    expect_eq(rows, [(4, "order_priced", None), (3, "order_shipped", "shipped"), (2, "order_paid", "paid \u2603"),
                     (1, "order_created", "open")], "history")

with report.feature("page outbox"):
    after, seen, pages = first_event_id - 1, [], 0
    while pages < 50:
        events, nxt = conn.execute("SELECT * FROM read_outbox(%s, %s)", (after, 3)).fetchone()
        pages += 1
        if not events:
            expect_eq(nxt, after, "checkpoint of an empty page")
            break
        expect_eq(nxt, int(events[-1]["event_id"]), "next_after_event_id")
        seen += [(e["aggregate_id"], e["version"]) for e in events if e["aggregate_id"] == AGG]
        after = nxt
    expect_eq(seen, [(AGG, v) for v in (1, 2, 3, 4)], "own events in the outbox")

with report.feature("cursor.stream of the outbox"):
    streamed = [r for r in conn.cursor().stream(
        "SELECT event_id, aggregate_id, version FROM outbox WHERE event_id >= %s ORDER BY event_id",
        (first_event_id,)) if r[1] == AGG]
    expect_eq([r[2] for r in streamed], [1, 2, 3, 4], "streamed versions")
    expect_eq(streamed[0][0], first_event_id, "first event_id")
    expect(all(a[0] < b[0] for a, b in zip(streamed, streamed[1:])), "ascending event ids")

with report.feature("server-side paging of the outbox (LIMIT/OFFSET)"):
    got, offset = [], 0
    while True:
        page = conn.execute("SELECT aggregate_id, version FROM outbox WHERE event_id >= %s AND aggregate_id = %s "
                            "ORDER BY event_id LIMIT %s OFFSET %s", (first_event_id, AGG, 3, offset)).fetchall()
        got += page
        if len(page) < 3:
            break
        offset += 3
    expect_eq([v for _, v in got], [1, 2, 3, 4], "paged versions")

with report.feature("prepared statement after 5 executions"):
    c = psycopg.connect(conninfo(), autocommit=True)
    expect_eq(c.prepare_threshold, 5, "prepare_threshold")
    query = "SELECT version, event_type FROM events WHERE aggregate_type = %s AND aggregate_id = %s AND version = %s"
    for i in range(8):
        v = 1 + i % 4
        row = c.execute(query, ("order", AGG, v)).fetchone()
        expect_eq(row[0], v, f"execution {i + 1}")
    expect(len(c._prepared._names) >= 1, "psycopg did not switch to a named prepared statement")
    for i in range(3):
        row = c.execute(INSERT, ("order", "psycopg3-prepared", "order_created" if i == 0 else "order_paid",
                                 Jsonb({"status": f"s{i}"}), i), prepare=True).fetchone()
        expect_eq(row[1], i + 1, "version from a prepared INSERT")
    c.execute("DEALLOCATE ALL")
    c.close()

with report.feature("pg_backend_pid() matches BackendKeyData"):
    c, d = psycopg.connect(conninfo()), psycopg.connect(conninfo())
    pids = (c.execute("SELECT pg_backend_pid()").fetchone()[0], d.execute("SELECT pg_backend_pid()").fetchone()[0])
    expect_eq(pids, (c.info.backend_pid, d.info.backend_pid), "pg_backend_pid() of two sessions vs their BackendKeyData")
    c.close()
    d.close()

with report.feature("conn.cancel()"):
    c = psycopg.connect(conninfo(), autocommit=True)
    errors = []
    t = threading.Thread(target=lambda: errors.append(None) if c.cancel() is None else None)
    t.start()
    t.join(10)
    expect(errors == [None], "conn.cancel() did not return")
    expect_eq(c.execute("SELECT 1").fetchone(), (1,), "connection usable after cancel")
    c.close()

with report.feature("pipeline mode"):
    expect(psycopg.Pipeline.is_supported(), "pipeline not supported by this libpq")
    c = psycopg.connect(conninfo(), autocommit=True)
    with c.pipeline() as p:
        c1 = c.execute(INSERT, ("order", "psycopg3-pipe", "order_created", Jsonb({"status": "open"}), 0))
        c2 = c.execute(INSERT, ("order", "psycopg3-pipe", "order_paid", Jsonb({"status": "paid"}), 1))
        c3 = c.execute("SELECT COUNT(*) FROM events WHERE aggregate_id = %s", ("psycopg3-pipe",))
        p.sync()
        expect_eq([c1.fetchone()[1], c2.fetchone()[1]], [1, 2], "pipelined versions")
        expect_eq(c3.fetchone()[0], 2, "count after the pipelined appends")
    # An error in the middle: the statement after the Sync still runs.
    failed = None
    try:
        with c.pipeline() as p:
            c.execute(INSERT, ("order", "psycopg3-pipe", "order_shipped", Jsonb({"status": "shipped"}), 2))
            p.sync()
            c.execute(INSERT, ("order", "psycopg3-pipe", "order_shipped", Jsonb({"status": "again"}), 2))
            p.sync()
    except psycopg.errors.SerializationFailure as e:
        failed = e.sqlstate
    expect_eq(failed, "40001", "error raised by the pipeline")
    with c.pipeline():
        c4 = c.execute("SELECT version FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = %s",
                       ("psycopg3-pipe",))
    expect_eq(c4.fetchone()[0], 3, "version after the pipeline with an error")
    c.close()

with report.feature("pipeline inside a transaction is all-or-nothing"):
    # Outside BEGIN each statement commits as it executes, in a pipeline too
    # (sql/REFERENCE.md, "Transactions"); inside a transaction the pipeline is one append.
    c = psycopg.connect(conninfo(), autocommit=True)
    failed = None
    try:
        with c.transaction():
            with c.pipeline():
                c.execute(INSERT, ("order", "psycopg3-pipe-a", "order_created", Jsonb({"status": "open"}), 0))
                c.execute(INSERT, ("order", "psycopg3-pipe", "order_paid", Jsonb({"status": "stale"}), 1))
                c.execute(INSERT, ("order", "psycopg3-pipe-b", "order_created", Jsonb({"status": "open"}), 0))
    except psycopg.errors.SerializationFailure as e:
        failed = e.sqlstate
    expect_eq(failed, "40001", "error raised at COMMIT")
    expect_eq(count_events(c, "psycopg3-pipe-a"), 0, "events of the statement before the conflict")
    expect_eq(count_events(c, "psycopg3-pipe-b"), 0, "events of the statement after the conflict")
    c.close()

with report.feature("verify"):
    rows = conn.execute("SELECT * FROM verify(%s, %s)", ("order", AGG)).fetchall()
    expect_eq([(r[1], r[2], r[5]) for r in rows], [(AGG, 4, True)], "verify rows")
    expect_eq(rows[0][3], rows[0][4], "roots")

with report.feature("conflict 40001"):
    try:
        conn.execute(INSERT, ("order", AGG, "order_paid", Jsonb({"status": "paid"}), 2))
        raise AssertionError("a stale expected_version was accepted")
    except psycopg.errors.SerializationFailure as e:
        expect_eq(e.sqlstate, "40001", "sqlstate")
    expect_eq(count_events(conn, AGG), 4, "events of the aggregate")

with report.feature("schema violation 23514"):
    try:
        conn.execute(INSERT, ("order", AGG, "order_priced", Jsonb({"amount": -5}), None))
        raise AssertionError("amount -5 was accepted")
    except psycopg.errors.CheckViolation as e:
        expect_eq(e.sqlstate, "23514", "sqlstate")
        expect("amount" in f"{e.diag.message_primary} {e.diag.message_detail}", "error names the field")
    try:
        conn.execute(INSERT, ("order", AGG, "order_paid", Jsonb({"colour": "red"}), None))
        raise AssertionError("a field outside the event's list was accepted")
    except psycopg.errors.CheckViolation as e:
        expect_eq(e.sqlstate, "23514", "sqlstate")
    expect_eq(count_events(conn, AGG), 4, "events of the aggregate")

with report.feature("permission denied 42501"):
    with psycopg.connect(conninfo(token=READER_TOKEN, user="reader"), autocommit=True) as reader:
        row = reader.execute("SELECT version FROM aggregates WHERE aggregate_type = %s AND aggregate_id = %s",
                             ("order", AGG)).fetchone()
        expect_eq(row, (4,), "read-only token reads")
        try:
            reader.execute(INSERT, ("order", AGG, "order_paid", Jsonb({"status": "paid"}), None))
            raise AssertionError("a read-only token appended")
        except psycopg.errors.InsufficientPrivilege as e:
            expect_eq(e.sqlstate, "42501", "sqlstate")

with report.feature("wrong password 28P01"):
    try:
        psycopg.connect(conninfo(token=TOKEN[:-4] + "0000"))
        raise AssertionError("connected with a wrong password")
    except psycopg.OperationalError as e:
        # libpq gives drivers no SQLSTATE for a failed connection attempt; its message is
        # the server's 28P01 text.
        expect("password authentication failed" in str(e), f"message: {e}")

if conn is not None:
    conn.close()
report.finish()
