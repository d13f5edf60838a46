//! The pgwire client every data command uses: token discovery, connecting to the daemon,
//! typed queries, rows as JSON objects, and server errors as one-line messages.

use std::net::SocketAddr;
use std::time::Duration;

use eventdbx::config::Workspace;
use serde_json::{Map, Value};
use tokio_postgres::types::{FromSql, ToSql, Type};

use crate::error::{exit, CliError, Result};

/// Environment variable holding a token.
pub const TOKEN_ENV: &str = "EVENTDBX_TOKEN";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Start-up and authentication, on top of the TCP connect.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Flag,
    Env,
    File(std::path::PathBuf),
}

/// `--token`, then `EVENTDBX_TOKEN`, then `.dbx/cli.token`.
pub fn resolve_token(flag: Option<&str>, ws: &Workspace) -> Result<(String, TokenSource)> {
    if let Some(token) = flag.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok((token.to_owned(), TokenSource::Flag));
    }
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        let token = token.trim();
        if !token.is_empty() {
            return Ok((token.to_owned(), TokenSource::Env));
        }
    }
    let path = ws.cli_token_path();
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            Ok((text.trim().to_owned(), TokenSource::File(path)))
        }
        _ => Err(CliError::new(
            exit::AUTH,
            format!(
                "no token: pass --token, set {TOKEN_ENV}, or create {} with `dbx token bootstrap`",
                path.display()
            ),
        )),
    }
}

/// A connected session.
#[derive(Debug)]
pub struct Session {
    client: tokio_postgres::Client,
    addr: SocketAddr,
}

/// A current-thread runtime: cheap to build, enough for one client connection.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::general(format!("cannot start the async runtime: {e}")))
}

impl Session {
    /// Connects to the workspace's daemon with the discovered token.
    pub async fn connect(ws: &Workspace, token_flag: Option<&str>) -> Result<Session> {
        let (token, _) = resolve_token(token_flag, ws)?;
        let addr = crate::daemon::client_addr(ws);
        Self::connect_to(addr, &token).await
    }

    pub async fn connect_to(addr: SocketAddr, token: &str) -> Result<Session> {
        // Over loopback the token is the password (user `dbx`); elsewhere the user is the
        // token id, so the server authenticates with SCRAM and the token never crosses the
        // network.
        let user = if addr.ip().is_loopback() {
            "dbx".to_owned()
        } else {
            token_id(token).unwrap_or("dbx").to_owned()
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host(addr.ip().to_string())
            .port(addr.port())
            .user(&user)
            .password(token)
            .dbname("default")
            .connect_timeout(CONNECT_TIMEOUT);
        let connecting = config.connect(tokio_postgres::NoTls);
        let (client, connection) = match tokio::time::timeout(LOGIN_TIMEOUT, connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(map_error(&e, addr)),
            Err(_) => {
                return Err(CliError::new(
                    exit::NOT_RUNNING,
                    format!(
                        "the EventDBX daemon at {addr} did not answer within {} s; check `dbx serve status`",
                        LOGIN_TIMEOUT.as_secs()
                    ),
                ))
            }
        };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Session { client, addr })
    }

    /// Runs one statement with typed parameters; rows come back as JSON objects.
    pub async fn query(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Map<String, Value>>> {
        let rows = self
            .client
            .query_typed(sql, params)
            .await
            .map_err(|e| map_error(&e, self.addr))?;
        rows.iter().map(row_to_map).collect()
    }

    /// Runs one statement in the simple protocol; returns the first column of the first row.
    pub async fn simple_value(&self, sql: &str) -> Result<Option<String>> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| map_error(&e, self.addr))?;
        Ok(messages.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        }))
    }
}

/// The id part of `dbx_<id>_<secret>`.
fn token_id(token: &str) -> Option<&str> {
    token
        .strip_prefix(eventdbx::auth::TOKEN_PREFIX)?
        .split('_')
        .next()
}

fn row_to_map(row: &tokio_postgres::Row) -> Result<Map<String, Value>> {
    let mut map = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let cell: Cell = row.try_get(i).map_err(|e| {
            CliError::general(format!(
                "cannot decode column {} from the server: {e}",
                column.name()
            ))
        })?;
        map.insert(column.name().to_owned(), cell.0);
    }
    Ok(map)
}

/// Any column value as JSON: numbers (integers beyond 2^53 as decimal strings), booleans, JSON
/// as itself, timestamps as RFC 3339 UTC,
/// everything else as text.
#[derive(Debug)]
struct Cell(Value);

