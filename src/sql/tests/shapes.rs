//! Every supported shape plans to the expected statement.

use super::*;

fn param(index: usize) -> Operand {
    Operand::Param { index, cast: None }
}

fn query(sql: &str) -> Query {
    match one(sql) {
        Statement::Query(q) => q,
        other => panic!("{sql}: not a query: {other:?}"),
    }
}

fn insert(sql: &str) -> InsertEvents {
    match one(sql) {
        Statement::Insert(i) => i,
        other => panic!("{sql}: not an insert: {other:?}"),
    }
}

#[test]
fn empty_strings_are_empty_statements() {
    for sql in ["", ";", " ; ; ", "-- only a comment", "/* block */;"] {
        assert_eq!(parse(sql).unwrap(), vec![Statement::Empty], "{sql:?}");
    }
    assert_eq!(one("").command_tag(), CommandTag::Empty);
    assert_eq!(CommandTag::Empty.text(0), None);
}

#[test]
fn multi_statement_strings() {
    let stmts = parse("BEGIN; INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES ('a','b','c','{}'); COMMIT;").unwrap();
    assert_eq!(stmts.len(), 3);
    assert_eq!(stmts[0].command_tag(), CommandTag::Begin);
    assert_eq!(stmts[1].command_tag(), CommandTag::Insert);
    assert_eq!(stmts[2].command_tag(), CommandTag::Commit);
    // Empty statements between semicolons are skipped.
    assert_eq!(parse("SELECT 1;;SELECT 2;").unwrap().len(), 2);
}

#[test]
fn insert_all_columns_any_order_with_casts_params_and_negatives() {
    let i = insert(
        "INSERT INTO public.Events (payload, aggregate_type, aggregate_id, event_type, metadata, \
         note, expected_version, idempotency_key) VALUES \
         ('{\"a\":1}'::jsonb, 'order', $1, 'order_created', $2::json, NULL, '5'::int8, $3), \
         ($4, 'order', 'o-2', 'paid', NULL, 'n', -1, 'k') RETURNING event_id, payload ->> 'a' AS a, *",
    );
    assert_eq!(
        i.columns,
        vec![
            InsertColumn::Payload,
            InsertColumn::AggregateType,
            InsertColumn::AggregateId,
            InsertColumn::EventType,
            InsertColumn::Metadata,
            InsertColumn::Note,
            InsertColumn::ExpectedVersion,
            InsertColumn::IdempotencyKey,
        ]
    );
    assert_eq!(i.rows.len(), 2);
    assert_eq!(i.rows[0][0], Operand::Text("{\"a\":1}".into()));
    assert_eq!(i.rows[0][2], param(0));
    assert_eq!(
        i.rows[0][4],
        Operand::Param {
            index: 1,
            cast: Some(PgType::Json)
        }
    );
    assert_eq!(i.rows[0][5], Operand::Null);
    assert_eq!(i.rows[0][6], Operand::Int(5));
    assert_eq!(i.rows[1][0], param(3));
    assert_eq!(i.rows[1][6], Operand::Int(-1));
    // Two rows: the literals stay text, parsed when run.
    assert_eq!(i.literal_objects, None);
    assert_eq!(
        i.returning,
        vec![
            SelectItem::Column {
                column: ColumnRef::EventId,
                alias: None
            },
            SelectItem::Json {
                column: ColumnRef::Payload,
                path: vec![Operand::Text("a".into())],
                as_text: true,
                alias: Some("a".into())
            },
            SelectItem::Wildcard,
        ]
    );
}

