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

use std::collections::HashMap;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Above this many members, [`merge_patch_text`] finds a patch's members through a hash
/// map; at or below it a linear search over the patch is cheaper. An event's payload
/// usually names a handful of fields.
const LINEAR_PATCH_MEMBERS: usize = 8;

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

/// Applies `patch` to `target` as text: both are compact JSON object texts as `serde_json`
/// writes them (a stored state, a stored payload). The result is the text that parsing
/// both, [`merge_patch`] and writing the result compact would give, without building either
/// object: members the patch leaves alone are copied as they are, the patch's own members
/// are copied from it.
///
/// `None` when the texts are not objects, when a member name holds an escape, or when a
/// patch member is itself an object (a recursive merge, which also drops that object's
/// nulls): the caller parses and uses [`merge_patch`] then.
pub fn merge_patch_text(target: &str, patch: &str) -> Option<String> {
    let target = serde_json::from_str::<Members<'_>>(target).ok()?.0;
    let patch = serde_json::from_str::<Members<'_>>(patch).ok()?.0;
    if patch.iter().any(|(_, value)| value.starts_with('{')) {
        return None;
    }
    let index: Option<HashMap<&str, usize>> = (patch.len() > LINEAR_PATCH_MEMBERS).then(|| {
        patch
            .iter()
            .enumerate()
            .map(|(at, (name, _))| (*name, at))
            .collect()
    });
    let find = |name: &str| match &index {
        Some(index) => index.get(name).copied(),
        None => patch.iter().position(|(patched, _)| *patched == name),
    };

    let mut taken = vec![false; patch.len()];
    let capacity = target
        .iter()
        .chain(&patch)
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum::<usize>()
        + 2;
    let mut out = String::with_capacity(capacity);
    out.push('{');
    let mut member = |name: &str, value: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        out.push_str(value);
    };
    for (name, value) in &target {
        match find(name) {
            Some(at) => {
                if let Some(slot) = taken.get_mut(at) {
                    *slot = true;
                }
                match patch.get(at) {
                    Some((_, patched)) if *patched != "null" => member(name, patched),
                    _ => {}
                }
            }
            None => member(name, value),
        }
    }
    for ((name, value), taken) in patch.iter().zip(&taken) {
        if !taken && *value != "null" {
            member(name, value);
        }
    }
    out.push('}');
    Some(out)
}