type DecodeError = Box<dyn std::error::Error + Sync + Send>;

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, DecodeError> {
        let value = if *ty == Type::BOOL {
            Value::Bool(bool::from_sql(ty, raw)?)
        } else if *ty == Type::INT8 {
            // Beyond 2^53 (event ids always are) a JSON number loses precision in parsers
            // built on doubles: emit a decimal string, as events_json does.
            let v = i64::from_sql(ty, raw)?;
            if v.unsigned_abs() > 1u64 << 53 {
                Value::from(v.to_string())
            } else {
                Value::from(v)
            }
        } else if *ty == Type::INT4 {
            Value::from(i32::from_sql(ty, raw)?)
        } else if *ty == Type::INT2 {
            Value::from(i16::from_sql(ty, raw)?)
        } else if *ty == Type::OID {
            Value::from(u32::from_sql(ty, raw)?)
        } else if *ty == Type::FLOAT8 {
            float(f64::from_sql(ty, raw)?)
        } else if *ty == Type::FLOAT4 {
            float(f64::from(f32::from_sql(ty, raw)?))
        } else if *ty == Type::JSON || *ty == Type::JSONB {
            Value::from_sql(ty, raw)?
        } else if *ty == Type::TIMESTAMPTZ {
            let at = chrono::DateTime::<chrono::Utc>::from_sql(ty, raw)?;
            Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        } else if *ty == Type::TIMESTAMP {
            let at = chrono::NaiveDateTime::from_sql(ty, raw)?;
            Value::String(
                at.and_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            )
        } else {
            Value::String(String::from_utf8_lossy(raw).into_owned())
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, DecodeError> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// SQLSTATE class 08 codes the client assigns to its own connection failures.
pub const SQLSTATE_CANNOT_CONNECT: &str = "08001";
pub const SQLSTATE_CONNECTION_LOST: &str = "08006";

fn not_running(addr: SocketAddr) -> CliError {
    let mut err = CliError::new(
        exit::NOT_RUNNING,
        format!("the EventDBX daemon is not running at {addr}; start it with `dbx serve start`"),
    );
    err.sqlstate = Some(SQLSTATE_CANNOT_CONNECT.into());
    err
}

fn closed(addr: SocketAddr) -> CliError {
    let mut err = CliError::general(format!(
        "the daemon at {addr} closed the connection unexpectedly; check `dbx serve status` and .dbx/serve.log"
    ));
    err.sqlstate = Some(SQLSTATE_CONNECTION_LOST.into());
    err
}

/// A tokio-postgres error as one line the user can act on.
pub fn map_error(err: &tokio_postgres::Error, addr: SocketAddr) -> CliError {
    if let Some(db) = err.as_db_error() {
        let message = one_line(db.message());
        let with_detail = match db.detail() {
            Some(detail) if !detail.trim().is_empty() => {
                format!("{message} ({})", one_line(detail))
            }
            _ => message.clone(),
        };
        let code = db.code().code();
        let mut mapped = match code {
            "28P01" | "28000" => CliError::new(
                exit::AUTH,
                "authentication failed: the token was rejected (expired, revoked or wrong); get a new one with `dbx token bootstrap`",
            ),
            "42501" if with_detail.starts_with("permission denied") => {
                CliError::new(exit::AUTH, with_detail)
            }
            "42501" => CliError::new(exit::AUTH, format!("permission denied: {with_detail}")),
            "40001" => CliError::new(exit::REJECTED, with_detail),
            "23514" | "23503" | "23505" | "55000" | "22023" | "23502" => {
                CliError::new(exit::REJECTED, with_detail)
            }
            "02000" | "P0002" | "42704" => CliError::new(exit::NOT_FOUND, with_detail),
            "3D000" => CliError::general(format!(
                "{with_detail} (the CLI uses the database `default`)"
            )),
            "53300" => CliError::general(format!("{with_detail}; try again shortly")),
            _ => CliError::general(with_detail),
        };
        mapped.sqlstate = Some(code.to_owned());
        return mapped;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | TimedOut | AddrNotAvailable | NotFound
            ) {
                return not_running(addr);
            }
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return closed(addr);
            }
        }
        source = e.source();
    }
    if err.is_closed() || err.to_string().contains("closed") {
        return closed(addr);
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = e.source();
    }
    CliError::general(one_line(&text))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Event and aggregate counts for `serve status`, or why they cannot be had.
pub fn server_counts(ws: &Workspace, token_flag: Option<&str>) -> Result<(String, String)> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let work = async {
            let session = Session::connect(ws, token_flag).await?;
            let events = session.simple_value("SHOW eventdbx.event_count").await?;
            let aggregates = session
                .simple_value("SHOW eventdbx.aggregate_count")
                .await?;
            match (events, aggregates) {
                (Some(e), Some(a)) => Ok((e, a)),
                _ => Err(CliError::general("the daemon returned no counts")),
            }
        };
        tokio::time::timeout(Duration::from_secs(3), work)
            .await
            .unwrap_or_else(|_| Err(CliError::general("the daemon did not answer within 3 s")))
    })
}
