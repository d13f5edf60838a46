//! One error type for every command: a one-line message and the process exit code.

use eventdbx::auth::TokenError;
use eventdbx::config::ConfigError;

/// Process exit codes (documented in docs/CLI.md and `dbx --help`).
pub mod exit {
    /// Anything not listed below.
    pub const ERROR: i32 = 1;
    /// Bad usage: unknown flag, removed command, missing confirmation.
    pub const USAGE: i32 = 2;
    /// The daemon is not running (or not reachable at its address).
    pub const NOT_RUNNING: i32 = 3;
    /// The aggregate, token or schema named does not exist.
    pub const NOT_FOUND: i32 = 4;
    /// `aggregate verify` found a Merkle root mismatch.
    pub const VERIFY_FAILED: i32 = 5;
    /// The token was rejected or lacks the permission.
    pub const AUTH: i32 = 6;
    /// The write was rejected: version conflict or schema violation.
    pub const REJECTED: i32 = 7;
}

/// A failed command.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
    /// The server's SQLSTATE, when the error came from the daemon.
    pub sqlstate: Option<String>,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            sqlstate: None,
        }
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self::new(exit::ERROR, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ConfigError> for CliError {
    fn from(err: ConfigError) -> Self {
        CliError::general(err.to_string())
    }
}

impl From<TokenError> for CliError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::NotFound(id) => CliError::new(
                exit::NOT_FOUND,
                format!("token {id} not found; `dbx token list` shows the known tokens"),
            ),
            TokenError::AuthenticationFailed => CliError::new(
                exit::AUTH,
                "the token was rejected (expired, revoked or wrong); get a new one with `dbx token bootstrap`",
            ),
            other => CliError::general(other.to_string()),
        }
    }
}

/// Wraps an I/O error with what was being done.
pub fn io_error(what: impl std::fmt::Display, err: std::io::Error) -> CliError {
    CliError::general(format!("{what}: {err}"))
}

pub type Result<T> = std::result::Result<T, CliError>;
