//! pgwire glue: the simple and extended query handlers, the query parser (statement
//! planning and Describe), parameter decoding, and turning outcomes into responses.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::channel::oneshot;
use futures::StreamExt;
use futures::{stream, Sink, SinkExt};
use pgwire::api::portal::PortalExecutionState;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, SendableRowStream, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ErrorHandler, PgWireConnectionState, Type,
    DEFAULT_NAME,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Describe, Execute, PortalSuspended, Sync as SyncMessage,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

use super::budget::QueryBudget;
use super::errors::{auth_failure, error, error_with, is_auth_failure, user_error, Failure};
use super::exec::{Executor, Outcome, OutcomeKind, ResultFormat, TextRows};
use super::session::Session;
use super::values::{decode_param, encode_rows, Param};
use crate::sql::{self, CommandTag, PgType, SessionStatement, SqlError, Statement};

/// A parsed statement as stored for the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub statement: Arc<Statement>,
    pub param_types: Arc<Vec<Type>>,
    /// Bytes of the statement's text: with the values bound to it, what an Execute is
    /// admitted against the large-statement budget with.
    pub text_len: usize,
}

pub fn pg_type(ty: PgType) -> Type {
    Type::from_oid(ty.oid()).unwrap_or(Type::UNKNOWN)
}

pub fn sql_error(err: &SqlError) -> Failure {
    let mut info = error(err.sqlstate(), err.to_string());
    info.hint = err.hint().map(str::to_owned);
    info.position = err.position().map(|p| p.to_string());
    info
}

fn field_format(format: Option<&Format>, index: usize) -> FieldFormat {
    match format {
        None | Some(Format::UnifiedText) => FieldFormat::Text,
        Some(Format::UnifiedBinary) => FieldFormat::Binary,
        Some(Format::Individual(codes)) => codes
            .get(index)
            .map(|c| FieldFormat::from(*c))
            .unwrap_or(FieldFormat::Text),
    }
}

/// True when `format` puts every result column in text (what `field_format` says for any
/// column index), without building the statement's result columns on every Execute.
fn all_text(format: &Format) -> bool {
    match format {
        Format::UnifiedText => true,
        Format::UnifiedBinary => false,
        Format::Individual(codes) => codes
            .iter()
            .all(|code| FieldFormat::from(*code) == FieldFormat::Text),
    }
}

fn fields(columns: &[sql::Column], format: Option<&Format>) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            FieldInfo::new(
                c.name.clone(),
                None,
                None,
                pg_type(c.ty),
                field_format(format, i),
            )
        })
        .collect()
}

