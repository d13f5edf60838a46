//! The hook through which the schema layer judges every event inside the commit path.
//!
//! The engine knows nothing of `schema.dbx`; it asks its current [`WritePolicy`] about each
//! event while it stages an append, so a policy swapped in by a schema apply governs the
//! very next write, without a restart.

use serde_json::{Map, Value};

use super::error::EngineError;

/// What the policy sees of one event about to be staged.
#[allow(missing_debug_implementations)]
pub struct EventCheck<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a Map<String, Value>,
    /// The aggregate's state before this event; `None` when this event creates it.
    pub prior_state: Option<&'a Map<String, Value>>,
    /// Whether an aggregate exists, counting writes staged earlier in the same commit.
    pub aggregate_exists: &'a dyn Fn(&str, &str) -> bool,
}

/// The policy's verdict on an accepted event.
#[derive(Debug, Default)]
pub struct CheckedEvent {
    /// The normalized payload to store instead of the given one (`None`: store as given).
    pub payload: Option<Map<String, Value>>,
    /// The note to use when the append names none.
    pub default_note: Option<String>,
}

/// Judges events on the write path.
pub trait WritePolicy: Send + Sync + std::fmt::Debug {
    /// Accepts (possibly normalizing) or rejects one event.
    fn check_event(&self, event: &EventCheck<'_>) -> Result<CheckedEvent, EngineError>;
    /// How often to snapshot this aggregate type.
    fn snapshot_setting(&self, aggregate_type: &str) -> SnapshotSetting;
    /// Whether [`check_event`](Self::check_event) looks at `prior_state` for this aggregate
    /// type. When it does not, the commit path keeps the state as text and passes `None`
    /// for an existing aggregate too (see `commit.rs`, `WorkingState`).
    fn reads_prior_state(&self, _aggregate_type: &str) -> bool {
        true
    }
}

/// Snapshot cadence for an aggregate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSetting {
    /// Whatever the engine's options say.
    EngineDefault,
    /// Every N versions (N >= 1).
    Every(u64),
    /// Never (the schema said `snapshot_threshold = null`).
    Disabled,
}

/// Accepts everything; snapshots follow the engine's default.
#[derive(Debug, Default)]
pub struct AcceptAll;

impl WritePolicy for AcceptAll {
    fn check_event(&self, _event: &EventCheck<'_>) -> Result<CheckedEvent, EngineError> {
        Ok(CheckedEvent::default())
    }

    fn snapshot_setting(&self, _aggregate_type: &str) -> SnapshotSetting {
        SnapshotSetting::EngineDefault
    }

    fn reads_prior_state(&self, _aggregate_type: &str) -> bool {
        false
    }
}
