//! Finding the workspace, `dbx init`, and the Docker image's auto-init.

use std::path::{Path, PathBuf};

use eventdbx::auth::{parse_ttl, TokenSpec, TokenStore};
use eventdbx::config::{
    write_private_file, Config, ConfigError, SecretString, Workspace, CLI_TOKEN_FILE, CONFIG_FILE,
    DATA_KEY_FILE, TOKENS_FILE, WORKSPACE_DIR,
};

use crate::error::{io_error, CliError, Result};
use crate::output::unix_to_rfc3339;

/// The environment variable the Docker image sets to create a workspace on first start.
pub const AUTO_INIT_ENV: &str = "EVENTDBX_AUTO_INIT";
/// Seeds `bind_addr` when auto-init creates a workspace (the image uses 0.0.0.0).
pub const AUTO_INIT_BIND_ENV: &str = "EVENTDBX_BIND_ADDR";
/// Seeds `port` when auto-init creates a workspace.
pub const AUTO_INIT_PORT_ENV: &str = "EVENTDBX_PORT";
/// Lifetime of the bootstrap token when none is given.
pub const DEFAULT_BOOTSTRAP_TTL: &str = "86400";

/// The current directory, as an error the user can act on when it is gone.
pub fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().map_err(|e| io_error("cannot read the current directory", e))
}

/// The nearest workspace walking up from the current directory.
pub fn discover() -> Result<Workspace> {
    Ok(Workspace::discover(&current_dir()?)?)
}

/// Whether `EVENTDBX_AUTO_INIT` asks for a workspace to be created on start.
pub fn auto_init_requested() -> bool {
    std::env::var(AUTO_INIT_ENV)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The workspace for `serve start`: the nearest one, or, when `EVENTDBX_AUTO_INIT` is set
/// and there is none, a new one created in `cwd`.
pub fn discover_or_auto_init(cwd: &Path) -> Result<Workspace> {
    match Workspace::discover(cwd) {
        Err(ConfigError::NoWorkspace(_)) if auto_init_requested() => {
            let seed = InitSeed::from_env()?;
            let created = init(cwd, DEFAULT_BOOTSTRAP_TTL, &seed)?;
            if let InitOutcome::Created {
                dir, record_expiry, ..
            } = &created
            {
                outln!(
                    "{AUTO_INIT_ENV} is set and no workspace was found: initialized {}",
                    dir.display()
                );
                outln!(
                    "A CLI bootstrap token ({}) is stored in {}; read it with `cat {}` or mint another with `dbx token bootstrap --stdout`.",
                    expiry_phrase(*record_expiry),
                    dir.join(CLI_TOKEN_FILE).display(),
                    dir.join(CLI_TOKEN_FILE).display()
                );
            }
            Ok(Workspace::open(&cwd.join(WORKSPACE_DIR))?)
        }
        other => Ok(other?),
    }
}

/// Values that override the defaults of a new workspace's config.
#[derive(Debug, Default, Clone)]
pub struct InitSeed {
    pub bind_addr: Option<String>,
    pub port: Option<u16>,
    /// Store events unencrypted (`dbx init --no-encryption`); by default a data key is
    /// generated and the store is encrypted at rest.
    pub no_encryption: bool,
}

impl InitSeed {
    /// `EVENTDBX_BIND_ADDR` / `EVENTDBX_PORT`, read only by auto-init.
    pub fn from_env() -> Result<Self> {
        let bind_addr = std::env::var(AUTO_INIT_BIND_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        let port = match std::env::var(AUTO_INIT_PORT_ENV) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().parse::<u16>().map_err(|_| {
                CliError::general(format!(
                    "{AUTO_INIT_PORT_ENV}={v:?} is not a port number (1..=65535)"
                ))
            })?),
            _ => None,
        };
        Ok(Self {
            bind_addr,
            port,
            no_encryption: false,
        })
    }
}

/// What `init` did.
#[derive(Debug)]
pub enum InitOutcome {
    AlreadyExists(PathBuf),
    Created {
        dir: PathBuf,
        token: String,
        /// Unix seconds; `None` never expires.
        record_expiry: Option<i64>,
    },
}

/// "expires at …" / "never expires".
pub fn expiry_phrase(expires_at: Option<i64>) -> String {
    match expires_at {
        Some(at) => format!("expires at {}", unix_to_rfc3339(at)),
        None => "never expires".into(),
    }
}

