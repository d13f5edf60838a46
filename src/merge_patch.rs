//! RFC 7396 JSON Merge Patch: how an event's payload changes an aggregate's state.
//!
//! Owned here (not in the engine) because the schema validator needs the same function to
//! judge `required` against the state an event would produce.

use serde_json::{Map, Value};

/// Applies `patch` onto `target` per RFC 7396: `null` removes a key, objects merge
/// recursively, every other value replaces what was there.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, patch_value) in patch {
        match patch_value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(patch_object) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(slot_object) = slot {
                    merge_patch(slot_object, patch_object);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(target: Value, patch: Value) -> Value {
        let mut target = match target {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if let Value::Object(patch) = patch {
            merge_patch(&mut target, &patch);
        }
        Value::Object(target)
    }

    #[test]
    fn rfc7396_appendix_examples_with_object_patches() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                apply(target.clone(), patch.clone()),
                expected,
                "{target} + {patch}"
            );
        }
    }
}
