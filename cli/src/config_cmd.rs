//! `dbx config`: print the redacted config, or validate and apply updates.

use std::path::PathBuf;

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
    let mut config = ws.config.clone();
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
        if config.data_encryption_key.as_deref() != Some(key.as_str()) {
            changes.push("data_encryption_key: set (stored in config.toml, never shown)".into());
        }
        config.data_encryption_key = Some(key);
    }
    config
        .validate()
        .map_err(|e| CliError::usage(format!("{e}; nothing was changed")))?;
    if changes.is_empty() {
        outln!("no change: the config already has these values");
        return Ok(());
    }
    config.save(&ws.config_path())?;
    outln!("updated {}", ws.config_path().display());
    for change in &changes {
        outln!("  {change}");
    }
    if crate::daemon::running_pid(&ws).is_some() {
        outln!("the daemon is running: apply the change with `dbx serve restart`");
    }
    Ok(())
}
