//! `dbx config`: print the redacted config, or validate and apply updates.

use std::path::{Path, PathBuf};

use eventdbx::config::{Config, SecretString};
use eventdbx::engine::seal::check_key;
use eventdbx::engine::KeySpec;

use crate::error::{CliError, Result};
use crate::workspace::{absolute, discover};

/// The writable settings (each `None` / `false` when not given).
#[derive(Debug, Default)]
pub struct ConfigUpdate {
    pub port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub cache_threshold: Option<u64>,
    pub data_encryption_key: Option<String>,
    pub list_page_size: Option<usize>,
    pub page_limit: Option<usize>,
    pub bind_addr: Option<String>,
    pub snowflake_worker_id: Option<u16>,
    pub noise: bool,
    pub no_noise: bool,
}

impl ConfigUpdate {
    fn is_empty(&self) -> bool {
        self.port.is_none()
            && self.data_dir.is_none()
            && self.cache_threshold.is_none()
            && self.data_encryption_key.is_none()
            && self.list_page_size.is_none()
            && self.page_limit.is_none()
            && self.bind_addr.is_none()
            && self.snowflake_worker_id.is_none()
            && !self.noise
            && !self.no_noise
    }
}

pub fn run(update: ConfigUpdate) -> Result<()> {
    let ws = discover()?;
    if update.is_empty() {
        outln!("# {}", ws.config_path().display());
        out!("{}", ws.config.to_redacted_toml());
        return Ok(());
    }
    // Applied to the config as it is on disk under the config's lock, not to the copy read
    // at start: another `dbx config` running at once cannot lose this change, nor this one
    // its.
    let changes = Config::update(&ws.config_path(), |config: &mut Config| {
        let changes = apply(update, config, &ws.dir)?;
        let save = !changes.is_empty();
        Ok::<_, CliError>((changes, save))
    })?;
    if changes.is_empty() {
        outln!("no change: the config already has these values");
        return Ok(());
    }
    outln!("updated {}", ws.config_path().display());
    for change in &changes {
        outln!("  {change}");
    }
    if crate::daemon::running_pid(&ws).is_some() {
        outln!("the daemon is running: apply the change with `dbx serve restart`");
    }
    Ok(())
}

/// Applies `update` to `config` and validates the result; returns what changed, one line
/// each (empty when nothing did). An error leaves the file as it was.
fn apply(update: ConfigUpdate, config: &mut Config, workspace: &Path) -> Result<Vec<String>> {
    let mut changes: Vec<String> = Vec::new();
    macro_rules! set {
        ($field:ident, $value:expr) => {
            if let Some(value) = $value {
                if config.$field != value {
                    changes.push(format!(
                        "{}: {:?} -> {:?}",
                        stringify!($field),
                        config.$field,
                        value
                    ));
                }
                config.$field = value;
            }
        };
    }
    set!(port, update.port);
    if let Some(dir) = &update.data_dir {
        let dir = absolute(dir)?;
        if config.data_dir != dir {
            changes.push(format!(
                "data_dir: {} -> {}",
                config.data_dir.display(),
                dir.display()
            ));
        }
        config.data_dir = dir;
    }
    set!(cache_threshold, update.cache_threshold);
    set!(list_page_size, update.list_page_size);
    set!(page_limit, update.page_limit);
    set!(bind_addr, update.bind_addr.map(|a| a.trim().to_owned()));
    set!(snowflake_worker_id, update.snowflake_worker_id);
    if update.noise || update.no_noise {
        set!(noise, Some(update.noise));
    }
    if let Some(key) = update.data_encryption_key {
        if key.trim().is_empty() {
            return Err(CliError::usage(
                "--data-encryption-key needs a non-empty value",
            ));
        }
        let unchanged = config
            .data_encryption_key
            .as_ref()
            .is_some_and(|current| current.expose() == key);
        let spec = KeySpec::parse(&key)
            .map_err(|e| CliError::usage(format!("{e}; nothing was changed")))?
            .relative_to(workspace);
        if !unchanged {
            // A store that already exists must open with the new key; a key alone never
            // re-encrypts data (that is `dbx storage rekey`).
            let data_dir = config.resolve(workspace, &config.data_dir);
            check_key(&data_dir, Some(&spec)).map_err(|e| {
                CliError::usage(format!(
                    "{e}; nothing was changed. To re-encrypt the existing data under a new \
                     key, stop the daemon and run `dbx storage rekey --new-key KEY`"
                ))
            })?;
            changes.push("data_encryption_key: set (stored in config.toml, never shown)".into());
        }
        config.data_encryption_key = Some(SecretString::new(key));
    }
    config
        .validate()
        .map_err(|e| CliError::usage(format!("{e}; nothing was changed")))?;
    Ok(changes)
}
