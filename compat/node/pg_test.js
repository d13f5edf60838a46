// node-postgres (pg and pg-cursor from npm) against EventDBX.
//
// node-postgres sends every parameter as untyped (oid 0) text, names prepared statements
// when the query config has a `name`, and pg-cursor reads a portal in pages (Execute with
// a row limit, answered by PortalSuspended).
'use strict';

const fs = require('fs');
const path = require('path');
const { Client } = require('pg');
const Cursor = require('pg-cursor');

const CLIENT = 'node-pg';
const HOST = process.env.EVENTDBX_HOST || '127.0.0.1';
const PORT = Number(process.env.EVENTDBX_PORT || 6363);
const TOKEN = process.env.EVENTDBX_TOKEN || '';
const READER_TOKEN = process.env.EVENTDBX_READER_TOKEN || '';
const AGG = 'node-order-1';
const SCHEMA = fs.readFileSync(path.join(__dirname, '..', 'schema.dbx'), 'utf8');

const INSERT =
  'INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) ' +
  'VALUES ($1, $2, $3, $4, $5) RETURNING event_id, version, payload';

let failed = 0;

async function feature(name, fn) {
  try {
    await fn();
    console.log(`PASS ${CLIENT} ${name}`);
  } catch (err) {
    failed += 1;
    const reason = `${err && err.name ? err.name : 'Error'}: ${err && err.message ? err.message : err}`;
    console.log(`FAIL ${CLIENT} ${name}: ${reason.replace(/\n/g, ' ').slice(0, 400)}`);
    if (process.env.COMPAT_DEBUG) console.error(err);
  }
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

function expectEq(actual, wanted, what) {
  const a = JSON.stringify(actual);
  const w = JSON.stringify(wanted);
  if (a !== w) throw new Error(`${what}: got ${a}, want ${w}`);
}

async function connect(opts = {}) {
  const client = new Client({
    host: HOST,
    port: PORT,
    database: 'default',
    user: opts.user || 'compat',
    password: opts.password || TOKEN,
    connectionTimeoutMillis: 10000,
  });
  await client.connect();
  return client;
}

async function expectError(promise, code, what) {
  try {
    await promise;
  } catch (err) {
    expectEq(err.code, code, `${what}: SQLSTATE (${err.message})`);
    return err;
  }
  throw new Error(`${what}: no error`);
}

async function countEvents(client, aggregateId) {
  const r = await client.query(
    "SELECT COUNT(*) AS n FROM events WHERE aggregate_type = 'order' AND aggregate_id = $1",
    [aggregateId],
  );
  return Number(r.rows[0].n);
}

async function main() {
  let client = null;
  let firstEventId = null;

  await feature('connect (cleartext)', async () => {
    client = await connect();
    const r = await client.query("SELECT current_database() AS db, current_setting('server_version_num') AS v");
    expectEq(r.rows[0].db, 'default', 'current_database()');
    expect(Number(r.rows[0].v) >= 150000, `server_version_num ${r.rows[0].v}`);
  });
  if (client === null) client = await connect();

  await feature('connect (SCRAM-SHA-256)', async () => {
    const c = await connect({ user: TOKEN.split('_')[1] });
    const r = await c.query('SELECT 1 AS one');
    expectEq(r.rows, [{ one: 1 }], 'SELECT 1');
    await c.end();
  });

  await feature('apply schema', async () => {
    const r = await client.query('CALL apply_schema($1)', [SCHEMA]);
    expectEq(r.rows.map((x) => x.aggregate_type), ['order'], 'aggregate types');
    expectEq(r.command, 'CALL', 'command tag');
  });

  await feature('create aggregate', async () => {
    const r = await client.query(INSERT, ['order', AGG, 'order_created', JSON.stringify({ status: 'open' }), 0]);
    expectEq(r.command, 'INSERT', 'command');
    expectEq(r.rowCount, 1, 'rowCount');
    // int8 arrives as a string in node-postgres; json is parsed.
    expectEq([r.rows[0].version, r.rows[0].payload], ['1', { status: 'open' }], 'version and payload');
    expect(/^[0-9]+$/.test(r.rows[0].event_id), `event_id ${r.rows[0].event_id}`);
    firstEventId = r.rows[0].event_id;
  });

  await feature('untyped text parameters', async () => {
    // Every value below goes as oid-0 text: the JSON payload, the expected version, the
    // bigint event id bound against event_id, the LIMIT.
    const r = await client.query(INSERT, ['order', AGG, 'order_paid', { status: 'paid \u2603' }, '1']);
    expectEq(r.rows[0].version, '2', 'version');
    const rows = await client.query(
      'SELECT version, payload ->> $4 AS status FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ' +
        'AND event_id >= $3 ORDER BY version LIMIT $5',
      ['order', AGG, firstEventId, 'status', 10],
    );
    expectEq(rows.rows, [{ version: '1', status: 'open' }, { version: '2', status: 'paid \u2603' }], 'rows');
    const types = rows.fields.map((f) => f.dataTypeID);
    expectEq(types, [20, 25], 'result column types');
  });

  await feature('apply events', async () => {
    await client.query('BEGIN');
    await client.query(INSERT, ['order', AGG, 'order_shipped', JSON.stringify({ status: 'shipped' }), 2]);
    await client.query(INSERT, ['order', AGG, 'order_priced', JSON.stringify({ amount: 1250 }), 3]);
    await client.query('COMMIT');
    expectEq(await countEvents(client, AGG), 4, 'events');
  });

  await feature('read state', async () => {
    const r = await client.query(
      "SELECT version, state, state ->> 'status' AS status FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = $2",
      ['order', AGG],
    );
    expectEq(r.rows, [{ version: '4', state: { status: 'shipped', amount: 1250 }, status: 'shipped' }], 'state');
  });

  await feature('read history', async () => {
    const r = await client.query(
      'SELECT version, event_type FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version',
      ['order', AGG],
    );
    expectEq(
      r.rows.map((x) => `${x.version}:${x.event_type}`),
      ['1:order_created', '2:order_paid', '3:order_shipped', '4:order_priced'],
      'history',
    );
  });

  await feature('page outbox', async () => {
    let after = (BigInt(firstEventId) - 1n).toString();
    const seen = [];
    for (let pages = 0; pages < 50; pages += 1) {
      const r = await client.query('SELECT events_json, next_after_event_id FROM read_outbox($1, $2)', [after, 3]);
      const events = r.rows[0].events_json;
      const next = r.rows[0].next_after_event_id;
      if (events.length === 0) {
        expectEq(next, after, 'checkpoint of an empty page');
        break;
      }
      expect(BigInt(next) > BigInt(after), `checkpoint ${next} after ${after}`);
      for (const e of events) if (e.aggregate_id === AGG) seen.push(e.version);
      after = next;
    }
    expectEq(seen, [1, 2, 3, 4], 'own events in the outbox');
  });

  await feature('outbox events_json event_id exact in JavaScript', async () => {
    // JSON.parse (what node-postgres uses for json columns) turns numbers into doubles,
    // exact only up to 2^53 - 1. Three events appended by one statement get consecutive
    // ids, so at least one of them needs more than 53 bits when ids are that large.
    const r = await client.query(
      'INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES ' +
        "('order', 'node-ids', 'order_created', '{\"status\": \"open\"}'), " +
        "('order', 'node-ids', 'order_paid', '{\"status\": \"paid\"}'), " +
        "('order', 'node-ids', 'order_shipped', '{\"status\": \"shipped\"}') RETURNING event_id",
    );
    const ids = r.rows.map((x) => x.event_id);
    const page = await client.query('SELECT events_json FROM read_outbox($1, $2)', [
      (BigInt(ids[0]) - 1n).toString(),
      3,
    ]);
    const fromJson = page.rows[0].events_json.map((e) => String(e.event_id));
    expectEq(fromJson, ids, 'event ids in events_json (JSON.parse) vs RETURNING event_id (int8 text)');
  });

  await feature('named prepared statements', async () => {
    const q = {
      name: 'compat-history',
      text: 'SELECT version FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND version >= $3 ORDER BY version',
    };
    for (let v = 1; v <= 4; v += 1) {
      const r = await client.query({ ...q, values: ['order', AGG, v] });
      expectEq(r.rows.map((x) => x.version), ['1', '2', '3', '4'].slice(v - 1), `execution from version ${v}`);
    }
    const append = { name: 'compat-append', text: INSERT };
    for (let i = 0; i < 3; i += 1) {
      const r = await client.query({
        ...append,
        values: ['order', 'node-prepared', i === 0 ? 'order_created' : 'order_paid', { status: `s${i}` }, i],
      });
      expectEq(r.rows[0].version, String(i + 1), 'version from the named INSERT');
    }
    expect(client.connection.parsedStatements['compat-history'] !== undefined, 'statement was not kept');
  });

  await feature('Cursor read of the outbox (Execute with a row limit)', async () => {
    const cursor = client.query(
      new Cursor('SELECT event_id, aggregate_id, version FROM outbox WHERE event_id >= $1 ORDER BY event_id', [
        firstEventId,
      ]),
    );
    const pages = [];
    for (;;) {
      const rows = await cursor.read(2);
      if (rows.length === 0) break;
      expect(rows.length <= 2, `page of ${rows.length} rows`);
      pages.push(rows);
    }
    await cursor.close();
    const mine = pages.flat().filter((r) => r.aggregate_id === AGG);
    expectEq(mine.map((r) => r.version), ['1', '2', '3', '4'], 'versions read through the cursor');
    expectEq(mine[0].event_id, firstEventId, 'first event id');
    expect(pages.length >= 3, `only ${pages.length} pages`);
    // The connection is usable after the portal.
    expectEq((await client.query('SELECT 1 AS x')).rows, [{ x: 1 }], 'after the cursor');
  });

  await feature('verify', async () => {
    const r = await client.query('CALL verify($1, $2)', ['order', AGG]);
    expectEq(r.rows.length, 1, 'rows');
    const row = r.rows[0];
    expectEq([row.aggregate_id, row.version, row.ok], [AGG, '4', true], 'verify row');
    expectEq(row.recomputed_root, row.stored_root, 'roots');
  });

  await feature('conflict 40001', async () => {
    await expectError(
      client.query(INSERT, ['order', AGG, 'order_paid', JSON.stringify({ status: 'paid' }), 2]),
      '40001',
      'stale expected_version',
    );
    expectEq(await countEvents(client, AGG), 4, 'events of the aggregate');
  });

  await feature('schema violation 23514', async () => {
    const err = await expectError(
      client.query(INSERT, ['order', AGG, 'order_priced', JSON.stringify({ amount: -5 }), null]),
      '23514',
      'amount -5',
    );
    expect(`${err.message} ${err.detail}`.includes('amount'), `error names the field: ${err.message} / ${err.detail}`);
    expectEq(await countEvents(client, AGG), 4, 'events of the aggregate');
  });

  await feature('permission denied 42501', async () => {
    const reader = await connect({ user: 'reader', password: READER_TOKEN });
    try {
      const r = await reader.query(
        "SELECT version FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = $1",
        [AGG],
      );
      expectEq(r.rows, [{ version: '4' }], 'read-only token reads');
      await expectError(
        reader.query(INSERT, ['order', AGG, 'order_paid', JSON.stringify({ status: 'paid' }), null]),
        '42501',
        'append with a read-only token',
      );
    } finally {
      await reader.end();
    }
  });

  await feature('wrong password 28P01', async () => {
    const c = new Client({
      host: HOST,
      port: PORT,
      database: 'default',
      user: 'compat',
      password: `${TOKEN.slice(0, -4)}0000`,
    });
    await expectError(c.connect(), '28P01', 'connect with a wrong password');
  });

  await client.end();
}

main()
  .catch((err) => {
    failed += 1;
    console.log(`FAIL ${CLIENT} run: ${err && err.message ? err.message : err}`);
  })
  .finally(() => {
    process.exitCode = failed ? 1 : 0;
  });
