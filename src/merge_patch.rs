//! RFC 7396 JSON Merge Patch.
//!
//! The engine materializes aggregate state by merging each event payload
//! (an object) into the state (an object): a `null` member removes the key,
//! an object member merges recursively into an object (or replaces a
//! non-object), and any other member replaces the target value. Arrays are
//! replaced whole. Existing keys keep their position; new keys are appended.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use serde_json::{Map, Value};

/// Applies `patch` to `target` in place (RFC 7396, object patch on an
/// object target).
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.shift_remove(key);
            }
            Value::Object(sub_patch) => match target.get_mut(key) {
                Some(Value::Object(sub_target)) => merge_patch(sub_target, sub_patch),
                _ => {
                    // Missing or not an object: merge into an empty object,
                    // which drops the patch's nulls (RFC 7396 section 2).
                    let mut fresh = Map::new();
                    merge_patch(&mut fresh, sub_patch);
                    target.insert(key.clone(), Value::Object(fresh));
                }
            },
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// The general RFC 7396 `MergePatch(Target, Patch)` on any JSON values.
pub fn merge_patch_value(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target_map) = target {
                merge_patch(target_map, patch_map);
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7396 Appendix A, every row: (original, patch, result).
    fn appendix_a() -> Vec<(Value, Value, Value)> {
        vec![
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
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ]
    }

    #[test]
    fn rfc7396_appendix_a_examples() {
        for (original, patch, expected) in appendix_a() {
            let mut target = original.clone();
            merge_patch_value(&mut target, &patch);
            assert_eq!(target, expected, "{original} + {patch}");
            // Object-on-object rows through the map API too.
            if let (Value::Object(o), Value::Object(p)) = (&original, &patch) {
                let mut t = o.clone();
                merge_patch(&mut t, p);
                assert_eq!(Value::Object(t), expected, "{original} + {patch}");
            }
        }
    }

    #[test]
    fn rfc7396_section_3_example() {
        let mut target = json!({
            "title": "Goodbye!",
            "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"],
            "content": "This will be unchanged"
        });
        let patch = json!({
            "title": "Hello!",
            "phoneNumber": "+01-123-456-7890",
            "author": {"familyName": null},
            "tags": ["example"]
        });
        merge_patch_value(&mut target, &patch);
        assert_eq!(
            target,
            json!({
                "title": "Hello!",
                "author": {"givenName": "John"},
                "tags": ["example"],
                "content": "This will be unchanged",
                "phoneNumber": "+01-123-456-7890"
            })
        );
        // Existing keys keep their place; new ones are appended.
        let keys: Vec<&str> = target
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["title", "author", "tags", "content", "phoneNumber"]);
    }

    #[test]
    fn removing_keeps_order_and_nested_replace() {
        let mut t = json!({"a": 1, "b": 2, "c": 3})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let p = json!({"a": null, "c": {"x": null, "y": 1}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        merge_patch(&mut t, &p);
        assert_eq!(
            serde_json::to_string(&t).ok().as_deref(),
            Some(r#"{"b":2,"c":{"y":1}}"#)
        );
    }
}
