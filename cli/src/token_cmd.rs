//! `dbx token`: tokens are managed in the workspace registry (`.dbx/tokens.json`). A running
//! daemon looks at the file at every login and, before a statement, at most once every
//! `REGISTRY_RECHECK` (1 ms); a revocation waits `REGISTRY_SETTLE` (2 ms) before it reports
//! done, so it applies to new connections at once and to open sessions at their next
//! statement.

use eventdbx::auth::{parse_ttl, IssuedToken, TokenRecord, TokenSpec, TokenStore};
use eventdbx::config::{write_private_file, Workspace};
use serde_json::{json, Value};

use crate::client::{resolve_token, TokenSource};
use crate::error::{io_error, Result};
use crate::output::{now_unix, table, unix_to_rfc3339};
use crate::workspace::{bootstrap_spec, discover, expiry_phrase};

fn open_store(ws: &Workspace) -> Result<TokenStore> {
    Ok(TokenStore::open(
        &ws.tokens_path(),
        &ws.token_key_path(),
        ws.config.auth.scram_iterations,
    )?)
}

fn expires_json(expires_at: Option<i64>) -> Value {
    expires_at
        .map(|t| Value::String(unix_to_rfc3339(t)))
        .unwrap_or(Value::Null)
}

fn issued_json(issued: &IssuedToken) -> Value {
    let r = &issued.record;
    json!({
        "token": issued.token,
        "id": r.id,
        "group": r.group,
        "user": r.user,
        "actions": r.actions,
        "resources": r.resources,
        "expires_at": expires_json(r.expires_at),
    })
}

fn record_json(r: &TokenRecord, now: i64) -> Value {
    json!({
        "id": r.id,
        "group": r.group,
        "user": r.user,
        "actions": r.actions,
        "resources": r.resources,
        "status": r.status(now),
        "issued_at": unix_to_rfc3339(r.issued_at),
        "expires_at": expires_json(r.expires_at),
        "revoked_at": r.revoked_at.map(unix_to_rfc3339),
        "revoked_reason": r.revoked_reason,
        "label": r.label,
    })
}

/// `dbx token generate`.
pub fn generate(
    group: String,
    user: String,
    actions: Vec<String>,
    resources: Vec<String>,
    ttl: &str,
    json_out: bool,
) -> Result<()> {
    let ws = discover()?;
    let ttl_seconds = parse_ttl(ttl)?;
    let store = open_store(&ws)?;
    let issued = store.issue(TokenSpec {
        group,
        user,
        actions,
        resources,
        ttl_seconds,
        label: None,
    })?;
    if json_out {
        outln!("{}", issued_json(&issued));
        return Ok(());
    }
    let r = &issued.record;
    outln!("{}", issued.token);
    outln!(
        "token {} for {}/{}: actions {}, resources {}; {}",
        r.id,
        r.group,
        r.user,
        r.actions.join(","),
        r.resources.join(","),
        expiry_phrase(r.expires_at)
    );
    outln!("Store it now: the secret is not kept and cannot be shown again.");
    Ok(())
}

/// `dbx token list`.
pub fn list(json_out: bool) -> Result<()> {
    let ws = discover()?;
    let store = open_store(&ws)?;
    let now = now_unix();
    let records = store.list();
    if json_out {
        let items: Vec<Value> = records.iter().map(|r| record_json(r, now)).collect();
        outln!("{}", json!({ "items": items }));
        return Ok(());
    }
    if records.is_empty() {
        outln!("no tokens; issue one with `dbx token bootstrap` or `dbx token generate`");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.group.clone(),
                r.user.clone(),
                r.actions.join(","),
                r.resources.join(","),
                r.status(now).to_owned(),
                r.expires_at
                    .map(unix_to_rfc3339)
                    .unwrap_or_else(|| "never".into()),
                r.label.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "ID",
                "GROUP",
                "USER",
                "ACTIONS",
                "RESOURCES",
                "STATUS",
                "EXPIRES",
                "LABEL"
            ],
            &rows
        )
    );
    Ok(())
}

