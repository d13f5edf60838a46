//! The workspace: discovering `.dbx/config.toml`, reading and validating it, writing it back,
//! and the legacy-layout guard. Pure file handling; nothing here opens the store.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The workspace directory name.
pub const WORKSPACE_DIR: &str = ".dbx";
/// The config file inside the workspace.
pub const CONFIG_FILE: &str = "config.toml";
/// The CLI token file inside the workspace.
pub const CLI_TOKEN_FILE: &str = "cli.token";
/// The token registry inside the workspace.
pub const TOKENS_FILE: &str = "tokens.json";
/// Default PostgreSQL-protocol port.
pub const DEFAULT_PORT: u16 = 6363;
/// Default bind address: loopback only, so nothing is exposed until the user says so.
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1";
/// Default block cache, MiB.
pub const DEFAULT_CACHE_THRESHOLD_MIB: u64 = 64;
/// Largest block cache accepted, MiB (the machine's memory, not ours, is the real bound).
pub const MAX_CACHE_THRESHOLD_MIB: u64 = 65_536;
/// Default cap on concurrent client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Most connections accepted: each costs a task and buffers.
pub const MAX_MAX_CONNECTIONS: usize = 10_000;
/// Longest idle-session timeout accepted (a week); longer is as good as never.
pub const MAX_IDLE_TIMEOUT_SECONDS: u64 = 7 * 86_400;
/// SCRAM iterations for token verifiers (PostgreSQL's default).
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;

/// Errors reading or validating the workspace.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no EventDBX workspace found in {0} or any parent directory; run `dbx init` first")]
    NoWorkspace(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid configuration: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Legacy(String),
}

/// Advice printed with every legacy-layout refusal (the spec's migration note).
pub const MIGRATION_ADVICE: &str = "This build of EventDBX runs as a single-tenant core pinned \
    to the logical domain `default` and refuses legacy multi-domain or multi-tenant layouts. \
    Export/import the data or run a dedicated migration before upgrading to the lean \
    single-tenant build.";

/// A secret from the config (the data encryption key). Serialized as the plain string, but
/// its `Debug` is redacted, so neither a log line nor an error that formats the config can
/// show it; the text is zeroized when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret text, for the one place that needs it (key parsing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The `data_encryption_key` `dbx init` writes: the key file it generates.
pub const DATA_KEY_FILE: &str = "keys/data.key";

/// The `[auth]` block: where key material lives (never the material itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// 32 random bytes keying the hash of token secrets.
    pub token_key_file: PathBuf,
    /// PEM certificate served for TLS.
    pub tls_cert_file: PathBuf,
    /// PEM private key for TLS.
    pub tls_key_file: PathBuf,
    /// PBKDF2 iterations for SCRAM verifiers.
    #[serde(default = "default_scram_iterations")]
    pub scram_iterations: u32,
}

fn default_scram_iterations() -> u32 {
    DEFAULT_SCRAM_ITERATIONS
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Always `default`: the one logical domain.
    #[serde(default = "default_domain")]
    pub domain: String,
    pub port: u16,
    pub bind_addr: String,
    /// Where RocksDB lives; relative paths are relative to the workspace directory.
    pub data_dir: PathBuf,
    /// Cache memory in MiB: half for RocksDB's block cache, half for the newest events
    /// kept opened (the engine's history tail).
    pub cache_threshold: u64,
    /// The data encryption key (encryption at rest): `file:PATH` (a key file, relative
    /// paths from `.dbx`), `base64:KEY` (32 bytes), or a passphrase. Absent: unencrypted.
    /// Never printed, except a `file:` reference, which is a path, not a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_encryption_key: Option<SecretString>,
    /// Page size of listings when the client names none.
    pub list_page_size: usize,
    /// Cap on any page.
    pub page_limit: usize,
    /// Snowflake worker id, 0..=1023.
    pub snowflake_worker_id: u16,
    /// Require an encrypted transport (TLS) for every non-loopback client.
    pub noise: bool,
    /// Snapshot every N versions for aggregate types whose schema names no threshold.
    #[serde(default = "default_snapshot_threshold")]
    pub snapshot_threshold: Option<u64>,
    /// Cap on one event payload, bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// Cap on concurrent client connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Close a session that sits idle (no statement running) this many seconds; 0 = never,
    /// as PostgreSQL's `idle_session_timeout` defaults to.
    #[serde(default)]
    pub idle_timeout_seconds: u64,
    pub auth: AuthConfig,
}