/// Plans SQL for the extended protocol.
#[derive(Debug, Default)]
pub struct Parser {
    /// Shared with [`QueryHandler::large_queries`]: a large text is parsed within the
    /// budget, as in the simple protocol.
    pub large_queries: Arc<QueryBudget>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        text: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let admitted = self.large_queries.admit(text.len()).await;
        let mut statements = sql::parse(text).map_err(|e| user_error(sql_error(&e)))?;
        drop(admitted);
        if statements.len() > 1 {
            return Err(user_error(error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let statement = statements.pop().unwrap_or(Statement::Empty);
        // PostgreSQL describes a parameter nothing gives a type to as text.
        let param_types = statement
            .param_types()
            .into_iter()
            .map(|t| {
                if t == PgType::Unknown {
                    Type::TEXT
                } else {
                    pg_type(t)
                }
            })
            .collect();
        Ok(Some(Prepared {
            statement: Arc::new(statement),
            param_types: Arc::new(param_types),
            text_len: text.len(),
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.as_ref().clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields(&stmt.statement.result_columns(), format))
    }
}

/// Handles queries for every connection.
#[derive(Debug)]
pub struct QueryHandler {
    pub executor: Arc<Executor>,
    pub parser: Arc<Parser>,
    /// Shared by every connection: bounds the memory of large statements run at once.
    pub large_queries: Arc<QueryBudget>,
}

fn session_of<C: ClientInfo>(client: &C) -> Result<Arc<Session>, Failure> {
    client.session_extensions().get::<Session>().ok_or_else(|| {
        Box::new(ErrorInfo::new(
            "FATAL".into(),
            "28000".into(),
            "not authenticated".into(),
        ))
    })
}

fn base_tag(statement: &Statement) -> String {
    match statement.command_tag() {
        CommandTag::Insert => "INSERT 0".into(),
        CommandTag::Call => "CALL".into(),
        CommandTag::Show => "SHOW".into(),
        _ => "SELECT".into(),
    }
}

impl QueryHandler {
    async fn run(
        &self,
        session: &Session,
        statement: &Statement,
        params: &[Param],
        results: ResultFormat,
    ) -> Result<Outcome, Failure> {
        if matches!(statement, Statement::Session(SessionStatement::Commit)) {
            return self.executor.commit(session).await;
        }
        self.executor
            .execute(session, statement, params, results)
            .await
    }

    fn respond(
        statement: &Statement,
        outcome: Outcome,
        format: Option<&Format>,
    ) -> Result<Response, Failure> {
        Ok(match outcome.kind {
            OutcomeKind::Empty => Response::EmptyQuery,
            OutcomeKind::Command => {
                Response::Execution(Tag::new(outcome.tag.as_deref().unwrap_or("")))
            }
            OutcomeKind::TransactionStart => {
                Response::TransactionStart(Tag::new(outcome.tag.as_deref().unwrap_or("BEGIN")))
            }
            OutcomeKind::TransactionEnd => {
                Response::TransactionEnd(Tag::new(outcome.tag.as_deref().unwrap_or("COMMIT")))
            }
            OutcomeKind::Rows => {
                let schema = Arc::new(fields(&outcome.columns, format));
                let types: Vec<Type> = schema.iter().map(|f| f.datatype().clone()).collect();
                let formats: Vec<FieldFormat> = schema.iter().map(FieldInfo::format).collect();
                let mut response = match outcome.text_rows {
                    Some(TextRows::Streamed(chunks)) => {
                        let rows = chunks.flat_map(|chunk| {
                            let rows: Vec<PgWireResult<_>> = match chunk {
                                Ok(rows) => rows.into_iter().map(Ok).collect(),
                                Err(failure) => vec![Err(user_error(failure))],
                            };
                            stream::iter(rows)
                        });
                        QueryResponse::new(schema, rows)
                    }
                    Some(TextRows::Ready(rows)) => {
                        QueryResponse::new(schema, stream::iter(rows.into_iter().map(Ok)))
                    }
                    None => {
                        let rows = encode_rows(&outcome.rows, &types, &formats)?;
                        QueryResponse::new(schema, stream::iter(rows.into_iter().map(Ok)))
                    }
                };
                response.set_command_tag(&base_tag(statement));
                Response::Query(response)
            }
        })
    }

    async fn send_parameter_status<C>(client: &mut C, outcome: &Outcome) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        for (name, value) in &outcome.parameter_status {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.clone(),
                    value.clone(),
                )))
                .await?;
        }
        Ok(())
    }
}

