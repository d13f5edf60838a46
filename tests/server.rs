//! Black-box tests of the pgwire front end: a real server on 127.0.0.1:0 driven by
//! tokio-postgres (extended protocol, typed binds, binary results) and its simple-query
//! path, covering authentication, the SQL surface, transactions and every error class.

mod support;

use eventdbx::auth::TokenStore;
use serde_json::{json, Value};
use support::{sqlstate, TestServer};

const SCHEMA: &str = r#"
aggregate order {
    snapshot_threshold = 3
    field status { type = "text" rules = {"required": true} }
    field amount { type = "integer" rules = {"range": {"min": 0}} }
    field customer { type = "reference" rules = {"format": "reference", "reference": {"aggregate_type": "person", "integrity": "strong"}} }
    event order_created { fields = ["status"] }
    event order_paid { fields = ["status", "amount"] }
    event order_assigned { fields = ["customer"] }
}
aggregate person {
    field name { type = "text" }
    event person_created { fields = ["name"] }
}
"#;

const INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) \
                      VALUES ($1, $2, $3, $4, $5) RETURNING event_id, version, merkle_root, created_at";

/// `SHOW eventdbx.storage_memory`, parsed.
async fn storage_memory(client: &tokio_postgres::Client) -> Value {
    let memory: String = client
        .query_one("SELECT current_setting('eventdbx.storage_memory')", &[])
        .await
        .expect("storage memory")
        .get(0);
    serde_json::from_str(&memory).expect("storage memory is JSON")
}

#[tokio::test]
async fn connects_with_a_token_and_answers_session_queries() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("select 1")
        .get(0);
    assert_eq!(one, 1);
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .expect("version")
        .get(0);
    assert!(version.contains("EventDBX"), "{version}");
    let rows = client
        .simple_query("SET application_name = 'tests'; SHOW application_name")
        .await
        .expect("set/show");
    let shown = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(shown.as_deref(), Some("tests"));
    let num: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .expect("setting")
        .get(0);
    assert_eq!(num, "160006");
    // The caches' memory (RocksDB's own accounting, the opened tail, the opened history
    // and the current aggregate records), as one JSON object of byte counts.
    let memory = storage_memory(&client).await;
    for key in [
        "block_cache_bytes",
        "block_cache_pinned_bytes",
        "memtable_bytes",
        "table_reader_bytes",
        "history_tail_bytes",
        "opened_history_bytes",
        "aggregate_records_bytes",
    ] {
        assert!(memory[key].is_u64(), "{key} in {memory}");
    }
    assert!(
        memory["memtable_bytes"].as_u64() > Some(0),
        "an open store has memtables: {memory}"
    );
    client
        .batch_execute("BEGIN; COMMIT; DISCARD ALL; SET extra_float_digits = 3")
        .await
        .expect("session statements");
    server.stop().await;
}

#[tokio::test]
async fn authentication_failures_are_28p01_and_wrong_database_is_3d000() {
    let server = TestServer::start().await;
    let err = server
        .connect_as("dbx_0000000000000000_00")
        .await
        .expect_err("bad token");
    assert_eq!(sqlstate(&err), "28P01");
    let mut wrong = server.admin_token.clone();
    wrong.pop();
    wrong.push('x');
    let err = server.connect_as(&wrong).await.expect_err("wrong secret");
    assert_eq!(sqlstate(&err), "28P01");
    let url = format!(
        "host=127.0.0.1 port={} user=a password={} dbname=other",
        server.addr.port(),
        server.admin_token
    );
    let err = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .err()
        .expect("other db must fail");
    assert_eq!(sqlstate(&err), "3D000");
    server.stop().await;
}

