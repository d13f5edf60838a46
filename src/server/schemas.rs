//! The applied schema: loading it at start-up, applying new source through the commit path
//! (so it governs the very next write, no restart), the `schemas` view, and the read-side
//! redaction of hidden aggregates and fields.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{json, Value};

use super::errors::{engine_error, error_with, Failure};
use crate::engine::keys::META_SCHEMA;
use crate::engine::{AggregateState, Engine, Event, StoredText};
use crate::schema::{compile, CompiledSchemaSet, RestrictMode, SchemaPolicy};

/// One row of the `schemas` view.
#[derive(Debug, Clone)]
pub struct SchemaRow {
    pub aggregate_type: String,
    pub schema_json: String,
    pub schema_version: u64,
    pub hidden: bool,
    pub applied_at_micros: i64,
}

#[derive(Debug, Default)]
struct Applied {
    set: Arc<CompiledSchemaSet>,
    /// Applies so far (0 = none).
    version: u64,
    applied_at_micros: i64,
    /// Per aggregate: the version at which its compiled form last changed.
    aggregate_versions: BTreeMap<String, u64>,
}

/// The schema currently enforced.
#[derive(Debug)]
pub struct SchemaService {
    applied: RwLock<Applied>,
    restrict: RestrictMode,
}

fn stored_json(applied: &Applied, source: &str) -> Value {
    json!({
        "version": applied.version,
        "applied_at_micros": applied.applied_at_micros,
        "aggregate_versions": applied.aggregate_versions,
        "compiled": applied.set.to_json(),
        "source": source,
    })
}

impl SchemaService {
    /// Loads the stored schema (if any) and installs it as the engine's write policy.
    pub fn load(engine: &Engine, restrict: RestrictMode) -> Result<Arc<Self>, String> {
        let mut applied = Applied::default();
        if let Some(bytes) = engine.get_meta(META_SCHEMA).map_err(|e| e.to_string())? {
            let stored: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("stored schema is unreadable: {e}"))?;
            applied.set = Arc::new(
                CompiledSchemaSet::from_json(&stored["compiled"])
                    .map_err(|e| format!("stored schema is unreadable: {e}"))?,
            );
            applied.version = stored["version"].as_u64().unwrap_or(0);
            applied.applied_at_micros = stored["applied_at_micros"].as_i64().unwrap_or(0);
            applied.aggregate_versions =
                serde_json::from_value(stored["aggregate_versions"].clone()).unwrap_or_default();
        }
        engine.set_policy(Arc::new(SchemaPolicy::new(applied.set.clone(), restrict)));
        Ok(Arc::new(Self {
            applied: RwLock::new(applied),
            restrict,
        }))
    }

    /// The number of applies so far.
    pub fn version(&self) -> u64 {
        self.applied.read().version
    }

    /// Compiles `source` and, if it compiles, stores it and makes it the write policy
    /// before the next write is staged. A source that does not compile changes nothing.
    pub async fn apply(
        self: &Arc<Self>,
        engine: &Engine,
        source: &str,
    ) -> Result<Vec<(String, u64)>, Failure> {
        let set = compile(source, "schema.dbx").map_err(|errors| {
            error_with(
                "42P17",
                format!(
                    "the schema does not compile ({} error(s)); the previous schema stays in force",
                    errors.errors.len()
                ),
                Some(errors.to_string()),
                Some("run `dbx schema validate` locally to see the same diagnostics".into()),
            )
        })?;
        let mut next = {
            let current = self.applied.read();
            let mut versions = BTreeMap::new();
            let version = current.version + 1;
            for (name, schema) in &set.aggregates {
                let unchanged = current
                    .set
                    .aggregate(name)
                    .is_some_and(|old| old.to_json() == schema.to_json());
                let v = if unchanged {
                    current
                        .aggregate_versions
                        .get(name)
                        .copied()
                        .unwrap_or(version)
                } else {
                    version
                };
                versions.insert(name.clone(), v);
            }
            Applied {
                set: Arc::new(set),
                version,
                applied_at_micros: crate::engine::snowflake::unix_micros_now(),
                aggregate_versions: versions,
            }
        };
        let stored = serde_json::to_vec(&stored_json(&next, source)).unwrap_or_default();
        let rows: Vec<(String, u64)> = next
            .aggregate_versions
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let policy = Arc::new(SchemaPolicy::new(next.set.clone(), self.restrict));
        let service = self.clone();
        let engine_for_swap = engine.clone();
        let slot = std::mem::take(&mut next);
        // Runs on the committer right after the schema is durably stored and before it
        // stages anything else: the next write is judged by the new schema.
        let install: Box<dyn FnOnce() + Send> = Box::new(move || {
            engine_for_swap.set_policy(policy);
            *service.applied.write() = slot;
        });
        engine
            .put_meta(vec![(META_SCHEMA.to_vec(), stored)], install)
            .await
            .map_err(|e| engine_error(&e))?;
        Ok(rows)
    }

    /// The `schemas` view.
    pub fn rows(&self) -> Vec<SchemaRow> {
        let applied = self.applied.read();
        applied
            .set
            .aggregates
            .iter()
            .map(|(name, schema)| SchemaRow {
                aggregate_type: name.clone(),
                schema_json: schema.to_json().to_string(),
                schema_version: applied
                    .aggregate_versions
                    .get(name)
                    .copied()
                    .unwrap_or(applied.version),
                hidden: schema.hidden,
                applied_at_micros: applied.applied_at_micros,
            })
            .collect()
    }

    /// Whether an aggregate type is marked hidden (left out of unfiltered listings).
    pub fn is_hidden(&self, aggregate_type: &str) -> bool {
        self.applied
            .read()
            .set
            .aggregate(aggregate_type)
            .is_some_and(|s| s.hidden)
    }

    /// Removes the type's hidden fields from a JSON object text, in place. Most types hide
    /// nothing, so that case costs one lock and one lookup, with no copy.
    fn strip_hidden(&self, aggregate_type: &str, json_text: &mut String) {
        let applied = self.applied.read();
        let Some(schema) = applied.set.aggregate(aggregate_type) else {
            return;
        };
        if !schema.hidden_fields.is_empty() {
            *json_text = strip(json_text, &schema.hidden_fields);
        }
    }

    /// The schema as applied now, for redacting many events without taking the lock for
    /// each (a scan redacts with the schema it started under).
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.applied.read().set.clone())
    }

    /// The state without hidden fields.
    pub fn redact_state(&self, mut state: AggregateState) -> AggregateState {
        self.strip_hidden(&state.aggregate_type, &mut state.state_json);
        state
    }

    /// The event without hidden payload fields.
    pub fn redact_event(&self, mut event: Event) -> Event {
        self.strip_hidden(&event.aggregate_type, &mut event.payload_json);
        event
    }
}