/// The members of a JSON object text in order, names and values borrowed from it. Fails
/// on anything but an object, and on a member name with an escape (which cannot be
/// borrowed).
struct Members<'a>(Vec<(&'a str, &'a str)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectMembers;
        impl<'de> Visitor<'de> for ObjectMembers {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some((name, value)) = map.next_entry::<&'de str, &'de RawValue>()? {
                    members.push((name, value.get()));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(ObjectMembers)
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

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// What the text merge must equal: parse, merge, write compact.
    fn merged_by_parsing(target: &Map<String, Value>, patch: &Map<String, Value>) -> String {
        let mut merged = target.clone();
        merge_patch(&mut merged, patch);
        serde_json::to_string(&merged).expect("a map serializes")
    }

    #[test]
    fn text_merge_matches_the_parsed_merge_on_flat_patches() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"})),
            (json!({"a":"b"}), json!({"a":null})),
            (json!({"a":"b","b":"c"}), json!({"a":null})),
            (json!({"a":["b"]}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1})),
            (json!({}), json!({"a":1.5,"b":null,"c":-3})),
            (
                json!({"a":{"b":1},"c":2}),
                json!({"c":null,"d":[null,{"x":null}]}),
            ),
            (json!({"x":"é\n\"q\""}), json!({"y":"\u{1}","x":true})),
        ];
        for (target, patch) in cases {
            let (target, patch) = (object(target), object(patch));
            let text = merge_patch_text(
                &serde_json::to_string(&target).expect("serializes"),
                &serde_json::to_string(&patch).expect("serializes"),
            );
            assert_eq!(
                text.as_deref(),
                Some(merged_by_parsing(&target, &patch).as_str()),
                "{target:?} + {patch:?}"
            );
        }
    }

    #[test]
    fn text_merge_declines_what_it_cannot_do_as_text() {
        // A patch member that is an object merges recursively and drops its nulls.
        assert_eq!(
            merge_patch_text(r#"{"a":{"b":1}}"#, r#"{"a":{"b":null}}"#),
            None
        );
        assert_eq!(merge_patch_text(r#"{}"#, r#"{"a":{"b":null}}"#), None);
        // An escaped member name cannot be compared as written.
        assert_eq!(merge_patch_text(r#"{"a\u0062":1}"#, r#"{"ab":2}"#), None);
        assert_eq!(merge_patch_text(r#"{"a":1}"#, r#"{"\"":2}"#), None);
        // Not objects, or not JSON.
        assert_eq!(merge_patch_text("[1]", r#"{"a":1}"#), None);
        assert_eq!(merge_patch_text(r#"{"a":1}"#, "null"), None);
        assert_eq!(merge_patch_text(r#"{"a":"#, r#"{"a":1}"#), None);
    }

    #[test]
    fn text_merge_finds_members_of_a_large_patch() {
        let target = object(json!({"k3": 0, "k20": 0, "other": 1}));
        let mut patch = Map::new();
        for n in 0..(LINEAR_PATCH_MEMBERS * 3) {
            let value = if n % 5 == 0 { Value::Null } else { json!(n) };
            patch.insert(format!("k{n}"), value);
        }
        let text = merge_patch_text(
            &serde_json::to_string(&target).expect("serializes"),
            &serde_json::to_string(&patch).expect("serializes"),
        );
        assert_eq!(text, Some(merged_by_parsing(&target, &patch)));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            // Few names, so that patches and targets share some; a quote or a control
            // character now and then, which serde_json writes escaped.
            prop_oneof![
                8 => "[a-d]{1,2}",
                1 => "[a-b]\"",
                1 => "[a-b]\u{1}",
                1 => "é[a-b]",
            ]
        }

        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                "[a-z\"\\\\é😀\u{1}-\u{1f}]{0,6}".prop_map(Value::String),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            scalar().prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((name(), inner), 0..4)
                        .prop_map(|members| Value::Object(members.into_iter().collect())),
                ]
            })
        }

        fn members(values: BoxedStrategy<Value>) -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::vec((name(), values), 0..6)
                .prop_map(|members| members.into_iter().collect())
        }

        proptest! {
            /// The text merge gives exactly the parsed merge's text, or declines.
            #[test]
            fn text_merge_is_the_parsed_merge_or_declines(
                target in members(value().boxed()),
                patch in members(value().boxed()),
            ) {
                let target_text = serde_json::to_string(&target).expect("serializes");
                let patch_text = serde_json::to_string(&patch).expect("serializes");
                let expected = merged_by_parsing(&target, &patch);
                match merge_patch_text(&target_text, &patch_text) {
                    Some(text) => prop_assert_eq!(text, expected),
                    None => {
                        let escaped_name = target.keys().chain(patch.keys()).any(|name| {
                            serde_json::to_string(name).is_ok_and(|text| text.contains('\\'))
                        });
                        let nested = patch.values().any(Value::is_object);
                        prop_assert!(
                            nested || escaped_name,
                            "declined {} + {}", target_text, patch_text
                        );
                    }
                }
            }

            /// Flat patches over names without escapes always merge as text.
            #[test]
            fn flat_patches_with_plain_names_merge_as_text(
                target in prop::collection::vec(("[a-d]{1,2}", value()), 0..6),
                patch in prop::collection::vec(("[a-d]{1,2}", scalar()), 0..6),
            ) {
                let target: Map<String, Value> = target.into_iter().collect();
                let patch: Map<String, Value> = patch.into_iter().collect();
                let text = merge_patch_text(
                    &serde_json::to_string(&target).expect("serializes"),
                    &serde_json::to_string(&patch).expect("serializes"),
                );
                prop_assert_eq!(text, Some(merged_by_parsing(&target, &patch)));
            }
        }
    }
}