#[tokio::test]
async fn scram_works_with_the_token_id_as_user_name() {
    let server = TestServer::start().await;
    let id = server
        .admin_token
        .trim_start_matches("dbx_")
        .split('_')
        .next()
        .expect("id")
        .to_owned();
    let url = format!(
        "host=127.0.0.1 port={} user={id} password={} dbname=default",
        server.addr.port(),
        server.admin_token
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("scram connect");
    tokio::spawn(connection);
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(one, 1);
    let bad = format!(
        "host=127.0.0.1 port={} user={id} password=nope dbname=default",
        server.addr.port()
    );
    let err = tokio_postgres::connect(&bad, tokio_postgres::NoTls)
        .await
        .err()
        .expect("bad scram must fail");
    assert_eq!(sqlstate(&err), "28P01");
    server.stop().await;
}

#[tokio::test]
async fn append_read_page_and_verify_through_sql() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let insert = client.prepare(INSERT).await.expect("prepare");
    assert_eq!(insert.params()[0], tokio_postgres::types::Type::TEXT);
    assert_eq!(insert.params()[4], tokio_postgres::types::Type::INT8);
    let first = client
        .query_one(
            &insert,
            &[
                &"order",
                &"order-42",
                &"order_created",
                &json!({"status": "open"}),
                &0i64,
            ],
        )
        .await
        .expect("create");
    let version: i64 = first.get("version");
    assert_eq!(version, 1);
    let first_id: i64 = first.get("event_id");
    for status in ["paid", "shipped", "delivered"] {
        client
            .query_one(
                &insert,
                &[
                    &"order",
                    &"order-42",
                    &"order_paid",
                    &json!({"status": status}),
                    &None::<i64>,
                ],
            )
            .await
            .expect("apply");
    }
    let row = client
        .query_one(
            "SELECT version, state, state ->> 'status' AS status FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = $2",
            &[&"order", &"order-42"],
        )
        .await
        .expect("state");
    assert_eq!(row.get::<_, i64>("version"), 4);
    assert_eq!(row.get::<_, Value>("state"), json!({"status": "delivered"}));
    assert_eq!(row.get::<_, String>("status"), "delivered");
    // The state as of a past version.
    let past: Value = client
        .query_one(
            "SELECT state FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = 'order-42' AND version = 2",
            &[],
        )
        .await
        .expect("past")
        .get(0);
    assert_eq!(past, json!({"status": "paid"}));
    let history = client
        .query(
            "SELECT version, event_type FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3 ORDER BY version",
            &[&"order", &"order-42", &1i64],
        )
        .await
        .expect("history");
    assert_eq!(
        history
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let outbox = client
        .query_one("SELECT * FROM read_outbox($1, $2)", &[&first_id, &2i64])
        .await
        .expect("outbox");
    let events: Value = outbox.get("events_json");
    let next: i64 = outbox.get("next_after_event_id");
    assert_eq!(events.as_array().map(Vec::len), Some(2));
    // Ids are decimal strings in events_json (exact beyond 2^53).
    assert_eq!(events[1]["event_id"], json!(next.to_string()));
    assert_eq!(events[0]["version"], json!(2));
    let paged = client
        .query(
            "SELECT event_id FROM outbox WHERE event_id > $1 ORDER BY event_id LIMIT $2",
            &[&next, &10i64],
        )
        .await
        .expect("outbox table");
    assert_eq!(paged.len(), 1);
    // The four events went to the opened tail of the history as they were committed, and it
    // is what answered those pages; its memory is reported with RocksDB's.
    let memory = storage_memory(&client).await;
    assert!(
        memory["history_tail_bytes"].as_u64() > Some(0),
        "committed events are in the tail: {memory}"
    );
    // Their aggregates' records were kept as they were written.
    assert!(
        memory["aggregate_records_bytes"].as_u64() > Some(0),
        "written records are kept: {memory}"
    );
    let count = support::count_events(&client).await;
    assert_eq!(count, 4);
    // Some columns of a table function, renamed.
    let projected = client
        .query_one(
            "SELECT next_after_event_id AS next FROM read_outbox($1, $2)",
            &[&first_id, &2i64],
        )
        .await
        .expect("projected outbox");
    assert_eq!(projected.columns().len(), 1);
    assert_eq!(projected.columns()[0].name(), "next");
    assert_eq!(projected.get::<_, i64>(0), next);
    let verify = client
        .query_one("CALL verify('order', 'order-42')", &[])
        .await
        .expect("verify");
    assert!(verify.get::<_, bool>("ok"));
    assert_eq!(
        verify.get::<_, String>("recomputed_root"),
        verify.get::<_, String>("stored_root")
    );
    let all = client
        .query("CALL verify()", &[])
        .await
        .expect("verify all");
    assert_eq!(all.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn every_error_class_has_its_sqlstate_and_the_connection_survives() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .query("CALL apply_schema($1)", &[&SCHEMA])
        .await
        .expect("apply schema");
    let insert = client.prepare(INSERT).await.expect("prepare");
    client
        .query_one(
            &insert,
            &[
                &"order",
                &"o-1",
                &"order_created",
                &json!({"status": "open"}),
                &0i64,
            ],
        )
        .await
        .expect("create");
    // Conflict.
    let err = client
        .query_one(
            &insert,
            &[
                &"order",
                &"o-1",
                &"order_created",
                &json!({"status": "open"}),
                &0i64,
            ],
        )
        .await
        .expect_err("conflict");
    assert_eq!(sqlstate(&err), "40001");
    // Schema violation: range, with field and rule in DETAIL.
    let err = client
        .query_one(
            &insert,
            &[
                &"order",
                &"o-1",
                &"order_paid",
                &json!({"status": "paid", "amount": -5}),
                &None::<i64>,
            ],
        )
        .await
        .expect_err("range");
    assert_eq!(sqlstate(&err), "23514");
    let detail = err
        .as_db_error()
        .and_then(|e| e.detail())
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("amount") && detail.contains("range"),
        "{detail}"
    );
    // Missing strong reference.
    let err = client
        .query_one(
            &insert,
            &[
                &"order",
                &"o-1",
                &"order_assigned",
                &json!({"customer": "person#nobody"}),
                &None::<i64>,
            ],
        )
        .await
        .expect_err("reference");
    assert_eq!(sqlstate(&err), "23503");
    // Too large.
    let big = json!({"status": "x".repeat(300 * 1024)});
    let err = client
        .query_one(
            &insert,
            &[&"order", &"o-1", &"order_paid", &big, &None::<i64>],
        )
        .await
        .expect_err("too large");
    assert_eq!(sqlstate(&err), "54000");
    // Invalid values.
    let err = client
        .query_one(&insert, &[&"Order", &"o-1", &"x", &json!({}), &None::<i64>])
        .await
        .expect_err("bad name");
    assert_eq!(sqlstate(&err), "22023");
    let err = client
        .simple_query("SELECT * FROM events WHERE event_id = 'abc'")
        .await
        .expect_err("bad literal");
    assert_eq!(sqlstate(&err), "22P02");
    // Unsupported, immutable and syntax errors.
    let err = client
        .simple_query("DELETE FROM events")
        .await
        .expect_err("delete");
    assert_eq!(sqlstate(&err), "0A000");
    let err = client
        .simple_query("UPDATE events SET note = 'x'")
        .await
        .expect_err("update");
    assert_eq!(sqlstate(&err), "0A000");
    let err = client.simple_query("SELEC 1").await.expect_err("syntax");
    assert_eq!(sqlstate(&err), "42601");
    let err = client
        .simple_query("SELECT * FROM nowhere")
        .await
        .expect_err("unknown table");
    assert_eq!(sqlstate(&err), "42P01");
    // A schema that does not compile leaves the old one in force.
    let err = client
        .query_one("CALL apply_schema($1)", &[&"aggregate broken {"])
        .await
        .expect_err("bad schema");
    assert_eq!(sqlstate(&err), "42P17");
    // Still usable after all that.
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("still usable")
        .get(0);
    assert_eq!(one, 1);
    let state: Value = client
        .query_one(
            "SELECT state FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = 'o-1'",
            &[],
        )
        .await
        .expect("state")
        .get(0);
    assert_eq!(state, json!({"status": "open"}));
    server.stop().await;
}

#[tokio::test]
async fn schema_apply_takes_effect_for_the_next_write() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let insert = client.prepare(INSERT).await.expect("prepare");
    // No schema yet: anything goes under --restrict default.
    client
        .query_one(
            &insert,
            &[
                &"order",
                &"free",
                &"anything",
                &json!({"x": 1}),
                &None::<i64>,
            ],
        )
        .await
        .expect("unschematized write");
    let applied = client
        .query("CALL apply_schema($1)", &[&SCHEMA])
        .await
        .expect("apply");
    assert_eq!(applied.len(), 2);
    let err = client
        .query_one(
            &insert,
            &[
                &"order",
                &"free",
                &"anything",
                &json!({"x": 1}),
                &None::<i64>,
            ],
        )
        .await
        .expect_err("now enforced");
    assert_eq!(sqlstate(&err), "23514");
    let schemas = client
        .query("SELECT aggregate_type, schema_version FROM schemas", &[])
        .await
        .expect("schemas");
    assert_eq!(schemas.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn strict_mode_rejects_types_without_a_schema() {
    let server = TestServer::start_with(eventdbx::server::RestrictMode::Strict).await;
    let client = server.connect().await;
    let insert = client.prepare(INSERT).await.expect("prepare");
    let err = client
        .query_one(
            &insert,
            &[
                &"order",
                &"o",
                &"order_created",
                &json!({"status": "open"}),
                &None::<i64>,
            ],
        )
        .await
        .expect_err("strict");
    assert_eq!(sqlstate(&err), "23514");
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_authorized_per_action_and_revocation_is_immediate() {
    let server = TestServer::start().await;
    let admin = server.connect().await;
    admin
        .query_one(
            INSERT,
            &[&"order", &"o-1", &"created", &json!({}), &None::<i64>],
        )
        .await
        .expect("seed");
    let reader_token = server.issue(&["aggregate.read"], &["aggregate:order:*"]);
    let reader = server
        .connect_as(&reader_token)
        .await
        .expect("reader connects");
    let rows = reader
        .query(
            "SELECT aggregate_id FROM aggregates WHERE aggregate_type = 'order'",
            &[],
        )
        .await
        .expect("read");
    assert_eq!(rows.len(), 1);
    let err = reader
        .query_one(
            INSERT,
            &[&"order", &"o-2", &"created", &json!({}), &None::<i64>],
        )
        .await
        .expect_err("no append");
    assert_eq!(sqlstate(&err), "42501");
    let err = reader
        .query("SELECT * FROM read_outbox(0, 10)", &[])
        .await
        .expect_err("no outbox");
    assert_eq!(sqlstate(&err), "42501");
    // Revoked through a registry of its own, as `dbx token revoke` does from another
    // process; the server's check before a statement trusts a look at the file for
    // REGISTRY_RECHECK, and `settle` is what makes the revocation hold for the next one.
    server
        .tokens()
        .revoke(&reader_token, Some("test".into()))
        .expect("revoke");
    TokenStore::settle();
    assert!(
        reader.query("SELECT 1", &[]).await.is_err(),
        "revoked session must stop"
    );
    let err = server.connect_as(&reader_token).await.expect_err("revoked");
    assert_eq!(sqlstate(&err), "28P01");
    server.stop().await;
}

#[tokio::test]
async fn transactions_commit_atomically_and_roll_back() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let tx = client.transaction().await.expect("begin");
    tx.execute(
        INSERT,
        &[&"order", &"t-1", &"created", &json!({"n": 1}), &None::<i64>],
    )
    .await
    .expect("insert 1");
    tx.execute(
        INSERT,
        &[&"order", &"t-2", &"created", &json!({"n": 2}), &None::<i64>],
    )
    .await
    .expect("insert 2");
    tx.rollback().await.expect("rollback");
    let count = support::count_events(&client).await;
    assert_eq!(count, 0);
    let tx = client.transaction().await.expect("begin");
    tx.execute(
        INSERT,
        &[&"order", &"t-1", &"created", &json!({"n": 1}), &None::<i64>],
    )
    .await
    .expect("insert 1");
    tx.execute(
        INSERT,
        &[&"order", &"t-1", &"changed", &json!({"n": 2}), &None::<i64>],
    )
    .await
    .expect("insert 2");
    tx.commit().await.expect("commit");
    let version: i64 = client
        .query_one("SELECT version FROM aggregates WHERE aggregate_type = 'order' AND aggregate_id = 't-1'", &[])
        .await
        .expect("state")
        .get(0);
    assert_eq!(version, 2);
    // A conflict at COMMIT discards the whole block.
    let tx = client.transaction().await.expect("begin");
    tx.execute(
        INSERT,
        &[&"order", &"t-3", &"created", &json!({}), &None::<i64>],
    )
    .await
    .expect("insert");
    tx.execute(INSERT, &[&"order", &"t-1", &"changed", &json!({}), &7i64])
        .await
        .expect("buffered");
    let err = tx.commit().await.expect_err("conflict at commit");
    assert_eq!(sqlstate(&err), "40001");
    let count = support::count_events(&client).await;
    assert_eq!(count, 2);
    server.stop().await;
}

#[tokio::test]
async fn pipelined_queries_and_an_error_in_the_middle() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let insert = client.prepare(INSERT).await.expect("prepare");
    let empty = json!({});
    let zero = 0i64;
    let p1: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&"order", &"p-1", &"created", &empty, &zero];
    let p2: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&"order", &"p-2", &"created", &empty, &zero];
    let a = client.query_one(&insert, &p1);
    let b = client.query_one(&insert, &p1);
    let c = client.query_one(&insert, &p2);
    let (a, b, c) = tokio::join!(a, b, c);
    assert!(a.is_ok());
    assert_eq!(sqlstate(&b.expect_err("second create conflicts")), "40001");
    assert!(c.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn psql_style_catalog_queries_answer_rows() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let dt = "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\",\n  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as \"Type\",\n  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\nWHERE c.relkind IN ('r','p','')\n      AND n.nspname <> 'pg_catalog'\n      AND n.nspname !~ '^pg_toast'\n      AND n.nspname <> 'information_schema'\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 1,2;";
    let rows = client.simple_query(dt).await.expect("\\dt");
    let names: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(1).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert!(
        names.contains(&"events".to_string()) && names.contains(&"aggregates".to_string()),
        "{names:?}"
    );
    server.stop().await;
}

