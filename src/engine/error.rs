//! The engine's typed errors. The protocol boundary maps each variant to a SQLSTATE; nothing
//! here knows about PostgreSQL.

use std::fmt;

/// What an append expected of an aggregate's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The aggregate must not exist yet.
    NoStream,
    /// The aggregate's version right before this event must be exactly N (0 = new).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no existing aggregate"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An expected-version check failed; the whole append was rejected.
    #[error("version conflict on {aggregate_type}#{aggregate_id}: expected {expected}, actual version {actual}")]
    Conflict {
        aggregate_type: String,
        aggregate_id: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// A name or id has the wrong shape.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A value is malformed (not a JSON object, bad note...).
    #[error("invalid {what}: {reason}")]
    InvalidValue { what: &'static str, reason: String },
    /// Something exceeds a limit.
    #[error("{what} is too large: {size} exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// An idempotency key was reused for a different request.
    #[error("idempotency key {key:?} was already used for a different append")]
    IdempotencyMismatch { key: String },
    /// The schema rejected an event (boxed: it is the largest variant and rare).
    #[error("{0}")]
    SchemaViolation(Box<SchemaRejection>),
    /// The data directory cannot be opened by this build.
    #[error("{0}")]
    IncompatibleStore(String),
    /// The configured data encryption key does not fit the store: missing, wrong, or set on
    /// a store that holds unencrypted data. Raised when the store opens, before any read.
    #[error("{0}")]
    EncryptionKey(String),
    /// A sealed value failed authentication: it was altered, truncated, or copied from
    /// another key. Never decoded, never served.
    #[error("sealed value in `{cf}` at key {key} does not open: it was altered or moved from another key (the store is damaged or was tampered with)")]
    Tampered { cf: &'static str, key: String },
    /// A stored record failed to decode: the store is damaged.
    #[error("corrupt record in {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// The engine was shut down.
    #[error("the engine is shut down")]
    Closed,
    /// RocksDB reported an error.
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// A filesystem error outside RocksDB.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A schema rejection: which aggregate, what failed, and how to classify it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{aggregate_type}#{aggregate_id}: {message}")]
pub struct SchemaRejection {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub message: String,
    /// The class of violation.
    pub kind: ViolationClass,
    /// The field (dotted path) concerned, when there is one.
    pub field: Option<String>,
    /// The rule that failed.
    pub rule: String,
}

/// Classes of schema rejection, each with its own SQLSTATE at the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationClass {
    /// A check or type rule failed.
    Check,
    /// A strong reference names a missing aggregate.
    ReferenceMissing,
    /// A locked aggregate or field.
    Locked,
    /// Restrict mode `strict` and the aggregate type has no schema.
    NoSchema,
}

impl EngineError {
    pub(crate) fn corrupt(what: &'static str, reason: impl Into<String>) -> Self {
        EngineError::Corrupt {
            what,
            reason: reason.into(),
        }
    }
}
