//! Parameter type inference.

use super::*;
use PgType::*;

#[test]
fn param_types_from_context() {
    let cases: Vec<(&str, Vec<PgType>)> = vec![
        (
            "SELECT event_id, payload FROM events WHERE event_id > $1 AND aggregate_id = $2 \
             AND created_at < $3 LIMIT 10",
            vec![Int8, Text, Timestamptz],
        ),
        ("SELECT * FROM events LIMIT $1 OFFSET $2", vec![Int8, Int8]),
        ("SELECT * FROM events WHERE version = $1", vec![Int8]),
        (
            "SELECT * FROM events WHERE payload ->> 'status' = $1",
            vec![Text],
        ),
        (
            "SELECT * FROM events WHERE payload -> $1 ->> $2 = $3",
            vec![Text, Text, Text],
        ),
        ("SELECT * FROM events WHERE event_id = $1::int4", vec![Int4]),
        ("SELECT * FROM read_outbox($1, $2)", vec![Int8, Int8]),
        ("CALL verify($1, $2)", vec![Text, Text]),
        ("SELECT * FROM verify($1) AS result", vec![Text]),
        ("CALL apply_schema($1)", vec![Text]),
        (
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, metadata, \
             note, expected_version, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![Text, Text, Text, Json, Json, Text, Int8, Text],
        ),
        (
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) \
             VALUES ('a', 'b', 'c', $1::jsonb)",
            vec![Jsonb],
        ),
        ("SELECT * FROM schemas WHERE hidden = $1", vec![Bool]),
        (
            "SELECT * FROM aggregates WHERE updated_at >= $1 AND state ->> 'x' IN ($2, $3)",
            vec![Timestamptz, Text, Text],
        ),
        ("SELECT $1", vec![Unknown]),
        ("SELECT $1::int8, current_setting($2)", vec![Int8, Text]),
        ("SET TIME ZONE 'UTC'", vec![]),
        ("SELECT 1", vec![]),
    ];
    for (sql, want) in cases {
        assert_eq!(one(sql).param_types(), want, "{sql}");
    }
}

#[test]
fn out_of_order_repeated_and_gapped_parameters() {
    assert_eq!(
        one("SELECT * FROM events WHERE aggregate_id = $2 AND event_id > $1").param_types(),
        vec![Int8, Text]
    );
    assert_eq!(
        one("SELECT * FROM events WHERE event_id > $1 AND version < $1").param_types(),
        vec![Int8]
    );
    // $1 and $2 unused: Unknown, but the vector reaches the highest index.
    assert_eq!(
        one("SELECT * FROM events WHERE event_id > $3").param_types(),
        vec![Unknown, Unknown, Int8]
    );
    assert_eq!(
        one("SELECT * FROM events WHERE event_id > $65535")
            .param_types()
            .len(),
        65_535
    );
    // An explicit cast wins over the context.
    assert_eq!(
        one("SELECT * FROM events WHERE event_id > $1::int4 AND version < $1").param_types(),
        vec![Int4]
    );
}

#[test]
fn bad_parameters() {
    assert_eq!(
        err("SELECT * FROM events WHERE event_id = $0").sqlstate(),
        "42P02"
    );
    assert_eq!(
        err("SELECT * FROM events WHERE event_id = $65536").sqlstate(),
        "42P02"
    );
    assert_eq!(
        err("SELECT * FROM events WHERE aggregate_id = $1 AND event_id = $1").sqlstate(),
        "42804"
    );
    assert_eq!(err("SET x = $1").sqlstate(), "42601");
}

#[test]
fn catalog_parameters() {
    let q = super::pgjdbc_queries();
    // pgjdbc's lookups by oid and by name.
    let by_oid = q.iter().find(|s| s.contains("WHERE t.oid = $1")).unwrap();
    assert_eq!(one(by_oid).param_types(), vec![Oid]);
    let is_array = q
        .iter()
        .find(|s| s.contains("WHERE pg_type.oid = $1"))
        .unwrap();
    assert_eq!(one(is_array).param_types(), vec![Oid]);
    let by_name = q.iter().find(|s| s.contains("WHERE typname = $1")).unwrap();
    assert_eq!(one(by_name).param_types(), vec![Name]);
}