/// Redacts payloads with one applied schema (see [`SchemaService::redactor`]).
pub struct Redactor {
    set: Arc<CompiledSchemaSet>,
    /// False when no schema hides a field: each payload is then passed on without looking
    /// up its type (or reading its name as text).
    hides_any_field: bool,
}

impl Redactor {
    fn new(set: Arc<CompiledSchemaSet>) -> Self {
        Redactor {
            hides_any_field: set.hides_any_field(),
            set,
        }
    }

    /// A payload of the type without its hidden fields; borrowed (and not read) when the
    /// type hides nothing.
    pub fn payload<'a>(
        &self,
        aggregate_type: StoredText<'_>,
        payload_json: StoredText<'a>,
    ) -> Result<Cow<'a, [u8]>, Failure> {
        if !self.hides_any_field {
            return Ok(Cow::Borrowed(payload_json.as_bytes()));
        }
        let aggregate_type = aggregate_type
            .to_str("event aggregate type")
            .map_err(|e| engine_error(&e))?;
        match self.set.aggregate(aggregate_type) {
            Some(schema) if !schema.hidden_fields.is_empty() => {
                let text = payload_json
                    .to_str("event payload")
                    .map_err(|e| engine_error(&e))?;
                Ok(Cow::Owned(strip(text, &schema.hidden_fields).into_bytes()))
            }
            _ => Ok(Cow::Borrowed(payload_json.as_bytes())),
        }
    }
}

fn strip(json_text: &str, hidden: &[String]) -> String {
    match serde_json::from_str::<Value>(json_text) {
        Ok(Value::Object(mut map)) => {
            for field in hidden {
                map.shift_remove(field);
            }
            Value::Object(map).to_string()
        }
        _ => json_text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(source: &str) -> Redactor {
        Redactor::new(Arc::new(
            compile(source, "schema.dbx").expect("schema compiles"),
        ))
    }

    const PERSON: &str = r#"{"name":"Ada","ssn":"123-45"}"#;

    #[test]
    fn payloads_are_redacted_only_for_types_that_hide_fields() {
        let hiding = redactor(
            r#"
aggregate person {
    hidden_fields = ["ssn"]
    field name { type = "text" }
    field ssn { type = "text" }
    event person_created { fields = ["name", "ssn"] }
}
aggregate order {
    field ssn { type = "text" }
    event order_placed { fields = ["ssn"] }
}
"#,
        );
        let person = hiding
            .payload(StoredText::from("person"), StoredText::from(PERSON))
            .expect("redacts");
        assert_eq!(&*person, br#"{"name":"Ada"}"#);
        let order = hiding
            .payload(StoredText::from("order"), StoredText::from(PERSON))
            .expect("passes");
        assert!(matches!(order, Cow::Borrowed(b) if b == PERSON.as_bytes()));
        // With some type hiding fields, each event's type is read as text to look it up.
        assert!(hiding
            .payload(StoredText::new(b"\xFFerson"), StoredText::from(PERSON))
            .is_err());

        // With none, payloads pass as stored and their types are not read at all.
        let plain = redactor(
            r#"
aggregate person {
    field name { type = "text" }
    event person_created { fields = ["name"] }
}
"#,
        );
        let passed = plain
            .payload(StoredText::new(b"\xFFerson"), StoredText::from(PERSON))
            .expect("passes");
        assert!(matches!(passed, Cow::Borrowed(b) if b == PERSON.as_bytes()));
    }
}
