//! `dbx schema validate|show|apply`. Validate and show compile locally (a pure function of
//! the source); apply sends the source to the daemon, which compiles and stores it.

use std::path::{Path, PathBuf};

use eventdbx::schema::CompiledSchemaSet;
use serde_json::{json, Value};
use tokio_postgres::types::Type;

use crate::client::{runtime, Session};
use crate::error::{exit, io_error, CliError, Result};
use crate::output::json_table;
use crate::workspace::{current_dir, discover};

/// The schema source file name discovered by default.
pub const SCHEMA_FILE: &str = "schema.dbx";

/// `--file`, else the nearest schema.dbx walking up from the current directory.
pub fn find_schema(file: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = file {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(CliError::new(
                exit::NOT_FOUND,
                format!("schema file {} does not exist", path.display()),
            ))
        };
    }
    let cwd = current_dir()?;
    let mut dir = Some(cwd.as_path());
    while let Some(d) = dir {
        let candidate = d.join(SCHEMA_FILE);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(CliError::new(
        exit::NOT_FOUND,
        format!(
            "no {SCHEMA_FILE} found in {} or any parent directory; create one or pass --file <PATH>",
            cwd.display()
        ),
    ))
}

fn read_source(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| io_error(format!("cannot read {}", path.display()), e))
}

/// The name diagnostics use: the path relative to the current directory when it is below it.
fn display_name(path: &Path) -> String {
    current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_owned())
        .display()
        .to_string()
}

/// Compiles the source; prints warnings to stderr; diagnostics of a failure go to stderr
/// followed by a one-line summary error.
fn compile(path: &Path) -> Result<CompiledSchemaSet> {
    let source = read_source(path)?;
    let name = display_name(path);
    match eventdbx::schema::compile(&source, &name) {
        Ok(set) => {
            for warning in &set.warnings {
                eprintln!("{warning}\n");
            }
            Ok(set)
        }
        Err(errors) => {
            eprintln!("{errors}\n");
            let n = errors.errors.len();
            Err(CliError::general(format!(
                "{name} has {n} error{}; fix {} and run `dbx schema validate` again",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            )))
        }
    }
}

/// `dbx schema validate`.
pub fn validate(file: Option<&Path>) -> Result<i32> {
    let path = find_schema(file)?;
    let set = compile(&path)?;
    let names: Vec<&str> = set.aggregates.keys().map(String::as_str).collect();
    let warnings = match set.warnings.len() {
        0 => String::new(),
        1 => ", 1 warning".into(),
        n => format!(", {n} warnings"),
    };
    outln!(
        "{} is valid: {} aggregate{} ({}){warnings}",
        display_name(&path),
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    Ok(0)
}

/// `dbx schema show [AGGREGATE]`: the compiled runtime shape, deterministic.
pub fn show(file: Option<&Path>, aggregate: Option<&str>, json_out: bool) -> Result<i32> {
    let path = find_schema(file)?;
    let set = compile(&path)?;
    let value = match aggregate {
        None => set.to_json(),
        Some(name) => match set.aggregate(name) {
            Some(a) => a.to_json(),
            None => {
                let known: Vec<&str> = set.aggregates.keys().map(String::as_str).collect();
                return Err(CliError::new(
                    exit::NOT_FOUND,
                    format!(
                        "aggregate {name:?} is not defined in {}; defined: {}",
                        display_name(&path),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        },
    };
    if json_out {
        outln!("{value}");
    } else {
        outln!("{}", crate::output::pretty(&value));
    }
    Ok(0)
}

/// `dbx schema apply`.
pub fn apply(token: Option<&str>, file: Option<&Path>, json_out: bool) -> Result<i32> {
    let path = find_schema(file)?;
    let source = read_source(&path)?;
    let ws = discover()?;
    let rt = runtime()?;
    let rows = rt.block_on(async {
        let session = Session::connect(&ws, token).await?;
        session
            .query("CALL apply_schema($1)", &[(&source.as_str(), Type::TEXT)])
            .await
    })?;
    if json_out {
        let items: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        outln!(
            "{}",
            json!({ "file": path.display().to_string(), "applied": items })
        );
        return Ok(0);
    }
    outln!(
        "applied {} ({} aggregate type{})",
        path.display(),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    if !rows.is_empty() {
        out!(
            "{}",
            json_table(
                &rows,
                &[
                    ("AGGREGATE", "aggregate_type"),
                    ("SCHEMA VERSION", "schema_version")
                ]
            )
        );
    }
    Ok(0)
}