// Regression: stopping the server used to close connections while their appends were being
// committed, so a client could see "connection closed" for an append that was in fact
// stored. Shutdown now lets running statements answer first: acknowledged == stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_answers_every_append_it_commits() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(server.connect().await);
    }
    let writers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(async move {
                let mut acked = 0u64;
                // Write until the server goes away, so the stop always lands mid-stream.
                for n in 0..1_000_000usize {
                    let id = format!("g-{}", (i + n) % 4);
                    match client
                        .query_one(
                            INSERT,
                            &[&"order", &id, &"changed", &json!({"n": n}), &None::<i64>],
                        )
                        .await
                    {
                        Ok(_) => acked += 1,
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let data_dir = server.workspace.data_dir();
    let workspace_dir = server.dir.path().to_owned();
    let stop = tokio::spawn(server.stop_keep_dir());
    let mut acked = 0;
    for writer in writers {
        acked += writer.await.expect("writer");
    }
    let _dir = stop.await.expect("stop");
    let engine = eventdbx::engine::Engine::open(eventdbx::engine::EngineOptions::new(&data_dir))
        .expect("reopen");
    let stored = engine.stats().expect("stats").events;
    assert!(acked > 0, "some appends were acknowledged before the stop");
    assert_eq!(
        stored, acked,
        "every stored append was acknowledged and vice versa ({workspace_dir:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_interrupts_a_running_statement() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let cancel = client.cancel_token();
    let started = std::time::Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        cancel
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel request");
    });
    let err = client
        .simple_query("SELECT pg_sleep(30)")
        .await
        .expect_err("canceled");
    assert_eq!(sqlstate(&err), "57014");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "canceled promptly"
    );
    canceller.await.expect("canceller");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("usable after cancel")
        .get(0);
    assert_eq!(one, 1);
    server.stop().await;
}

#[tokio::test]
async fn an_expired_token_stops_working() {
    let server = TestServer::start().await;
    let token = server
        .tokens()
        .issue(eventdbx::auth::TokenSpec {
            group: "ops".into(),
            user: "brief".into(),
            actions: vec!["aggregate.read".into()],
            resources: vec![],
            ttl_seconds: Some(1),
            label: None,
        })
        .expect("issue")
        .token;
    let client = server.connect_as(&token).await.expect("valid for now");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(one, 1);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "expired session must stop"
    );
    let err = server.connect_as(&token).await.err().map(|e| sqlstate(&e));
    assert_eq!(err.as_deref(), Some("28P01"));
    server.stop().await;
}

