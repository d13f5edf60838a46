"""psycopg 2 (Debian python3-psycopg2) against EventDBX.

psycopg2 never sends parameters: it interpolates Python values into the SQL text on the
client and uses the simple query protocol. Its default mode is non-autocommit: the first
statement opens a transaction (BEGIN), commit()/rollback() end it.
"""

import json

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext

from compat_common import (READER_TOKEN, TOKEN, Reporter, conninfo, expect, expect_eq,
                           schema_source, token_id)

CLIENT = "psycopg2"
report = Reporter(CLIENT)
AGG = "psycopg2-order-1"

INSERT = ("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) "
          "VALUES (%s, %s, %s, %s, %s) RETURNING event_id, version, payload")


def count_events(conn, aggregate_id):
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM events WHERE aggregate_type = 'order' AND aggregate_id = %s",
                    (aggregate_id,))
        return cur.fetchone()[0]


conn = None
watcher = None  # a second, autocommit connection that checks what is visible
first_event_id = None

with report.feature("connect (cleartext)"):
    conn = psycopg2.connect(conninfo())
    expect_eq(conn.autocommit, False, "default autocommit")
    with conn.cursor() as cur:
        cur.execute("SELECT current_database(), current_setting('server_version_num')")
        expect_eq(cur.fetchone(), ("default", str(conn.server_version)), "database and version")
    conn.rollback()
    expect(conn.server_version >= 150000, f"server_version {conn.server_version}")

with report.feature("connect (SCRAM-SHA-256)"):
    c = psycopg2.connect(conninfo(user=token_id(TOKEN)))
    with c.cursor() as cur:
        cur.execute("SELECT 1")
        expect_eq(cur.fetchone(), (1,), "SELECT 1")
    c.close()

watcher = psycopg2.connect(conninfo())
watcher.autocommit = True
rollback = conn.rollback


def versions(aggregate_id):
    with watcher.cursor() as cur:
        cur.execute("SELECT event_id, version FROM events WHERE aggregate_type = 'order' "
                    "AND aggregate_id = %s ORDER BY version", (aggregate_id,))
        return cur.fetchall()


APPEND = ("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) "
          "VALUES (%s, %s, %s, %s, %s)")

with report.feature("apply schema", rollback):
    with conn.cursor() as cur:
        cur.execute("CALL apply_schema(%s)", (schema_source(),))
        rows = cur.fetchall()
    conn.commit()
    expect_eq([r[0] for r in rows], ["order"], "aggregate types")
    expect(rows[0][1] >= 1, f"schema_version {rows[0][1]}")

with report.feature("create aggregate", rollback):
    with conn.cursor() as cur:
        cur.execute(APPEND, ("order", AGG, "order_created", json.dumps({"status": "open"}), 0))
        expect_eq(cur.statusmessage, "INSERT 0 1", "command tag")
    conn.commit()
    rows = versions(AGG)
    expect_eq([v for _, v in rows], [1], "versions")
    first_event_id = rows[0][0]

with report.feature("BEGIN/COMMIT around appends (default mode)", rollback):
    with conn.cursor() as cur:
        cur.execute(APPEND, ("order", AGG, "order_paid", json.dumps({"status": "paid"}), 1))
    expect_eq(conn.info.transaction_status, ext.TRANSACTION_STATUS_INTRANS,
              "transaction status after the first statement")
    expect_eq(count_events(watcher, AGG), 1, "events seen by another session before COMMIT")
    conn.commit()
    expect_eq(conn.info.transaction_status, ext.TRANSACTION_STATUS_IDLE, "status after commit")
    expect_eq(count_events(watcher, AGG), 2, "events seen by another session after COMMIT")

with report.feature("ROLLBACK discards appends", rollback):
    with conn.cursor() as cur:
        cur.execute(APPEND, ("order", AGG, "order_shipped", json.dumps({"status": "lost"}), None))
        cur.execute(APPEND, ("order", "psycopg2-never", "order_created", json.dumps({"status": "x"}), None))
    conn.rollback()
    expect_eq(count_events(watcher, AGG), 2, "events after rollback")
    expect_eq(count_events(watcher, "psycopg2-never"), 0, "rolled-back aggregate")

with report.feature("apply events", rollback):
    with conn.cursor() as cur:
        cur.execute(APPEND, ("order", AGG, "order_shipped", json.dumps({"status": "shipped"}), 2))
        cur.execute(APPEND, ("order", AGG, "order_priced", json.dumps({"amount": 1250}), 3))
    conn.commit()
    expect_eq([v for _, v in versions(AGG)], [1, 2, 3, 4], "versions")

