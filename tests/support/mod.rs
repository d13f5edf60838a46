//! Shared set-up for black-box server tests: a fresh workspace in a temp dir and a real
//! server on 127.0.0.1:0.

#![allow(dead_code)]

use std::net::SocketAddr;

use eventdbx::auth::{TokenSpec, TokenStore};
use eventdbx::config::{Config, Workspace};
use eventdbx::server::{RestrictMode, Server, ServerOptions};

pub struct TestServer {
    pub addr: SocketAddr,
    pub admin_token: String,
    pub workspace: Workspace,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(RestrictMode::Default).await
    }

    pub async fn start_with(restrict: RestrictMode) -> Self {
        Self::start_configured(restrict, |_| {}).await
    }

    pub async fn start_limited(max_connections: usize) -> Self {
        Self::start_configured(RestrictMode::Default, |c| {
            c.max_connections = max_connections
        })
        .await
    }

    pub async fn start_configured(
        restrict: RestrictMode,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws_dir = dir.path().join(".dbx");
        let mut config = Config::new_default();
        adjust(&mut config);
        config
            .save(&ws_dir.join("config.toml"))
            .expect("save config");
        let workspace = Workspace::open(&ws_dir).expect("open workspace");
        TokenStore::create_key(&workspace.token_key_path()).expect("token key");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed certificate");
        eventdbx::config::write_private_file(
            &workspace.tls_cert_path(),
            cert.cert.pem().as_bytes(),
        )
        .expect("cert");
        eventdbx::config::write_private_file(
            &workspace.tls_key_path(),
            cert.signing_key.serialize_pem().as_bytes(),
        )
        .expect("key");
        let admin_token = tokens(&workspace)
            .issue(TokenSpec {
                group: "admin".into(),
                user: "cli".into(),
                actions: vec!["*".into()],
                resources: vec!["*".into()],
                ttl_seconds: None,
                label: Some("test".into()),
            })
            .expect("issue")
            .token;
        let server = Server::start(ServerOptions {
            workspace: workspace.clone(),
            restrict,
            listen: Some("127.0.0.1:0".parse().expect("addr")),
        })
        .await
        .expect("start server");
        let addr = server.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server run");
        });
        Self {
            addr,
            admin_token,
            workspace,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn tokens(&self) -> TokenStore {
        tokens(&self.workspace)
    }

    pub fn issue(&self, actions: &[&str], resources: &[&str]) -> String {
        self.tokens()
            .issue(TokenSpec {
                group: "ops".into(),
                user: "alice".into(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
                resources: resources.iter().map(|r| r.to_string()).collect(),
                ttl_seconds: None,
                label: None,
            })
            .expect("issue")
            .token
    }

    pub fn url(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=default connect_timeout=5",
            self.addr.port()
        )
    }

    pub async fn connect_as(
        &self,
        token: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.url("app", token), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        self.connect_as(&self.admin_token).await.expect("connect")
    }

    /// Stops the server and hands back the temp dir so the caller can inspect the store.
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        self.shutdown().await;
        let placeholder = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

fn tokens(workspace: &Workspace) -> TokenStore {
    TokenStore::open(&workspace.tokens_path(), &workspace.token_key_path(), 4096)
        .expect("token store")
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no code: {err}"))
}

/// How many events the store holds, as a client sees it.
pub async fn count_events(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT COUNT(*) FROM events", &[])
        .await
        .expect("count events")
        .get(0)
}

/// Appends `rows` (`('type', 'id', 'event_type', 'payload')` tuples of SQL literals) with one
/// multi-row INSERT through the simple protocol.
pub async fn insert_event_rows(client: &tokio_postgres::Client, rows: &[String]) {
    client
        .batch_execute(&format!(
            "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload) VALUES {}",
            rows.join(",")
        ))
        .await
        .expect("insert event rows");
}

/// The first column of every row of `sql`.
pub async fn first_column<T>(client: &tokio_postgres::Client, sql: &str) -> Vec<T>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client
        .query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|row| row.get::<_, T>(0))
        .collect()
}

/// The rows of `sql` run through the simple protocol, every value as the text it arrived as.
pub async fn simple_text_rows(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .expect("simple query")
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
