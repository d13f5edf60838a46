//! The PostgreSQL wire-protocol front end. Only this module knows pgwire.
//!
//! `Server::start` opens the store, the token registry and the applied schema and binds the
//! listener; `run_until` accepts connections (bounded by `max_connections`), negotiates TLS,
//! authenticates with tokens (`startup`), and serves queries (`handlers` → `exec`). Errors
//! become SQLSTATEs in one place (`errors`).

mod budget;
mod errors;
mod exec;
mod handlers;
mod schemas;
mod session;
mod startup;
mod values;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::auth::TokenStore;
use crate::config::Workspace;
use crate::engine::Engine;

pub use crate::schema::RestrictMode;
pub use exec::{server_version, MAX_SCAN_ROWS};

/// How long a stopping server waits for running statements to finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long it then lets connection tasks write the last answers.
const RESPONSE_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

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
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Startup(String),
}

/// What `serve start` passes in.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub workspace: Workspace,
    pub restrict: RestrictMode,
    /// Overrides the configured bind address and port (tests use 127.0.0.1:0).
    pub listen: Option<SocketAddr>,
}

struct Handlers {
    startup: Arc<startup::TokenStartupHandler>,
    query: Arc<handlers::QueryHandler>,
    cancel: Arc<DefaultCancelHandler>,
    errors: Arc<handlers::ErrorNormalizer>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl pgwire::api::ErrorHandler> {
        self.errors.clone()
    }
}

/// A started server: bound, store open, not yet accepting until [`Server::run_until`].
pub struct Server {
    listener: TcpListener,
    engine: Engine,
    handlers: Arc<Handlers>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    max_connections: usize,
    idle_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

fn load_tls(cert: &Path, key: &Path) -> Result<Option<pgwire::tokio::TlsAcceptor>, ServerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    if !cert.exists() || !key.exists() {
        tracing::warn!(cert = %cert.display(), "no TLS certificate; only loopback clients can authenticate with cleartext tokens");
        return Ok(None);
    }
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(pgwire::tokio::TlsAcceptor::from(Arc::new(config))))
}

impl Server {
    /// Opens the store, the token registry and the schema, and binds the listener.
    pub async fn start(options: ServerOptions) -> Result<Self, ServerError> {
        let workspace = &options.workspace;
        let config = &workspace.config;
        let engine_options = config
            .engine_options(&workspace.dir)
            .map_err(|e| ServerError::Startup(e.to_string()))?;
        let engine = tokio::task::spawn_blocking(move || Engine::open(engine_options))
            .await
            .map_err(|e| ServerError::Startup(format!("store open task failed: {e}")))??;
        let tokens = Arc::new(TokenStore::open(
            &workspace.tokens_path(),
            &workspace.token_key_path(),
            config.auth.scram_iterations,
        )?);
        let schemas = schemas::SchemaService::load(&engine, options.restrict)
            .map_err(ServerError::Startup)?;
        let tls = load_tls(&workspace.tls_cert_path(), &workspace.tls_key_path())?;
        let addr = match options.listen {
            Some(addr) => addr,
            None => SocketAddr::new(
                config.bind_addr.parse().map_err(|_| {
                    ServerError::Startup(format!(
                        "bind_addr {:?} is not an IP address",
                        config.bind_addr
                    ))
                })?,
                config.port,
            ),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let manager = Arc::new(ConnectionManager::new());
        let parameters = Arc::new(startup::Parameters {
            server_version: server_version(),
        });
        let executor = Arc::new(exec::Executor {
            engine: engine.clone(),
            tokens: tokens.clone(),
            schemas,
            restrict: options.restrict,
            started: Instant::now(),
            inflight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        let handlers = Arc::new(Handlers {
            startup: Arc::new(startup::TokenStartupHandler::new(
                tokens,
                parameters,
                manager.clone(),
                config.auth.scram_iterations,
                config.noise,
            )),
            query: {
                // One budget for large statements, whichever protocol carries them.
                let large_queries = Arc::new(budget::QueryBudget::default());
                Arc::new(handlers::QueryHandler {
                    executor,
                    parser: Arc::new(handlers::Parser {
                        large_queries: large_queries.clone(),
                    }),
                    large_queries,
                })
            },
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
            errors: Arc::new(handlers::ErrorNormalizer),
        });
        Ok(Self {
            listener,
            engine,
            handlers,
            tls,
            max_connections: config.max_connections,
            idle_timeout: (config.idle_timeout_seconds > 0)
                .then(|| std::time::Duration::from_secs(config.idle_timeout_seconds)),
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

    /// Serves until `shutdown` resolves. Then it stops accepting, closes the connections,
    /// and shuts the engine down: appends already handed to the committer are written
    /// durably before the store closes.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(err) => {
                            tracing::warn!(error = %err, "accept failed");
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    match slots.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let handlers = self.handlers.clone();
                            let tls = self.tls.clone();
                            let activity = session::Activity::new();
                            let registry = self.handlers.startup.activity.clone();
                            registry.lock().insert(peer, activity.clone());
                            let idle_timeout = self.idle_timeout;
                            connections.spawn(async move {
                                tokio::select! {
                                    ended = pgwire::tokio::process_socket(socket, tls, handlers) => {
                                        if let Err(err) = ended {
                                            tracing::debug!(%peer, error = %err, "connection ended with an error");
                                        }
                                    }
                                    () = idle_watchdog(activity, idle_timeout) => {
                                        tracing::info!(%peer, "closing a connection idle past idle_timeout_seconds");
                                    }
                                }
                                registry.lock().remove(&peer);
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            connections.spawn(refuse_too_many(socket, self.max_connections));
                        }
                    }
                }
            }
        }
        // Graceful: refuse new statements, let running ones (appends included) answer their
        // clients, then close every connection.
        let executor = &self.handlers.query.executor;
        executor
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while executor.inflight.load(std::sync::atomic::Ordering::SeqCst) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The last answers are written by the connection tasks right after the statements
        // return; give them a moment before closing the sockets.
        tokio::time::sleep(RESPONSE_FLUSH_GRACE).await;
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.shutdown())
            .await
            .map_err(|e| ServerError::Startup(format!("shutdown task failed: {e}")))?;
        Ok(())
    }
}

/// Resolves once the connection has been idle (no statement running) for `timeout`;
/// never without one. Before authentication pgwire's start-up timeout applies.
async fn idle_watchdog(activity: Arc<session::Activity>, timeout: Option<std::time::Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    let tick = timeout.min(std::time::Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if activity.idle_for() >= timeout {
            return;
        }
    }
}

/// Answers a connection over the limit with PostgreSQL's "too many clients" error.
async fn refuse_too_many(mut socket: tokio::net::TcpStream, limit: usize) {
    use tokio::io::AsyncWriteExt;
    let message = format!("sorry, too many clients already (max_connections = {limit})");
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', message.as_str()),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = vec![b'E'];
    frame.extend_from_slice(&(u32::try_from(body.len() + 4).unwrap_or(u32::MAX)).to_be_bytes());
    frame.extend_from_slice(&body);
    let _ = socket.write_all(&frame).await;
    let _ = socket.shutdown().await;
}