#[tokio::test]
async fn hidden_fields_and_hidden_aggregates_stay_out_of_the_views() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let schema = r#"
aggregate person {
    hidden_fields = ["ssn"]
    field name { type = "text" }
    field ssn { type = "text" }
    event person_created { fields = ["name", "ssn"] }
}
aggregate audit_trail {
    hidden = true
    field what { type = "text" }
    event noted { fields = ["what"] }
}
"#;
    client
        .query("CALL apply_schema($1)", &[&schema])
        .await
        .expect("apply");
    client
        .query_one(
            INSERT,
            &[
                &"person",
                &"p-1",
                &"person_created",
                &json!({"name": "Ada", "ssn": "123-45"}),
                &0i64,
            ],
        )
        .await
        .expect("person");
    client
        .query_one(
            INSERT,
            &[
                &"audit_trail",
                &"a-1",
                &"noted",
                &json!({"what": "x"}),
                &0i64,
            ],
        )
        .await
        .expect("audit");
    let state: Value = client
        .query_one(
            "SELECT state FROM aggregates WHERE aggregate_type = 'person' AND aggregate_id = 'p-1'",
            &[],
        )
        .await
        .expect("state")
        .get(0);
    assert_eq!(
        state,
        json!({"name": "Ada"}),
        "hidden field left out of the state view"
    );
    let payload: Value = client
        .query_one(
            "SELECT payload FROM events WHERE aggregate_type = 'person' AND aggregate_id = 'p-1'",
            &[],
        )
        .await
        .expect("payload")
        .get(0);
    assert_eq!(
        payload,
        json!({"name": "Ada"}),
        "hidden field left out of the events view"
    );
    // The whole-history scans (no aggregate named) read events in place; they redact too.
    for sql in [
        "SELECT payload FROM events WHERE event_id > 0",
        "SELECT payload FROM outbox",
    ] {
        let payloads = support::first_column::<Value>(&client, sql).await;
        assert!(
            payloads.contains(&json!({"name": "Ada"}))
                && !payloads.iter().any(|p| p.get("ssn").is_some()),
            "{sql}: {payloads:?}"
        );
    }
    let listed: Vec<String> = client
        .query("SELECT aggregate_type FROM aggregates", &[])
        .await
        .expect("list")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        listed,
        vec!["person".to_string()],
        "hidden aggregate type not in an unfiltered list"
    );
    let direct = client
        .query(
            "SELECT aggregate_id FROM aggregates WHERE aggregate_type = 'audit_trail'",
            &[],
        )
        .await
        .expect("direct");
    assert_eq!(direct.len(), 1, "still reachable by its type");
    // The stored event keeps the field: verify covers what was written.
    let verify = client
        .query_one("CALL verify('person', 'p-1')", &[])
        .await
        .expect("verify");
    assert!(verify.get::<_, bool>("ok"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_close_after_the_idle_timeout_but_running_statements_do_not() {
    let server = TestServer::start_configured(eventdbx::server::RestrictMode::Default, |c| {
        c.idle_timeout_seconds = 1
    })
    .await;
    let busy = server.connect().await;
    // A statement longer than the timeout is not idle time.
    busy.simple_query("SELECT pg_sleep(1.6)")
        .await
        .expect("long statement survives");
    let idle = server.connect().await;
    let one: i32 = idle
        .query_one("SELECT 1", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(one, 1);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        idle.query_one("SELECT 1", &[]).await.is_err(),
        "idle session was closed"
    );
    let fresh = server.connect().await;
    let one: i32 = fresh
        .query_one("SELECT 1", &[])
        .await
        .expect("new sessions still work")
        .get(0);
    assert_eq!(one, 1);
    server.stop().await;
}

// Regression: COUNT(*) subtracted OFFSET from the rows counted; as in PostgreSQL, LIMIT and
// OFFSET apply to the single result row.
#[tokio::test]
async fn count_star_with_limit_and_offset_behaves_like_postgres() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    for n in 0..3 {
        client
            .query_one(
                INSERT,
                &[&"order", &format!("c-{n}"), &"created", &json!({}), &0i64],
            )
            .await
            .expect("append");
    }
    let rows = client
        .query("SELECT COUNT(*) FROM events LIMIT 5", &[])
        .await
        .expect("count");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 3);
    let rows = client
        .query("SELECT COUNT(*) FROM events OFFSET 1", &[])
        .await
        .expect("offset");
    assert!(rows.is_empty(), "OFFSET 1 skips the only row");
    let rows = client
        .query("SELECT COUNT(*) FROM events LIMIT 0", &[])
        .await
        .expect("limit 0");
    assert!(rows.is_empty());
    server.stop().await;
}

