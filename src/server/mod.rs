//! The PostgreSQL wire-protocol front end. Only this module knows pgwire.
//!
//! (Work in progress: this first cut opens the store and the token registry and binds the
//! listener; the protocol handlers land with the SQL surface.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::auth::TokenStore;
use crate::config::Workspace;
use crate::engine::Engine;

/// Schema enforcement for the running daemon (`dbx serve start --restrict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestrictMode {
    /// No schema enforcement (names, sizes and limits still apply).
    Off,
    /// Aggregate types with a schema are enforced; others are accepted.
    #[default]
    Default,
    /// Writes to aggregate types without a schema are rejected.
    Strict,
}

impl RestrictMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            RestrictMode::Off => "off",
            RestrictMode::Default => "default",
            RestrictMode::Strict => "strict",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(RestrictMode::Off),
            "default" => Some(RestrictMode::Default),
            "strict" => Some(RestrictMode::Strict),
            _ => None,
        }
    }
}

/// Server failures at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(String),
}

/// What `serve start` passes in.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub workspace: Workspace,
    pub restrict: RestrictMode,
    /// Overrides the configured bind address and port (tests use 127.0.0.1:0).
    pub listen: Option<SocketAddr>,
}

/// A started server: bound, store open, not yet accepting until [`Server::run_until`].
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    engine: Engine,
    tokens: Arc<TokenStore>,
    options: ServerOptions,
    started: Instant,
}

impl Server {
    /// Opens the store and the token registry and binds the listener.
    pub async fn start(options: ServerOptions) -> Result<Self, ServerError> {
        let workspace = &options.workspace;
        let engine_options = workspace.config.engine_options(&workspace.dir);
        let engine = tokio::task::spawn_blocking(move || Engine::open(engine_options))
            .await
            .map_err(|e| ServerError::Tls(format!("store open task failed: {e}")))??;
        let tokens = Arc::new(TokenStore::open(
            &workspace.tokens_path(),
            &workspace.token_key_path(),
            workspace.config.auth.scram_iterations,
        )?);
        let addr = match options.listen {
            Some(addr) => addr,
            None => SocketAddr::new(
                workspace
                    .config
                    .bind_addr
                    .parse()
                    .map_err(|_| ServerError::Tls("bind_addr is not an IP address".into()))?,
                workspace.config.port,
            ),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Self {
            listener,
            engine,
            tokens,
            options,
            started: Instant::now(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// The open store.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight work finish
    /// and closes the store.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let _ = (&self.tokens, &self.options, self.started);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    if let Ok((socket, _)) = accepted {
                        drop(socket);
                    }
                }
            }
        }
        let engine = self.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
        Ok(())
    }
}
