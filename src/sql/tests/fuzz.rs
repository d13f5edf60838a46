//! `parse` never panics: random strings, random token soup, and random mutations of valid
//! statements and of the client catalog queries. The case count follows `PROPTEST_CASES`
//! (256 by default); run with `PROPTEST_CASES=20000` for a longer run.

use proptest::prelude::*;

use super::*;

/// Valid statements to mutate: every supported shape plus the client captures.
fn corpus() -> Vec<String> {
    let mut c: Vec<String> = [
        "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, metadata, note, expected_version, idempotency_key) VALUES ('order', $1, 'created', '{\"a\":[1,2]}'::jsonb, $2::json, NULL, -1, 'k'), ($3, 'x', 'y', $4, NULL, 'n', '5'::int8, NULL) RETURNING event_id, payload ->> 'a' AS a, *",
        "SELECT aggregate_id AS id, state -> 'a' ->> 'b', state #>> '{a,0}' FROM public.aggregates a WHERE a.aggregate_type = 'order' AND version >= $1 AND state ->> 'x' IN ('p', $2) AND merkle_root IS NOT NULL AND version BETWEEN 1 AND 9 ORDER BY id DESC, version LIMIT $3 OFFSET 5",
        "SELECT count(*) FROM outbox WHERE event_id > 10",
        "SELECT * FROM schemas WHERE hidden = false ORDER BY applied_at",
        "SELECT * FROM read_outbox($1, $2)",
        "select * from verify($1) as result",
        "CALL verify('order', 'o-1')",
        "CALL apply_schema($1)",
        "SET extra_float_digits = 3; SET application_name = 'x'; SET TIME ZONE 'UTC'; SHOW TRANSACTION ISOLATION LEVEL; BEGIN; COMMIT; ROLLBACK; DISCARD ALL; DEALLOCATE ALL",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SELECT 1, 'x', version(), current_setting('server_version_num'), current_schema(), session_user, $1::int4",
        "UPDATE events SET note = 'x' WHERE event_id = 1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for capture in [
        include_str!("../testdata/psql_dt.txt"),
        include_str!("../testdata/psql_d.txt"),
        include_str!("../testdata/psql_l.txt"),
        include_str!("../testdata/psql_d_events.txt"),
    ] {
        c.extend(psql_queries(capture));
    }
    c.extend(pgjdbc_queries());
    c
}

/// Fragments that make mutations hit interesting parser and planner paths.
const TOKENS: &[&str] = &[
    " ",
    "(",
    ")",
    ",",
    ";",
    "'",
    "\"",
    "$1",
    "$0",
    "$65536",
    "::",
    "::jsonb",
    "::int8",
    "->",
    "->>",
    "#>>",
    "=",
    "<>",
    "<",
    ">=",
    " AND ",
    " OR ",
    " NOT ",
    " IN ",
    " IS NULL ",
    " NULL ",
    " SELECT ",
    " FROM ",
    " WHERE ",
    " ORDER BY ",
    " LIMIT ",
    " OFFSET ",
    " events ",
    " outbox ",
    " pg_catalog.pg_class ",
    " pg_type ",
    " UNION ",
    " JOIN ",
    " ON ",
    "*",
    "-",
    "1",
    "-9223372036854775808",
    "99999999999999999999",
    "1.5e308",
    "'{}'",
    "'{\"a\":'",
    "E'\\n'",
    "$$x$$",
    "--",
    "/*",
    "*/",
    "é",
    "\u{0}",
    "[1]",
    "ARRAY[",
    " CASE WHEN ",
    " THEN ",
    " END ",
    "COUNT(*)",
    " OPERATOR(pg_catalog.~) ",
    "'^(.*)$'",
    "'(a*)*b'",
    " LIKE '%_' ",
    " row_number() OVER (PARTITION BY 1 ORDER BY 1) ",
    " generate_series(1, 1000000) ",
    " unnest('{a,b}'::text[]) ",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Replace { at: usize, len: usize, token: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
    Char { at: usize, c: char },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0usize..20).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), 0usize..10, any::<usize>())
            .prop_map(|(at, len, token)| Mutation::Replace { at, len, token }),
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Mutation::Char { at, c }),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let pos = |at: usize| if n == 0 { 0 } else { at % (n + 1) };
    match *m {
        Mutation::Delete { at, len } => {
            let a = pos(at);
            let b = (a + len).min(n);
            chars.drain(a..b);
        }
        Mutation::Insert { at, token } => {
            let a = pos(at);
            let t: Vec<char> = TOKENS[token % TOKENS.len()].chars().collect();
            chars.splice(a..a, t);
        }
        Mutation::Replace { at, len, token } => {
            let a = pos(at);
            let b = (a + len).min(n);
            let t: Vec<char> = TOKENS[token % TOKENS.len()].chars().collect();
            chars.splice(a..b, t);
        }
        Mutation::Duplicate { at, len } => {
            let a = pos(at);
            let b = (a + len).min(n);
            let slice: Vec<char> = chars[a..b].to_vec();
            chars.splice(b..b, slice);
        }
        Mutation::Truncate { at } => chars.truncate(pos(at)),
        Mutation::Char { at, c } => {
            let a = pos(at);
            chars.insert(a, c);
        }
    }
    chars.into_iter().collect()
}

/// Parses and exercises everything a server would call on the result.
fn exercise(sql: &str, params: &[Option<String>]) {
    if let Ok(stmts) = parse(sql) {
        for s in stmts {
            let _ = s.param_types();
            let _ = s.result_columns();
            let _ = s.command_tag().text(1);
            if let Statement::Catalog(a) = &s {
                let _ = a.rows_for(params);
            }
        }
    } else if let Err(e) = parse(sql) {
        let _ = (e.sqlstate(), e.hint(), e.position(), e.to_string());
    }
}

proptest! {
    #[test]
    fn random_strings_never_panic(sql in ".{0,300}") {
        exercise(&sql, &[]);
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(any::<usize>(), 0..60)) {
        let sql: String = tokens.iter().map(|t| TOKENS[t % TOKENS.len()]).collect();
        exercise(&sql, &[Some("1".into()), None]);
    }

    #[test]
    fn mutated_statements_never_panic(
        seed in any::<usize>(),
        mutations in prop::collection::vec(mutation(), 1..6),
        params in prop::collection::vec(prop::option::of("[a-z0-9_]{0,8}"), 0..4),
    ) {
        let corpus = corpus();
        let mut sql = corpus[seed % corpus.len()].clone();
        for m in &mutations {
            sql = apply(&sql, m);
        }
        exercise(&sql, &params);
    }
}

#[test]
fn corpus_seeds_parse_or_fail_cleanly() {
    // Every seed is a valid statement except the deliberate UPDATE.
    for sql in corpus() {
        match parse(&sql) {
            Ok(_) => {}
            Err(e) => assert!(sql.starts_with("UPDATE"), "{sql}: {e}"),
        }
    }
}