fn fatal_or_response(info: Failure) -> PgWireResult<Response> {
    if info.severity == "FATAL" {
        Err(user_error(info))
    } else {
        Ok(Response::Error(info))
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    /// Like pgwire's, but rows go out through [`queue_rows`] and ReadyForQuery is queued
    /// behind them: pgwire `feed`s every DataRow, whose `poll_ready` writes the buffer out
    /// at every 8 KiB (~40 writes for a 1,000-event outbox page instead of ~5), and it
    /// `send`s ReadyForQuery, a write of its own after any answer over 8 KiB.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut transaction_status = begin_statement(client)?;
        let text = query.query;
        // Only semicolons and whitespace: PostgreSQL answers EmptyQueryResponse.
        let responses = if text.chars().all(|c| c == ';' || c.is_whitespace()) {
            vec![Response::EmptyQuery]
        } else {
            let cancel = cancel_receiver(client).await;
            unless_canceled(cancel, SimpleQueryHandler::do_query(self, client, &text)).await?
        };
        for response in responses {
            match feed_rowless(client, response, &mut transaction_status).await? {
                Unsent::Rows(mut results) => {
                    let description =
                        RowDescription::new(results.row_schema().iter().map(Into::into).collect());
                    client
                        .feed(PgWireBackendMessage::RowDescription(description))
                        .await?;
                    let rows = queue_rows(client, results.data_rows()).await?;
                    let tag = Tag::new(results.command_tag()).with_rows(rows);
                    // Queued, not fed, for the reason `on_execute` gives.
                    Pin::new(&mut *client)
                        .start_send(PgWireBackendMessage::CommandComplete(tag.into()))?;
                }
                Unsent::Error(info) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse((*info).into()))
                        .await?;
                    transaction_status = transaction_status.to_error_state();
                }
                Unsent::None | Unsent::TransactionEnded => {}
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(transaction_status);
        let ready = ReadyForQuery::new(transaction_status);
        Pin::new(&mut *client).start_send(PgWireBackendMessage::ReadyForQuery(ready))?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client).map_err(user_error)?;
        // Held while the text is parsed and every statement in it runs.
        let _admitted = self.large_queries.admit(query.len()).await;
        let statements = match sql::parse(query) {
            Ok(statements) => statements,
            Err(e) => return Ok(vec![Response::Error(sql_error(&e))]),
        };
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            // The simple protocol sends every value as text.
            match self.run(&session, statement, &[], ResultFormat::Text).await {
                Ok(outcome) => {
                    Self::send_parameter_status(client, &outcome).await?;
                    match Self::respond(statement, outcome, None) {
                        Ok(response) => responses.push(response),
                        Err(info) => {
                            responses.push(fatal_or_response(info)?);
                            break;
                        }
                    }
                }
                Err(info) => {
                    // Like PostgreSQL: the rest of a multi-statement string is skipped.
                    responses.push(fatal_or_response(info)?);
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// What [`feed_rowless`] left for the protocol's own handling.
enum Unsent {
    /// A result with rows.
    Rows(QueryResponse),
    /// A failed statement.
    Error(Box<ErrorInfo>),
    /// Nothing: the answer was sent.
    None,
    /// Nothing, the answer was sent, and it ended a transaction.
    TransactionEnded,
}

/// Sends the answer of a statement that returns no rows (EmptyQueryResponse or
/// CommandComplete) and moves `status` as the statement did; refuses a COPY. Both
/// protocols answer these alike; results with rows and errors they answer each their own
/// way, so those are handed back.
async fn feed_rowless<C>(
    client: &mut C,
    response: Response,
    status: &mut TransactionStatus,
) -> PgWireResult<Unsent>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let keep = |status: TransactionStatus| status;
    let (message, unsent, transition): (_, _, fn(TransactionStatus) -> TransactionStatus) =
        match response {
            Response::Query(results) => return Ok(Unsent::Rows(results)),
            Response::Error(info) => return Ok(Unsent::Error(info)),
            Response::CopyIn(_) | Response::CopyOut(_) | Response::CopyBoth(_) => {
                return Err(user_error(error("0A000", "COPY is not supported")))
            }
            Response::EmptyQuery => (
                PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new()),
                Unsent::None,
                keep,
            ),
            Response::Execution(tag) => (
                PgWireBackendMessage::CommandComplete(tag.into()),
                Unsent::None,
                keep,
            ),
            Response::TransactionStart(tag) => (
                PgWireBackendMessage::CommandComplete(tag.into()),
                Unsent::None,
                TransactionStatus::to_in_transaction_state,
            ),
            Response::TransactionEnd(tag) => (
                PgWireBackendMessage::CommandComplete(tag.into()),
                Unsent::TransactionEnded,
                TransactionStatus::to_idle_state,
            ),
        };
    client.feed(message).await?;
    *status = transition(*status);
    Ok(unsent)
}

/// Bytes of result rows queued before they are written out. The framed connection would
/// write its buffer whenever it holds 8 KiB if asked (`poll_ready`) before every row;
/// writing once per 64 KiB instead turns a 1,000-event outbox page (~320 KiB) from ~40
/// `sendto` calls into ~5, and loopback TCP charges most of its cost per call. The codec's
/// `start_send` only appends to the buffer, and the buffer is flushed empty at this bound,
/// so skipping `poll_ready` in between is safe. What an Execute leaves queued (under this
/// bound plus one row, and its CommandComplete) is written by the Sync, by the next message
/// fed, or at this bound by the next Execute's rows: the buffer stays under twice this
/// constant plus two rows.
const ROW_FLUSH_BYTES: usize = 64 * 1024;

/// A fresh receiver for the connection's cancel request, when the connection has a handle
/// for one (pgwire's helper for this is private).
async fn cancel_receiver<C: ClientInfo>(client: &C) -> Option<oneshot::Receiver<()>> {
    match client.session_extensions().get::<Arc<ConnectionHandle>>() {
        Some(handle) => Some(handle.start_query().await),
        None => None,
    }
}

/// Runs `query` to its end, or fails it with QueryCanceled (57014) when `cancel` fires
/// first. Both protocols run their statements through here.
async fn unless_canceled<T>(
    cancel: Option<oneshot::Receiver<()>>,
    query: impl Future<Output = PgWireResult<T>>,
) -> PgWireResult<T> {
    let Some(cancel) = cancel else {
        return query.await;
    };
    futures::pin_mut!(query);
    match futures::future::select(query, cancel).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right(_) => Err(PgWireError::QueryCanceled),
    }
}

