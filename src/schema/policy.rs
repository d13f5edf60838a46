//! The schema as the engine's [`WritePolicy`]: restrict modes, and the translation of a
//! [`SchemaViolation`] into the engine's typed rejection. Pure: no I/O.

use std::sync::Arc;

use crate::engine::{
    CheckedEvent, EngineError, EventCheck, SchemaRejection, SnapshotSetting, ViolationClass,
    WritePolicy,
};

use super::{CompiledSchemaSet, ReferenceLookup, ViolationKind};

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

/// Enforces a compiled schema set on the write path.
#[derive(Debug)]
pub struct SchemaPolicy {
    set: Arc<CompiledSchemaSet>,
    restrict: RestrictMode,
}

impl SchemaPolicy {
    pub fn new(set: Arc<CompiledSchemaSet>, restrict: RestrictMode) -> Self {
        Self { set, restrict }
    }
}

struct Lookup<'a>(&'a dyn Fn(&str, &str) -> bool);

impl ReferenceLookup for Lookup<'_> {
    fn aggregate_exists(&self, aggregate_type: &str, aggregate_id: &str) -> bool {
        (self.0)(aggregate_type, aggregate_id)
    }
}

impl WritePolicy for SchemaPolicy {
    fn check_event(&self, event: &EventCheck<'_>) -> Result<CheckedEvent, EngineError> {
        if self.restrict == RestrictMode::Off {
            return Ok(CheckedEvent::default());
        }
        let Some(schema) = self.set.aggregate(event.aggregate_type) else {
            if self.restrict == RestrictMode::Strict {
                return Err(EngineError::SchemaViolation(Box::new(SchemaRejection {
                    aggregate_type: event.aggregate_type.to_owned(),
                    aggregate_id: event.aggregate_id.to_owned(),
                    message: format!(
                        "aggregate type `{}` has no schema and the server runs with --restrict strict",
                        event.aggregate_type
                    ),
                    kind: ViolationClass::NoSchema,
                    field: None,
                    rule: "restrict.strict".into(),
                })));
            }
            return Ok(CheckedEvent::default());
        };
        let lookup = Lookup(event.aggregate_exists);
        match schema.validate_event(event.event_type, event.payload, event.prior_state, &lookup) {
            Ok(valid) => Ok(CheckedEvent {
                payload: Some(valid.payload),
                default_note: valid.default_note,
            }),
            Err(violation) => Err(EngineError::SchemaViolation(Box::new(SchemaRejection {
                aggregate_type: event.aggregate_type.to_owned(),
                aggregate_id: event.aggregate_id.to_owned(),
                message: violation.to_string(),
                kind: match violation.kind() {
                    ViolationKind::Check => ViolationClass::Check,
                    ViolationKind::ReferenceMissing => ViolationClass::ReferenceMissing,
                    ViolationKind::Locked => ViolationClass::Locked,
                },
                field: violation.field().map(str::to_owned),
                rule: violation.rule().to_owned(),
            }))),
        }
    }

    /// Only a schema's checks read the prior state, and `check_event` runs them only for a
    /// type that has a schema while restriction is on.
    fn reads_prior_state(&self, aggregate_type: &str) -> bool {
        self.restrict != RestrictMode::Off && self.set.aggregate(aggregate_type).is_some()
    }

    fn snapshot_setting(&self, aggregate_type: &str) -> SnapshotSetting {
        match self
            .set
            .aggregate(aggregate_type)
            .and_then(|s| s.snapshot_threshold)
        {
            Some(n) if n > 0 => SnapshotSetting::Every(n),
            _ => SnapshotSetting::EngineDefault,
        }
    }
}
