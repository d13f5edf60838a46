//! `dbx storage rekey`: rewrites the store offline under a new data key, or none. It is the
//! one way to encrypt an existing plaintext store, rotate the key of an encrypted one, or
//! decrypt one; setting a key in the config never rewrites data.
//!
//! The rewrite goes to a sibling directory (`<data_dir>.rekey`); only when it is complete
//! and synced are the directories swapped, the config updated and the old store deleted.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use eventdbx::config::{Config, SecretString, Workspace, DATA_KEY_FILE};
use eventdbx::engine::seal::{inspect, rewrite_store, StoreEncryption, FILE_PREFIX};
use eventdbx::engine::KeySpec;

use crate::error::{io_error, CliError, Result};
use crate::workspace::{discover, write_data_key};

/// Width of the progress bar, in characters.
const BAR_WIDTH: u64 = 30;

/// What to rewrite the store to.
#[derive(Debug)]
pub enum Target {
    /// No flag: the configured key if the store is still plaintext, else a new key file.
    Default,
    /// `--generate`: a new random key file.
    Generate,
    /// `--new-key KEY`.
    Key(String),
    /// `--plaintext`.
    Plaintext,
}

impl Target {
    pub fn from_flags(new_key: Option<String>, generate: bool, plaintext: bool) -> Self {
        match (new_key, generate, plaintext) {
            (Some(key), _, _) => Target::Key(key),
            (None, true, _) => Target::Generate,
            (None, false, true) => Target::Plaintext,
            (None, false, false) => Target::Default,
        }
    }
}

fn engine_error(err: eventdbx::engine::EngineError) -> CliError {
    CliError::general(err.to_string())
}

/// `<data_dir>` with `suffix` appended to its last component.
fn sibling(data_dir: &Path, suffix: &str) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    data_dir.with_file_name(format!("{name}{suffix}"))
}

/// A key file path under `.dbx/keys/` that does not exist yet, as (config value, path).
fn new_key_file(ws: &Workspace) -> (String, PathBuf) {
    let default = ws.dir.join(DATA_KEY_FILE);
    if !default.exists() {
        return (format!("{FILE_PREFIX}{DATA_KEY_FILE}"), default);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let relative = format!("keys/data-{stamp}.key");
    (format!("{FILE_PREFIX}{relative}"), ws.dir.join(relative))
}

/// Draws `[#####.....]  42% 1200/2857 records` on a terminal's stderr.
fn progress_bar() -> impl FnMut(u64, u64) {
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if !tty {
            return;
        }
        let total = total.max(1);
        let filled = (done.min(total) * BAR_WIDTH / total) as usize;
        eprint!(
            "\r[{}{}] {:>3}% {done}/{total} records",
            "#".repeat(filled),
            ".".repeat(BAR_WIDTH as usize - filled),
            done.min(total) * 100 / total
        );
    }
}

pub fn rekey(target: Target) -> Result<()> {
    let ws = discover()?;
    if let Some(pid) = crate::daemon::running_pid(&ws) {
        return Err(CliError::general(format!(
            "EventDBX is running (pid {pid}); a rekey rewrites the store offline: stop it with \
             `dbx serve stop` first"
        )));
    }
    let data_dir = ws.data_dir();
    let configured = match &ws.config.data_encryption_key {
        Some(key) => Some(
            KeySpec::parse(key.expose())
                .map_err(CliError::usage)?
                .relative_to(&ws.dir),
        ),
        None => None,
    };
    let state = inspect(&data_dir).map_err(engine_error)?;
    let source_key = match state {
        StoreEncryption::NoStore => {
            return Err(CliError::usage(format!(
                "there is no store at {} yet, so there is nothing to rewrite; the configured \
                 data_encryption_key applies when the daemon first creates it (set another \
                 with `dbx config --data-encryption-key`)",
                data_dir.display()
            )))
        }
        StoreEncryption::Plain => None,
        StoreEncryption::Encrypted => Some(configured.ok_or_else(|| {
            CliError::general(format!(
                "the store at {} is encrypted, but no data_encryption_key is configured to \
                 read it; configure the key it was encrypted with first",
                data_dir.display()
            ))
        })?),
    };

    // The new key, as it will be written to config.toml, and a key file to create.
    let (new_value, generated) = match target {
        Target::Plaintext => (None, None),
        Target::Key(key) => (Some(key), None),
        Target::Generate => {
            let (value, path) = new_key_file(&ws);
            (Some(value), Some(path))
        }
        Target::Default => match (state, &ws.config.data_encryption_key) {
            (StoreEncryption::Plain, Some(key)) => (Some(key.expose().to_owned()), None),
            _ => {
                let (value, path) = new_key_file(&ws);
                (Some(value), Some(path))
            }
        },
    };
    if state == StoreEncryption::Plain && new_value.is_none() {
        outln!(
            "the store at {} is already unencrypted; nothing was changed",
            data_dir.display()
        );
        return Ok(());
    }
    let target_key = match &new_value {
        Some(value) => Some(
            KeySpec::parse(value)
                .map_err(|e| CliError::usage(format!("{e}; nothing was changed")))?
                .relative_to(&ws.dir),
        ),
        None => None,
    };

    let staging = sibling(&data_dir, ".rekey");
    let previous = sibling(&data_dir, ".pre-rekey");
    if previous.exists() {
        return Err(CliError::general(format!(
            "{} exists: an earlier rekey stopped between swapping directories and deleting the \
             old store. Check that {} opens (`dbx serve start`), then delete {} and run the \
             rekey again",
            previous.display(),
            data_dir.display(),
            previous.display()
        )));
    }
    if staging.exists() {
        // Only an interrupted rekey writes there; the live store was never touched.
        std::fs::remove_dir_all(&staging)
            .map_err(|e| io_error(format!("cannot remove {}", staging.display()), e))?;
    }
    if let Some(path) = &generated {
        write_data_key(path)?;
    }

    let mut progress = progress_bar();
    let copied = rewrite_store(
        &data_dir,
        source_key.as_ref(),
        &staging,
        target_key.as_ref(),
        &mut progress,
    )
    .map_err(|e| {
        let _ = std::fs::remove_dir_all(&staging);
        engine_error(e)
    })?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }

    std::fs::rename(&data_dir, &previous)
        .map_err(|e| io_error(format!("cannot move {} aside", data_dir.display()), e))?;
    std::fs::rename(&staging, &data_dir).map_err(|e| {
        io_error(
            format!(
                "cannot move the rewritten store into place (the old one is in {})",
                previous.display()
            ),
            e,
        )
    })?;
    // Under the config's lock, on the config as it is now (`Config::update`).
    let config = Config::update(&ws.config_path(), |config: &mut Config| {
        config.data_encryption_key = new_value.map(SecretString::new);
        Ok::<_, CliError>((config.clone(), true))
    })?;
    std::fs::remove_dir_all(&previous).map_err(|e| {
        io_error(
            format!("cannot delete the old store {}", previous.display()),
            e,
        )
    })?;

    outln!("rewrote {copied} records in {}", data_dir.display());
    match (&generated, &config.data_encryption_key) {
        (Some(path), _) => outln!(
            "the store is encrypted with a new key in {} (mode 0600); back it up apart from the data",
            path.display()
        ),
        (None, Some(_)) => outln!("the store is encrypted with the key now in config.toml"),
        (None, None) => outln!("the store is now unencrypted"),
    }
    outln!(
        "the previous store was deleted; backups taken before this rekey still need the key they were made with"
    );
    Ok(())
}
