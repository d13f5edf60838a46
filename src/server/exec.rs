//! Executes planned statements against the engine: authorization, parameter binding,
//! access paths (point lookups, stream and log scans, keyset listing), filters,
//! projections, transactions and session statements. Produces rows of [`Cell`]s; the
//! protocol glue in `handlers` turns them into pgwire responses.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{stream, Stream};
use pgwire::error::ErrorInfo;
use pgwire::messages::data::DataRow;
use serde_json::{Map, Value};

use super::errors::{engine_error, error, error_with, Failure};
use super::schemas::Redactor;
use super::schemas::SchemaService;
use super::session::{Activity, BusyGuard, Session, Transaction};
use super::values::{encode_cells, put_value, Cell, Param};
use super::RestrictMode;
use crate::auth::{Action, Principal, TokenStore};
use crate::engine::{
    AggregateState, AppendRequest, Engine, Event, EventView, ExpectedVersion, Issuer, NewEvent,
    StoredText, VerifyReport,
};
use crate::payload::{to_compact_json, Payload};
use crate::sql::{
    CallForm, Column, ColumnRef, CommandTag, CompareOp, InsertColumn, InsertEvents, Operand,
    PgType, Predicate, Query, ScalarExpr, SelectItem, SessionStatement, Statement, Table, ValueRef,
};

/// Rows a single statement may examine before it is refused: a query that needs more must
/// narrow its filters or page with LIMIT/keysets. Bounds memory and time per statement.
pub const MAX_SCAN_ROWS: usize = 1_000_000;
/// Rows a statement may buffer for an ORDER BY the access path does not provide.
pub const MAX_SORT_ROWS: usize = 100_000;
/// Events buffered in one transaction block before COMMIT.
pub const MAX_TRANSACTION_EVENTS: usize = crate::engine::options::MAX_EVENTS_PER_APPEND;
/// Longest `pg_sleep`: long enough for any test or demonstration, short of holding a
/// connection slot for good.
pub const MAX_SLEEP_SECONDS: f64 = 300.0;
/// Default page of `read_outbox` when `take` is NULL or omitted.
pub const DEFAULT_OUTBOX_TAKE: usize = 100;

/// The server version reported to clients.
pub fn server_version() -> String {
    format!("16.6 (EventDBX {})", env!("CARGO_PKG_VERSION"))
}

/// What a statement produced.
#[derive(Debug)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    /// The rows already encoded in text format, when the client asked for text results and
    /// the executor wrote each row's values as it scanned (`rows` is then empty).
    pub text_rows: Option<TextRows>,
    /// CommandComplete text (None for an empty query).
    pub tag: Option<String>,
    /// ParameterStatus messages to send (SET of a reported setting).
    pub parameter_status: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Rows,
    Command,
    TransactionStart,
    TransactionEnd,
    Empty,
}

impl Outcome {
    fn command(tag: String) -> Self {
        Self {
            kind: OutcomeKind::Command,
            columns: Vec::new(),
            rows: Vec::new(),
            text_rows: None,
            tag: Some(tag),
            parameter_status: Vec::new(),
        }
    }

    /// An INSERT: rows only with RETURNING; the tag counts the events either way.
    fn insert(columns: Vec<Column>, rows: Vec<Vec<Cell>>, events: u64) -> Self {
        Self {
            kind: if columns.is_empty() {
                OutcomeKind::Command
            } else {
                OutcomeKind::Rows
            },
            columns,
            rows,
            text_rows: None,
            tag: CommandTag::Insert.text(events),
            parameter_status: Vec::new(),
        }
    }

    /// SELECT rows already encoded in text format (see `Outcome::text_rows`).
    fn text_rows(columns: Vec<Column>, rows: TextRows) -> Self {
        let count = match &rows {
            TextRows::Ready(rows) => rows.len() as u64,
            // pgwire counts the rows it sends for the tag.
            TextRows::Streamed(_) => 0,
        };
        Self {
            kind: OutcomeKind::Rows,
            columns,
            rows: Vec::new(),
            tag: CommandTag::Select.text(count),
            text_rows: Some(rows),
            parameter_status: Vec::new(),
        }
    }

    fn rows(columns: Vec<Column>, rows: Vec<Vec<Cell>>, tag: CommandTag) -> Self {
        let count = rows.len() as u64;
        Self {
            kind: OutcomeKind::Rows,
            columns,
            rows,
            text_rows: None,
            tag: tag.text(count),
            parameter_status: Vec::new(),
        }
    }
}

/// Text-format result rows: all of them, or chunks read as the connection asks for them.
pub enum TextRows {
    Ready(Vec<DataRow>),
    /// Chunks of rows in order; an `Err` ends the result (rows sent before it stay sent,
    /// as when PostgreSQL fails partway through a result).
    Streamed(RowChunks),
}

/// A streamed result's chunks (see [`HistoryStream`]).
pub type RowChunks = Pin<Box<dyn Stream<Item = Result<Vec<DataRow>, Failure>> + Send + Sync>>;

impl std::fmt::Debug for TextRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextRows::Ready(rows) => f.debug_tuple("Ready").field(&rows.len()).finish(),
            TextRows::Streamed(_) => f.write_str("Streamed"),
        }
    }
}

/// Shared by every connection.
#[derive(Debug)]
pub struct Executor {
    pub engine: Engine,
    pub tokens: Arc<TokenStore>,
    pub schemas: Arc<SchemaService>,
    pub restrict: RestrictMode,
    pub started: Instant,
    /// Statements running now, streamed results included (graceful shutdown waits for
    /// them to answer).
    pub inflight: Arc<AtomicUsize>,
    /// Set at shutdown: new statements are refused, running ones finish.
    pub draining: AtomicBool,
}

/// Counts a statement as in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound scalar value.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

fn bind(operand: &Operand, params: &[Param]) -> Result<Scalar, Failure> {
    Ok(match operand {
        Operand::Null => Scalar::Null,
        Operand::Bool(b) => Scalar::Bool(*b),
        Operand::Int(i) => Scalar::Int(*i),
        Operand::Float(f) => Scalar::Float(*f),
        Operand::Text(t) => Scalar::Text(t.clone()),
        Operand::Param { index, .. } => match params.get(*index) {
            None => {
                return Err(error(
                    "08P01",
                    format!("no value bound for parameter ${}", index + 1),
                ))
            }
            Some(Param::Null) => Scalar::Null,
            Some(Param::Bool(b)) => Scalar::Bool(*b),
            Some(Param::Int(i)) => Scalar::Int(*i),
            Some(Param::Float(f)) => Scalar::Float(*f),
            Some(Param::Text(t)) => Scalar::Text(t.clone()),
        },
        Operand::Concat(parts) => {
            let mut text = String::new();
            for part in parts {
                match scalar_text(&bind(part, params)?) {
                    Some(piece) => text.push_str(&piece),
                    None => return Ok(Scalar::Null),
                }
            }
            Scalar::Text(text)
        }
    })
}

fn scalar_int(scalar: &Scalar, what: &str) -> Result<Option<i64>, Failure> {
    match scalar {
        Scalar::Null => Ok(None),
        Scalar::Int(i) => Ok(Some(*i)),
        Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(Some(*f as i64)),
        Scalar::Text(t) => t.trim().parse().map(Some).map_err(|_| {
            error(
                "22P02",
                format!("invalid input syntax for type bigint: \"{t}\" ({what})"),
            )
        }),
        other => Err(error(
            "42804",
            format!("{what} must be an integer, got {other:?}"),
        )),
    }
}

fn scalar_text(scalar: &Scalar) -> Option<String> {
    match scalar {
        Scalar::Null => None,
        Scalar::Bool(b) => Some(b.to_string()),
        Scalar::Int(i) => Some(i.to_string()),
        Scalar::Float(f) => Some(f.to_string()),
        Scalar::Text(t) => Some(t.clone()),
    }
}

/// [`scalar_text`] of a value no longer needed: text is moved, not copied.
fn scalar_into_text(scalar: Scalar) -> Option<String> {
    match scalar {
        Scalar::Text(t) => Some(t),
        other => scalar_text(&other),
    }
}

fn scalar_json_object(
    scalar: &Scalar,
    column: &str,
) -> Result<Option<Map<String, Value>>, Failure> {
    let text = match scalar {
        Scalar::Null => return Ok(None),
        Scalar::Text(t) => t,
        other => {
            return Err(error(
                "42804",
                format!("column \"{column}\" is of type json but the value {other:?} is not"),
            ))
        }
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(error("22023", format!("{column} must be a JSON object"))),
        Err(e) => Err(error(
            "22P02",
            format!("invalid input syntax for type json ({column}): {e}"),
        )),
    }
}

fn non_negative(value: Option<i64>, what: &str) -> Result<Option<usize>, Failure> {
    match value {
        None => Ok(None),
        Some(v) if v < 0 => Err(error("2201W", format!("{what} must not be negative"))),
        Some(v) => Ok(Some(usize::try_from(v).unwrap_or(usize::MAX))),
    }
}

fn hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