/// The start both protocols share: refuses a statement while another is in progress, marks
/// the connection busy, and returns the transaction status the statement starts in.
fn begin_statement<C: ClientInfo>(client: &mut C) -> PgWireResult<TransactionStatus> {
    if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
        return Err(PgWireError::NotReadyForQuery);
    }
    let status = client.transaction_status();
    client.set_state(PgWireConnectionState::QueryInProgress);
    Ok(status)
}

/// Queues a result's rows, writing them out whenever [`ROW_FLUSH_BYTES`] have gathered;
/// returns how many there were. Both protocols send rows through here.
async fn queue_rows<C>(client: &mut C, rows: &mut SendableRowStream) -> PgWireResult<usize>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut count = 0usize;
    let mut unchecked_bytes = 0usize;
    while let Some(row) = rows.next().await {
        let row = match row {
            Ok(row) => row,
            Err(failure) => {
                // A streamed result failed partway: the statement failed.
                if let Ok(session) = session_of(client) {
                    session.mark_failed();
                }
                return Err(failure);
            }
        };
        let size = row.data.len() + DATA_ROW_HEADER_BYTES;
        Pin::new(&mut *client).start_send(PgWireBackendMessage::DataRow(row))?;
        unchecked_bytes += size;
        count += 1;
        if unchecked_bytes >= ROW_FLUSH_BYTES {
            // Written out now, before the next row is asked for: a streamed result reads
            // its next chunk when asked, and the client can parse these rows meanwhile.
            client.flush().await?;
            unchecked_bytes = 0;
        }
    }
    Ok(count)
}

