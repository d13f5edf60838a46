-- The spec's Quick Start, through SQL, with psql.
--   psql -v ON_ERROR_STOP=1 "postgres://dbx:$(cat .dbx/cli.token)@127.0.0.1:6363/default" -f sql/examples/quickstart.sql
-- Every step checks its result; the script exits non-zero on the first surprise.
-- (The checks count matching rows with COUNT(*) and \gset: psql's \if reads 1/0 as true/false.)

\set ON_ERROR_STOP 1
\pset pager off

-- 1. Apply the Quick Start schema.
CALL apply_schema($$
aggregate order {
    snapshot_threshold = 100
    field status {
        type = "text"
    }
    event order_created {
        fields = ["status"]
    }
    event order_paid {
        fields = ["status"]
    }
}
$$);
SELECT count(*) AS ok FROM schemas WHERE aggregate_type = 'order' \gset
\if :ok
\else
    \echo 'FAIL: schema not applied'
    \quit 3
\endif

-- 2. aggregate create order order-42 --event order_created --field status=open
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version)
VALUES ('order', 'order-42', 'order_created', '{"status": "open"}', 0)
RETURNING event_id, version, merkle_root;

-- 3. aggregate apply order order-42 order_paid --field status=paid
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload)
VALUES ('order', 'order-42', 'order_paid', '{"status": "paid"}')
RETURNING event_id, version, merkle_root;

-- 4. aggregate get order order-42 --include-events
SELECT aggregate_id, version, state FROM aggregates
WHERE aggregate_type = 'order' AND aggregate_id = 'order-42';
SELECT count(*) AS ok FROM aggregates
WHERE aggregate_type = 'order' AND aggregate_id = 'order-42' AND version = 2 AND state ->> 'status' = 'paid' \gset
\if :ok
\else
    \echo 'FAIL: state after two events'
    \quit 3
\endif
SELECT version, event_type, payload FROM events
WHERE aggregate_type = 'order' AND aggregate_id = 'order-42' ORDER BY version;

-- 5. aggregate list order
SELECT aggregate_id, version FROM aggregates WHERE aggregate_type = 'order' ORDER BY aggregate_id;

-- 6. events order order-42
SELECT event_id, version, event_type FROM events
WHERE aggregate_type = 'order' AND aggregate_id = 'order-42' AND version > 0 ORDER BY version;

-- 7. aggregate verify order order-42
CALL verify('order', 'order-42');
SELECT ok FROM verify('order', 'order-42') \gset
\if :ok
\else
    \echo 'FAIL: verify'
    \quit 3
\endif

-- 8. The outbox, from the beginning.
SELECT next_after_event_id AS next FROM read_outbox(0, 10) \gset
SELECT count(*) AS ok FROM outbox WHERE event_id = :next \gset
\if :ok
\else
    \echo 'FAIL: outbox'
    \quit 3
\endif

-- 9. The state at version 1, expanded.
\x on
SELECT * FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = 'order-42' AND version = 1;
\x off

-- 10. A schema violation, with its SQLSTATE.
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload)
VALUES ('order', 'order-42', 'order_shipped', '{"status": "shipped"}');
\echo LAST_ERROR_SQLSTATE :LAST_ERROR_SQLSTATE
\echo QUICKSTART OK