with report.feature("RETURNING in a transaction (default mode)", rollback):
    with conn.cursor() as cur:
        cur.execute(INSERT, ("order", "psycopg2-returning-tx", "order_created",
                             json.dumps({"status": "open"}), 0))
        row = cur.fetchone()
    conn.commit()
    # EventDBX assigns event ids and versions at COMMIT (sql/REFERENCE.md, "Transactions"):
    # inside the block RETURNING gives the submitted columns and NULL for the assigned ones.
    expect_eq(row[2], {"status": "open"}, "payload")
    expect_eq((row[0], row[1]), (None, None), "event_id and version inside BEGIN ... COMMIT")
    expect_eq([v for _, v in versions("psycopg2-returning-tx")], [1], "version stored at COMMIT")

with report.feature("read state", rollback):
    with conn.cursor() as cur:
        cur.execute("SELECT version, state, state ->> 'status' AS status FROM aggregates "
                    "WHERE aggregate_type = %s AND aggregate_id = %s", ("order", AGG))
        rows = cur.fetchall()
    conn.commit()
    expect_eq(rows, [(4, {"status": "shipped", "amount": 1250}, "shipped")], "state row")

with report.feature("read history", rollback):
    with conn.cursor() as cur:
        cur.execute("SELECT version, event_type, payload FROM events "
                    "WHERE aggregate_type = 'order' AND aggregate_id = %s ORDER BY version", (AGG,))
        rows = cur.fetchall()
    conn.commit()
    expect_eq(rows, [(1, "order_created", {"status": "open"}),
                     (2, "order_paid", {"status": "paid"}),
                     (3, "order_shipped", {"status": "shipped"}),
                     (4, "order_priced", {"amount": 1250})], "history")

with report.feature("page outbox", rollback):
    seen = []
    after = first_event_id - 1
    pages = 0
    with conn.cursor() as cur:
        while pages < 50:
            cur.execute("SELECT events_json, next_after_event_id FROM read_outbox(%s, %s)", (after, 2))
            events, nxt = cur.fetchone()
            pages += 1
            if not events:
                expect_eq(nxt, after, "checkpoint of an empty page")
                break
            expect(len(events) <= 2, f"page of {len(events)} events with take 2")
            expect_eq(nxt, int(events[-1]["event_id"]), "next_after_event_id")
            seen += [(e["aggregate_id"], e["version"]) for e in events]
            after = nxt
    conn.commit()
    mine = [s for s in seen if s[0] == AGG]
    expect_eq(mine, [(AGG, v) for v in (1, 2, 3, 4)], "own events in the outbox")
    expect(pages >= 3, f"only {pages} pages")

with report.feature("verify", rollback):
    with conn.cursor() as cur:
        cur.execute("CALL verify('order', %s)", (AGG,))
        rows = cur.fetchall()
    conn.commit()
    expect_eq(len(rows), 1, "rows")
    _, agg_id, version, recomputed, stored, ok = rows[0]
    expect_eq((agg_id, version, ok), (AGG, 4, True), "verify row")
    expect_eq(recomputed, stored, "roots")

with report.feature("client-side interpolated literals", rollback):
    note = "it's a \"quoted\" note \\ with backslash, snowman \u2603 and ; semicolon"
    metadata = {"source": "psycopg2", "quote": "O'Reilly", "nested": {"list": [1, 2.5, None, True]}}
    with conn.cursor() as cur:
        sql = cur.mogrify("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, metadata, note) "
                          "VALUES (%s, %s, %s, %s, %s, %s) RETURNING note, metadata",
                          ("order", "psycopg2-literals", "order_created", json.dumps({"status": "open"}),
                           json.dumps(metadata), note))
        expect(b"O''Reilly" in sql, f"client-side quoting: {sql!r}")
        cur.execute(sql)
        expect_eq(cur.fetchone(), (note, metadata), "returned note and metadata")
        conn.commit()
        cur.execute("SELECT note, metadata ->> 'quote', metadata -> 'nested' -> 'list' FROM events "
                    "WHERE aggregate_type = %s AND aggregate_id = %s AND version = %s",
                    ("order", "psycopg2-literals", 1))
        expect_eq(cur.fetchone(), (note, "O'Reilly", [1, 2.5, None, True]), "read back")
    conn.commit()

