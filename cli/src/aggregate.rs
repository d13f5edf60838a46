//! `dbx aggregate` and `dbx events`: the data commands, over the daemon's SQL surface.

use eventdbx::config::Workspace;
use serde_json::{json, Map, Value};
use tokio_postgres::types::Type;

use crate::client::{runtime, Session};
use crate::error::{exit, CliError, Result};
use crate::output::{cell, fields, json_table, pretty, table};
use crate::workspace::discover;

/// The write options shared by `aggregate create` and `aggregate apply`.
#[derive(Debug, Default, Clone)]
pub struct WriteOptions {
    pub fields: Vec<String>,
    pub payload: Option<String>,
    pub metadata: Option<String>,
    pub note: Option<String>,
    pub expected_version: Option<u64>,
    pub json: bool,
}

/// Which write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Create,
    Apply,
}

fn parse_object(flag: &str, text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CliError::usage(format!(
            "{flag} must be a JSON object, like '{{\"key\": \"value\"}}'"
        ))),
        Err(e) => Err(CliError::usage(format!("{flag} is not valid JSON: {e}"))),
    }
}

/// Splits `KEY=VALUE`.
fn split_field(raw: &str) -> Result<(&str, &str)> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value)),
        _ => Err(CliError::usage(format!(
            "--field {raw:?} must look like KEY=VALUE (e.g. --field status=open)"
        ))),
    }
}

/// Types a `--field` value by the schema's column type; without one, JSON literals
/// (integers, floats, true, false, null) become those values and anything else a string.
pub fn typed_value(name: &str, raw: &str, column_type: Option<&str>) -> Result<Value> {
    let bad = |expected: &str| {
        CliError::usage(format!(
            "--field {name}={raw}: {name} is {expected} in the schema"
        ))
    };
    let Some(column_type) = column_type else {
        return Ok(infer(raw));
    };
    let ty = column_type.trim().to_ascii_lowercase();
    match ty.as_str() {
        "integer" | "int" => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.trim().parse::<u64>().map(Value::from))
            .map_err(|_| bad("an integer")),
        "float" | "double" => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad("a float")),
        "boolean" | "bool" => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad("a boolean (true or false)")),
        },
        "json" | "object" => serde_json::from_str(raw).map_err(|_| bad("JSON (pass a JSON value)")),
        // decimal(p,s) stays a string to keep its exact digits; text, timestamp, date,
        // binary and references are strings.
        _ => Ok(Value::String(raw.to_owned())),
    }
}

fn infer(raw: &str) -> Value {
    if raw.trim() == raw {
        if let Ok(value @ (Value::Number(_) | Value::Bool(_) | Value::Null)) =
            serde_json::from_str::<Value>(raw)
        {
            return value;
        }
    }
    Value::String(raw.to_owned())
}

