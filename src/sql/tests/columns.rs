//! Result columns and command tags for each statement kind.

use super::*;
use PgType::*;

fn cols(sql: &str) -> Vec<(String, PgType)> {
    one(sql)
        .result_columns()
        .into_iter()
        .map(|c| (c.name, c.ty))
        .collect()
}

fn named(list: &[(&str, PgType)]) -> Vec<(String, PgType)> {
    list.iter().map(|(n, t)| (n.to_string(), *t)).collect()
}

#[test]
fn table_columns() {
    assert_eq!(
        cols("SELECT * FROM events"),
        named(&[
            ("event_id", Int8),
            ("aggregate_type", Text),
            ("aggregate_id", Text),
            ("version", Int8),
            ("event_type", Text),
            ("payload", Json),
            ("metadata", Json),
            ("note", Text),
            ("created_at", Timestamptz),
            ("issued_by", Json),
            ("hash", Text),
            ("merkle_root", Text),
        ])
    );
    assert_eq!(cols("SELECT * FROM outbox"), cols("SELECT * FROM events"));
    assert_eq!(
        cols("SELECT * FROM aggregates"),
        named(&[
            ("aggregate_type", Text),
            ("aggregate_id", Text),
            ("version", Int8),
            ("state", Json),
            ("merkle_root", Text),
            ("created_at", Timestamptz),
            ("updated_at", Timestamptz),
        ])
    );
    assert_eq!(
        cols("SELECT * FROM schemas"),
        named(&[
            ("aggregate_type", Text),
            ("schema", Json),
            ("schema_version", Int8),
            ("hidden", Bool),
            ("applied_at", Timestamptz),
        ])
    );
}

#[test]
fn item_columns() {
    assert_eq!(
        cols("SELECT event_id AS id, payload -> 'a', payload ->> 'a', payload #> '{a}' AS p FROM events"),
        named(&[("id", Int8), ("?column?", Json), ("?column?", Text), ("p", Json)])
    );
    assert_eq!(
        cols("SELECT count(*) FROM events"),
        named(&[("count", Int8)])
    );
    assert_eq!(
        cols(
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) \
             VALUES ('a','b','c','{}') RETURNING event_id, version, payload ->> 'x' AS x"
        ),
        named(&[("event_id", Int8), ("version", Int8), ("x", Text)])
    );
    assert_eq!(
        cols(
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) \
             VALUES ('a','b','c','{}') RETURNING *"
        )
        .len(),
        12
    );
    assert!(cols(
        "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) \
         VALUES ('a','b','c','{}')"
    )
    .is_empty());
}

#[test]
fn function_columns() {
    assert_eq!(
        cols("SELECT * FROM read_outbox($1, $2)"),
        named(&[("events_json", Json), ("next_after_event_id", Int8)])
    );
    let verify = named(&[
        ("aggregate_type", Text),
        ("aggregate_id", Text),
        ("version", Int8),
        ("recomputed_root", Text),
        ("stored_root", Text),
        ("ok", Bool),
    ]);
    assert_eq!(cols("CALL verify()"), verify);
    assert_eq!(cols("SELECT * FROM verify('a', 'b') AS result"), verify);
    assert_eq!(
        cols("CALL apply_schema($1)"),
        named(&[("aggregate_type", Text), ("schema_version", Int8)])
    );
}