#[test]
fn insert_minimal_and_assignment_casts() {
    let i = insert(
        "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) \
         VALUES ('order', 42, 'created', '[1, 2]')",
    );
    assert_eq!(
        i.rows[0],
        vec![
            Operand::Text("order".into()),
            Operand::Text("42".into()),
            Operand::Text("created".into()),
            Operand::Text("[1, 2]".into()),
        ]
    );
    assert!(i.returning.is_empty());
    // A JSON array is no object: left to the run, which rejects it as it always did.
    assert_eq!(i.literal_objects, Some(LiteralObjects::default()));
    let i = insert(
        "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, metadata) \
         VALUES ('order', $1, 'paid', '{\"status\": \"paid\", \"amount\": 12.5}', '{}'::jsonb)",
    );
    let objects = i.literal_objects.expect("one row");
    let payload = objects.payload.expect("payload parsed when planned");
    assert_eq!(payload.compact_json(), r#"{"status":"paid","amount":12.5}"#);
    assert_eq!(objects.metadata, Some(serde_json::Map::new()));
    let i = insert(
        "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, expected_version) \
         VALUES ($1, $2, $3, $4::jsonb, $5)",
    );
    assert_eq!(i.literal_objects, Some(LiteralObjects::default()));
    assert_eq!(
        i.rows[0][3],
        Operand::Param {
            index: 3,
            cast: Some(PgType::Jsonb)
        }
    );
    assert_eq!(i.rows[0][4], param(4));
}

#[test]
fn select_items_paths_aliases() {
    let q = query(
        "SELECT aggregate_id AS id, state -> 'a' ->> 'b', state -> 0 AS first, \
         state #>> '{a,0,\"b c\"}' AS deep, a.version FROM public.aggregates a",
    );
    assert_eq!(q.table, Table::Aggregates);
    assert_eq!(
        q.items,
        vec![
            SelectItem::Column {
                column: ColumnRef::AggregateId,
                alias: Some("id".into())
            },
            SelectItem::Json {
                column: ColumnRef::State,
                path: vec![Operand::Text("a".into()), Operand::Text("b".into())],
                as_text: true,
                alias: None
            },
            SelectItem::Json {
                column: ColumnRef::State,
                path: vec![Operand::Int(0)],
                as_text: false,
                alias: Some("first".into())
            },
            SelectItem::Json {
                column: ColumnRef::State,
                path: vec![
                    Operand::Text("a".into()),
                    Operand::Text("0".into()),
                    Operand::Text("b c".into())
                ],
                as_text: true,
                alias: Some("deep".into())
            },
            SelectItem::Column {
                column: ColumnRef::Version,
                alias: None
            },
        ]
    );
}

#[test]
fn select_every_table_with_star() {
    for (sql, table) in [
        ("SELECT * FROM events", Table::Events),
        ("select * from OUTBOX", Table::Outbox),
        ("SELECT * FROM public.aggregates", Table::Aggregates),
        ("SELECT schemas.* FROM schemas", Table::Schemas),
    ] {
        let q = query(sql);
        assert_eq!(q.table, table, "{sql}");
        assert_eq!(q.items, vec![SelectItem::Wildcard], "{sql}");
        assert!(q.filters.is_empty() && q.order_by.is_empty() && q.limit.is_none());
    }
}

#[test]
fn where_predicates_normalize_and_flip() {
    let q = query(
        "SELECT * FROM events WHERE 5 < event_id AND $1 = aggregate_id AND (version <= 10) \
         AND payload ->> 'status' = 'paid' AND event_type IN ('a', $2) AND note IS NULL \
         AND metadata IS NOT NULL AND created_at >= '2026-01-01T00:00:00Z' \
         AND aggregate_type <> 'x' AND hash != $3 AND version BETWEEN 1 AND 3",
    );
    assert_eq!(
        q.filters,
        vec![
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::EventId),
                op: CompareOp::Gt,
                right: Operand::Int(5)
            },
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::AggregateId),
                op: CompareOp::Eq,
                right: param(0)
            },
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::Version),
                op: CompareOp::LtEq,
                right: Operand::Int(10)
            },
            Predicate::Compare {
                left: ValueRef::Json {
                    column: ColumnRef::Payload,
                    path: vec![Operand::Text("status".into())],
                    as_text: true
                },
                op: CompareOp::Eq,
                right: Operand::Text("paid".into())
            },
            Predicate::In {
                left: ValueRef::Column(ColumnRef::EventType),
                values: vec![Operand::Text("a".into()), param(1)]
            },
            Predicate::IsNull {
                left: ValueRef::Column(ColumnRef::Note),
                negated: false
            },
            Predicate::IsNull {
                left: ValueRef::Column(ColumnRef::Metadata),
                negated: true
            },
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::CreatedAt),
                op: CompareOp::GtEq,
                right: Operand::Text("2026-01-01T00:00:00Z".into())
            },
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::AggregateType),
                op: CompareOp::NotEq,
                right: Operand::Text("x".into())
            },
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::Hash),
                op: CompareOp::NotEq,
                right: param(2)
            },
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::Version),
                op: CompareOp::GtEq,
                right: Operand::Int(1)
            },
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::Version),
                op: CompareOp::LtEq,
                right: Operand::Int(3)
            },
        ]
    );
}

#[test]
fn literal_coercions_in_predicates() {
    let q = query("SELECT * FROM events WHERE event_id = '7' AND version > '5'::int8");
    assert_eq!(
        q.filters[0],
        Predicate::Compare {
            left: ValueRef::Column(ColumnRef::EventId),
            op: CompareOp::Eq,
            right: Operand::Int(7)
        }
    );
    assert_eq!(
        q.filters[1],
        Predicate::Compare {
            left: ValueRef::Column(ColumnRef::Version),
            op: CompareOp::Gt,
            right: Operand::Int(5)
        }
    );
    let q = query("SELECT * FROM schemas WHERE hidden = 'f' AND NOT hidden");
    assert_eq!(
        q.filters,
        vec![
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::Hidden),
                op: CompareOp::Eq,
                right: Operand::Bool(false)
            },
            Predicate::Compare {
                left: ValueRef::Column(ColumnRef::Hidden),
                op: CompareOp::Eq,
                right: Operand::Bool(false)
            },
        ]
    );
}