/// A DataRow's type byte, length and field count, ahead of its values.
const DATA_ROW_HEADER_BYTES: usize = 1 + 4 + 2;

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// Like pgwire's, but every message is queued rather than flushed: the results leave
    /// with the ReadyForQuery that Sync (or the client's Flush) writes, so a
    /// Bind/Execute/Sync round trip costs one write instead of three.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut transaction_status = begin_statement(client)?;
        let portal_name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let max_rows = usize::try_from(message.max_rows).unwrap_or(0);
        let portal = match client.portal_store().get_portal(portal_name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                client.set_state(PgWireConnectionState::ReadyForQuery);
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(portal_name.to_owned())),
        };
        let fresh = matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        // A fresh portal run to the end is sent straight from its row stream, so rows that a
        // streamed scan produces leave while it is still running (pgwire's `fetch` would
        // collect every row first). The portal is then finished, as `fetch` leaves it.
        let mut run_to_end = None;
        let has_rows = if fresh {
            let cancel = cancel_receiver(client).await;
            let query = ExtendedQueryHandler::do_query(self, client, portal.as_ref(), max_rows);
            let response = unless_canceled(cancel, query).await?;
            match feed_rowless(client, response, &mut transaction_status).await? {
                Unsent::Rows(results) if max_rows == 0 => {
                    *portal.state().lock().await = PortalExecutionState::Finished;
                    run_to_end = Some(results);
                    true
                }
                Unsent::Rows(results) => {
                    portal.start(results).await;
                    true
                }
                Unsent::Error(info) => return Err(PgWireError::UserError(info)),
                Unsent::TransactionEnded => {
                    client.portal_store().rm_portal(DEFAULT_NAME);
                    false
                }
                Unsent::None => false,
            }
        } else {
            true
        };
        if has_rows {
            let (mut response, suspended) = match run_to_end {
                Some(response) => (response, false),
                None => {
                    let fetched = portal.fetch(max_rows).await?;
                    (fetched.response, fetched.suspended)
                }
            };
            let tag = response.command_tag().to_owned();
            let rows = queue_rows(client, response.data_rows()).await?;
            let done = if suspended {
                PgWireBackendMessage::PortalSuspended(PortalSuspended::new())
            } else {
                PgWireBackendMessage::CommandComplete(Tag::new(&tag).with_rows(rows).into())
            };
            // Queued behind the last rows, not fed: `feed` asks `poll_ready` first, which
            // writes out a buffer over 8 KiB on its own, so the tail of a large result left
            // in one write and CommandComplete with ReadyForQuery in another (one more
            // `sendto` and one more wake-up of the client per outbox page, seen with strace).
            // The buffer stays bounded: it was under ROW_FLUSH_BYTES plus a row, and the next
            // Bind, Sync or result writes it out.
            Pin::new(&mut *client).start_send(done)?;
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(transaction_status);
        Ok(())
    }

    /// Like pgwire's, but ReadyForQuery is queued behind what the Execute left unwritten
    /// (the tail of a result and its CommandComplete) and everything leaves in one write:
    /// pgwire's `send` asks `poll_ready` first, which writes out a buffer over 8 KiB on its
    /// own and sent ReadyForQuery in a second write.
    async fn on_sync<C>(&self, client: &mut C, _message: SyncMessage) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let ready = ReadyForQuery::new(client.transaction_status());
        Pin::new(&mut *client).start_send(PgWireBackendMessage::ReadyForQuery(ready))?;
        client.flush().await?;
        Ok(())
    }

    /// Like pgwire's, but the description is queued rather than flushed: pgbench and most
    /// drivers send Bind/Describe/Execute/Sync in one packet, and flushing here split every
    /// answer into two writes (two wake-ups of the client).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(statement)) => {
                    let described = self.do_describe_statement(client, &statement).await?;
                    feed_description(client, &described).await
                }
                Some(Entry::Empty) => {
                    feed_description(client, &DescribeStatementResponse::no_data()).await
                }
                None => Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    let described = self.do_describe_portal(client, &portal).await?;
                    feed_description(client, &described).await
                }
                Some(Entry::Empty) => {
                    feed_description(client, &DescribePortalResponse::no_data()).await
                }
                None => Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            other => Err(PgWireError::InvalidTargetType(other)),
        }
    }

    /// Like pgwire's, but BindComplete is queued rather than flushed: it leaves in the same
    /// write as the Execute's results (one syscall less per extended-protocol query; a
    /// client always follows Bind with Execute/Sync or Flush, which flush).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(user_error(error(
                        "08P01",
                        format!(
                            "bind message supplies {} parameters, but the empty statement requires 0",
                            message.parameters.len()
                        ),
                    )));
                }
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client
            .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client).map_err(user_error)?;
        let prepared = &portal.statement.statement;
        let declared = &portal.statement.parameter_types;
        let expected = prepared.param_types.len();
        if portal.parameters.len() != expected {
            return Err(user_error(error(
                "08P01",
                format!(
                    "bind message supplies {} parameters, but the statement requires {expected}",
                    portal.parameters.len()
                ),
            )));
        }
        // A large statement (its text and the values bound to it) runs within the same
        // budget as a large simple-protocol query: a parameterized bulk INSERT from a driver
        // holds as much working memory as its literal twin.
        let bound_bytes: usize = portal
            .parameters
            .iter()
            .map(|value| value.as_ref().map_or(0, |bytes| bytes.len()))
            .sum();
        let _admitted = self
            .large_queries
            .admit(prepared.text_len.saturating_add(bound_bytes))
            .await;
        let mut params = Vec::with_capacity(portal.parameters.len());
        for (index, bytes) in portal.parameters.iter().enumerate() {
            let declared_type = declared
                .get(index)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN)
                .or_else(|| prepared.param_types.get(index).cloned());
            let binary = field_format(Some(&portal.parameter_format), index) == FieldFormat::Binary;
            params.push(
                decode_param(bytes.as_deref(), declared_type.as_ref(), binary)
                    .map_err(user_error)?,
            );
        }
        let results = if all_text(&portal.result_column_format) {
            // `on_execute` sends a portal run without a row limit to the end before it
            // reads the next message, so a long scan may stream.
            if max_rows == 0 {
                ResultFormat::TextStreamed
            } else {
                ResultFormat::Text
            }
        } else {
            ResultFormat::AsCells
        };
        let outcome = self
            .run(&session, &prepared.statement, &params, results)
            .await
            .map_err(user_error)?;
        Self::send_parameter_status(client, &outcome).await?;
        Self::respond(
            &prepared.statement,
            outcome,
            Some(&portal.result_column_format),
        )
        .map_err(user_error)
    }
}