/// The compiled schema's column types for `aggregate_type` (empty when it has no schema).
async fn column_types(session: &Session, aggregate_type: &str) -> Result<Map<String, Value>> {
    let rows = match session
        .query(
            "SELECT schema FROM schemas WHERE aggregate_type = $1",
            &[(&aggregate_type, Type::TEXT)],
        )
        .await
    {
        Ok(rows) => rows,
        // A token without schema.read may still write: fall back to inference.
        Err(e) if e.sqlstate.as_deref() == Some("42501") => return Ok(Map::new()),
        Err(e) => return Err(e),
    };
    let mut schema = rows
        .into_iter()
        .next()
        .and_then(|mut row| row.remove("schema"))
        .unwrap_or(Value::Null);
    if let Value::String(text) = &schema {
        schema = serde_json::from_str(text).unwrap_or(Value::Null);
    }
    Ok(schema
        .get("fields")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

/// Builds the payload: `--payload` merged with the typed `--field`s (fields win).
async fn build_payload(
    session: &Session,
    aggregate_type: &str,
    mut payload: Map<String, Value>,
    pairs: &[(&str, &str)],
) -> Result<Value> {
    if !pairs.is_empty() {
        let columns = column_types(session, aggregate_type).await?;
        for (name, raw) in pairs {
            let column_type = columns
                .get(*name)
                .and_then(|c| c.get("type"))
                .and_then(Value::as_str);
            payload.insert((*name).to_owned(), typed_value(name, raw, column_type)?);
        }
    }
    Ok(Value::Object(payload))
}

fn connect(ws: &Workspace, token: Option<&str>) -> Result<(tokio::runtime::Runtime, Session)> {
    let rt = runtime()?;
    let session = rt.block_on(Session::connect(ws, token))?;
    Ok((rt, session))
}

/// `dbx aggregate create` / `dbx aggregate apply`.
pub fn write(
    token: Option<&str>,
    kind: WriteKind,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    options: &WriteOptions,
) -> Result<()> {
    let ws = discover()?;
    // Parse what can be checked locally before connecting.
    let metadata = Value::Object(match &options.metadata {
        Some(text) => parse_object("--metadata", text)?,
        None => Map::new(),
    });
    let expected: Option<i64> = match (kind, options.expected_version) {
        (_, Some(v)) => {
            Some(i64::try_from(v).map_err(|_| CliError::usage("--expected-version is too large"))?)
        }
        (WriteKind::Create, None) => Some(0),
        (WriteKind::Apply, None) => None,
    };
    let payload = match &options.payload {
        Some(text) => parse_object("--payload", text)?,
        None => Map::new(),
    };
    let pairs = options
        .fields
        .iter()
        .map(|f| split_field(f))
        .collect::<Result<Vec<_>>>()?;
    let (rt, session) = connect(&ws, token)?;
    let row = rt.block_on(async {
        let payload = build_payload(&session, aggregate_type, payload, &pairs).await?;
        let note = options.note.as_deref();
        let rows = session
            .query(
                "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, metadata, note, expected_version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 RETURNING event_id, aggregate_type, aggregate_id, version, event_type, merkle_root, created_at",
                &[
                    (&aggregate_type, Type::TEXT),
                    (&aggregate_id, Type::TEXT),
                    (&event_type, Type::TEXT),
                    (&payload, Type::JSON),
                    (&metadata, Type::JSON),
                    (&note, Type::TEXT),
                    (&expected, Type::INT8),
                ],
            )
            .await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| CliError::general("the server accepted the write but returned no row"))
    })
    .map_err(|mut e| {
        if e.sqlstate.as_deref() == Some(crate::client::SQLSTATE_CONNECTION_LOST) {
            e.message = format!(
                "{}; the write may or may not have been applied: check with `dbx aggregate get {aggregate_type} {aggregate_id}`",
                e.message
            );
        }
        e
    })?;
    if options.json {
        outln!("{}", Value::Object(row));
        return Ok(());
    }
    let verb = match kind {
        WriteKind::Create => "created",
        WriteKind::Apply => "applied to",
    };
    outln!(
        "{verb} {aggregate_type}#{aggregate_id}: {} at version {} (event id {})",
        cell(row.get("event_type")),
        cell(row.get("version")),
        cell(row.get("event_id")),
    );
    Ok(())
}

/// `dbx aggregate get`.
pub fn get(
    token: Option<&str>,
    aggregate_type: &str,
    aggregate_id: &str,
    version: Option<u64>,
    include_events: bool,
    json_out: bool,
) -> Result<()> {
    let ws = discover()?;
    let version = version
        .map(|v| i64::try_from(v).map_err(|_| CliError::usage("--version is too large")))
        .transpose()?;
    let (rt, session) = connect(&ws, token)?;
    let (aggregate, events) = rt.block_on(async {
        let base = "SELECT aggregate_type, aggregate_id, version, state, merkle_root, created_at, updated_at \
                    FROM aggregates WHERE aggregate_type = $1 AND aggregate_id = $2";
        let rows = match &version {
            Some(v) => {
                session
                    .query(
                        &format!("{base} AND version = $3"),
                        &[(&aggregate_type, Type::TEXT), (&aggregate_id, Type::TEXT), (v, Type::INT8)],
                    )
                    .await?
            }
            None => {
                session
                    .query(base, &[(&aggregate_type, Type::TEXT), (&aggregate_id, Type::TEXT)])
                    .await?
            }
        };
        let Some(aggregate) = rows.into_iter().next() else {
            let at = version.map(|v| format!(" at version {v}")).unwrap_or_default();
            return Err(CliError::new(
                exit::NOT_FOUND,
                format!(
                    "aggregate {aggregate_type}#{aggregate_id} not found{at}; `dbx aggregate list {aggregate_type}` shows the existing ones"
                ),
            ));
        };
        let events = if include_events {
            let mut events = session
                .query(
                    "SELECT event_id, version, event_type, payload, metadata, note, created_at, issued_by, hash, merkle_root \
                     FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version",
                    &[(&aggregate_type, Type::TEXT), (&aggregate_id, Type::TEXT)],
                )
                .await?;
            if let Some(v) = version {
                events.retain(|e| e.get("version").and_then(Value::as_i64).is_none_or(|ev| ev <= v));
            }
            Some(events)
        } else {
            None
        };
        Ok((aggregate, events))
    })?;
    if json_out {
        let mut out = aggregate;
        if let Some(events) = events {
            out.insert(
                "events".into(),
                Value::Array(events.into_iter().map(Value::Object).collect()),
            );
        }
        outln!("{}", Value::Object(out));
        return Ok(());
    }
    out!(
        "{}",
        fields(&[
            ("aggregate", format!("{aggregate_type}#{aggregate_id}")),
            ("version", cell(aggregate.get("version"))),
            ("merkle root", cell(aggregate.get("merkle_root"))),
            ("created", cell(aggregate.get("created_at"))),
            ("updated", cell(aggregate.get("updated_at"))),
        ])
    );
    outln!("state:");
    outln!("{}", pretty(aggregate.get("state").unwrap_or(&Value::Null)));
    if let Some(events) = events {
        outln!("events:");
        out!(
            "{}",
            json_table(
                &events,
                &[
                    ("VERSION", "version"),
                    ("EVENT ID", "event_id"),
                    ("EVENT", "event_type"),
                    ("CREATED", "created_at"),
                    ("NOTE", "note"),
                    ("PAYLOAD", "payload"),
                ]
            )
        );
    }
    Ok(())
}

fn take_or_default(ws: &Workspace, take: Option<u64>) -> Result<i64> {
    let limit = ws.config.page_limit as u64;
    let take = take.unwrap_or(ws.config.list_page_size as u64);
    if take == 0 || take > limit {
        return Err(CliError::usage(format!(
            "--take {take} is out of range 1..={limit} (the page limit; change it with `dbx config --page-limit`)"
        )));
    }
    Ok(take as i64)
}

/// `dbx aggregate list`.
pub fn list(
    token: Option<&str>,
    aggregate_type: Option<&str>,
    cursor: Option<&str>,
    take: Option<u64>,
    json_out: bool,
) -> Result<()> {
    let ws = discover()?;
    let take = take_or_default(&ws, take)?;
    // All types page by offset (the SQL surface has no OR for a (type, id) cursor).
    let offset: i64 = match (aggregate_type, cursor) {
        (None, Some(c)) => c.trim().parse::<u32>().map(i64::from).map_err(|_| {
            CliError::usage(format!(
                "--cursor {c:?}: without an aggregate type the cursor is a row offset (a number printed as `next cursor`)"
            ))
        })?,
        _ => 0,
    };
    let (rt, session) = connect(&ws, token)?;
    let rows = rt.block_on(async {
        match aggregate_type {
            Some(ty) => {
                let after = cursor.unwrap_or("");
                session
                    .query(
                        "SELECT aggregate_type, aggregate_id, version, merkle_root, updated_at FROM aggregates \
                         WHERE aggregate_type = $1 AND aggregate_id > $2 ORDER BY aggregate_id LIMIT $3",
                        &[(&ty, Type::TEXT), (&after, Type::TEXT), (&take, Type::INT8)],
                    )
                    .await
            }
            None => {
                session
                    .query(
                        &format!(
                            "SELECT aggregate_type, aggregate_id, version, merkle_root, updated_at FROM aggregates \
                             ORDER BY aggregate_type, aggregate_id LIMIT $1 OFFSET {offset}"
                        ),
                        &[(&take, Type::INT8)],
                    )
                    .await
            }
        }
    })?;
    let full = rows.len() as i64 >= take;
    let next_cursor = if !full {
        None
    } else if aggregate_type.is_some() {
        rows.last().map(|r| cell(r.get("aggregate_id")))
    } else {
        Some(offset.saturating_add(rows.len() as i64).to_string())
    };
    if json_out {
        let items: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        outln!("{}", json!({ "items": items, "next_cursor": next_cursor }));
        return Ok(());
    }
    if rows.is_empty() {
        match aggregate_type {
            Some(ty) => outln!("no {ty} aggregates"),
            None => outln!("no aggregates"),
        }
        return Ok(());
    }
    out!(
        "{}",
        json_table(
            &rows,
            &[
                ("TYPE", "aggregate_type"),
                ("ID", "aggregate_id"),
                ("VERSION", "version"),
                ("UPDATED", "updated_at"),
                ("MERKLE ROOT", "merkle_root"),
            ]
        )
    );
    if let Some(c) = next_cursor {
        outln!("next cursor: {c}");
    }
    Ok(())
}

/// `dbx aggregate verify`: returns the exit code (0 ok, 5 mismatch).
pub fn verify(
    token: Option<&str>,
    aggregate_type: &str,
    aggregate_id: &str,
    json_out: bool,
) -> Result<i32> {
    let ws = discover()?;
    let (rt, session) = connect(&ws, token)?;
    let rows = rt.block_on(session.query(
        "CALL verify($1, $2)",
        &[(&aggregate_type, Type::TEXT), (&aggregate_id, Type::TEXT)],
    ))?;
    let Some(row) = rows.into_iter().next() else {
        return Err(CliError::new(
            exit::NOT_FOUND,
            format!("aggregate {aggregate_type}#{aggregate_id} not found"),
        ));
    };
    let ok = match row.get("ok") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "t" | "true"),
        _ => false,
    };
    if json_out {
        outln!("{}", Value::Object(row));
    } else if ok {
        outln!(
            "{aggregate_type}#{aggregate_id} verified: version {}, merkle root {}",
            cell(row.get("version")),
            cell(row.get("stored_root"))
        );
    } else {
        outln!(
            "{aggregate_type}#{aggregate_id} FAILED verification at version {}: stored root {}, recomputed {}",
            cell(row.get("version")),
            cell(row.get("stored_root")),
            cell(row.get("recomputed_root"))
        );
    }
    if ok {
        Ok(0)
    } else {
        eprintln!("error: integrity check failed for {aggregate_type}#{aggregate_id}");
        Ok(exit::VERIFY_FAILED)
    }
}