fn default_domain() -> String {
    crate::engine::DOMAIN.to_owned()
}
fn default_snapshot_threshold() -> Option<u64> {
    Some(100)
}
fn default_max_payload() -> usize {
    crate::engine::options::DEFAULT_MAX_PAYLOAD_BYTES
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

impl Config {
    /// The configuration `dbx init` writes.
    pub fn new_default() -> Self {
        Self {
            domain: default_domain(),
            port: DEFAULT_PORT,
            bind_addr: DEFAULT_BIND_ADDR.to_owned(),
            data_dir: PathBuf::from("data"),
            cache_threshold: DEFAULT_CACHE_THRESHOLD_MIB,
            data_encryption_key: None,
            list_page_size: crate::engine::options::DEFAULT_LIST_PAGE_SIZE,
            page_limit: crate::engine::options::DEFAULT_PAGE_LIMIT,
            snowflake_worker_id: 0,
            noise: false,
            snapshot_threshold: default_snapshot_threshold(),
            max_payload_bytes: default_max_payload(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout_seconds: 0,
            auth: AuthConfig {
                token_key_file: PathBuf::from("keys/token.key"),
                tls_cert_file: PathBuf::from("keys/server.crt"),
                tls_key_file: PathBuf::from("keys/server.key"),
                scram_iterations: DEFAULT_SCRAM_ITERATIONS,
            },
        }
    }

    /// Checks every value's range; the message names the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.domain != crate::engine::DOMAIN {
            return Err(ConfigError::Legacy(format!(
                "config.toml selects domain {:?}. {MIGRATION_ADVICE}",
                self.domain
            )));
        }
        if self.port == 0 {
            return invalid("port must be in 1..=65535".into());
        }
        if self.bind_addr.parse::<std::net::IpAddr>().is_err() {
            return invalid(format!(
                "bind_addr {:?} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)",
                self.bind_addr
            ));
        }
        if self.cache_threshold == 0 || self.cache_threshold > MAX_CACHE_THRESHOLD_MIB {
            return invalid(format!(
                "cache_threshold {} is out of range 1..={MAX_CACHE_THRESHOLD_MIB} (MiB)",
                self.cache_threshold
            ));
        }
        if self.max_connections == 0 || self.max_connections > MAX_MAX_CONNECTIONS {
            return invalid(format!(
                "max_connections {} is out of range 1..={MAX_MAX_CONNECTIONS}",
                self.max_connections
            ));
        }
        if self.idle_timeout_seconds > MAX_IDLE_TIMEOUT_SECONDS {
            return invalid(format!(
                "idle_timeout_seconds {} is out of range 0..={MAX_IDLE_TIMEOUT_SECONDS} (0 = never)",
                self.idle_timeout_seconds
            ));
        }
        if self.auth.scram_iterations < 4096 || self.auth.scram_iterations > 1_000_000 {
            return invalid("auth.scram_iterations must be in 4096..=1000000".into());
        }
        self.engine_options(Path::new("."))?
            .validate()
            .map_err(ConfigError::Invalid)
    }

    /// Engine options for a workspace rooted at `workspace` (the `.dbx` directory). Fails
    /// only on a malformed `data_encryption_key` (the message never repeats it).
    pub fn engine_options(
        &self,
        workspace: &Path,
    ) -> Result<crate::engine::EngineOptions, ConfigError> {
        let mut options =
            crate::engine::EngineOptions::new(self.resolve(workspace, &self.data_dir));
        options.worker_id = self.snowflake_worker_id;
        options.max_payload_bytes = self.max_payload_bytes;
        options.default_snapshot_threshold = self.snapshot_threshold;
        options.list_page_size = self.list_page_size;
        options.page_limit = self.page_limit;
        let cache_bytes =
            usize::try_from(self.cache_threshold.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        // An eighth for RocksDB's block cache, an eighth for the current aggregate records,
        // a quarter for the opened tail, half for the opened history (the defaults in
        // `engine::options`).
        options.block_cache_bytes = cache_bytes / 8;
        options.aggregate_records_bytes = cache_bytes / 8;
        options.history_tail_bytes = cache_bytes / 4;
        options.opened_history_bytes = cache_bytes
            - options.block_cache_bytes
            - options.aggregate_records_bytes
            - options.history_tail_bytes;
        options.encryption = match &self.data_encryption_key {
            Some(key) => Some(
                crate::engine::KeySpec::parse(key.expose())
                    .map_err(ConfigError::Invalid)?
                    .relative_to(workspace),
            ),
            None => None,
        };
        Ok(options)
    }

    /// A path from the config, resolved against the workspace directory.
    pub fn resolve(&self, workspace: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            workspace.join(path)
        }
    }

    /// TOML text with secrets redacted, for `dbx config`. A `file:` key reference is shown:
    /// it is a path, and where the key lives is what an operator needs to know.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if let Some(key) = &shown.data_encryption_key {
            if !key.expose().starts_with(crate::engine::seal::FILE_PREFIX) {
                shown.data_encryption_key = Some(SecretString::new("<redacted>"));
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_default()
    }

    /// Reads and validates a config file, refusing legacy layouts.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.message().to_owned(),
            })?;
        if let Some(tenants) = raw.get("tenants").and_then(toml::Value::as_table) {
            if tenants.get("multi_tenant").and_then(toml::Value::as_bool) == Some(true) {
                return Err(ConfigError::Legacy(format!(
                    "{} sets [tenants].multi_tenant = true. {MIGRATION_ADVICE}",
                    path.display()
                )));
            }
        }
        if let Some(domain) = raw.get("domain").and_then(toml::Value::as_str) {
            if domain != crate::engine::DOMAIN {
                return Err(ConfigError::Legacy(format!(
                    "{} selects the non-default domain {domain:?}. {MIGRATION_ADVICE}",
                    path.display()
                )));
            }
        }
        let mut raw = raw;
        raw.remove("tenants");
        let config: Config = toml::Value::Table(raw)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.message().to_owned(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Changes the config file at `path` under an exclusive lock on `config.toml.lock`
    /// beside it: reads the file as it is now, lets `apply` change it, and writes it back
    /// when `apply` returns `true` with its result. Two processes changing the config at
    /// once (`dbx config`, `dbx storage rekey`) then cannot write back what they read over
    /// each other's change. The lock is released when this returns, or when the process
    /// dies.
    pub fn update<T, E: From<ConfigError>>(
        path: &Path,
        apply: impl FnOnce(&mut Config) -> Result<(T, bool), E>,
    ) -> Result<T, E> {
        use std::os::unix::fs::OpenOptionsExt;
        let lock_path = path.with_extension("toml.lock");
        let write_error = |source| ConfigError::Write {
            path: lock_path.display().to_string(),
            source,
        };
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(write_error)?;
        lock.lock().map_err(write_error)?;
        let mut config = Config::load(path)?;
        let (result, save) = apply(&mut config)?;
        if save {
            config.save(path)?;
        }
        Ok(result)
    }

    /// Writes the config atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = format!(
            "# EventDBX workspace configuration. `dbx config --help` lists the writable keys.\n{}",
            toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))?
        );
        write_private_file(path, text.as_bytes()).map_err(|source| ConfigError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A discovered workspace: the `.dbx` directory and its config.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The `.dbx` directory.
    pub dir: PathBuf,
    pub config: Config,
}

