//! The SQL front end of EventDBX: turns SQL text into typed plans.
//!
//! This module owns everything between the query string a PostgreSQL client sends and the
//! plan the executor runs, and nothing else: it does no I/O, reads no clock and keeps no
//! state. It
//!
//! - parses SQL with sqlparser's PostgreSQL dialect, under hard limits (text size, statement
//!   count, nesting, operator chains, IN-list and VALUES sizes) so no input can make it
//!   panic, overflow its stack or run long ([`parse`]);
//! - plans the supported surface over the virtual relations `events`, `outbox`,
//!   `aggregates`, `schemas` and the table functions `read_outbox`, `verify`,
//!   `apply_schema` ([`Statement`]); history is append-only, so UPDATE/DELETE/DDL are
//!   rejected ([`SqlError::ImmutableEvents`]);
//! - infers parameter types for ParameterDescription ([`Statement::param_types`]) and result
//!   columns for RowDescription ([`Statement::result_columns`]);
//! - normalizes session statements (SET, SHOW, BEGIN, ...) for the server to apply
//!   ([`SessionStatement`]);
//! - answers the catalog queries of psql and pgjdbc from a static catalog
//!   ([`CatalogAnswer`]).
//!
//! The user-facing reference of the SQL surface is `sql/REFERENCE.md`.

mod catalog;
mod error;
mod params;
mod parse;
mod plan;
mod scalar;
mod session;

#[cfg(test)]
mod tests;

pub use catalog::CatalogAnswer;
pub use error::SqlError;
pub use params::MAX_PARAM;
pub use parse::{
    parse, MAX_LIST_ITEMS, MAX_OPERATOR_CHAIN, MAX_SQL_BYTES, MAX_STATEMENTS, RECURSION_LIMIT,
    SUPPORTED_SHAPES,
};
pub use plan::{
    CallForm, Column, ColumnRef, CommandTag, CompareOp, InsertColumn, InsertEvents, LiteralObjects,
    Operand, PgType, Predicate, Query, ScalarExpr, SelectItem, Statement, Table, ValueRef,
};
pub use session::{
    show_column_name, DiscardKind, IsolationLevel, SessionStatement, SetValue, TransactionModes,
};
