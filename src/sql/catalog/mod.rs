//! Answers to client catalog queries (`pg_catalog.*`), computed from a static catalog that
//! describes the four virtual tables.
//!
//! psql's `\dt`, `\d`, `\d NAME` (all nine dependent queries), `\dn`, `\l`, and pgjdbc's
//! `getTables()`, `getColumns()` and `pg_type` lookups are evaluated by a small query engine
//! ([`eval`]) over the relations in [`data`]. The tables get stable fake oids
//! (events 16385, aggregates 16386, outbox 16387, schemas 16388) in schema `public`
//! (oid 2200); the database is `default`, owned by role `eventdbx`.
//!
//! A parameterless query is answered at parse time ([`CatalogAnswer::rows`]). A query with
//! `$n` parameters (pgjdbc's type lookups) is typed at parse time and answered per execution
//! with [`CatalogAnswer::rows_for`].

mod data;
pub(crate) mod eval;
mod regex;

use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast;

use super::error::SqlError;
use super::params::placeholder_index;
use super::plan::{Column, PgType, Statement};

/// A catalog query's result: columns and text-format rows (`None` is NULL).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogAnswer {
    pub columns: Vec<Column>,
    /// The rows, when the query has no parameters; empty otherwise (see `rows_for`).
    pub rows: Vec<Vec<Option<String>>>,
    /// Types of the `$n` parameters, index `i` for `$i+1`.
    pub param_types: Vec<PgType>,
    /// The query, kept when the answer depends on parameter values.
    deferred: Option<Deferred>,
    /// Set by [`answer`] for a parameterized query; `parse` then moves the parsed query in
    /// (moved, not cloned: cloning a deep syntax tree recurses once per level).
    awaiting_query: bool,
}

/// A parameterized catalog query kept for [`CatalogAnswer::rows_for`]. Shared, so cloning a
/// plan does not copy (or recurse through) the syntax tree; compared and printed as SQL.
#[derive(Clone)]
struct Deferred {
    query: Arc<ast::Query>,
    sql: String,
}

impl PartialEq for Deferred {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.query, &other.query) || self.sql == other.sql
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Deferred").field(&self.sql).finish()
    }
}

impl CatalogAnswer {
    /// Whether the rows depend on parameter values (use [`CatalogAnswer::rows_for`]).
    pub fn needs_params(&self) -> bool {
        self.deferred.is_some() || self.awaiting_query
    }

    /// Whether [`answer`] asked for the parsed query to be attached.
    pub(crate) fn awaiting_query(&self) -> bool {
        self.awaiting_query
    }

    /// Keeps the parsed query for later evaluation.
    pub(crate) fn attach(&mut self, query: Box<ast::Query>) {
        let sql = query.to_string();
        self.deferred = Some(Deferred {
            query: Arc::from(query),
            sql,
        });
        self.awaiting_query = false;
    }

    /// The rows for these parameter values, given in text format (`None` is NULL; a binary
    /// int4/int8 parameter is passed as its decimal text). For a parameterless answer this
    /// is [`CatalogAnswer::rows`].
    pub fn rows_for(
        &self,
        params: &[Option<String>],
    ) -> Result<Vec<Vec<Option<String>>>, SqlError> {
        let Some(Deferred { query: q, .. }) = &self.deferred else {
            if self.awaiting_query {
                return Err(SqlError::unsupported(
                    "a catalog query without its text",
                    "plan catalog queries with parse()",
                ));
            }
            return Ok(self.rows.clone());
        };
        if params.len() < self.param_types.len() {
            return Err(SqlError::UnknownParameter {
                param: format!("${}", params.len() + 1),
            });
        }
        let mut engine = eval::Engine::new(Some(params));
        let rel = engine.query(q, None, true)?;
        Ok(format_rows(&rel, &self.columns))
    }
}

fn format_rows(rel: &eval::Rel, columns: &[Column]) -> Vec<Vec<Option<String>>> {
    rel.rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(columns)
                .map(|(v, c)| eval::format_value(v, c.ty))
                .collect()
        })
        .collect()
}

/// Every `$n` a query uses, as 0-based indexes.
fn placeholders(q: &ast::Query) -> Result<Vec<usize>, SqlError> {
    let mut found = Vec::new();
    let flow = ast::visit_expressions(q, |e| {
        if let ast::Expr::Value(v) = e {
            if let ast::Value::Placeholder(p) = &v.value {
                match placeholder_index(p) {
                    Ok(i) => found.push(i),
                    Err(err) => return ControlFlow::Break(err),
                }
            }
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(found),
    }
}

/// Plans a catalog query: evaluates it now, or types it and keeps it for `rows_for`.
pub(crate) fn answer(q: &ast::Query) -> Result<Statement, SqlError> {
    let used = placeholders(q)?;
    let no_params: &[Option<String>] = &[];
    let mut engine = eval::Engine::new(used.is_empty().then_some(no_params));
    let rel = engine.query(q, None, used.is_empty())?;
    let columns: Vec<Column> = rel
        .cols
        .iter()
        .map(|c| {
            Column::new(
                c.name.clone(),
                if c.ty == PgType::Unknown {
                    PgType::Text
                } else {
                    c.ty
                },
            )
        })
        .collect();
    let mut types = std::mem::take(&mut engine.param_types);
    for i in &used {
        types.seen(*i);
    }
    let param_types = types.finish();
    if used.is_empty() {
        let rows = format_rows(&rel, &columns);
        return Ok(Statement::Catalog(CatalogAnswer {
            columns,
            rows,
            param_types,
            deferred: None,
            awaiting_query: false,
        }));
    }
    Ok(Statement::Catalog(CatalogAnswer {
        columns,
        rows: vec![],
        param_types,
        deferred: None,
        awaiting_query: true,
    }))
}

/// Parses a PostgreSQL text-array literal (`{a,"b c",NULL}`): each element as text, `None`
/// for an unquoted NULL. Shared by the catalog evaluator and the planner's `#>` paths.
pub(crate) fn parse_text_array(text: &str) -> Result<Vec<Option<String>>, SqlError> {
    Ok(eval::parse_array_literal(text)?
        .into_iter()
        .map(|v| match v {
            eval::Val::Text(s) => Some(s),
            _ => None,
        })
        .collect())
}
