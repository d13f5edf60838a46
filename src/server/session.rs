//! Per-connection state: who the client is, its settings, and its open transaction.
//! Stored in pgwire's per-connection extensions; the handlers themselves are shared.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

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

/// When a connection last did something, for the idle-session timeout. Shared between the
/// connection's session and the watchdog that the accept loop runs beside it.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` at the last statement boundary.
    last_ms: AtomicU64,
    /// Statements (or their streamed results) running now: a statement whose rows are still
    /// being produced after it returned holds its own count.
    busy: AtomicUsize,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Marks a statement running until the guard drops.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.clone())
    }

    /// How long the connection has been idle (zero while a statement runs).
    pub fn idle_for(&self) -> std::time::Duration {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::SeqCst)),
        )
    }
}

/// Ends a statement's busy period.
#[derive(Debug)]
pub struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::SeqCst);
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One authenticated connection.
#[derive(Debug)]
pub struct Session {
    pub principal: Principal,
    /// The user name the client logged in with (`session_user`); any name works.
    pub login_user: String,
    /// The process id reported in BackendKeyData (`pg_backend_pid()`).
    pub backend_pid: i32,
    /// This connection's activity clock (see [`Activity`]).
    pub activity: Arc<Activity>,
    pub state: Mutex<SessionState>,
}

impl Session {
    /// A statement failed: an open transaction block is now failed (PostgreSQL's 25P02
    /// until ROLLBACK).
    pub fn mark_failed(&self) {
        if let Some(transaction) = self.state.lock().transaction.as_mut() {
            transaction.failed = true;
        }
    }

    pub fn new(
        principal: Principal,
        login_user: String,
        backend_pid: i32,
        activity: Arc<Activity>,
    ) -> Self {
        Self {
            principal,
            login_user,
            backend_pid,
            activity,
            state: Mutex::new(SessionState::default()),
        }
    }
}