/// Creates `<cwd>/.dbx` with config, keys, TLS certificate, data directory and a bootstrap
/// token. An existing workspace is left untouched. The config is written last, so a failed
/// init can simply be run again.
pub fn init(cwd: &Path, ttl: &str, seed: &InitSeed) -> Result<InitOutcome> {
    let dir = cwd.join(WORKSPACE_DIR);
    if dir.join(CONFIG_FILE).is_file() {
        return Ok(InitOutcome::AlreadyExists(dir));
    }
    let ttl_seconds = parse_ttl(ttl)?;
    let mut config = Config::new_default();
    if let Some(addr) = &seed.bind_addr {
        config.bind_addr = addr.trim().to_owned();
    }
    if let Some(port) = seed.port {
        config.port = port;
    }
    if !seed.no_encryption {
        // Encrypted by default: sealing costs little next to the synced write of every
        // append, and a store created encrypted never has plaintext on disk to clean up.
        config.data_encryption_key = Some(SecretString::new(format!(
            "{}{DATA_KEY_FILE}",
            eventdbx::engine::seal::FILE_PREFIX
        )));
    }
    config.validate()?;

    create_private_dir(&dir)?;
    let workspace = Workspace {
        dir: dir.clone(),
        config,
    };
    let data_dir = workspace.data_dir();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| io_error(format!("cannot create {}", data_dir.display()), e))?;

    let key_path = workspace.token_key_path();
    if !key_path.is_file() {
        TokenStore::create_key(&key_path)
            .map_err(|e| io_error(format!("cannot write {}", key_path.display()), e))?;
    }
    write_tls_certificate(&workspace.tls_cert_path(), &workspace.tls_key_path())?;
    if !seed.no_encryption {
        let data_key = dir.join(DATA_KEY_FILE);
        if !data_key.is_file() {
            write_data_key(&data_key)?;
        }
    }

    let store = TokenStore::open(
        &dir.join(TOKENS_FILE),
        &key_path,
        workspace.config.auth.scram_iterations,
    )?;
    let issued = store.issue(bootstrap_spec(ttl_seconds))?;
    let token_path = dir.join(CLI_TOKEN_FILE);
    write_private_file(&token_path, format!("{}\n", issued.token).as_bytes())
        .map_err(|e| io_error(format!("cannot write {}", token_path.display()), e))?;
    // Keep secrets out of version control even where the project has no .gitignore.
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(
            &ignore,
            "# EventDBX workspace: config, keys, tokens and data.\n*\n",
        )
        .map_err(|e| io_error(format!("cannot write {}", ignore.display()), e))?;
    }
    workspace.config.save(&workspace.config_path())?;
    Ok(InitOutcome::Created {
        dir,
        token: issued.token,
        record_expiry: issued.record.expires_at,
    })
}

/// Writes 32 random bytes, as base64 text, to a new 0600 key file.
pub fn write_data_key(path: &Path) -> Result<()> {
    let text = eventdbx::engine::seal::generate_key_text()
        .map_err(|e| CliError::general(e.to_string()))?;
    write_private_file(path, text.as_bytes())
        .map_err(|e| io_error(format!("cannot write {}", path.display()), e))
}

/// The admin token `init` and `token bootstrap` issue.
pub fn bootstrap_spec(ttl_seconds: Option<u64>) -> TokenSpec {
    TokenSpec {
        group: "admin".into(),
        user: "cli".into(),
        actions: vec!["*".into()],
        resources: vec!["*".into()],
        ttl_seconds,
        label: Some("bootstrap".into()),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| io_error(format!("cannot create {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_error(format!("cannot set permissions on {}", dir.display()), e))
}

/// A self-signed certificate for `localhost` / 127.0.0.1 / ::1 (key file 0600). Existing
/// files are kept.
fn write_tls_certificate(cert_path: &Path, key_path: &Path) -> Result<()> {
    if cert_path.is_file() && key_path.is_file() {
        return Ok(());
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| CliError::general(format!("cannot generate the TLS certificate: {e}")))?;
    write_private_file(key_path, certified.signing_key.serialize_pem().as_bytes())
        .map_err(|e| io_error(format!("cannot write {}", key_path.display()), e))?;
    write_private_file(cert_path, certified.cert.pem().as_bytes())
        .map_err(|e| io_error(format!("cannot write {}", cert_path.display()), e))?;
    Ok(())
}

/// Resolves a path given on the command line against the current directory.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(current_dir()?.join(path))
    }
}