#[test]
fn session_and_scalar_columns() {
    assert_eq!(cols("SHOW timezone"), named(&[("TimeZone", Text)]));
    assert_eq!(cols("SHOW DateStyle"), named(&[("DateStyle", Text)]));
    assert_eq!(
        cols("SHOW TRANSACTION ISOLATION LEVEL"),
        named(&[("transaction_isolation", Text)])
    );
    assert_eq!(
        cols("SHOW server_version"),
        named(&[("server_version", Text)])
    );
    assert_eq!(
        cols("SHOW ALL"),
        named(&[("name", Text), ("setting", Text), ("description", Text)])
    );
    for sql in [
        "SET a = 1",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "DISCARD ALL",
        "DEALLOCATE ALL",
        "RESET ALL",
    ] {
        assert!(cols(sql).is_empty(), "{sql}");
    }
    assert_eq!(
        cols("SELECT 1, 'x', version(), current_setting('server_version_num'), current_schema(), session_user, pg_backend_pid(), 1.5, true, now()"),
        named(&[
            ("?column?", Int4),
            ("?column?", Text),
            ("version", Text),
            ("current_setting", Text),
            ("current_schema", Name),
            ("session_user", Name),
            ("pg_backend_pid", Int4),
            ("?column?", Numeric),
            ("?column?", Bool),
            ("now", Timestamptz),
        ])
    );
}

#[test]
fn command_tags() {
    let cases = [
        ("INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES ('a','b','c','{}')", CommandTag::Insert, Some("INSERT 0 3")),
        ("SELECT * FROM events", CommandTag::Select, Some("SELECT 3")),
        ("SELECT 1", CommandTag::Select, Some("SELECT 3")),
        ("SELECT * FROM verify()", CommandTag::Select, Some("SELECT 3")),
        ("CALL verify()", CommandTag::Call, Some("CALL")),
        ("SET a = 1", CommandTag::Set, Some("SET")),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED", CommandTag::Set, Some("SET")),
        ("SHOW a", CommandTag::Show, Some("SHOW")),
        ("RESET a", CommandTag::Reset, Some("RESET")),
        ("BEGIN", CommandTag::Begin, Some("BEGIN")),
        ("START TRANSACTION", CommandTag::StartTransaction, Some("START TRANSACTION")),
        ("COMMIT", CommandTag::Commit, Some("COMMIT")),
        ("END", CommandTag::Commit, Some("COMMIT")),
        ("ROLLBACK", CommandTag::Rollback, Some("ROLLBACK")),
        ("ABORT", CommandTag::Rollback, Some("ROLLBACK")),
        ("DISCARD ALL", CommandTag::Discard(DiscardKind::All), Some("DISCARD ALL")),
        ("DEALLOCATE x", CommandTag::Deallocate, Some("DEALLOCATE")),
        ("DEALLOCATE ALL", CommandTag::DeallocateAll, Some("DEALLOCATE ALL")),
        ("SELECT relname FROM pg_catalog.pg_class", CommandTag::Select, Some("SELECT 3")),
    ];
    for (sql, tag, text) in cases {
        let got = one(sql).command_tag();
        assert_eq!(got, tag, "{sql}");
        assert_eq!(got.text(3).as_deref(), text, "{sql}");
    }
}

#[test]
fn pg_type_oids_and_names() {
    for (t, oid, name) in [
        (Bool, 16, "bool"),
        (Int8, 20, "int8"),
        (Int4, 23, "int4"),
        (Text, 25, "text"),
        (Json, 114, "json"),
        (Jsonb, 3802, "jsonb"),
        (Timestamptz, 1184, "timestamptz"),
        (Name, 19, "name"),
        (Char, 18, "char"),
        (Oid, 26, "oid"),
        (Regclass, 2205, "regclass"),
        (TextArray, 1009, "_text"),
        (Unknown, 705, "unknown"),
    ] {
        assert_eq!((t.oid(), t.name()), (oid, name));
        assert_eq!(PgType::from_oid(oid), Some(t));
    }
    assert_eq!(Timestamptz.format_type(), "timestamp with time zone");
    assert_eq!(Int8.format_type(), "bigint");
    assert_eq!(PgType::from_sql_name("BIGINT"), Some(Int8));
    let mut oids: Vec<u32> = PgType::ALL.iter().map(|t| t.oid()).collect();
    oids.sort_unstable();
    oids.dedup();
    assert_eq!(oids.len(), PgType::ALL.len(), "oids are unique");
}