/// Makes every authentication failure look the same (one FATAL 28P01 message).
#[derive(Debug)]
pub struct ErrorNormalizer;

impl ErrorHandler for ErrorNormalizer {
    fn on_error<C>(&self, client: &C, err: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if is_auth_failure(err) {
            let user = client
                .metadata()
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default();
            *err = auth_failure(&user);
        } else if let PgWireError::QueryCanceled = err {
            *err = user_error(error_with(
                "57014",
                "canceling statement due to user request",
                None,
                None,
            ));
        }
    }
}

/// Queues a Describe answer (ParameterDescription, then RowDescription or NoData) without
/// flushing; the Sync or Flush that follows writes it with everything else.
async fn feed_description<C, D>(client: &mut C, described: &D) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    D: DescribeResponse,
{
    if let Some(parameter_types) = described.parameters() {
        let oids = parameter_types.iter().map(Type::oid).collect();
        client
            .feed(PgWireBackendMessage::ParameterDescription(
                ParameterDescription::new(oids),
            ))
            .await?;
    }
    if described.is_no_data() {
        client
            .feed(PgWireBackendMessage::NoData(NoData::new()))
            .await?;
    } else {
        let fields = described.fields().iter().map(Into::into).collect();
        client
            .feed(PgWireBackendMessage::RowDescription(RowDescription::new(
                fields,
            )))
            .await?;
    }
    Ok(())
}
