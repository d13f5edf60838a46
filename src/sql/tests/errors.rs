//! Each error class, its SQLSTATE and hint, and the hardening limits.

use super::*;

const INS: &str = "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload)";

#[test]
fn error_classes_and_sqlstates() {
    let cases: Vec<(String, &str)> = vec![
        // 42601 syntax
        ("SELEC 1".into(), "42601"),
        ("SELECT (1".into(), "42601"),
        ("SELECT 'unterminated".into(), "42601"),
        ("SELECT 1 SELECT 2".into(), "42601"),
        ("SELECT 1 END; DROP TABLE events".into(), "42601"),
        (format!("{INS} VALUES ('a', 'b', 'c')"), "42601"),
        (
            format!("{INS} VALUES ('a', 'b', 'c', '{{}}', 'x')"),
            "42601",
        ),
        ("SELECT * FROM events WHERE event_id = ?".into(), "42601"),
        // 0A000 unsupported
        (
            "SELECT * FROM events WHERE event_id = 1 OR event_id = 2".into(),
            "0A000",
        ),
        (
            "SELECT * FROM events WHERE aggregate_id LIKE 'a%'".into(),
            "0A000",
        ),
        (
            "SELECT * FROM events WHERE event_id NOT IN (1)".into(),
            "0A000",
        ),
        (
            "SELECT * FROM events e JOIN aggregates a ON true".into(),
            "0A000",
        ),
        (
            "SELECT aggregate_id, count(*) FROM events GROUP BY aggregate_id".into(),
            "0A000",
        ),
        ("SELECT DISTINCT aggregate_id FROM events".into(), "0A000"),
        ("SELECT event_id, count(*) FROM events".into(), "0A000"),
        (
            "SELECT * FROM events WHERE event_id = (SELECT 1)".into(),
            "0A000",
        ),
        (
            "SELECT * FROM events WHERE event_id = version".into(),
            "0A000",
        ),
        ("SELECT upper(note) FROM events".into(), "0A000"),
        ("SELECT * FROM events FOR UPDATE".into(), "0A000"),
        (
            "SELECT * FROM events ORDER BY payload ->> 'a'".into(),
            "0A000",
        ),
        (
            "SELECT * FROM events ORDER BY event_id NULLS FIRST".into(),
            "0A000",
        ),
        ("SELECT * FROM read_outbox(1, 2) WHERE true".into(), "0A000"),
        (
            "SELECT next_after_event_id + 1 FROM read_outbox(1, 2)".into(),
            "0A000",
        ),
        ("SELECT nothing FROM read_outbox(1, 2)".into(), "42703"),
        ("SELECT * FROM read_outbox(1, 2, 3)".into(), "0A000"),
        ("CALL apply_schema()".into(), "0A000"),
        ("CALL nope()".into(), "0A000"),
        ("SELECT * FROM nope(1)".into(), "0A000"),
        ("WITH x AS (SELECT 1) SELECT * FROM x".into(), "0A000"),
        ("SELECT 1 UNION SELECT 2".into(), "0A000"),
        ("COPY events TO STDOUT".into(), "0A000"),
        ("EXPLAIN SELECT * FROM events".into(), "0A000"),
        ("CREATE TABLE t (a int)".into(), "0A000"),
        (
            "INSERT INTO outbox (aggregate_type) VALUES ('a')".into(),
            "0A000",
        ),
        (
            "INSERT INTO aggregates (aggregate_type) VALUES ('a')".into(),
            "0A000",
        ),
        (
            "INSERT INTO schemas (aggregate_type) VALUES ('a')".into(),
            "0A000",
        ),
        ("INSERT INTO events VALUES (1)".into(), "0A000"),
        (format!("{INS} SELECT * FROM events"), "0A000"),
        (
            format!("{INS} VALUES ('a','b','c','{{}}') ON CONFLICT DO NOTHING"),
            "0A000",
        ),
        (
            "INSERT INTO events (event_id, aggregate_type) VALUES (1, 'a')".into(),
            "0A000",
        ),
        ("SELECT * FROM pg_catalog.pg_settings".into(), "0A000"),
        ("SELECT * FROM information_schema.tables".into(), "0A000"),
        ("SELECT nosuchfn() FROM pg_catalog.pg_class".into(), "0A000"),
        ("SELECT nosuchfn()".into(), "0A000"),
        // 0A000 immutable
        ("UPDATE events SET note = 'x'".into(), "0A000"),
        ("DELETE FROM events WHERE event_id = 1".into(), "0A000"),
        ("TRUNCATE events".into(), "0A000"),
        ("DROP TABLE events".into(), "0A000"),
        ("ALTER TABLE events ADD COLUMN x int".into(), "0A000"),
        // 42P01
        ("SELECT * FROM nope".into(), "42P01"),
        ("SELECT * FROM other.events".into(), "42P01"),
        ("INSERT INTO nope (a) VALUES (1)".into(), "42P01"),
        ("SELECT x.event_id FROM events".into(), "42P01"),
        ("SELECT * FROM events, nope".into(), "42P01"),
        // 42703
        ("SELECT nope FROM events".into(), "42703"),
        ("SELECT * FROM events WHERE state = '{}'".into(), "42703"),
        ("SELECT * FROM aggregates ORDER BY event_id".into(), "42703"),
        ("INSERT INTO events (nope) VALUES (1)".into(), "42703"),
        ("SELECT nope".into(), "42703"),
        // 42701
        (
            "INSERT INTO events (aggregate_type, aggregate_type) VALUES ('a', 'b')".into(),
            "42701",
        ),
        // 42804
        (
            "SELECT * FROM events WHERE aggregate_id = 5".into(),
            "42804",
        ),
        ("SELECT * FROM events WHERE payload = '{}'".into(), "42804"),
        (
            "SELECT * FROM events WHERE payload -> 'a' = 'x'".into(),
            "42804",
        ),
        ("SELECT aggregate_id -> 'a' FROM events".into(), "42804"),
        ("SELECT payload ->> 'a' -> 'b' FROM events".into(), "42804"),
        ("SELECT * FROM events WHERE event_id = true".into(), "42804"),
        (
            "SELECT * FROM events WHERE event_id = $1::text".into(),
            "42804",
        ),
        (
            "SELECT * FROM events WHERE aggregate_id = $1 AND version = $1".into(),
            "42804",
        ),
        (format!("{INS} VALUES ('a', 'b', 'c', 5)"), "42804"),
        ("CALL verify(5)".into(), "42804"),
        // 22P02
        (
            "SELECT * FROM events WHERE event_id = 'abc'".into(),
            "22P02",
        ),
        ("SELECT * FROM events LIMIT -1".into(), "22P02"),
        (
            "SELECT * FROM schemas WHERE hidden = 'maybe'".into(),
            "22P02",
        ),
        (format!("{INS} VALUES ('a', 'b', 'c', '{{bad')"), "22P02"),
        (
            format!("{INS} VALUES ('a', 'b', 'c', 'not json'::jsonb)"),
            "22P02",
        ),
        (
            "SELECT * FROM events WHERE event_id = '99999999999999999999'".into(),
            "22P02",
        ),
        (
            "SELECT * FROM events WHERE event_id = 1::int2 + 1".into(),
            "0A000",
        ),
        ("SELECT 70000::int2".into(), "22P02"),
        // 23502
        (
            "INSERT INTO events (aggregate_type, aggregate_id, event_type) VALUES ('a','b','c')"
                .into(),
            "23502",
        ),
        (format!("{INS} VALUES ('a', NULL, 'c', '{{}}')"), "23502"),
        // 42P02
        ("SELECT * FROM events WHERE event_id = $0".into(), "42P02"),
        (
            "SELECT * FROM events WHERE event_id = $65536".into(),
            "42P02",
        ),
        ("CALL verify($99999999)".into(), "42P02"),
        (
            "SELECT relname FROM pg_catalog.pg_class WHERE oid = $0".into(),
            "42P02",
        ),
    ];
    for (sql, state) in &cases {
        let e = err(sql);
        assert_eq!(e.sqlstate(), *state, "{sql}: {e}");
        assert!(!e.to_string().is_empty());
        if *state == "0A000" {
            assert!(e.hint().is_some_and(|h| !h.is_empty()), "{sql}: no hint");
        }
    }
}