impl Workspace {
    /// Finds the nearest `.dbx/config.toml` walking up from `start`.
    pub fn discover(start: &Path) -> Result<Self, ConfigError> {
        let mut current = Some(start);
        while let Some(dir) = current {
            let candidate = dir.join(WORKSPACE_DIR).join(CONFIG_FILE);
            if candidate.is_file() {
                return Self::open(&dir.join(WORKSPACE_DIR));
            }
            current = dir.parent();
        }
        Err(ConfigError::NoWorkspace(start.display().to_string()))
    }

    /// Opens the workspace at `dir` (a `.dbx` directory), refusing legacy layouts.
    pub fn open(dir: &Path) -> Result<Self, ConfigError> {
        let config = Config::load(&dir.join(CONFIG_FILE))?;
        let workspace = Self {
            dir: dir.to_owned(),
            config,
        };
        workspace.refuse_legacy_directories()?;
        Ok(workspace)
    }

    fn refuse_legacy_directories(&self) -> Result<(), ConfigError> {
        let data = self.data_dir();
        for root in [self.dir.as_path(), data.as_path()] {
            for legacy in ["tenants", "domains"] {
                if root.join(legacy).is_dir() {
                    return Err(ConfigError::Legacy(format!(
                        "{} holds extra tenant/domain directories (`{legacy}/`). {MIGRATION_ADVICE}",
                        root.display()
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.resolve(&self.dir, &self.config.data_dir)
    }

    pub fn tokens_path(&self) -> PathBuf {
        self.dir.join(TOKENS_FILE)
    }

    pub fn cli_token_path(&self) -> PathBuf {
        self.dir.join(CLI_TOKEN_FILE)
    }

    pub fn token_key_path(&self) -> PathBuf {
        self.config
            .resolve(&self.dir, &self.config.auth.token_key_file)
    }

    pub fn tls_cert_path(&self) -> PathBuf {
        self.config
            .resolve(&self.dir, &self.config.auth.tls_cert_file)
    }

    pub fn tls_key_path(&self) -> PathBuf {
        self.config
            .resolve(&self.dir, &self.config.auth.tls_key_file)
    }
}

/// Writes a file readable by its owner only (0600), atomically: temp file, fsync, rename,
/// fsync of the directory.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_writers_in_several_processes_lose_no_change() {
        // Regression: `dbx config` wrote back the config it had read at start, so two at
        // once (each setting a different key) could lose one change without a word. Four
        // writers on four threads, each with its own handle on the lock file (as separate
        // processes would have), each setting its own key many times.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        Config::new_default().save(&path).expect("save");
        let writers: Vec<_> = (0..4u64)
            .map(|writer| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for round in 1..=25u64 {
                        Config::update(&path, |config: &mut Config| {
                            match writer {
                                0 => config.cache_threshold = round,
                                1 => config.list_page_size = round as usize,
                                2 => config.page_limit = 1_000 + round as usize,
                                _ => config.snowflake_worker_id = round as u16,
                            }
                            Ok::<_, ConfigError>(((), true))
                        })
                        .expect("update");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer");
        }
        let config = Config::load(&path).expect("load");
        assert_eq!(config.cache_threshold, 25);
        assert_eq!(config.list_page_size, 25);
        assert_eq!(config.page_limit, 1_025);
        assert_eq!(config.snowflake_worker_id, 25);
    }

    #[test]
    fn default_config_round_trips_and_validates() {
        let config = Config::new_default();
        config.validate().expect("valid");
        let text = toml::to_string_pretty(&config).expect("toml");
        assert_eq!(
            Config::parse(&text, Path::new("c.toml")).expect("parse"),
            config
        );
    }

    #[test]
    fn legacy_layouts_are_refused_with_the_migration_note() {
        let base = toml::to_string_pretty(&Config::new_default()).expect("toml");
        let acme = base.replace("domain = \"default\"", "domain = \"acme\"");
        assert_ne!(acme, base);
        let err = Config::parse(&acme, Path::new("c.toml")).expect_err("domain");
        assert!(err.to_string().contains("Export/import"), "{err}");
        let err = Config::parse(
            &format!("{base}\n[tenants]\nmulti_tenant = true\n"),
            Path::new("c.toml"),
        )
        .expect_err("tenants");
        assert!(err.to_string().contains("multi_tenant"), "{err}");
    }

    #[test]
    fn malformed_encryption_keys_are_refused_without_being_repeated() {
        let mut config = Config::new_default();
        config.data_encryption_key = Some(SecretString::new("base64:c2VjcmV0"));
        let err = config.validate().expect_err("short key");
        assert!(err.to_string().contains("32 bytes"), "{err}");
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        config.data_encryption_key = Some(SecretString::new("short"));
        let err = config.validate().expect_err("short passphrase");
        assert!(!err.to_string().contains("short\""), "{err}");
        config.data_encryption_key = Some(SecretString::new("file:keys/data.key"));
        let options = config
            .engine_options(Path::new("/ws/.dbx"))
            .expect("options");
        assert!(matches!(
            options.encryption,
            Some(crate::engine::KeySpec::File(p)) if p == Path::new("/ws/.dbx/keys/data.key")
        ));
    }

    #[test]
    fn ranges_are_checked_with_the_allowed_range_named() {
        let mut config = Config::new_default();
        config.snowflake_worker_id = 5000;
        let err = config.validate().expect_err("worker");
        assert!(err.to_string().contains("0..=1023"), "{err}");
        let mut config = Config::new_default();
        config.page_limit = 0;
        assert!(config.validate().is_err());
        let mut config = Config::new_default();
        config.bind_addr = "localhost:1".into();
        assert!(config.validate().is_err());
    }

    #[test]
    fn redaction_hides_the_encryption_key() {
        let mut config = Config::new_default();
        config.data_encryption_key = Some(SecretString::new("c2VjcmV0LWtleS1tYXRlcmlhbA=="));
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("c2VjcmV0"));
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("[auth]"));
        assert!(
            !format!("{config:?}").contains("c2VjcmV0"),
            "Debug redacts too"
        );
        // A key file reference is a path, not a key: shown.
        config.data_encryption_key = Some(SecretString::new("file:keys/data.key"));
        assert!(config.to_redacted_toml().contains("file:keys/data.key"));
    }
}
