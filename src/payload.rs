//! An event's payload as a writer hands it over: a JSON object, and its compact text,
//! written once however many appends share the payload.
//!
//! The commit path needs the text of every payload (to size it, store it and merge it into
//! the state as text). A prepared INSERT with a literal payload lends one [`Payload`] to every
//! append it makes (`sql::LiteralObjects`), so the text is written on the first of them and
//! reused by the rest: writing it had been about a tenth of the committer's JSON work per
//! append.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// A payload object and, once asked for, its compact JSON text.
#[derive(Clone)]
pub struct Payload {
    object: Map<String, Value>,
    compact: OnceLock<String>,
}

impl Payload {
    pub fn new(object: Map<String, Value>) -> Self {
        Self {
            object,
            compact: OnceLock::new(),
        }
    }

    pub fn object(&self) -> &Map<String, Value> {
        &self.object
    }

    /// The object's compact JSON text, as `serde_json` writes it; written on the first call.
    pub fn compact_json(&self) -> &str {
        self.compact.get_or_init(|| to_compact_json(&self.object))
    }
}

/// Compact JSON text of an object, as `serde_json` writes it. Writing a `Map` cannot fail.
pub fn to_compact_json(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

/// Equal when the objects are: the text is only ever the object's.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.object == other.object
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.object.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_text_is_the_objects_compact_json_and_is_written_once() {
        let Value::Object(object) = json!({"b": 1, "a": [null, "é\"x"], "c": {"d": 2.5}}) else {
            panic!("an object");
        };
        let payload = Payload::new(object.clone());
        let expected = serde_json::to_string(&object).expect("serializes");
        let first = payload.compact_json();
        assert_eq!(first, expected);
        // The same text, not a second one.
        assert!(std::ptr::eq(first, payload.compact_json()));
        assert_eq!(payload, Payload::new(object));
    }
}
