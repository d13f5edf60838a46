-- The README's Quick Start, through psql 15 instead of the dbx CLI, plus the psql
-- meta-commands people run first. check.py runs this file with `psql -X -a`, normalizes
-- the volatile values (ids, hashes, times, the port) and compares each `## section` with
-- quickstart.expected; each section is one feature of the compat matrix.
--
-- Variables (set by check.py): schema (source of compat/schema.dbx), admin, scram and
-- reader (conninfo strings: the admin token, the admin token with its id as user name so
-- that the server asks for SCRAM-SHA-256, a read-only token), wrong (a wrong password).

\echo '## connect (cleartext)'
SHOW server_version;
SELECT current_database(), current_schema();

\echo '## \\conninfo'
\conninfo

\echo '## connect (SCRAM-SHA-256)'
\connect :scram
SELECT current_database(), current_setting('eventdbx.token_user') AS token_user;
\connect :admin

\echo '## apply schema'
CALL apply_schema(:'schema');
SELECT aggregate_type, hidden FROM schemas WHERE aggregate_type = 'order';

\echo '## create aggregate'
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload)
VALUES ('order', 'order-42', 'order_created', '{"status": "open"}')
RETURNING aggregate_type, aggregate_id, version, event_type, payload;
SELECT event_id AS first_event_id FROM events
 WHERE aggregate_type = 'order' AND aggregate_id = 'order-42' AND version = 1 \gset

\echo '## apply events'
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version)
VALUES ('order', 'order-42', 'order_paid', '{"status": "paid"}', 1);
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, note)
VALUES ('order', 'order-42', 'order_shipped', '{"status": "shipped"}', 'left the warehouse'),
       ('order', 'order-43', 'order_created', '{"status": "open"}', NULL)
RETURNING aggregate_id, version, note;

\echo '## read state'
SELECT aggregate_id, version, state, state ->> 'status' AS status
  FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id IN ('order-42', 'order-43')
 ORDER BY aggregate_id;
SELECT state FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = 'order-42' AND version = 2;

\echo '## \\x output of a state'
\x on
SELECT * FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = 'order-42';
\x off

\echo '## read history'
SELECT version, event_type, payload, note, issued_by
  FROM events WHERE aggregate_type = 'order' AND aggregate_id = 'order-42' ORDER BY version;
SELECT COUNT(*) FROM events WHERE aggregate_type = 'order' AND aggregate_id = 'order-42';

\echo '## page outbox'
SELECT events_json, next_after_event_id FROM read_outbox(:first_event_id, 2);
SELECT next_after_event_id AS checkpoint FROM read_outbox(:first_event_id, 2) \gset
SELECT aggregate_id, version FROM outbox WHERE event_id > :first_event_id ORDER BY event_id LIMIT 2;
SELECT aggregate_id, version FROM outbox WHERE event_id > :checkpoint ORDER BY event_id LIMIT 10;
SELECT next_after_event_id AS checkpoint FROM read_outbox(:checkpoint, 2) \gset
SELECT * FROM read_outbox(:checkpoint, 2);

\echo '## verify'
CALL verify('order', 'order-42');

\echo '## \\dt'
\dt

\echo '## \\d events'
\d events

\echo '## \\d aggregates'
\d aggregates

\echo '## \\l'
\l

\echo '## conflict 40001'
\set VERBOSITY verbose
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version)
VALUES ('order', 'order-42', 'order_paid', '{"status": "paid"}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT version FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = 'order-42';

\echo '## schema violation 23514'
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload)
VALUES ('order', 'order-42', 'order_priced', '{"amount": -5}');
\echo :LAST_ERROR_SQLSTATE

\echo '## error with its SQLSTATE (VERBOSITY verbose)'
DELETE FROM events;
\echo :LAST_ERROR_SQLSTATE
SELECT stream_id FROM events;
\set VERBOSITY default

\echo '## permission denied 42501'
\connect :reader
SELECT aggregate_id, version FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = 'order-42';
\set VERBOSITY verbose
INSERT INTO events (aggregate_type, aggregate_id, event_type, payload)
VALUES ('order', 'order-42', 'order_paid', '{"status": "paid"}');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
\connect :admin

\echo '## wrong password 28P01'
-- A failed \connect ends a non-interactive psql (exit code 2): this section comes last.
\connect :wrong
