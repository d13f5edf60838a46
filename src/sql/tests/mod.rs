//! Table-driven tests of the whole front end: plans, parameter types, result columns,
//! errors, catalog answers, and a no-panic fuzz test.

mod catalog;
mod columns;
mod errors;
mod fuzz;
mod params;
mod shapes;

use super::*;

/// Parses a string holding exactly one statement.
#[track_caller]
pub(super) fn one(sql: &str) -> Statement {
    let mut stmts = match parse(sql) {
        Ok(s) => s,
        Err(e) => panic!("{sql}: {e} ({})", e.sqlstate()),
    };
    assert_eq!(stmts.len(), 1, "{sql}");
    stmts.remove(0)
}

/// The error a string fails with.
#[track_caller]
pub(super) fn err(sql: &str) -> SqlError {
    match parse(sql) {
        Ok(s) => panic!("{sql}: expected an error, planned {s:?}"),
        Err(e) => e,
    }
}

/// The `-- psql -E` queries of a client capture (the blocks between the QUERY banners).
pub(super) fn psql_queries(capture: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = capture;
    let open = "********* QUERY **********\n";
    let close = "\n**************************";
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

/// The queries of `testdata/pgjdbc_metadata.sql`, separated by `-- next` lines.
pub(super) fn pgjdbc_queries() -> Vec<String> {
    include_str!("../testdata/pgjdbc_metadata.sql")
        .split("\n-- next\n")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