with report.feature("RETURNING (autocommit)"):
    auto = psycopg2.connect(conninfo())
    auto.autocommit = True
    with auto.cursor() as cur:
        cur.execute("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES "
                    "('order', 'psycopg2-returning', 'order_created', '{\"status\": \"open\"}'), "
                    "('order', 'psycopg2-returning', 'order_paid', '{\"status\": \"paid\"}') "
                    "RETURNING *, payload ->> 'status' AS status")
        rows = cur.fetchall()
        names = [d.name for d in cur.description]
        types = {d.name: d.type_code for d in cur.description}
    auto.close()
    expect_eq(names, ["event_id", "aggregate_type", "aggregate_id", "version", "event_type", "payload",
                      "metadata", "note", "created_at", "issued_by", "hash", "merkle_root", "status"],
              "RETURNING * columns")
    expect_eq((types["event_id"], types["payload"], types["created_at"], types["status"]),
              (20, 114, 1184, 25), "column type oids")
    expect_eq([(r[3], r[12]) for r in rows], [(1, "open"), (2, "paid")], "versions and statuses")
    expect(rows[0][0] < rows[1][0], "event ids ascend")
    expect(rows[0][8].tzinfo is not None, "created_at is timezone-aware")
    expect_eq(rows[0][9], {"group": "admin", "user": "cli"}, "issued_by")

with report.feature("autocommit mode"):
    auto = psycopg2.connect(conninfo())
    auto.autocommit = True
    with auto.cursor() as cur:
        cur.execute(INSERT, ("order", "psycopg2-auto", "order_created", json.dumps({"status": "open"}), 0))
        expect_eq(cur.fetchone()[1], 1, "version")
        expect_eq(auto.info.transaction_status, ext.TRANSACTION_STATUS_IDLE, "no open transaction")
        expect_eq(count_events(watcher, "psycopg2-auto"), 1, "visible at once to another session")
        cur.execute("BEGIN")
        cur.execute(INSERT, ("order", "psycopg2-auto", "order_paid", json.dumps({"status": "paid"}), 1))
        cur.execute("ROLLBACK")
        expect_eq(count_events(watcher, "psycopg2-auto"), 1, "explicit BEGIN ... ROLLBACK")
    auto.close()

with report.feature("conflict 40001", rollback):
    auto = psycopg2.connect(conninfo())
    auto.autocommit = True
    with auto.cursor() as cur:
        try:
            cur.execute(INSERT, ("order", AGG, "order_paid", json.dumps({"status": "paid"}), 1))
            raise AssertionError("a stale expected_version was accepted")
        except psycopg2.errors.SerializationFailure as e:
            expect_eq(e.pgcode, "40001", "pgcode")
    auto.close()
    # In a transaction the conflict is reported by COMMIT and discards the whole block.
    with conn.cursor() as cur:
        try:
            cur.execute(INSERT, ("order", "psycopg2-tx-conflict", "order_created",
                                 json.dumps({"status": "open"}), None))
            cur.execute(INSERT, ("order", AGG, "order_paid", json.dumps({"status": "paid"}), 1))
            conn.commit()
            raise AssertionError("a stale expected_version was committed")
        except psycopg2.errors.SerializationFailure as e:
            expect_eq(e.pgcode, "40001", "pgcode")
    conn.rollback()
    expect_eq(count_events(watcher, "psycopg2-tx-conflict"), 0, "events of the failed block")
    expect_eq(count_events(watcher, AGG), 4, "events of the aggregate")

with report.feature("schema violation 23514", rollback):
    with conn.cursor() as cur:
        try:
            cur.execute(INSERT, ("order", AGG, "order_priced", json.dumps({"amount": -5}), None))
            conn.commit()
            raise AssertionError("amount -5 was accepted")
        except psycopg2.errors.CheckViolation as e:
            expect_eq(e.pgcode, "23514", "pgcode")
            expect("amount" in (e.diag.message_detail or "") + (e.diag.message_primary or ""),
                   f"error names the field: {e.diag.message_primary!r} / {e.diag.message_detail!r}")
    conn.rollback()
    expect_eq(count_events(watcher, AGG), 4, "events of the aggregate")

with report.feature("permission denied 42501"):
    reader = psycopg2.connect(conninfo(token=READER_TOKEN, user="reader"))
    with reader.cursor() as cur:
        cur.execute("SELECT version FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = %s", (AGG,))
        expect_eq(cur.fetchall(), [(4,)], "read-only token reads")
        try:
            cur.execute(INSERT, ("order", AGG, "order_paid", json.dumps({"status": "paid"}), None))
            reader.commit()
            raise AssertionError("a read-only token appended")
        except psycopg2.errors.InsufficientPrivilege as e:
            expect_eq(e.pgcode, "42501", "pgcode")
    reader.close()

with report.feature("wrong password 28P01"):
    try:
        psycopg2.connect(conninfo(token=TOKEN[:-4] + "0000"))
        raise AssertionError("connected with a wrong password")
    except psycopg2.OperationalError as e:
        # libpq gives drivers no SQLSTATE for a failed connection attempt; its message is
        # the server's 28P01 text.
        expect("password authentication failed" in str(e), f"message: {e}")

for c in (conn, watcher):
    if c is not None:
        c.close()
report.finish()