/// `dbx events`.
pub fn events(
    token: Option<&str>,
    aggregate_type: Option<&str>,
    aggregate_id: Option<&str>,
    after_event_id: Option<u64>,
    cursor: Option<&str>,
    take: Option<u64>,
    json_out: bool,
) -> Result<()> {
    let ws = discover()?;
    let take = take_or_default(&ws, take)?;
    let number = |flag: &str, text: &str| -> Result<i64> {
        text.trim()
            .parse::<i64>()
            .map_err(|_| CliError::usage(format!("{flag} {text:?} must be a number")))
    };
    let cursor = cursor.map(|c| number("--cursor", c)).transpose()?;
    let after_event_id = after_event_id
        .map(|v| i64::try_from(v).map_err(|_| CliError::usage("--after-event-id is too large")))
        .transpose()?;
    let (rt, session) = connect(&ws, token)?;
    let rows = rt.block_on(async {
        match (aggregate_type, aggregate_id) {
            (Some(ty), Some(id)) => match (cursor, after_event_id) {
                (None, Some(after)) => {
                    session
                        .query(
                            "SELECT * FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_id > $3 ORDER BY event_id LIMIT $4",
                            &[(&ty, Type::TEXT), (&id, Type::TEXT), (&after, Type::INT8), (&take, Type::INT8)],
                        )
                        .await
                }
                _ => {
                    let after_version = cursor.unwrap_or(0);
                    session
                        .query(
                            "SELECT * FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3 ORDER BY version LIMIT $4",
                            &[(&ty, Type::TEXT), (&id, Type::TEXT), (&after_version, Type::INT8), (&take, Type::INT8)],
                        )
                        .await
                }
            },
            (Some(ty), None) => {
                let after = cursor.or(after_event_id).unwrap_or(0);
                session
                    .query(
                        "SELECT * FROM events WHERE event_id > $1 AND aggregate_type = $3 ORDER BY event_id LIMIT $2",
                        &[(&after, Type::INT8), (&take, Type::INT8), (&ty, Type::TEXT)],
                    )
                    .await
            }
            _ => {
                let after = cursor.or(after_event_id).unwrap_or(0);
                session
                    .query(
                        "SELECT * FROM events WHERE event_id > $1 ORDER BY event_id LIMIT $2",
                        &[(&after, Type::INT8), (&take, Type::INT8)],
                    )
                    .await
            }
        }
    })?;
    // Within one aggregate the cursor is the version; otherwise the event id.
    let cursor_column = if aggregate_id.is_some() {
        "version"
    } else {
        "event_id"
    };
    let next_cursor = if rows.len() as i64 >= take {
        rows.last().map(|r| cell(r.get(cursor_column)))
    } else {
        None
    };
    if json_out {
        let items: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        outln!("{}", json!({ "items": items, "next_cursor": next_cursor }));
        return Ok(());
    }
    if rows.is_empty() {
        outln!("no events");
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                cell(r.get("event_id")),
                format!(
                    "{}#{}",
                    cell(r.get("aggregate_type")),
                    cell(r.get("aggregate_id"))
                ),
                cell(r.get("version")),
                cell(r.get("event_type")),
                cell(r.get("created_at")),
                cell(r.get("payload")),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "EVENT ID",
                "AGGREGATE",
                "VERSION",
                "EVENT",
                "CREATED",
                "PAYLOAD"
            ],
            &table_rows
        )
    );
    if let Some(c) = next_cursor {
        outln!("next cursor: {c}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_typed_by_the_schema() {
        assert_eq!(
            typed_value("n", "42", Some("integer")).ok(),
            Some(json!(42))
        );
        assert!(typed_value("n", "4.2", Some("integer")).is_err());
        assert_eq!(
            typed_value("f", "4.5", Some("float")).ok(),
            Some(json!(4.5))
        );
        assert_eq!(
            typed_value("b", "true", Some("boolean")).ok(),
            Some(json!(true))
        );
        assert!(typed_value("b", "yes", Some("boolean")).is_err());
        assert_eq!(
            typed_value("d", "12.50", Some("decimal(12,2)")).ok(),
            Some(json!("12.50"))
        );
        assert_eq!(typed_value("s", "42", Some("text")).ok(), Some(json!("42")));
        assert_eq!(
            typed_value("j", "{\"a\":1}", Some("object")).ok(),
            Some(json!({"a": 1}))
        );
        assert!(typed_value("j", "{", Some("json")).is_err());
    }

    #[test]
    fn fields_without_a_schema_are_inferred() {
        assert_eq!(typed_value("x", "42", None).ok(), Some(json!(42)));
        assert_eq!(typed_value("x", "-1.5", None).ok(), Some(json!(-1.5)));
        assert_eq!(typed_value("x", "false", None).ok(), Some(json!(false)));
        assert_eq!(typed_value("x", "null", None).ok(), Some(Value::Null));
        assert_eq!(typed_value("x", "0042", None).ok(), Some(json!("0042")));
        assert_eq!(typed_value("x", "open", None).ok(), Some(json!("open")));
        assert_eq!(typed_value("x", " 1", None).ok(), Some(json!(" 1")));
    }

    #[test]
    fn field_syntax_is_checked() {
        assert_eq!(split_field("a=b=c").ok(), Some(("a", "b=c")));
        assert_eq!(split_field("a=").ok(), Some(("a", "")));
        assert!(split_field("=b").is_err());
        assert!(split_field("ab").is_err());
    }
}