#[test]
fn order_limit_offset_count() {
    let q = query(
        "SELECT aggregate_id AS id, version FROM aggregates ORDER BY id DESC, 2, created_at ASC \
         LIMIT $1 OFFSET 5",
    );
    assert_eq!(
        q.order_by,
        vec![
            (ColumnRef::AggregateId, true),
            (ColumnRef::Version, false),
            (ColumnRef::CreatedAt, false)
        ]
    );
    assert_eq!(q.limit, Some(param(0)));
    assert_eq!(q.offset, Some(Operand::Int(5)));
    let q = query("SELECT COUNT(*) AS n FROM outbox WHERE event_id > 10");
    assert_eq!(
        q.items,
        vec![SelectItem::CountStar {
            alias: Some("n".into())
        }]
    );
    assert_eq!(query("SELECT count(1) FROM events").items.len(), 1);
    assert_eq!(query("SELECT * FROM events LIMIT ALL").limit, None);
    assert_eq!(query("SELECT * FROM events LIMIT NULL").limit, None);
    assert_eq!(
        query("SELECT * FROM events FETCH FIRST 3 ROWS ONLY").limit,
        Some(Operand::Int(3))
    );
}

#[test]
fn table_functions() {
    assert_eq!(
        one("SELECT * FROM read_outbox($1, $2)"),
        Statement::ReadOutbox {
            after: param(0),
            take: param(1),
            form: CallForm::Select
        }
    );
    assert_eq!(
        one("SELECT events_json, next_after_event_id FROM read_outbox(0, 100)"),
        Statement::ReadOutbox {
            after: Operand::Int(0),
            take: Operand::Int(100),
            form: CallForm::Select
        }
    );
    assert_eq!(
        one("select * from verify($1) as result"),
        Statement::Verify {
            aggregate_type: Some(param(0)),
            aggregate_id: None,
            form: CallForm::Select
        }
    );
    assert_eq!(
        one("SELECT result.* FROM verify('order', 'o-1') AS result"),
        Statement::Verify {
            aggregate_type: Some(Operand::Text("order".into())),
            aggregate_id: Some(Operand::Text("o-1".into())),
            form: CallForm::Select
        }
    );
    assert_eq!(
        one("CALL verify()"),
        Statement::Verify {
            aggregate_type: None,
            aggregate_id: None,
            form: CallForm::Call
        }
    );
    assert_eq!(
        one("CALL verify('order', $1)"),
        Statement::Verify {
            aggregate_type: Some(Operand::Text("order".into())),
            aggregate_id: Some(param(0)),
            form: CallForm::Call
        }
    );
    assert_eq!(
        one("CALL apply_schema($1)"),
        Statement::ApplySchema {
            source: param(0),
            form: CallForm::Call
        }
    );
    assert_eq!(
        one("SELECT * FROM public.apply_schema('aggregate order {}')"),
        Statement::ApplySchema {
            source: Operand::Text("aggregate order {}".into()),
            form: CallForm::Select
        }
    );
}

