//! Connection start-up: protocol negotiation, the database-name check, and authentication.
//!
//! A token is the password. When the user name is the id of an active token, the server
//! offers SCRAM-SHA-256 against that token's stored verifier; otherwise it asks for the
//! token in cleartext, which it accepts only over TLS or loopback. With `noise = true`
//! every non-loopback client must use TLS, whatever the mechanism. All authentication
//! failures become the same FATAL 28P01 (see `errors::normalize_auth_error`).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::driver::{AuthDriver, AuthOutcome};
use pgwire::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory, AuthState};
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthSource, LoginInfo, Password,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_DATABASE, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::session::Session;
use crate::auth::{Principal, TokenStore};
use base64::Engine as _;

/// The one database name.
pub const DATABASE: &str = "default";

/// The parameters reported at start-up, as PostgreSQL reports them.
#[derive(Debug)]
pub struct Parameters {
    pub server_version: String,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut params = HashMap::with_capacity(16);
        for (key, value) in [
            ("server_version", self.server_version.as_str()),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("IntervalStyle", "postgres"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "off"),
            ("in_hot_standby", "off"),
            ("default_transaction_read_only", "off"),
            ("search_path", "public"),
        ] {
            params.insert(key.to_owned(), value.to_owned());
        }
        if let Some(name) = client.metadata().get("application_name") {
            params.insert("application_name".to_owned(), name.clone());
        } else {
            params.insert("application_name".to_owned(), String::new());
        }
        if let Some(user) = client.metadata().get(METADATA_USER) {
            params.insert("session_authorization".to_owned(), user.clone());
        }
        Some(params)
    }
}

/// Looks tokens up for SCRAM (user name = token id) and cleartext (password = token).
#[derive(Debug)]
struct TokenAuthSource {
    tokens: Arc<TokenStore>,
}

fn auth_failed(user: &str) -> PgWireError {
    PgWireError::InvalidPassword(user.to_owned())
}

#[async_trait]
impl AuthSource<Principal> for TokenAuthSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(auth_failed(login.user().unwrap_or_default()))
    }

    async fn get_scram_secret(
        &self,
        login: &LoginInfo,
    ) -> PgWireResult<(ScramSecret, Option<Principal>)> {
        let user = login.user().unwrap_or_default();
        let (verifier, principal) = self
            .tokens
            .scram_login(user)
            .ok_or_else(|| auth_failed(user))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let decode = |text: &str| b64.decode(text).map_err(|_| auth_failed(user));
        Ok((
            ScramSecret::Verifier {
                salt: decode(&verifier.salt)?,
                iterations: verifier.iterations as usize,
                stored_key: decode(&verifier.stored_key)?,
                server_key: decode(&verifier.server_key)?,
            },
            Some(principal),
        ))
    }
}

/// Cleartext: the password is a token.
struct CleartextTokenMechanism {
    tokens: Arc<TokenStore>,
}

#[async_trait]
impl AuthMechanism<Principal> for CleartextTokenMechanism {
    async fn begin(
        &mut self,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> PgWireResult<AuthState<Principal>> {
        Ok(AuthState::InProgress(Authentication::CleartextPassword))
    }

    async fn next(
        &mut self,
        client: &(dyn ClientInfo + Send + Sync),
        message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState<Principal>> {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let password = message.into_password()?;
        // Verification hashes with blake3; cheap enough to run inline.
        match self.tokens.authenticate(&password.password) {
            Ok(principal) => Ok(AuthState::Ok {
                final_message: None,
                identity: Some(principal),
            }),
            Err(_) => Ok(AuthState::Failed(auth_failed(&user))),
        }
    }
}

/// Live connections' activity clocks, by peer address (unique per TCP connection).
pub type ActivityRegistry =
    parking_lot::Mutex<HashMap<std::net::SocketAddr, Arc<super::session::Activity>>>;

/// The start-up handler shared by every connection.
pub struct TokenStartupHandler {
    tokens: Arc<TokenStore>,
    /// Activity clocks of live connections by peer address, filled by the accept loop.
    pub activity: Arc<ActivityRegistry>,
    driver: AuthDriver<Arc<Parameters>, Principal>,
    scram: ScramAuth<Principal>,
    noise: bool,
}

impl std::fmt::Debug for TokenStartupHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStartupHandler")
            .finish_non_exhaustive()
    }
}

impl TokenStartupHandler {
    pub fn new(
        tokens: Arc<TokenStore>,
        parameters: Arc<Parameters>,
        manager: Arc<ConnectionManager>,
        scram_iterations: u32,
        noise: bool,
    ) -> Self {
        let mut scram = ScramAuth::new(Arc::new(TokenAuthSource {
            tokens: tokens.clone(),
        }));
        scram.set_iterations(scram_iterations as usize);
        Self {
            tokens,
            activity: Arc::new(parking_lot::Mutex::new(HashMap::new())),
            driver: AuthDriver::new(parameters).with_connection_manager(manager),
            scram,
            noise,
        }
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message,
    )))
}

#[async_trait]
impl StartupHandler for TokenStartupHandler {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                if user.is_empty() {
                    return Err(fatal(
                        "28000",
                        "no user name given; any user name works with a token as the password"
                            .into(),
                    ));
                }
                let database = client
                    .metadata()
                    .get(METADATA_DATABASE)
                    .cloned()
                    .unwrap_or_else(|| user.clone());
                if database != DATABASE {
                    return Err(fatal(
                        "3D000",
                        format!("database \"{database}\" does not exist; EventDBX serves the one logical domain \"{DATABASE}\""),
                    ));
                }
                let loopback = client.socket_addr().ip().is_loopback();
                let secure = client.is_secure();
                if self.noise && !loopback && !secure {
                    return Err(fatal(
                        "28000",
                        "this server requires an encrypted connection (noise is on): connect with sslmode=require".into(),
                    ));
                }
                let mechanism: Box<dyn AuthMechanism<Principal>> = if self
                    .tokens
                    .scram_login(&user)
                    .is_some()
                {
                    self.scram.create()
                } else if loopback || secure {
                    Box::new(CleartextTokenMechanism {
                        tokens: self.tokens.clone(),
                    })
                } else {
                    return Err(fatal(
                            "28000",
                            "a token may be sent as a cleartext password only over TLS or loopback: connect with sslmode=require, or use SCRAM with the token id as the user name".into(),
                        ));
                };
                self.driver.begin_authentication(client, mechanism).await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                self.driver.advance_authentication(client, password).await?
            }
            _ => return Ok(()),
        };
        if let AuthOutcome::Authenticated {
            identity,
            final_message,
        } = outcome
        {
            let Some(principal) = identity else {
                return Err(auth_failed(""));
            };
            // Complete first: it assigns the pid reported in BackendKeyData. No query can
            // arrive before this handler returns, so the session is in place in time.
            self.driver
                .complete_authentication(client, final_message)
                .await?;
            let login_user = client
                .metadata()
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_default();
            let (pid, _) = client.pid_and_secret_key();
            let activity = self
                .activity
                .lock()
                .get(&client.socket_addr())
                .cloned()
                .unwrap_or_else(super::session::Activity::new);
            client
                .session_extensions()
                .insert(Session::new(principal, login_user, pid, activity));
        }
        Ok(())
    }
}