/// `dbx token revoke`.
pub fn revoke(token_or_id: &str, reason: Option<String>, json_out: bool) -> Result<()> {
    let ws = discover()?;
    let store = open_store(&ws)?;
    let record = store.revoke(token_or_id, reason)?;
    TokenStore::settle();
    if json_out {
        outln!("{}", record_json(&record, now_unix()));
        return Ok(());
    }
    outln!(
        "revoked token {} ({}/{}); it stops working immediately, for open sessions at their next statement",
        record.id, record.group, record.user
    );
    Ok(())
}

/// `dbx token refresh`: replaces a token (same grants, new lifetime) and revokes the old
/// one. When the token came from `.dbx/cli.token`, the file is updated.
pub fn refresh(token_flag: Option<&str>, ttl: Option<&str>, json_out: bool) -> Result<()> {
    let ws = discover()?;
    let (token, source) = resolve_token(token_flag, &ws)?;
    let store = open_store(&ws)?;
    let ttl_seconds = match ttl {
        Some(t) => parse_ttl(t)?,
        // Same lifetime as the token being replaced.
        None => {
            let id = token
                .strip_prefix(eventdbx::auth::TOKEN_PREFIX)
                .and_then(|rest| rest.split('_').next())
                .unwrap_or_default();
            store
                .list()
                .into_iter()
                .find(|r| r.id == id)
                .and_then(|r| r.expires_at.map(|e| (e - r.issued_at).max(1) as u64))
        }
    };
    let issued = store.refresh(&token, ttl_seconds)?;
    TokenStore::settle();
    let persisted = match &source {
        TokenSource::File(path) => {
            write_private_file(path, format!("{}\n", issued.token).as_bytes())
                .map_err(|e| io_error(format!("cannot write {}", path.display()), e))?;
            Some(path.clone())
        }
        _ => None,
    };
    if json_out {
        outln!("{}", issued_json(&issued));
        return Ok(());
    }
    outln!("{}", issued.token);
    outln!(
        "token {} replaces the old token (now revoked); {}",
        issued.record.id,
        expiry_phrase(issued.record.expires_at)
    );
    if let Some(path) = persisted {
        outln!("stored in {}", path.display());
    }
    Ok(())
}

/// `dbx token bootstrap`: a new admin token, printed (`--stdout`) and/or written to
/// `.dbx/cli.token` (`--persist`, the default when neither is given).
pub fn bootstrap(stdout: bool, persist: bool, ttl: &str, json_out: bool) -> Result<()> {
    let ws = discover()?;
    let ttl_seconds = parse_ttl(ttl)?;
    let store = open_store(&ws)?;
    let issued = store.issue(bootstrap_spec(ttl_seconds))?;
    let persist = persist || !stdout;
    let path = ws.cli_token_path();
    if persist {
        write_private_file(&path, format!("{}\n", issued.token).as_bytes())
            .map_err(|e| io_error(format!("cannot write {}", path.display()), e))?;
    }
    if json_out {
        let mut out = issued_json(&issued);
        if let Some(map) = out.as_object_mut() {
            map.insert(
                "persisted_to".into(),
                if persist {
                    Value::String(path.display().to_string())
                } else {
                    Value::Null
                },
            );
        }
        outln!("{out}");
        return Ok(());
    }
    if stdout {
        outln!("{}", issued.token);
    }
    if persist {
        // With --stdout, stdout holds the token alone (for `$(dbx token bootstrap --stdout)`).
        let line = format!(
            "bootstrap token {} ({}) stored in {}",
            issued.record.id,
            expiry_phrase(issued.record.expires_at),
            path.display()
        );
        if stdout {
            eprintln!("{line}");
        } else {
            outln!("{line}; dbx commands use it automatically (pass --stdout to print it)");
        }
    } else {
        eprintln!(
            "bootstrap token {} ({}); not stored (pass --persist to write it to {})",
            issued.record.id,
            expiry_phrase(issued.record.expires_at),
            path.display()
        );
    }
    Ok(())
}