fn permission_denied(principal: &Principal, action: Action, what: &str) -> Failure {
    error_with(
        "42501",
        format!(
            "permission denied: token {} lacks {} for {what}",
            principal.token_id,
            action.as_str()
        ),
        None,
        Some("issue a token with that action (dbx token generate --action ...)".into()),
    )
}

/// A row of one of the virtual tables.
enum Row<'a> {
    Event(EventView<'a>),
    Aggregate(&'a AggregateState),
    Schema(&'a super::schemas::SchemaRow),
}

impl Executor {
    fn require(&self, principal: &Principal, action: Action, what: &str) -> Result<(), Failure> {
        if principal.allows(action, None) {
            Ok(())
        } else {
            Err(permission_denied(principal, action, what))
        }
    }

    /// Admits a statement unless the server is draining; the guard keeps it counted.
    fn admit(&self) -> Result<InFlight, Failure> {
        let guard = InFlight::enter(&self.inflight);
        if self.draining.load(Ordering::SeqCst) {
            return Err(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "57P01".into(),
                "terminating connection due to administrator command: the server is shutting down"
                    .into(),
            )));
        }
        Ok(guard)
    }

    /// Runs one statement for a session.
    pub async fn execute(
        &self,
        session: &Session,
        statement: &Statement,
        params: &[Param],
        results: ResultFormat,
    ) -> Result<Outcome, Failure> {
        let _inflight = self.admit()?;
        let _busy = session.activity.busy();
        if !self.tokens.is_active(&session.principal.token_id) {
            return Err(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "the session's token has been revoked or has expired; reconnect with a valid token"
                    .into(),
            )));
        }
        let in_failed_block = session
            .state
            .lock()
            .transaction
            .as_ref()
            .is_some_and(|t| t.failed);
        if in_failed_block
            && !matches!(
                statement,
                Statement::Session(SessionStatement::Rollback | SessionStatement::Commit)
                    | Statement::Empty
            )
        {
            return Err(error(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let result = self
            .execute_inner(session, statement, params, results)
            .await;
        if result.is_err() {
            session.mark_failed();
        }
        result
    }

    async fn execute_inner(
        &self,
        session: &Session,
        statement: &Statement,
        params: &[Param],
        results: ResultFormat,
    ) -> Result<Outcome, Failure> {
        let principal = &session.principal;
        match statement {
            Statement::Empty => Ok(Outcome {
                kind: OutcomeKind::Empty,
                columns: Vec::new(),
                rows: Vec::new(),
                text_rows: None,
                tag: None,
                parameter_status: Vec::new(),
            }),
            Statement::Insert(insert) => self.insert(session, insert, params).await,
            Statement::Query(query) => {
                self.query(principal, &session.activity, query, params, results)
                    .await
            }
            Statement::ReadOutbox { after, take, form } => {
                self.require(principal, Action::OutboxRead, "the outbox")?;
                let after = scalar_int(&bind(after, params)?, "after_event_id")?.unwrap_or(0);
                let after = u64::try_from(after)
                    .map_err(|_| error("22023", "after_event_id must not be negative"))?;
                let take = non_negative(scalar_int(&bind(take, params)?, "take")?, "take")?
                    .unwrap_or(DEFAULT_OUTBOX_TAKE);
                let engine = self.engine.clone();
                let principal = principal.clone();
                let page = tokio::task::spawn_blocking(move || {
                    let keep = |e: &EventView<'_>| {
                        principal.allows_stored(
                            Action::OutboxRead,
                            Some((e.aggregate_type.as_bytes(), e.aggregate_id.as_bytes())),
                        )
                    };
                    engine.scan_events(after, take, MAX_SCAN_ROWS, &keep)
                })
                .await
                .map_err(|e| error("XX000", format!("outbox task failed: {e}")))?
                .map_err(|e| engine_error(&e))?;
                let mut events = Vec::with_capacity(page.events.len());
                for event in &page.events {
                    events.push(self.event_json(event)?);
                }
                let events_json = serde_json::to_string(&events).unwrap_or_else(|_| "[]".into());
                let next = sql_int(page.next_after_event_id);
                Ok(Outcome::rows(
                    statement.result_columns(),
                    vec![vec![Cell::Text(events_json), Cell::Int(next)]],
                    call_tag(*form),
                ))
            }
            Statement::Verify {
                aggregate_type,
                aggregate_id,
                form,
            } => {
                self.require(principal, Action::AggregateRead, "verify")?;
                let ty = match aggregate_type {
                    Some(op) => scalar_text(&bind(op, params)?),
                    None => None,
                };
                let id = match aggregate_id {
                    Some(op) => scalar_text(&bind(op, params)?),
                    None => None,
                };
                let engine = self.engine.clone();
                let reports = tokio::task::spawn_blocking(
                    move || -> Result<Vec<VerifyReport>, crate::engine::EngineError> {
                        match (ty, id) {
                            (Some(ty), Some(id)) => {
                                Ok(engine.verify(&ty, &id)?.into_iter().collect())
                            }
                            (ty, None) => engine.verify_many(ty.as_deref()),
                            (None, Some(_)) => Ok(Vec::new()),
                        }
                    },
                )
                .await
                .map_err(|e| error("XX000", format!("verify task failed: {e}")))?
                .map_err(|e| engine_error(&e))?;
                let rows = reports
                    .iter()
                    .filter(|r| {
                        principal.allows(
                            Action::AggregateRead,
                            Some((&r.aggregate_type, &r.aggregate_id)),
                        )
                    })
                    .map(|r| {
                        vec![
                            Cell::Text(r.aggregate_type.clone()),
                            Cell::Text(r.aggregate_id.clone()),
                            Cell::Int(sql_int(r.version)),
                            Cell::Text(hex(&r.recomputed_root)),
                            Cell::Text(hex(&r.stored_root)),
                            Cell::Bool(r.ok()),
                        ]
                    })
                    .collect();
                Ok(Outcome::rows(
                    statement.result_columns(),
                    rows,
                    call_tag(*form),
                ))
            }
            Statement::ApplySchema { source, form } => {
                self.require(principal, Action::SchemaWrite, "apply_schema")?;
                let Some(source) = scalar_text(&bind(source, params)?) else {
                    return Err(error(
                        "22004",
                        "apply_schema needs the schema source text, not NULL",
                    ));
                };
                let applied = self.schemas.apply(&self.engine, &source).await?;
                let rows = applied
                    .into_iter()
                    .map(|(ty, version)| vec![Cell::Text(ty), Cell::Int(sql_int(version))])
                    .collect();
                Ok(Outcome::rows(
                    statement.result_columns(),
                    rows,
                    call_tag(*form),
                ))
            }
            Statement::Session(s) => self.session_statement(session, s, statement),
            Statement::Scalars(items) => {
                let mut row = Vec::with_capacity(items.len());
                for (_, expr) in items {
                    row.push(self.scalar(session, expr, params).await?);
                }
                Ok(Outcome::rows(
                    statement.result_columns(),
                    vec![row],
                    CommandTag::Select,
                ))
            }
            Statement::Projected { inner, columns } => {
                // Re-projected below, so the inner rows stay cells.
                let mut outcome =
                    Box::pin(self.execute_inner(session, inner, params, ResultFormat::AsCells))
                        .await?;
                outcome.rows = outcome
                    .rows
                    .into_iter()
                    .map(|row| {
                        columns
                            .iter()
                            .map(|(i, _)| row.get(*i).cloned().unwrap_or(Cell::Null))
                            .collect()
                    })
                    .collect();
                outcome.columns = statement.result_columns();
                Ok(outcome)
            }
            Statement::Catalog(answer) => {
                let computed;
                let source = if answer.needs_params() {
                    let texts: Vec<Option<String>> = params
                        .iter()
                        .map(|p| match p {
                            Param::Null => None,
                            Param::Bool(b) => Some(b.to_string()),
                            Param::Int(i) => Some(i.to_string()),
                            Param::Float(f) => Some(f.to_string()),
                            Param::Text(t) => Some(t.clone()),
                        })
                        .collect();
                    computed = answer
                        .rows_for(&texts)
                        .map_err(|e| super::handlers::sql_error(&e))?;
                    &computed
                } else {
                    &answer.rows
                };
                let rows = source
                    .iter()
                    .map(|r| {
                        r.iter()
                            .map(|v| v.clone().map(Cell::Text).unwrap_or(Cell::Null))
                            .collect()
                    })
                    .collect();
                Ok(Outcome::rows(
                    answer.columns.clone(),
                    rows,
                    CommandTag::Select,
                ))
            }
        }
    }

    fn setting(&self, session: &Session, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        if let Some(v) = session.state.lock().settings.get(&lower) {
            return Some(v.clone());
        }
        let stats = || self.engine.stats().ok();
        Some(match lower.as_str() {
            "server_version" => server_version(),
            "server_version_num" => "160006".into(),
            "server_encoding" | "client_encoding" => "UTF8".into(),
            "datestyle" => "ISO, MDY".into(),
            "intervalstyle" => "postgres".into(),
            "timezone" => "UTC".into(),
            "standard_conforming_strings" | "integer_datetimes" => "on".into(),
            "is_superuser"
            | "transaction_read_only"
            | "default_transaction_read_only"
            | "in_hot_standby" => "off".into(),
            "search_path" => "public".into(),
            "application_name" => String::new(),
            "extra_float_digits" => "1".into(),
            "transaction_isolation" | "default_transaction_isolation" => "serializable".into(),
            "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
                "0".into()
            }
            "max_identifier_length" => "63".into(),
            "lc_collate" | "lc_ctype" => "C.UTF-8".into(),
            "bytea_output" => "hex".into(),
            "client_min_messages" => "notice".into(),
            "session_authorization" => session.login_user.clone(),
            "eventdbx.token_id" => session.principal.token_id.clone(),
            "eventdbx.token_user" => session.principal.user.clone(),
            "eventdbx.token_group" => session.principal.group.clone(),
            "eventdbx.event_count" => stats()?.events.to_string(),
            "eventdbx.aggregate_count" => stats()?.aggregates.to_string(),
            "eventdbx.last_event_id" => stats()?.last_event_id.to_string(),
            "eventdbx.storage_memory" => {
                let usage = self.engine.memory().ok()?;
                serde_json::json!({
                    "block_cache_bytes": usage.block_cache,
                    "block_cache_pinned_bytes": usage.block_cache_pinned,
                    "memtable_bytes": usage.memtables,
                    "table_reader_bytes": usage.table_readers,
                    "history_tail_bytes": usage.history_tail,
                    "opened_history_bytes": usage.opened_history,
                    "aggregate_records_bytes": usage.aggregate_records,
                })
                .to_string()
            }
            "eventdbx.restrict" => self.restrict.as_str().into(),
            "eventdbx.uptime_seconds" => self.started.elapsed().as_secs().to_string(),
            "eventdbx.schema_version" => self.schemas.version().to_string(),
            _ => return None,
        })
    }

    fn session_statement(
        &self,
        session: &Session,
        s: &SessionStatement,
        statement: &Statement,
    ) -> Result<Outcome, Failure> {
        use crate::sql::SetValue;
        match s {
            SessionStatement::Set { name, value, .. } => {
                let lower = name.to_ascii_lowercase();
                let mut outcome = Outcome::command("SET".into());
                match value {
                    SetValue::Default => {
                        session.state.lock().settings.remove(&lower);
                    }
                    SetValue::Values(_) => {
                        let joined = value.joined().unwrap_or_default();
                        if lower == "client_encoding"
                            && !matches!(
                                joined.to_ascii_uppercase().replace(['-', '_'], "").as_str(),
                                "UTF8" | "UNICODE"
                            )
                        {
                            return Err(error("0A000", format!("client_encoding {joined:?} is not supported; EventDBX speaks UTF8 only")));
                        }
                        session.state.lock().settings.insert(lower.clone(), joined);
                    }
                }
                if let Some(reported) = reported_name(&lower) {
                    if let Some(v) = self.setting(session, &lower) {
                        outcome.parameter_status.push((reported.to_owned(), v));
                    }
                }
                Ok(outcome)
            }
            SessionStatement::SetTransaction { .. } => Ok(Outcome::command("SET".into())),
            SessionStatement::Reset { name } => {
                let mut state = session.state.lock();
                match name {
                    Some(n) => {
                        state.settings.remove(&n.to_ascii_lowercase());
                    }
                    None => state.settings.clear(),
                }
                Ok(Outcome::command("RESET".into()))
            }
            SessionStatement::Show { name } => {
                if name == "all" {
                    let names = [
                        "application_name",
                        "client_encoding",
                        "DateStyle",
                        "IntervalStyle",
                        "search_path",
                        "server_encoding",
                        "server_version",
                        "standard_conforming_strings",
                        "TimeZone",
                        "transaction_isolation",
                    ];
                    let rows = names
                        .iter()
                        .map(|n| {
                            vec![
                                Cell::Text((*n).into()),
                                Cell::Text(self.setting(session, n).unwrap_or_default()),
                                Cell::Text(String::new()),
                            ]
                        })
                        .collect();
                    return Ok(Outcome::rows(
                        statement.result_columns(),
                        rows,
                        CommandTag::Show,
                    ));
                }
                let value = self.setting(session, name).ok_or_else(|| {
                    error(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                Ok(Outcome::rows(
                    statement.result_columns(),
                    vec![vec![Cell::Text(value)]],
                    CommandTag::Show,
                ))
            }
            SessionStatement::Begin { start, .. } => {
                let mut state = session.state.lock();
                if state.transaction.is_none() {
                    state.transaction = Some(Transaction::default());
                }
                let mut outcome =
                    Outcome::command(if *start { "START TRANSACTION" } else { "BEGIN" }.into());
                outcome.kind = OutcomeKind::TransactionStart;
                Ok(outcome)
            }
            SessionStatement::Rollback => {
                session.state.lock().transaction = None;
                let mut outcome = Outcome::command("ROLLBACK".into());
                outcome.kind = OutcomeKind::TransactionEnd;
                Ok(outcome)
            }
            SessionStatement::Commit => Err(error("XX000", "COMMIT is handled by commit()")),
            SessionStatement::Discard(_) => {
                let mut state = session.state.lock();
                state.settings.clear();
                state.transaction = None;
                Ok(Outcome::command(
                    statement.command_tag().text(0).unwrap_or_default(),
                ))
            }
            SessionStatement::Deallocate { .. } => Ok(Outcome::command(
                statement.command_tag().text(0).unwrap_or_default(),
            )),
        }
    }

    /// COMMIT: the buffered inserts become one atomic, durable append.
    pub async fn commit(&self, session: &Session) -> Result<Outcome, Failure> {
        let _inflight = self.admit()?;
        let transaction = session.state.lock().transaction.take();
        let mut outcome = Outcome::command("COMMIT".into());
        outcome.kind = OutcomeKind::TransactionEnd;
        let Some(transaction) = transaction else {
            return Ok(outcome);
        };
        if transaction.failed {
            outcome.tag = Some("ROLLBACK".into());
            return Ok(outcome);
        }
        if transaction.events.is_empty() {
            return Ok(outcome);
        }
        let request = AppendRequest {
            events: transaction.events,
            idempotency_key: transaction.idempotency_key,
            issued_by: issuer(&session.principal),
        };
        self.engine
            .append_async(request)
            .await
            .map_err(|e| engine_error(&e))?;
        Ok(outcome)
    }

    async fn scalar(
        &self,
        session: &Session,
        expr: &ScalarExpr,
        params: &[Param],
    ) -> Result<Cell, Failure> {
        Ok(match expr {
            ScalarExpr::Value { value, ty } => match bind(value, params)? {
                Scalar::Null => Cell::Null,
                Scalar::Bool(b) => Cell::Bool(b),
                Scalar::Int(i) => Cell::Int(i),
                Scalar::Float(f) => Cell::Float(f),
                Scalar::Text(t) => match ty {
                    PgType::Int2 | PgType::Int4 | PgType::Int8 => {
                        Cell::Int(t.trim().parse().map_err(|_| {
                            error(
                                "22P02",
                                format!("invalid input syntax for type integer: \"{t}\""),
                            )
                        })?)
                    }
                    _ => Cell::Text(t),
                },
            },
            ScalarExpr::Version => Cell::Text(format!(
                "PostgreSQL 16.6 (EventDBX {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
                env!("CARGO_PKG_VERSION")
            )),
            ScalarExpr::CurrentSetting { name, missing_ok } => {
                let name = scalar_text(&bind(name, params)?).unwrap_or_default();
                match self.setting(session, &name) {
                    Some(v) => Cell::Text(v),
                    None if *missing_ok => Cell::Null,
                    None => {
                        return Err(error(
                            "42704",
                            format!("unrecognized configuration parameter \"{name}\""),
                        ))
                    }
                }
            }
            ScalarExpr::CurrentSchema => Cell::Text("public".into()),
            ScalarExpr::SessionUser | ScalarExpr::CurrentUser => {
                Cell::Text(session.login_user.clone())
            }
            ScalarExpr::CurrentDatabase => Cell::Text(super::startup::DATABASE.into()),
            ScalarExpr::PgBackendPid => Cell::Int(i64::from(session.backend_pid)),
            ScalarExpr::Now => Cell::Timestamp(crate::engine::snowflake::unix_micros_now()),
            ScalarExpr::Sleep { seconds } => {
                let seconds = match bind(seconds, params)? {
                    Scalar::Int(i) => i as f64,
                    Scalar::Float(f) => f,
                    Scalar::Text(t) => t.trim().parse::<f64>().map_err(|_| {
                        error(
                            "22P02",
                            format!("invalid input syntax for type double precision: \"{t}\""),
                        )
                    })?,
                    _ => 0.0,
                };
                if !(0.0..=MAX_SLEEP_SECONDS).contains(&seconds) {
                    return Err(error(
                        "22023",
                        format!("pg_sleep takes 0 to {MAX_SLEEP_SECONDS} seconds"),
                    ));
                }
                // An await point: a cancel request or a stop interrupts it.
                tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await;
                Cell::Null
            }
        })
    }

    // ---- INSERT -------------------------------------------------------------------------

    fn new_events(
        &self,
        insert: &InsertEvents,
        params: &[Param],
    ) -> Result<(Vec<NewEvent>, Option<String>), Failure> {
        let mut events = Vec::with_capacity(insert.rows.len());
        let mut key: Option<Option<String>> = None;
        let literal = insert.literal_objects.as_ref();
        let literal_payload = literal.and_then(|objects| objects.payload.as_ref());
        let literal_metadata = literal.and_then(|objects| objects.metadata.as_ref());
        for row in &insert.rows {
            let mut values: [Scalar; 8] = std::array::from_fn(|_| Scalar::Null);
            for (column, operand) in insert.columns.iter().zip(row) {
                let parsed_already = match column {
                    InsertColumn::Payload => literal_payload.is_some(),
                    InsertColumn::Metadata => literal_metadata.is_some(),
                    _ => false,
                };
                if !parsed_already {
                    values[*column as usize] = bind(operand, params)?;
                }
            }
            let payload = match literal_payload {
                Some(parsed) => Arc::clone(parsed),
                None => Arc::new(Payload::new(scalar_json_object(&values[InsertColumn::Payload as usize], "payload")?
                    .ok_or_else(|| error("23502", "null value in column \"payload\" of relation \"events\" violates not-null constraint"))?)),
            };
            let metadata = match literal_metadata {
                Some(parsed) => parsed.clone(),
                None => scalar_json_object(&values[InsertColumn::Metadata as usize], "metadata")?
                    .unwrap_or_default(),
            };
            let expected = match scalar_int(
                &values[InsertColumn::ExpectedVersion as usize],
                "expected_version",
            )? {
                None => ExpectedVersion::Any,
                Some(0) => ExpectedVersion::NoStream,
                Some(n) if n > 0 => ExpectedVersion::Exact(n as u64),
                Some(_) => return Err(error(
                    "22023",
                    "expected_version must be NULL (any), 0 (must not exist) or a positive version",
                )),
            };
            // Each text column is read once: moved out of its bound value, not copied.
            let mut text = |c: InsertColumn| {
                scalar_into_text(std::mem::replace(&mut values[c as usize], Scalar::Null))
            };
            let required = |value: Option<String>, c: InsertColumn| {
                value.ok_or_else(|| error("23502", format!("null value in column \"{}\" of relation \"events\" violates not-null constraint", c.name())))
            };
            let row_key = text(InsertColumn::IdempotencyKey);
            match &key {
                None => key = Some(row_key),
                Some(k) if *k != row_key => {
                    return Err(error("22023", "all rows of one INSERT must carry the same idempotency_key (it names the whole append)"))
                }
                Some(_) => {}
            }
            events.push(NewEvent {
                aggregate_type: required(
                    text(InsertColumn::AggregateType),
                    InsertColumn::AggregateType,
                )?,
                aggregate_id: required(text(InsertColumn::AggregateId), InsertColumn::AggregateId)?,
                event_type: required(text(InsertColumn::EventType), InsertColumn::EventType)?,
                payload,
                metadata,
                note: text(InsertColumn::Note),
                expected_version: expected,
            });
        }
        Ok((events, key.flatten()))
    }

    fn authorize_append(&self, principal: &Principal, events: &[NewEvent]) -> Result<(), Failure> {
        for event in events {
            let target = Some((event.aggregate_type.as_str(), event.aggregate_id.as_str()));
            // Allowed either way: no need to look up whether the aggregate exists.
            if principal.allows(Action::AggregateAppend, target)
                && principal.allows(Action::AggregateCreate, target)
            {
                continue;
            }
            let exists = matches!(event.expected_version, ExpectedVersion::Exact(_))
                || (!matches!(event.expected_version, ExpectedVersion::NoStream)
                    && self
                        .engine
                        .aggregate(&event.aggregate_type, &event.aggregate_id)
                        .map_err(|e| engine_error(&e))?
                        .is_some());
            let action = if exists {
                Action::AggregateAppend
            } else {
                Action::AggregateCreate
            };
            if !principal.allows(action, target) {
                return Err(permission_denied(
                    principal,
                    action,
                    &format!("{}#{}", event.aggregate_type, event.aggregate_id),
                ));
            }
        }
        Ok(())
    }

    async fn insert(
        &self,
        session: &Session,
        insert: &InsertEvents,
        params: &[Param],
    ) -> Result<Outcome, Failure> {
        let (events, key) = self.new_events(insert, params)?;
        self.authorize_append(&session.principal, &events)?;
        let columns: Vec<Column> = insert
            .returning
            .iter()
            .flat_map(|i| i.columns(Table::Events))
            .collect();
        {
            let mut state = session.state.lock();
            if let Some(transaction) = state.transaction.as_mut() {
                if transaction.events.len() + events.len() > MAX_TRANSACTION_EVENTS {
                    return Err(error("54000", format!("a transaction block may buffer at most {MAX_TRANSACTION_EVENTS} events")));
                }
                if key.is_some() {
                    if transaction.idempotency_key.is_some() && transaction.idempotency_key != key {
                        return Err(error("22023", "one transaction block is one append: it takes a single idempotency_key"));
                    }
                    transaction.idempotency_key = key;
                }
                // Inside a block, RETURNING shows what was submitted; the ids, versions,
                // hashes and times are assigned at COMMIT and come back NULL here.
                let rows = events
                    .iter()
                    .map(|e| self.project_pending(e, &insert.returning))
                    .collect::<Result<Vec<_>, _>>()?;
                let count = events.len() as u64;
                transaction.events.extend(events);
                return Ok(Outcome::insert(columns, rows, count));
            }
        }
        let count = events.len() as u64;
        let outcome = self
            .engine
            .append_async(AppendRequest {
                events,
                idempotency_key: key,
                issued_by: issuer(&session.principal),
            })
            .await
            .map_err(|e| engine_error(&e))?;
        let mut rows = Vec::new();
        if !insert.returning.is_empty() {
            for event in &outcome.events {
                rows.push(self.project(&Row::Event(event.view()), &insert.returning, &[])?);
            }
        }
        Ok(Outcome::insert(columns, rows, count))
    }

    fn project_pending(
        &self,
        event: &NewEvent,
        items: &[SelectItem],
    ) -> Result<Vec<Cell>, Failure> {
        let mut cells = Vec::new();
        for item in items {
            let columns: Vec<ColumnRef> = match item {
                SelectItem::Wildcard => Table::Events.columns().to_vec(),
                SelectItem::Column { column, .. } | SelectItem::Json { column, .. } => {
                    vec![*column]
                }
                SelectItem::CountStar { .. } => vec![],
            };
            for column in columns {
                let value = match column {
                    ColumnRef::AggregateType => Cell::Text(event.aggregate_type.clone()),
                    ColumnRef::AggregateId => Cell::Text(event.aggregate_id.clone()),
                    ColumnRef::EventType => Cell::Text(event.event_type.clone()),
                    ColumnRef::Payload => Cell::Text(event.payload.compact_json().to_owned()),
                    ColumnRef::Metadata => Cell::Text(to_compact_json(&event.metadata)),
                    ColumnRef::Note => event.note.clone().map(Cell::Text).unwrap_or(Cell::Null),
                    _ => Cell::Null,
                };
                let value = match item {
                    SelectItem::Json { path, as_text, .. } => {
                        json_path(&value, path, *as_text, &[])?
                    }
                    _ => value,
                };
                cells.push(value);
            }
        }
        Ok(cells)
    }

    // ---- SELECT -------------------------------------------------------------------------

    async fn query(
        &self,
        principal: &Principal,
        activity: &Arc<Activity>,
        query: &Query,
        params: &[Param],
        results: ResultFormat,
    ) -> Result<Outcome, Failure> {
        let action = match query.table {
            Table::Events | Table::Aggregates => Action::AggregateRead,
            Table::Outbox => Action::OutboxRead,
            Table::Schemas => Action::SchemaRead,
        };
        self.require(principal, action, query.table.name())?;
        let limit = non_negative(
            match &query.limit {
                Some(op) => scalar_int(&bind(op, params)?, "LIMIT")?,
                None => None,
            },
            "LIMIT",
        )?;
        let offset = non_negative(
            match &query.offset {
                Some(op) => scalar_int(&bind(op, params)?, "OFFSET")?,
                None => None,
            },
            "OFFSET",
        )?
        .unwrap_or(0);
        let count_only = matches!(query.items.as_slice(), [SelectItem::CountStar { .. }]);
        let columns: Vec<Column> = query
            .items
            .iter()
            .flat_map(|i| i.columns(query.table))
            .collect();
        // Bind every predicate operand once.
        let filters = bind_filters(&query.filters, params)?;
        let natural = natural_order(query, &filters);
        let needs_sort = !query.order_by.is_empty() && !natural;
        // Stop early only when rows come in the requested order.
        let wanted = match (count_only, needs_sort, limit) {
            (false, false, Some(l)) => Some(offset.saturating_add(l)),
            _ => None,
        };

        // Rows in scan order, all values in text: write each one straight into the result
        // buffer from the row being scanned (one copy per value, no cells in between).
        let write_text = results != ResultFormat::AsCells && !count_only && !needs_sort;
        let field_count = i16::try_from(columns.len()).unwrap_or(i16::MAX);
        if write_text
            && results == ResultFormat::TextStreamed
            && wanted.is_none_or(|rows| rows > STREAM_MIN_ROWS)
            && HistoryStream::applies(query, &filters)
        {
            let (after, up_to) = event_id_bounds(&filters);
            let filters = beyond_event_id_bounds(filters);
            let stream = HistoryStream {
                engine: self.engine.clone(),
                gate: EventGate::new(self.schemas.redactor()),
                principal: principal.clone(),
                action,
                items: query.items.clone(),
                filters,
                params: params.to_vec(),
                field_count,
                skip: offset,
                remaining: limit,
                after,
                up_to,
                done: limit == Some(0),
                _running: (InFlight::enter(&self.inflight), activity.busy()),
            };
            return Ok(Outcome::text_rows(columns, stream.into_rows()));
        }
        // Rows are split off this buffer; when it runs out, `BytesMut` allocates a fresh one
        // at least as large as the first, so a result costs one allocation per chunk, not
        // one per value.
        let mut text_buffer =
            BytesMut::with_capacity(if write_text { TEXT_RESULT_CHUNK } else { 0 });
        let mut text_rows: Vec<DataRow> = Vec::new();
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        let mut sort_keys: Vec<Vec<Cell>> = Vec::new();
        let mut matched = 0usize;
        let mut visit = |row: Row<'_>| -> Result<bool, Failure> {
            if !row_visible(principal, action, &row) || !row_matches(&row, &filters, params)? {
                return Ok(true);
            }
            matched += 1;
            if count_only {
                return Ok(true);
            }
            if needs_sort {
                if rows.len() >= MAX_SORT_ROWS {
                    return Err(error("54000", format!("ORDER BY would sort more than {MAX_SORT_ROWS} rows; narrow the WHERE clause or order by the natural key")));
                }
                sort_keys.push(
                    query
                        .order_by
                        .iter()
                        .map(|(c, _)| column_cell(&row, *c))
                        .collect::<Result<_, _>>()?,
                );
            }
            if write_text {
                encode_projection_text(&mut text_buffer, &row, &query.items, params)?;
                text_rows.push(DataRow::new(text_buffer.split(), field_count));
                return Ok(wanted.is_none_or(|w| text_rows.len() < w));
            }
            rows.push(self.project(&row, &query.items, params)?);
            Ok(wanted.is_none_or(|w| rows.len() < w))
        };
        self.scan(query, &filters, &mut visit)?;
        if write_text {
            let text_rows: Vec<DataRow> = text_rows
                .into_iter()
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .collect();
            return Ok(Outcome::text_rows(columns, TextRows::Ready(text_rows)));
        }

        if count_only {
            // As in PostgreSQL, LIMIT and OFFSET apply to the one result row, not to the
            // rows counted: `SELECT COUNT(*) ... OFFSET 1` returns no row.
            let count = i64::try_from(matched).unwrap_or(i64::MAX);
            let rows = std::iter::once(vec![Cell::Int(count)])
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .collect();
            return Ok(Outcome::rows(columns, rows, CommandTag::Select));
        }
        if needs_sort {
            let mut indexed: Vec<(Vec<Cell>, Vec<Cell>)> =
                sort_keys.into_iter().zip(rows).collect();
            indexed.sort_by(|(a, _), (b, _)| {
                for (i, (_, descending)) in query.order_by.iter().enumerate() {
                    let ordering = compare_cells(
                        a.get(i).unwrap_or(&Cell::Null),
                        b.get(i).unwrap_or(&Cell::Null),
                    );
                    let ordering = if *descending {
                        ordering.reverse()
                    } else {
                        ordering
                    };
                    if ordering != std::cmp::Ordering::Equal {
                        return ordering;
                    }
                }
                std::cmp::Ordering::Equal
            });
            rows = indexed.into_iter().map(|(_, r)| r).collect();
        }
        let rows: Vec<Vec<Cell>> = rows
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        Ok(Outcome::rows(columns, rows, CommandTag::Select))
    }

    /// Feeds candidate rows to `visit` (see [`scan_table`]).
    fn scan(
        &self,
        query: &Query,
        filters: &[BoundPredicate],
        visit: &mut dyn FnMut(Row<'_>) -> Result<bool, Failure>,
    ) -> Result<(), Failure> {
        scan_table(&self.engine, &self.schemas, query, filters, visit)
    }

    fn project(
        &self,
        row: &Row<'_>,
        items: &[SelectItem],
        params: &[Param],
    ) -> Result<Vec<Cell>, Failure> {
        let mut cells = Vec::with_capacity(items.len());
        for item in items {
            match item {
                SelectItem::Wildcard => {
                    for column in table_columns(row) {
                        cells.push(column_cell(row, *column)?);
                    }
                }
                SelectItem::Column { column, .. } => cells.push(column_cell(row, *column)?),
                SelectItem::Json {
                    column,
                    path,
                    as_text,
                    ..
                } => cells.push(json_path(
                    &column_cell(row, *column)?,
                    path,
                    *as_text,
                    params,
                )?),
                SelectItem::CountStar { .. } => {}
            }
        }
        Ok(cells)
    }

    fn event_json(&self, event: &Event) -> Result<Value, Failure> {
        let event = self.schemas.redact_event(event.clone());
        event.to_json().map_err(|e| engine_error(&e))
    }
}

/// Feeds candidate rows to `visit` using the cheapest access path the filters allow;
/// `visit` returns false to stop.
fn scan_table(
    engine: &Engine,
    schemas: &SchemaService,
    query: &Query,
    filters: &[BoundPredicate],
    visit: &mut dyn FnMut(Row<'_>) -> Result<bool, Failure>,
) -> Result<(), Failure> {
    let eq_text = |c: ColumnRef| equality_text(filters, c);
    let map = |e: crate::engine::EngineError| engine_error(&e);
    match query.table {
        Table::Schemas => {
            for row in schemas.rows() {
                if !visit(Row::Schema(&row))? {
                    break;
                }
            }
        }
        Table::Aggregates => {
            let ty = eq_text(ColumnRef::AggregateType);
            let id = eq_text(ColumnRef::AggregateId);
            if let (Some(ty), Some(id)) = (&ty, &id) {
                let state = match equality_int(filters, ColumnRef::Version) {
                    Some(version) => engine
                        .aggregate_at(ty, id, u64::try_from(version).unwrap_or(0))
                        .map_err(map)?,
                    None => engine.aggregate(ty, id).map_err(map)?,
                };
                if let Some(state) = state {
                    let state = schemas.redact_state(state);
                    visit(Row::Aggregate(&state))?;
                }
                return Ok(());
            }
            // Keyset paging on aggregate_id within a type.
            let mut after: Option<(String, String)> =
                match (&ty, lower_bound_text(filters, ColumnRef::AggregateId)) {
                    (Some(ty), Some(id)) => Some((ty.clone(), id)),
                    _ => None,
                };
            let largest_page = engine.options().page_limit;
            let mut page = SCAN_FIRST_BATCH_ROWS.min(largest_page);
            let mut scanned = 0usize;
            loop {
                let batch = engine
                    .list_aggregates(
                        ty.as_deref(),
                        after.as_ref().map(|(t, i)| (t.as_str(), i.as_str())),
                        page,
                    )
                    .map_err(map)?;
                let Some(last) = batch.last() else { break };
                after = Some((last.aggregate_type.clone(), last.aggregate_id.clone()));
                page = next_scan_batch(page, largest_page);
                for state in batch {
                    scanned += 1;
                    if scanned > MAX_SCAN_ROWS {
                        return Err(too_many_rows());
                    }
                    if ty.is_none() && schemas.is_hidden(&state.aggregate_type) {
                        continue;
                    }
                    let state = schemas.redact_state(state);
                    if !visit(Row::Aggregate(&state))? {
                        return Ok(());
                    }
                }
            }
        }
        Table::Events | Table::Outbox => {
            let mut gate = EventGate::new(schemas.redactor());
            let mut emit =
                |event: EventView<'_>| -> Result<bool, Failure> { gate.pass(event, &mut *visit) };
            if let Some((ty, id)) = one_aggregate(filters) {
                let (mut after, up_to) = version_bounds(filters);
                let mut batch_events = SCAN_FIRST_BATCH_ROWS;
                loop {
                    let batch = engine
                        .events_of(&ty, &id, after, batch_events, up_to)
                        .map_err(map)?;
                    let Some(last) = batch.last() else { break };
                    after = last.version;
                    batch_events = next_scan_batch(batch_events, STREAM_MAX_BATCH_EVENTS);
                    for event in &batch {
                        if !emit(event.view())? {
                            return Ok(());
                        }
                    }
                }
                return Ok(());
            }
            // Whole history in id order, each event looked at in place.
            let (after, up_to) = event_id_bounds(filters);
            visit_history(engine, after, up_to, &mut emit)?;
        }
    }
    Ok(())
}

/// Rows read in the first batch of a batched scan (one aggregate's history; the aggregates
/// of a type, or all of them, in key order) before any is handed on. A read of an
/// aggregate's next or last few events (`... AND version > $1 ORDER BY version LIMIT 10`),
/// or of a few aggregates (`... WHERE aggregate_type = 'order' LIMIT 10`), stops at its LIMIT
/// only between batches, and each row in a batch is read from RocksDB and opened: with a
/// first batch of 1,000 it read up to 1,000 events to return 10 (7.5 ms for 10 rows of an
/// aggregate with 1,000 events in a 10M-event store), and 1,000 aggregate records (~0.7 ms).
const SCAN_FIRST_BATCH_ROWS: usize = 16;
/// The largest batch of one aggregate's events: bounds the events one batch holds in memory.
/// (A batch of aggregates is bounded by the configured page limit.)
const STREAM_MAX_BATCH_EVENTS: usize = 1_000;

/// The batch after one of `rows`: four times larger up to `largest`, so a whole scan is read
/// in a few more batches than at the largest size throughout (one seek each).
fn next_scan_batch(rows: usize, largest: usize) -> usize {
    rows.saturating_mul(4).min(largest)
}

/// Bytes of rows in one chunk of a streamed result. Each chunk costs the server ~20 µs
/// (measured as a whole: a new iterator and seek, a socket write, waking the client), each
/// chunk boundary lets the client start on what was sent: 128 KiB beat 64 KiB and 256 KiB
/// on the 1,000-event outbox page (docs/BENCHMARKS.md). Keeping one iterator across chunks
/// measured no faster, so the seek is not the part that matters.
const STREAM_CHUNK_BYTES: usize = 128 * 1024;

/// Results that may stream: a scan with no LIMIT, or one above this many rows (one chunk
/// of typical events). Smaller results are answered in one piece.
const STREAM_MIN_ROWS: usize = 256;

/// A whole-history event scan (`events` or `outbox` in `event_id` order, not narrowed to
/// one aggregate) answered a chunk at a time: each chunk of [`STREAM_CHUNK_BYTES`] of rows
/// goes to the connection, which writes it out, before the next is read. The client then
/// parses one chunk while the server reads the next, instead of waiting for the whole
/// result (outbox pages/s +6% encrypted, +11% plaintext, interleaved A/B).
///
/// Each chunk re-seeks after the last event id it saw. That is the same result as one
/// snapshot taken when the last chunk is read: events are never changed or removed, and an
/// id is visible only once every smaller id is (ids are assigned in commit order, a group
/// at a time), so nothing can appear behind the cursor.
struct HistoryStream {
    engine: Engine,
    gate: EventGate,
    principal: Principal,
    action: Action,
    items: Vec<SelectItem>,
    filters: Vec<BoundPredicate>,
    params: Vec<Param>,
    field_count: i16,
    /// Rows still to skip (OFFSET) and still to send (LIMIT).
    skip: usize,
    remaining: Option<usize>,
    /// The last event id looked at, and the ids the filters allow at most.
    after: u64,
    up_to: u64,
    done: bool,
    /// Counts the statement as running (for graceful shutdown and the idle timeout) until
    /// its last chunk is read.
    _running: (InFlight, BusyGuard),
}

impl HistoryStream {
    /// Whether `query` takes the whole-history path in `scan_table`.
    fn applies(query: &Query, filters: &[BoundPredicate]) -> bool {
        matches!(query.table, Table::Events | Table::Outbox) && one_aggregate(filters).is_none()
    }

    fn into_rows(self) -> TextRows {
        let chunks = stream::unfold(self, |mut scan| async move {
            if scan.done {
                return None;
            }
            let chunk = scan.next_chunk();
            if chunk.is_err() {
                scan.done = true;
            }
            Some((chunk, scan))
        });
        TextRows::Streamed(Box::pin(chunks))
    }

    /// The next chunk of rows (empty only at the end).
    ///
    /// The chunk's rows are encoded one after another into one `Vec<u8>` and split into
    /// messages sharing it at the end: a `Vec`'s fixed-size writes (each value's length)
    /// inline, where `BytesMut`'s went through a call and a copy each, six a row.
    fn next_chunk(&mut self) -> Result<Vec<DataRow>, Failure> {
        let mut encoded = Vec::with_capacity(STREAM_CHUNK_BYTES + STREAM_CHUNK_HEADROOM_BYTES);
        let mut row_ends = Vec::new();
        let mut reached_end = true;
        let engine = self.engine.clone();
        let this = &mut *self;
        visit_history(&engine, this.after, this.up_to, &mut |event| {
            this.after = event.event_id;
            let more = this.take(&mut encoded, &mut row_ends, event)?;
            if more && encoded.len() >= STREAM_CHUNK_BYTES {
                reached_end = false;
                return Ok(false);
            }
            Ok(more)
        })?;
        if reached_end || this.remaining == Some(0) {
            this.done = true;
        }
        Ok(split_rows(encoded, &row_ends, this.field_count))
    }

    /// Counts, redacts, filters and encodes one event; false when the result is complete.
    fn take(
        &mut self,
        encoded: &mut Vec<u8>,
        row_ends: &mut Vec<usize>,
        event: EventView<'_>,
    ) -> Result<bool, Failure> {
        self.gate.pass(event, |row| {
            if !row_visible(&self.principal, self.action, &row)
                || !row_matches(&row, &self.filters, &self.params)?
            {
                return Ok(true);
            }
            if self.skip > 0 {
                self.skip -= 1;
                return Ok(true);
            }
            encode_projection_text(encoded, &row, &self.items, &self.params)?;
            row_ends.push(encoded.len());
            if let Some(remaining) = self.remaining.as_mut() {
                *remaining -= 1;
                if *remaining == 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }
}

/// Room past [`STREAM_CHUNK_BYTES`] in a chunk's buffer for the row that crosses it: typical
/// events fit; a larger row grows the buffer (by doubling) as a `Vec` does.
const STREAM_CHUNK_HEADROOM_BYTES: usize = 16 * 1024;

/// The rows encoded back to back in `encoded`, ending at `row_ends`, as messages that share
/// its allocation (no copy).
fn split_rows(encoded: Vec<u8>, row_ends: &[usize], field_count: i16) -> Vec<DataRow> {
    let mut rest = BytesMut::from(Bytes::from(encoded));
    let mut start = 0;
    row_ends
        .iter()
        .map(|&end| {
            let row = rest.split_to(end - start);
            start = end;
            DataRow::new(row, field_count)
        })
        .collect()
}

/// What every event a scan reads passes before it becomes a row: the scan cap
/// ([`MAX_SCAN_ROWS`]) and the schema's hidden-field redaction. One per scan, so a
/// streamed scan keeps its count across chunks.
struct EventGate {
    redactor: Redactor,
    scanned: usize,
}

impl EventGate {
    fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            scanned: 0,
        }
    }

    /// Counts `event` against the cap and hands it, redacted, to `visit` as a row.
    fn pass<T>(
        &mut self,
        event: EventView<'_>,
        visit: impl FnOnce(Row<'_>) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.scanned += 1;
        if self.scanned > MAX_SCAN_ROWS {
            return Err(too_many_rows());
        }
        let payload = self
            .redactor
            .payload(event.aggregate_type, event.payload_json)?;
        visit(Row::Event(EventView {
            payload_json: StoredText::new(&payload),
            ..event
        }))
    }
}

/// The one aggregate both of whose names the filters pin with `=`: its own history (or
/// record) is then the access path.
fn one_aggregate(filters: &[BoundPredicate]) -> Option<(String, String)> {
    Some((
        equality_text(filters, ColumnRef::AggregateType)?,
        equality_text(filters, ColumnRef::AggregateId)?,
    ))
}

fn row_visible(principal: &Principal, action: Action, row: &Row<'_>) -> bool {
    match row {
        Row::Event(e) => principal.allows_stored(
            action,
            Some((e.aggregate_type.as_bytes(), e.aggregate_id.as_bytes())),
        ),
        Row::Aggregate(a) => principal.allows(action, Some((&a.aggregate_type, &a.aggregate_id))),
        Row::Schema(_) => true,
    }
}

/// Hands the events after `after` with ids up to `up_to` to `visit`, in id order, until it
/// returns false or fails (its failure is the result).
fn visit_history(
    engine: &Engine,
    after: u64,
    up_to: u64,
    visit: &mut dyn FnMut(EventView<'_>) -> Result<bool, Failure>,
) -> Result<(), Failure> {
    let mut failure = None;
    engine
        .visit_events(after, &mut |event, _| {
            if event.event_id > up_to {
                return false;
            }
            visit(event).unwrap_or_else(|err| {
                failure = Some(err);
                false
            })
        })
        .map_err(|e| engine_error(&e))?;
    failure.map_or(Ok(()), Err)
}

fn too_many_rows() -> Failure {
    error_with(
        "54000",
        format!("query would examine more than {MAX_SCAN_ROWS} rows"),
        None,
        Some("filter by aggregate_type and aggregate_id, or page with event_id > $1 / aggregate_id > $1 and LIMIT".into()),
    )
}

fn call_tag(form: CallForm) -> CommandTag {
    match form {
        CallForm::Call => CommandTag::Call,
        CallForm::Select => CommandTag::Select,
    }
}

fn issuer(principal: &Principal) -> Issuer {
    Issuer {
        group: principal.group.clone(),
        user: principal.user.clone(),
    }
}

fn reported_name(lower: &str) -> Option<&'static str> {
    Some(match lower {
        "application_name" => "application_name",
        "client_encoding" => "client_encoding",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        "timezone" => "TimeZone",
        "standard_conforming_strings" => "standard_conforming_strings",
        "search_path" => "search_path",
        _ => return None,
    })
}

/// Bytes of text-format rows allocated at a time while a scan writes its result.
const TEXT_RESULT_CHUNK: usize = 64 * 1024;

/// How the client takes a statement's result values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// Every column in text format: rows may be written straight to wire bytes.
    Text,
    /// As `Text`, and the caller sends the whole result before it runs anything else (an
    /// Execute without a row limit): a long scan may then stream its rows while it runs.
    TextStreamed,
    /// Some column in binary format (or the rows are processed further): rows stay cells
    /// for the protocol layer to encode.
    AsCells,
}

/// Appends a projected row's values to `buf`, all in text format, as
/// `values::encode_cells` would write the cells `Executor::project` makes, but copying
/// text columns straight from the row.
fn encode_projection_text<B: BufMut>(
    buf: &mut B,
    row: &Row<'_>,
    items: &[SelectItem],
    params: &[Param],
) -> Result<(), Failure> {
    for item in items {
        match item {
            SelectItem::Wildcard => {
                for column in table_columns(row) {
                    encode_column_text(buf, row, *column)?;
                }
            }
            SelectItem::Column { column, .. } => encode_column_text(buf, row, *column)?,
            SelectItem::Json {
                column,
                path,
                as_text,
                ..
            } => {
                let cell = json_path(&column_cell(row, *column)?, path, *as_text, params)?;
                encode_cells(buf, &[cell], &[], &[])?;
            }
            SelectItem::CountStar { .. } => {}
        }
    }
    Ok(())
}

/// One column of a row in text format; the event's text and integer columns without an
/// intermediate cell.
fn encode_column_text<B: BufMut>(
    buf: &mut B,
    row: &Row<'_>,
    column: ColumnRef,
) -> Result<(), Failure> {
    if let Row::Event(e) = row {
        let mut digits = itoa::Buffer::new();
        let text = match column {
            ColumnRef::AggregateType => Some(e.aggregate_type.as_bytes()),
            ColumnRef::AggregateId => Some(e.aggregate_id.as_bytes()),
            ColumnRef::EventType => Some(e.event_type.as_bytes()),
            // Stored text goes out as stored (see `StoredText`).
            ColumnRef::Payload => Some(e.payload_json.as_bytes()),
            ColumnRef::Metadata => Some(e.metadata_json.as_bytes()),
            ColumnRef::EventId => Some(digits.format(sql_int(e.event_id)).as_bytes()),
            ColumnRef::Version => Some(digits.format(sql_int(e.version)).as_bytes()),
            _ => None,
        };
        if let Some(text) = text {
            put_value(buf, text);
            return Ok(());
        }
    }
    encode_cells(buf, &[column_cell(row, column)?], &[], &[])
}

/// A stored count or id as the `bigint` the SQL surface shows (ids stay below 2^63).
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The columns `*` stands for in a row's table.
fn table_columns(row: &Row<'_>) -> &'static [ColumnRef] {
    match row {
        Row::Event(_) => Table::Events.columns(),
        Row::Aggregate(_) => Table::Aggregates.columns(),
        Row::Schema(_) => Table::Schemas.columns(),
    }
}

/// The value of a column for a row; an error only when stored text is not UTF-8.
fn column_cell<'a>(row: &Row<'a>, column: ColumnRef) -> Result<Cell, Failure> {
    let int = |v: u64| Cell::Int(sql_int(v));
    let str_of = |t: StoredText<'a>, field| t.to_str(field).map_err(|e| engine_error(&e));
    let text = |t: StoredText<'a>, field| str_of(t, field).map(|t| Cell::Text(t.to_owned()));
    Ok(match row {
        Row::Event(e) => match column {
            ColumnRef::EventId => int(e.event_id),
            ColumnRef::AggregateType => text(e.aggregate_type, "event aggregate type")?,
            ColumnRef::AggregateId => text(e.aggregate_id, "event aggregate id")?,
            ColumnRef::Version => int(e.version),
            ColumnRef::EventType => text(e.event_type, "event type")?,
            ColumnRef::Payload => text(e.payload_json, "event payload")?,
            ColumnRef::Metadata => text(e.metadata_json, "event metadata")?,
            ColumnRef::Note => match e.note {
                Some(note) => text(note, "event note")?,
                None => Cell::Null,
            },
            ColumnRef::CreatedAt => Cell::Timestamp(e.created_at_micros),
            ColumnRef::IssuedBy => {
                let group = str_of(e.issued_by_group, "event issuer")?;
                let user = str_of(e.issued_by_user, "event issuer")?;
                Cell::Text(serde_json::json!({"group": group, "user": user}).to_string())
            }
            ColumnRef::Hash => Cell::Text(hex(e.hash)),
            ColumnRef::MerkleRoot => Cell::Text(hex(e.merkle_root)),
            _ => Cell::Null,
        },
        Row::Aggregate(a) => match column {
            ColumnRef::AggregateType => Cell::Text(a.aggregate_type.clone()),
            ColumnRef::AggregateId => Cell::Text(a.aggregate_id.clone()),
            ColumnRef::Version => int(a.version),
            ColumnRef::State => Cell::Text(a.state_json.clone()),
            ColumnRef::MerkleRoot => Cell::Text(hex(&a.merkle_root)),
            ColumnRef::CreatedAt => Cell::Timestamp(a.created_at_micros),
            ColumnRef::UpdatedAt => Cell::Timestamp(a.updated_at_micros),
            _ => Cell::Null,
        },
        Row::Schema(s) => match column {
            ColumnRef::AggregateType => Cell::Text(s.aggregate_type.clone()),
            ColumnRef::Schema => Cell::Text(s.schema_json.clone()),
            ColumnRef::SchemaVersion => int(s.schema_version),
            ColumnRef::Hidden => Cell::Bool(s.hidden),
            ColumnRef::AppliedAt => Cell::Timestamp(s.applied_at_micros),
            _ => Cell::Null,
        },
    })
}

/// `->` / `->>` over a JSON cell.
fn json_path(
    cell: &Cell,
    path: &[Operand],
    as_text: bool,
    params: &[Param],
) -> Result<Cell, Failure> {
    let Cell::Text(text) = cell else {
        return Ok(Cell::Null);
    };
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return Ok(Cell::Null);
    };
    for step in path {
        let next = match bind(step, params)? {
            Scalar::Text(key) => match value {
                Value::Object(mut map) => map.remove(&key),
                _ => None,
            },
            Scalar::Int(index) => match value {
                Value::Array(mut items) => {
                    let len = items.len() as i64;
                    let at = if index < 0 { len + index } else { index };
                    if (0..len).contains(&at) {
                        Some(items.swap_remove(at as usize))
                    } else {
                        None
                    }
                }
                _ => None,
            },
            _ => None,
        };
        match next {
            Some(v) => value = v,
            None => return Ok(Cell::Null),
        }
    }
    Ok(match (&value, as_text) {
        (Value::Null, true) => Cell::Null,
        (Value::String(s), true) => Cell::Text(s.clone()),
        _ => Cell::Text(value.to_string()),
    })
}

/// A predicate with its operands bound.
#[derive(Debug, Clone)]
struct BoundPredicate {
    left: ValueRef,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Compare(CompareOp, Scalar),
    In(Vec<Scalar>),
    IsNull(bool),
}

/// A text operand compared with an integer column, parsed once here rather than once per
/// row (drivers send `event_id > $1` parameters as untyped text). Text that is not an
/// integer stays text, so the per-row comparison still reports it.
fn integer_operand(left: &ValueRef, right: Scalar) -> Scalar {
    match (left, &right) {
        (ValueRef::Column(column), Scalar::Text(_)) if column.ty() == PgType::Int8 => {
            match scalar_int(&right, column.name()) {
                Ok(Some(n)) => Scalar::Int(n),
                _ => right,
            }
        }
        _ => right,
    }
}

fn bind_filters(filters: &[Predicate], params: &[Param]) -> Result<Vec<BoundPredicate>, Failure> {
    filters
        .iter()
        .map(|p| {
            Ok(match p {
                Predicate::Compare { left, op, right } => BoundPredicate {
                    left: left.clone(),
                    test: Test::Compare(*op, integer_operand(left, bind(right, params)?)),
                },
                Predicate::In { left, values } => BoundPredicate {
                    left: left.clone(),
                    test: Test::In(
                        values
                            .iter()
                            .map(|v| bind(v, params))
                            .collect::<Result<_, _>>()?,
                    ),
                },
                Predicate::IsNull { left, negated } => BoundPredicate {
                    left: left.clone(),
                    test: Test::IsNull(*negated),
                },
            })
        })
        .collect()
}

fn equality_text(filters: &[BoundPredicate], column: ColumnRef) -> Option<String> {
    filters.iter().find_map(|p| match (&p.left, &p.test) {
        (ValueRef::Column(c), Test::Compare(CompareOp::Eq, value)) if *c == column => {
            scalar_text(value)
        }
        _ => None,
    })
}

fn equality_int(filters: &[BoundPredicate], column: ColumnRef) -> Option<i64> {
    filters.iter().find_map(|p| match (&p.left, &p.test) {
        (ValueRef::Column(c), Test::Compare(CompareOp::Eq, value)) if *c == column => {
            scalar_int(value, "").ok().flatten()
        }
        _ => None,
    })
}

/// The largest `column > x` / `column >= x` lower bound on a text column (keyset paging).
fn lower_bound_text(filters: &[BoundPredicate], column: ColumnRef) -> Option<String> {
    filters
        .iter()
        .filter_map(|p| match (&p.left, &p.test) {
            (ValueRef::Column(c), Test::Compare(CompareOp::Gt, v)) if *c == column => {
                scalar_text(v)
            }
            _ => None,
        })
        .max()
}

/// Integer bounds on a column as (exclusive lower, inclusive upper).
fn int_bounds(filters: &[BoundPredicate], column: ColumnRef) -> (u64, u64) {
    let mut after = 0u64;
    let mut up_to = u64::MAX;
    for p in filters {
        let (ValueRef::Column(c), Test::Compare(op, v)) = (&p.left, &p.test) else {
            continue;
        };
        if *c != column {
            continue;
        }
        let Ok(Some(n)) = scalar_int(v, "") else {
            continue;
        };
        match op {
            CompareOp::Gt => after = after.max(u64::try_from(n).unwrap_or(0)),
            CompareOp::GtEq => after = after.max(u64::try_from(n.saturating_sub(1)).unwrap_or(0)),
            CompareOp::Eq => {
                after = after.max(u64::try_from(n.saturating_sub(1)).unwrap_or(0));
                up_to = up_to.min(u64::try_from(n).unwrap_or(0));
            }
            CompareOp::Lt => up_to = up_to.min(u64::try_from(n.saturating_sub(1)).unwrap_or(0)),
            CompareOp::LtEq => up_to = up_to.min(u64::try_from(n).unwrap_or(0)),
            CompareOp::NotEq => {}
        }
    }
    (after, up_to)
}

fn version_bounds(filters: &[BoundPredicate]) -> (u64, u64) {
    int_bounds(filters, ColumnRef::Version)
}

fn event_id_bounds(filters: &[BoundPredicate]) -> (u64, u64) {
    int_bounds(filters, ColumnRef::EventId)
}

/// The predicates a scan bounded by [`event_id_bounds`] still has to test on every row:
/// each comparison of `event_id` with an integer other than `<>` is exactly one of the
/// bounds (negative operands included: ids start at 1), so every event the scan visits
/// already passes it. Testing `event_id > $1` again on each of an outbox page's rows cost
/// ~2% of the page.
fn beyond_event_id_bounds(filters: Vec<BoundPredicate>) -> Vec<BoundPredicate> {
    filters
        .into_iter()
        .filter(|p| {
            !matches!(
                (&p.left, &p.test),
                (ValueRef::Column(ColumnRef::EventId), Test::Compare(op, Scalar::Int(_)))
                    if *op != CompareOp::NotEq
            )
        })
        .collect()
}

/// Whether the access path already yields rows in the requested ORDER BY.
fn natural_order(query: &Query, filters: &[BoundPredicate]) -> bool {
    let ascending = |cols: &[ColumnRef]| {
        query.order_by.len() <= cols.len()
            && query
                .order_by
                .iter()
                .zip(cols)
                .all(|((c, desc), want)| c == want && !desc)
    };
    match query.table {
        Table::Events | Table::Outbox => {
            if one_aggregate(filters).is_some() {
                ascending(&[ColumnRef::Version]) || ascending(&[ColumnRef::EventId])
            } else {
                ascending(&[ColumnRef::EventId])
            }
        }
        Table::Aggregates => {
            if equality_text(filters, ColumnRef::AggregateType).is_some() {
                ascending(&[ColumnRef::AggregateId])
            } else {
                ascending(&[ColumnRef::AggregateType, ColumnRef::AggregateId])
            }
        }
        Table::Schemas => ascending(&[ColumnRef::AggregateType]),
    }
}

fn row_matches(
    row: &Row<'_>,
    filters: &[BoundPredicate],
    params: &[Param],
) -> Result<bool, Failure> {
    for p in filters {
        let value = match &p.left {
            ValueRef::Column(c) => column_cell(row, *c)?,
            ValueRef::Json {
                column,
                path,
                as_text,
            } => json_path(&column_cell(row, *column)?, path, *as_text, params)?,
        };
        let holds = match &p.test {
            Test::IsNull(negated) => matches!(value, Cell::Null) != *negated,
            Test::Compare(op, right) => {
                compare(&value, right, &p.left)?.is_some_and(|o| op_holds(*op, o))
            }
            Test::In(values) => {
                let mut any = false;
                for v in values {
                    if compare(&value, v, &p.left)? == Some(std::cmp::Ordering::Equal) {
                        any = true;
                        break;
                    }
                }
                any
            }
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn op_holds(op: CompareOp, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        CompareOp::Eq => ordering == Equal,
        CompareOp::NotEq => ordering != Equal,
        CompareOp::Lt => ordering == Less,
        CompareOp::LtEq => ordering != Greater,
        CompareOp::Gt => ordering == Greater,
        CompareOp::GtEq => ordering != Less,
    }
}

/// SQL comparison of a row value with a bound scalar (None: NULL involved).
fn compare(
    value: &Cell,
    right: &Scalar,
    left: &ValueRef,
) -> Result<Option<std::cmp::Ordering>, Failure> {
    if matches!(value, Cell::Null) || matches!(right, Scalar::Null) {
        return Ok(None);
    }
    Ok(match value {
        Cell::Int(a) => match right {
            Scalar::Float(b) => (*a as f64).partial_cmp(b),
            other => scalar_int(other, "comparison")?.map(|b| a.cmp(&b)),
        },
        Cell::Float(a) => match right {
            Scalar::Int(b) => a.partial_cmp(&(*b as f64)),
            Scalar::Float(b) => a.partial_cmp(b),
            Scalar::Text(t) => t.trim().parse::<f64>().ok().and_then(|b| a.partial_cmp(&b)),
            _ => None,
        },
        Cell::Bool(a) => match right {
            Scalar::Bool(b) => Some(a.cmp(b)),
            Scalar::Text(t) => match t.to_ascii_lowercase().as_str() {
                "t" | "true" | "on" | "1" | "yes" => Some(a.cmp(&true)),
                "f" | "false" | "off" | "0" | "no" => Some(a.cmp(&false)),
                _ => {
                    return Err(error(
                        "22P02",
                        format!("invalid input syntax for type boolean: \"{t}\""),
                    ))
                }
            },
            _ => None,
        },
        Cell::Timestamp(a) => {
            let text = scalar_text(right).unwrap_or_default();
            let b = parse_timestamp(&text).ok_or_else(|| {
                error(
                    "22007",
                    format!("invalid input syntax for type timestamp with time zone: \"{text}\""),
                )
            })?;
            Some(a.cmp(&b))
        }
        Cell::Text(a) => {
            let b = scalar_text(right).unwrap_or_default();
            let json_column = matches!(left.ty(), PgType::Json | PgType::Jsonb);
            if json_column {
                // json = json compares values, not spelling.
                match (
                    serde_json::from_str::<Value>(a),
                    serde_json::from_str::<Value>(&b),
                ) {
                    (Ok(x), Ok(y)) => Some(if x == y {
                        std::cmp::Ordering::Equal
                    } else {
                        a.as_str().cmp(b.as_str())
                    }),
                    _ => Some(a.as_str().cmp(b.as_str())),
                }
            } else {
                Some(a.as_str().cmp(b.as_str()))
            }
        }
        Cell::Null => None,
    })
}

fn compare_cells(a: &Cell, b: &Cell) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Cell::Null, Cell::Null) => Ordering::Equal,
        (Cell::Null, _) => Ordering::Greater,
        (_, Cell::Null) => Ordering::Less,
        (Cell::Int(x), Cell::Int(y)) => x.cmp(y),
        (Cell::Float(x), Cell::Float(y)) => x.total_cmp(y),
        (Cell::Bool(x), Cell::Bool(y)) => x.cmp(y),
        (Cell::Timestamp(x), Cell::Timestamp(y)) => x.cmp(y),
        (Cell::Text(x), Cell::Text(y)) => x.cmp(y),
        (x, y) => x.to_text().cmp(&y.to_text()),
    }
}

/// RFC 3339 or PostgreSQL's `YYYY-MM-DD HH:MM:SS[.f][+zz]` or a bare date, to Unix µs.
fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(at.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(at) = chrono::DateTime::parse_from_str(t, format) {
            return Some(at.timestamp_micros());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Some(at.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_micros())
}