#[test]
fn immutable_errors_explain_the_surface() {
    for sql in [
        "UPDATE events SET note = 'x'",
        "DELETE FROM outbox",
        "TRUNCATE aggregates",
    ] {
        let e = err(sql);
        assert!(
            matches!(e, SqlError::ImmutableEvents { .. }),
            "{sql}: {e:?}"
        );
        assert!(e.to_string().contains("immutable"), "{e}");
        assert!(e.hint().unwrap().contains("INSERT INTO events"));
    }
    let e = err("SELECT * FROM events WHERE a = 1 OR b = 2");
    assert!(matches!(e, SqlError::Unsupported { .. }));
    let e = err("EXPLAIN SELECT 1");
    assert!(e.hint().unwrap().contains("read_outbox"), "{:?}", e.hint());
}

#[test]
fn syntax_error_positions() {
    assert_eq!(err("SELEC 1").position(), Some(1));
    assert_eq!(err("SELECT 1 FROM events WHERE").position(), Some(27));
    let e = err("SELECT 1;\nSELECT * FROM events WHERE event_id = = 1");
    assert_eq!(e.sqlstate(), "42601");
    // Line 2, column 39: 10 characters of line 1 (with its newline) + 39.
    assert_eq!(e.position(), Some(49));
    assert_eq!(err("SELECT 'é").position(), Some(8));
}