/// Result rows are queued in 64 KiB runs between write-buffer checks; a result several
/// times that size must still arrive whole and in order, in both protocols, with a
/// pipelined statement right behind it.
#[tokio::test]
async fn results_larger_than_the_write_batch_arrive_whole_and_in_order() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let filler = "x".repeat(700);
    let total = 400usize; // ~300 KiB of rows: several write batches
    for n in 0..total {
        client
            .query_one(
                "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) \
                 VALUES ('bulk', $1, 'filled', $2) RETURNING event_id",
                &[&format!("b-{}", n % 7), &json!({"n": n, "filler": filler})],
            )
            .await
            .expect("append");
    }
    let query = "SELECT event_id, payload FROM events ORDER BY event_id LIMIT 1000";
    let (rows, next) = tokio::join!(
        client.query(query, &[]),
        client.query_one("SELECT COUNT(*) FROM events", &[])
    );
    let rows = rows.expect("extended-protocol page");
    assert_eq!(rows.len(), total);
    for (n, row) in rows.iter().enumerate() {
        let payload: Value = row.get(1);
        assert_eq!(payload["n"], json!(n), "row {n} out of order or damaged");
        assert_eq!(payload["filler"].as_str().map(str::len), Some(700));
    }
    assert_eq!(
        next.expect("pipelined count").get::<_, i64>(0),
        total as i64
    );
    let simple = client
        .simple_query(query)
        .await
        .expect("simple-protocol page");
    let data_rows = simple
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(data_rows, total);
    server.stop().await;
}

