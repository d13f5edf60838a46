//! sqlx against the real server: typed binds (i64, &str, serde_json::Value), binary
//! results, prepared statements reused across calls, and SQLSTATEs.

mod support;

use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Row;
use support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_appends_reads_and_reports_errors() {
    let server = TestServer::start().await;
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(server.addr.port())
        .username("sqlx")
        .password(&server.admin_token)
        .database("default");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("connect");
    let insert =
        "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) \
                  VALUES ($1, $2, $3, $4, $5) RETURNING event_id, version";
    let mut last_version = 0i64;
    for n in 0..8i64 {
        // sqlx prepares once per connection and reuses the statement.
        let row = sqlx::query(insert)
            .bind("order")
            .bind("sqlx-1")
            .bind("changed")
            .bind(json!({"n": n}))
            .bind(if n == 0 { Some(0i64) } else { None })
            .fetch_one(&pool)
            .await
            .expect("append");
        last_version = row.get::<i64, _>("version");
        assert!(row.get::<i64, _>("event_id") > 0);
    }
    assert_eq!(last_version, 8);
    let row = sqlx::query(
        "SELECT version, state FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind("order")
    .bind("sqlx-1")
    .fetch_one(&pool)
    .await
    .expect("state");
    assert_eq!(row.get::<i64, _>("version"), 8);
    assert_eq!(row.get::<serde_json::Value, _>("state"), json!({"n": 7}));
    let events = sqlx::query("SELECT event_id, version FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3 ORDER BY version")
        .bind("order")
        .bind("sqlx-1")
        .bind(5i64)
        .fetch_all(&pool)
        .await
        .expect("events");
    assert_eq!(
        events
            .iter()
            .map(|r| r.get::<i64, _>("version"))
            .collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    let err = sqlx::query(insert)
        .bind("order")
        .bind("sqlx-1")
        .bind("changed")
        .bind(json!({}))
        .bind(Some(3i64))
        .execute(&pool)
        .await
        .expect_err("conflict");
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("40001"));
    pool.close().await;
    server.stop().await;
}