#[test]
fn text_size_limit() {
    let big = format!("SELECT 1 -- {}", "x".repeat(MAX_SQL_BYTES));
    assert_eq!(err(&big).sqlstate(), "54001");
    // Just under the limit is fine.
    let ok = format!("SELECT 1 -- {}", "x".repeat(MAX_SQL_BYTES - 20));
    assert_eq!(parse(&ok).unwrap().len(), 1);
}

#[test]
fn statement_count_limit() {
    assert_eq!(
        parse(&"SELECT 1;".repeat(MAX_STATEMENTS)).unwrap().len(),
        MAX_STATEMENTS
    );
    assert_eq!(
        err(&"SELECT 1;".repeat(MAX_STATEMENTS + 1)).sqlstate(),
        "54001"
    );
}

#[test]
fn in_list_and_values_limits() {
    let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let q = format!(
        "SELECT * FROM events WHERE event_id IN ({})",
        list(MAX_LIST_ITEMS)
    );
    match one(&q) {
        Statement::Query(q) => match &q.filters[0] {
            Predicate::In { values, .. } => assert_eq!(values.len(), MAX_LIST_ITEMS),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    let q = format!(
        "SELECT * FROM events WHERE event_id IN ({})",
        list(MAX_LIST_ITEMS + 1)
    );
    assert_eq!(err(&q).sqlstate(), "54001");
    let rows = |n: usize| vec!["('a','b','c','{}'::jsonb)"; n].join(",");
    match one(&format!("{INS} VALUES {}", rows(MAX_LIST_ITEMS))) {
        Statement::Insert(i) => assert_eq!(i.rows.len(), MAX_LIST_ITEMS),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err(&format!("{INS} VALUES {}", rows(MAX_LIST_ITEMS + 1))).sqlstate(),
        "54001"
    );
}

#[test]
fn nesting_and_operator_chain_limits() {
    // Deep parentheses hit the parser's recursion limit, not the stack.
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(err(&deep).sqlstate(), "54001");
    let deep_sub = format!(
        "SELECT * FROM events WHERE event_id = {}1{}",
        "(SELECT ".repeat(200),
        ")".repeat(200)
    );
    assert_eq!(err(&deep_sub).sqlstate(), "54001");
    // Long flat operator chains are refused before parsing.
    let chain = format!(
        "SELECT * FROM events WHERE event_id = 1{}",
        " AND event_id = 1".repeat(60_000)
    );
    assert_eq!(err(&chain).sqlstate(), "54001");
    let casts = format!("SELECT 1{}", "::int8".repeat(100_000));
    assert_eq!(err(&casts).sqlstate(), "54001");
    // A long but legal conjunction still plans.
    let ok = format!(
        "SELECT * FROM events WHERE event_id > 0{}",
        " AND version > 0".repeat(200)
    );
    match one(&ok) {
        Statement::Query(q) => assert_eq!(q.filters.len(), 201),
        other => panic!("{other:?}"),
    }
}

#[test]
fn longest_allowed_chains_do_not_overflow_the_stack() {
    // Each repetition adds two operator tokens; stay just under the limit. Test threads have
    // small (2 MiB) stacks and this runs unoptimized, so this is the worst case.
    let n = MAX_OPERATOR_CHAIN / 2 - 5;
    let planner = format!(
        "SELECT * FROM events WHERE event_id > 0{}",
        " AND version > 0".repeat(n)
    );
    assert_eq!(parse(&planner).unwrap().len(), 1);
    let display = format!("SELECT 1{} FROM events", " + 1 + 1".repeat(n));
    assert_eq!(err(&display).sqlstate(), "0A000");
    let json = format!("SELECT payload{} FROM events", " -> 'a' -> 'b'".repeat(n));
    assert_eq!(one(&json).result_columns().len(), 1);
    let casts = format!(
        "SELECT * FROM events WHERE event_id = 1{}",
        "::int8::int8".repeat(n)
    );
    assert_eq!(parse(&casts).unwrap().len(), 1);
    let scalar = format!("SELECT 1{}", "::int8::text".repeat(n));
    assert_eq!(one(&scalar).result_columns()[0].name, "text");
    let catalog = format!(
        "SELECT relname FROM pg_catalog.pg_class WHERE true{}",
        " AND relname <> 'x'".repeat(n)
    );
    match one(&catalog) {
        Statement::Catalog(a) => assert_eq!(a.rows.len(), 4),
        other => panic!("{other:?}"),
    }
    let disjunction = format!(
        "SELECT relname FROM pg_catalog.pg_class WHERE false{}",
        " OR relname = 'events'".repeat(n)
    );
    match one(&disjunction) {
        Statement::Catalog(a) => assert_eq!(a.rows.len(), 1),
        other => panic!("{other:?}"),
    }
    // A parameterized catalog query keeps its (deep) syntax tree without copying it.
    let pcast = format!(
        "SELECT relname FROM pg_class WHERE oid = $1{}",
        "::int8".repeat(MAX_OPERATOR_CHAIN - 10)
    );
    match one(&pcast) {
        Statement::Catalog(a) => {
            assert_eq!(a.param_types, vec![PgType::Int8]);
            let copy = a.clone();
            assert_eq!(copy, a);
            let e = a.rows_for(&[Some("16385".into())]).unwrap_err();
            assert_eq!(e.sqlstate(), "54001");
        }
        other => panic!("{other:?}"),
    }
    // Other deep expressions in catalog queries stop at the engine's depth limit.
    let concat = format!("SELECT 'a'{}", " || 'a' || 'a'".repeat(n));
    assert_eq!(err(&concat).sqlstate(), "54001");
    match one(&format!("SELECT 'a'{}", " || 'a'".repeat(10))) {
        Statement::Scalars(items) => match &items[0].1 {
            ScalarExpr::Value {
                value: Operand::Concat(parts),
                ty: PgType::Text,
            } => assert_eq!(parts.len(), 11),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    let nested = format!(
        "SELECT {}1{} FROM pg_class",
        "CASE WHEN true THEN ".repeat(60),
        " END".repeat(60)
    );
    assert_eq!(err(&nested).sqlstate(), "54001");
}