/// A scan whose results are all text is written straight to wire bytes; one with binary
/// columns goes through cells. Both must say the same thing for every column, NULLs, JSON
/// paths, LIMIT and OFFSET included.
#[tokio::test]
async fn text_and_binary_results_of_a_scan_agree() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, note) VALUES \
             ('order', 'o-1', 'order_created', '{\"status\":\"open\",\"n\":1}', 'first'), \
             ('order', 'o-2', 'order_created', '{\"status\":\"open\",\"n\":2}', NULL), \
             ('order', 'o-1', 'order_paid', '{\"status\":\"paid\",\"n\":3}', NULL)",
        )
        .await
        .expect("seed");
    let sql = "SELECT event_id, aggregate_type, aggregate_id, version, event_type, payload, \
               metadata, note, created_at, issued_by, hash, merkle_root, payload->>'status' \
               FROM events WHERE event_id > 0 ORDER BY event_id LIMIT 2 OFFSET 1";
    // The simple protocol: every value in text format (written while scanning).
    let text_rows = support::simple_text_rows(&client, sql).await;
    // The extended protocol through tokio-postgres: binary results (encoded from cells).
    let binary_rows = client.query(sql, &[]).await.expect("extended");
    assert_eq!(text_rows.len(), 2, "LIMIT 2 OFFSET 1 of 3 events");
    assert_eq!(binary_rows.len(), 2);
    for (text, binary) in text_rows.iter().zip(&binary_rows) {
        let event_id: i64 = binary.get(0);
        let version: i64 = binary.get(3);
        let payload: Value = binary.get(5);
        let metadata: Value = binary.get(6);
        let note: Option<String> = binary.get(7);
        let issued_by: Value = binary.get(9);
        let status: Option<String> = binary.get(12);
        assert_eq!(text[0].as_deref(), Some(event_id.to_string().as_str()));
        assert_eq!(text[1].as_deref(), Some(binary.get::<_, &str>(1)));
        assert_eq!(text[2].as_deref(), Some(binary.get::<_, &str>(2)));
        assert_eq!(text[3].as_deref(), Some(version.to_string().as_str()));
        assert_eq!(text[4].as_deref(), Some(binary.get::<_, &str>(4)));
        let text_json = |i: usize| -> Value {
            serde_json::from_str(text[i].as_deref().expect("not null")).expect("json text")
        };
        assert_eq!(text_json(5), payload);
        assert_eq!(text_json(6), metadata);
        assert_eq!(text[7], note);
        assert!(
            text[8].as_deref().is_some_and(|t| t.ends_with("+00")),
            "{:?}",
            text[8]
        );
        assert_eq!(text_json(9), issued_by);
        assert_eq!(text[10].as_deref(), Some(binary.get::<_, &str>(10)));
        assert_eq!(text[11].as_deref(), Some(binary.get::<_, &str>(11)));
        assert_eq!(text[12], status);
    }
    assert_eq!(text_rows[0][7], None, "the second event has no note");
    assert_eq!(text_rows[1][12].as_deref(), Some("paid"));
    server.stop().await;
}