#[test]
fn session_statements() {
    use SessionStatement as S;
    let cases: Vec<(&str, SessionStatement)> = vec![
        (
            "SET extra_float_digits = 3",
            S::Set {
                name: "extra_float_digits".into(),
                value: SetValue::Values(vec!["3".into()]),
                local: false,
            },
        ),
        (
            "SET application_name TO 'PostgreSQL JDBC Driver'",
            S::Set {
                name: "application_name".into(),
                value: SetValue::Values(vec!["PostgreSQL JDBC Driver".into()]),
                local: false,
            },
        ),
        (
            "SET DATESTYLE TO 'ISO', 'MDY'",
            S::Set {
                name: "datestyle".into(),
                value: SetValue::Values(vec!["ISO".into(), "MDY".into()]),
                local: false,
            },
        ),
        (
            "SET LOCAL search_path TO DEFAULT",
            S::Set {
                name: "search_path".into(),
                value: SetValue::Default,
                local: true,
            },
        ),
        (
            "SET TIME ZONE 'UTC'",
            S::Set {
                name: "timezone".into(),
                value: SetValue::Values(vec!["UTC".into()]),
                local: false,
            },
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
            S::SetTransaction {
                modes: TransactionModes {
                    isolation: Some(IsolationLevel::ReadCommitted),
                    read_only: None,
                },
                session: true,
            },
        ),
        ("RESET ALL", S::Reset { name: None }),
        (
            "RESET TimeZone",
            S::Reset {
                name: Some("timezone".into()),
            },
        ),
        (
            "SHOW TRANSACTION ISOLATION LEVEL",
            S::Show {
                name: "transaction_isolation".into(),
            },
        ),
        (
            "SHOW timezone",
            S::Show {
                name: "timezone".into(),
            },
        ),
        (
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            S::Begin {
                modes: TransactionModes {
                    isolation: Some(IsolationLevel::Serializable),
                    read_only: None,
                },
                start: false,
            },
        ),
        (
            "START TRANSACTION READ ONLY",
            S::Begin {
                modes: TransactionModes {
                    isolation: None,
                    read_only: Some(true),
                },
                start: true,
            },
        ),
        ("COMMIT", S::Commit),
        ("END", S::Commit),
        ("ROLLBACK", S::Rollback),
        ("ABORT", S::Rollback),
        ("DISCARD ALL", S::Discard(DiscardKind::All)),
        ("DEALLOCATE ALL", S::Deallocate { name: None }),
        (
            "DEALLOCATE PREPARE s1",
            S::Deallocate {
                name: Some("s1".into()),
            },
        ),
        (
            "DEALLOCATE \"S_1\"",
            S::Deallocate {
                name: Some("S_1".into()),
            },
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(one(sql), Statement::Session(want), "{sql}");
    }
}

#[test]
fn scalar_selects() {
    let Statement::Scalars(items) = one(
        "SELECT 1, 'x', version(), current_setting('server_version_num'), current_schema(), \
         session_user, current_user, current_database(), pg_backend_pid(), 1 AS x, $1::int4, -5, \
         5000000000, 2.5, NULL, true, now(), pg_catalog.version(), current_setting($2, true)",
    ) else {
        panic!("not scalars")
    };
    let names: Vec<&str> = items.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "?column?",
            "?column?",
            "version",
            "current_setting",
            "current_schema",
            "session_user",
            "current_user",
            "current_database",
            "pg_backend_pid",
            "x",
            "int4",
            "?column?",
            "?column?",
            "?column?",
            "?column?",
            "?column?",
            "now",
            "version",
            "current_setting"
        ]
    );
    assert_eq!(
        items[0].1,
        ScalarExpr::Value {
            value: Operand::Int(1),
            ty: PgType::Int4
        }
    );
    assert_eq!(
        items[3].1,
        ScalarExpr::CurrentSetting {
            name: Operand::Text("server_version_num".into()),
            missing_ok: false
        }
    );
    assert_eq!(items[5].1, ScalarExpr::SessionUser);
    assert_eq!(
        items[10].1,
        ScalarExpr::Value {
            value: Operand::Param {
                index: 0,
                cast: Some(PgType::Int4)
            },
            ty: PgType::Int4
        }
    );
    assert_eq!(
        items[12].1,
        ScalarExpr::Value {
            value: Operand::Int(5_000_000_000),
            ty: PgType::Int8
        }
    );
    assert_eq!(
        items[18].1,
        ScalarExpr::CurrentSetting {
            name: param(1),
            missing_ok: true
        }
    );
    assert_eq!(
        one("SELECT current_schema(), session_user"),
        Statement::Scalars(vec![
            ("current_schema".into(), ScalarExpr::CurrentSchema),
            ("session_user".into(), ScalarExpr::SessionUser),
        ])
    );
}

#[test]
fn identifiers_fold_and_quoted_names_do_not() {
    assert_eq!(query("SELECT EVENT_ID FROM Events").table, Table::Events);
    assert_eq!(
        err("SELECT * FROM \"Events\"").sqlstate(),
        "42P01",
        "quoted names keep their case"
    );
    assert_eq!(query("SELECT \"event_id\" FROM \"events\"").items.len(), 1);
}

#[test]
fn pgjdbc_log_statements() {
    // The statements in clients/pgjdbc_wire.log, as EventDBX sees them.
    assert_eq!(
        one("SET extra_float_digits = 3").command_tag(),
        CommandTag::Set
    );
    assert_eq!(
        one("SET application_name = 'PostgreSQL JDBC Driver'").command_tag(),
        CommandTag::Set
    );
    assert_eq!(
        one(
            "SELECT event_id, payload FROM events WHERE event_id > $1 AND aggregate_id = $2 \
             AND created_at < $3 LIMIT 10"
        )
        .param_types(),
        vec![PgType::Int8, PgType::Text, PgType::Timestamptz]
    );
    // The log's test table had a stream_id column; ours does not.
    assert_eq!(
        err("INSERT INTO events(stream_id) VALUES ($1)\nRETURNING *").sqlstate(),
        "42703"
    );
    assert_eq!(
        err("INSERT INTO outbox VALUES (1, 't')").sqlstate(),
        "0A000"
    );
}
