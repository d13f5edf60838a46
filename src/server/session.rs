//! Per-connection state: who the client is, its settings, and its open transaction.
//! Stored in pgwire's per-connection extensions; the handlers themselves are shared.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::auth::Principal;
use crate::engine::NewEvent;

/// Events buffered by `BEGIN ... INSERT ...` until `COMMIT`.
#[derive(Debug, Default)]
pub struct Transaction {
    pub events: Vec<NewEvent>,
    pub idempotency_key: Option<String>,
    /// An error inside the block: everything but ROLLBACK/COMMIT fails with 25P02.
    pub failed: bool,
}

/// The mutable part of a session.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Settings changed with SET (lower-case names).
    pub settings: BTreeMap<String, String>,
    pub transaction: Option<Transaction>,
}

/// One authenticated connection.
#[derive(Debug)]
pub struct Session {
    pub principal: Principal,
    /// The user name the client logged in with (`session_user`); any name works.
    pub login_user: String,
    /// The process id reported in BackendKeyData (`pg_backend_pid()`).
    pub backend_pid: i32,
    pub state: Mutex<SessionState>,
}

impl Session {
    pub fn new(principal: Principal, login_user: String, backend_pid: i32) -> Self {
        Self {
            principal,
            login_user,
            backend_pid,
            state: Mutex::new(SessionState::default()),
        }
    }
}