/// Large statements are admitted against one shared 2 MiB budget, whichever protocol
/// carries them: a parameterized bulk INSERT (text over 64 KiB, ~1 MiB of bound values)
/// from several connections at once must wait its turn, never deadlock between its Parse
/// and its Execute, and commit every row.
#[tokio::test]
async fn concurrent_parameterized_bulk_inserts_share_the_large_statement_budget() {
    const ROWS: usize = 3_000;
    const CONNECTIONS: usize = 4;
    let server = TestServer::start().await;
    let mut text = String::from(
        "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES ",
    );
    for row in 0..ROWS {
        let p = row * 4;
        if row > 0 {
            text.push(',');
        }
        text.push_str(&format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4));
    }
    assert!(
        text.len() > 64 * 1024,
        "the text alone is a large statement"
    );
    let filler = "x".repeat(300);
    let mut loaders = Vec::new();
    for connection in 0..CONNECTIONS {
        let client = server.connect().await;
        let text = text.clone();
        let filler = filler.clone();
        loaders.push(tokio::spawn(async move {
            let ids: Vec<String> = (0..ROWS)
                .map(|r| format!("c{connection}-{}", r % 50))
                .collect();
            let payloads: Vec<Value> = (0..ROWS).map(|r| json!({"n": r, "f": filler})).collect();
            let (ty, event) = ("bulk".to_owned(), "loaded".to_owned());
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                Vec::with_capacity(ROWS * 4);
            for row in 0..ROWS {
                params.push(&ty);
                params.push(&ids[row]);
                params.push(&event);
                params.push(&payloads[row]);
            }
            client.execute(text.as_str(), &params).await
        }));
    }
    for loader in loaders {
        let inserted = loader.await.expect("loader task").expect("bulk insert");
        assert_eq!(inserted, ROWS as u64);
    }
    let client = server.connect().await;
    assert_eq!(
        support::count_events(&client).await,
        (ROWS * CONNECTIONS) as i64
    );
    server.stop().await;
}

// Regression: a read of one aggregate's next few events (`version > $1 ORDER BY version
// LIMIT n`) read its stream in batches of 1,000 events, so it read up to 1,000 events to
// return a few. Batches now start at 16 and grow; this checks every row still comes, once
// and in order, across the batch boundaries (16, 80, 336, 1,336 events in), with bounds,
// OFFSET and a filter that rejects most rows.
#[tokio::test]
async fn one_aggregates_history_reads_in_order_across_growing_batches() {
    const EVENTS: i64 = 1_500;
    let server = TestServer::start().await;
    let client = server.connect().await;
    let rows: Vec<String> = (1..=EVENTS)
        .map(|v| {
            let event_type = if v % 100 == 0 { "rare" } else { "entry" };
            format!("('ledger', 'ledger-1', '{event_type}', '{{\"n\":{v}}}')")
        })
        .collect();
    support::insert_event_rows(&client, &rows).await;
    // Another aggregate's events interleaved in the key space must not leak in.
    support::insert_event_rows(
        &client,
        &[
            "('ledger', 'ledger-10', 'entry', '{}')".to_owned(),
            "('ledger', 'ledger-0', 'entry', '{}')".to_owned(),
        ],
    )
    .await;
    let versions = |sql| support::first_column::<i64>(&client, sql);
    assert_eq!(
        versions("SELECT version FROM events WHERE aggregate_type = 'ledger' AND aggregate_id = 'ledger-1' ORDER BY version").await,
        (1..=EVENTS).collect::<Vec<_>>()
    );
    assert_eq!(
        versions("SELECT version FROM events WHERE aggregate_type = 'ledger' AND aggregate_id = 'ledger-1' AND version > 1490 ORDER BY version LIMIT 5").await,
        (1491..=1495).collect::<Vec<_>>()
    );
    assert_eq!(
        versions("SELECT version FROM events WHERE aggregate_type = 'ledger' AND aggregate_id = 'ledger-1' AND version > 10 ORDER BY version LIMIT 20 OFFSET 60").await,
        (71..=90).collect::<Vec<_>>()
    );
    assert_eq!(
        versions("SELECT version FROM events WHERE aggregate_type = 'ledger' AND aggregate_id = 'ledger-1' AND version > 50 AND version <= 400 ORDER BY version").await,
        (51..=400).collect::<Vec<_>>()
    );
    assert_eq!(
        versions("SELECT version FROM events WHERE aggregate_type = 'ledger' AND aggregate_id = 'ledger-1' AND event_type = 'rare' ORDER BY version LIMIT 14").await,
        (1..=14).map(|n| n * 100).collect::<Vec<_>>()
    );
    let count: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM events WHERE aggregate_type = 'ledger' AND aggregate_id = 'ledger-1'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, EVENTS);
}

// Regression: listing aggregates (`... FROM aggregates WHERE aggregate_type = $1 LIMIT 10`)
// read them in pages of 1,000 records, so it read up to 1,000 to return a few. Pages now
// start at 16 and grow; this checks every aggregate still comes, once and in key order,
// across the page boundaries (16, 80, 336 aggregates in), with keyset bounds, OFFSET and a
// filter on the state.
#[tokio::test]
async fn aggregates_list_in_order_across_growing_batches() {
    const AGGREGATES: usize = 400;
    let server = TestServer::start().await;
    let client = server.connect().await;
    let ids: Vec<String> = (0..AGGREGATES).map(|n| format!("acct-{n:04}")).collect();
    let rows: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            format!(
                "('acct', '{id}', 'opened', '{{\"tier\":\"{}\"}}')",
                if n % 50 == 0 { "gold" } else { "basic" }
            )
        })
        .collect();
    support::insert_event_rows(&client, &rows).await;
    // Another type, before and after `acct` in key order, must not leak in.
    support::insert_event_rows(
        &client,
        &[
            "('acc', 'x', 'opened', '{}')".to_owned(),
            "('acctz', 'y', 'opened', '{}')".to_owned(),
        ],
    )
    .await;
    let listed = |sql| support::first_column::<String>(&client, sql);
    assert_eq!(
        listed("SELECT aggregate_id FROM aggregates WHERE aggregate_type = 'acct' ORDER BY aggregate_id").await,
        ids
    );
    assert_eq!(
        listed(
            "SELECT aggregate_id FROM aggregates WHERE aggregate_type = 'acct' LIMIT 20 OFFSET 70"
        )
        .await,
        ids[70..90].to_vec()
    );
    assert_eq!(
        listed("SELECT aggregate_id FROM aggregates WHERE aggregate_type = 'acct' AND aggregate_id > 'acct-0330' ORDER BY aggregate_id LIMIT 10").await,
        ids[331..341].to_vec()
    );
    assert_eq!(
        listed("SELECT aggregate_id FROM aggregates WHERE aggregate_type = 'acct' AND state ->> 'tier' = 'gold' LIMIT 7").await,
        (0..7).map(|n| ids[n * 50].clone()).collect::<Vec<_>>()
    );
    // Without a type: every aggregate, in (type, id) order.
    let all = listed("SELECT aggregate_type FROM aggregates").await;
    assert_eq!(all.len(), AGGREGATES + 2);
    assert_eq!(all.first().map(String::as_str), Some("acc"));
    assert_eq!(all.last().map(String::as_str), Some("acctz"));
}

/// A prepared one-row INSERT keeps its JSON literals parsed from when it was planned: every
/// run must store them as written, whatever the run's parameters, and a literal that is no
/// JSON object must still be refused when run, not taken for an empty object.
#[tokio::test]
async fn a_prepared_insert_stores_its_literal_payload_and_metadata_on_every_run() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let insert = client
        .prepare(
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, metadata) \
             VALUES ('order', 'o-' || $1, 'order_paid', \
             '{\"status\": \"paid\", \"amount\": 12.5, \"tags\": [\"a\", {\"b\": null}]}', \
             '{\"source\": \"till\"}') RETURNING payload, metadata",
        )
        .await
        .expect("prepare");
    for n in ["1", "2", "1"] {
        let row = client.query_one(&insert, &[&n]).await.expect("insert");
        let payload: Value = row.get(0);
        let metadata: Value = row.get(1);
        assert_eq!(
            payload,
            json!({"status": "paid", "amount": 12.5, "tags": ["a", {"b": null}]})
        );
        assert_eq!(metadata, json!({"source": "till"}));
    }
    // As stored: the text form, in the simple protocol.
    let stored = support::simple_text_rows(
        &client,
        "SELECT aggregate_id, version, payload, metadata FROM events \
         WHERE event_id > 0 ORDER BY event_id",
    )
    .await;
    let rows: Vec<Vec<String>> = stored
        .into_iter()
        .map(|row| row.into_iter().map(Option::unwrap_or_default).collect())
        .collect();
    let payload = r#"{"status":"paid","amount":12.5,"tags":["a",{"b":null}]}"#.to_owned();
    let metadata = r#"{"source":"till"}"#.to_owned();
    let row = |id: &str, version: &str| {
        vec![
            id.to_owned(),
            version.to_owned(),
            payload.clone(),
            metadata.clone(),
        ]
    };
    assert_eq!(
        rows,
        vec![row("o-1", "1"), row("o-2", "1"), row("o-1", "2")]
    );

    let array = client
        .prepare(
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) \
             VALUES ('order', $1, 'order_paid', '[1, 2]')",
        )
        .await
        .expect("prepare");
    let err = client
        .execute(&array, &[&"o-3"])
        .await
        .expect_err("an array is no payload");
    assert_eq!(sqlstate(&err), "22023", "{err}");
    server.stop().await;
}
