//! Property tests: `compile` and `validate_event` never panic, whatever the
//! input, and successful compiles round-trip through JSON.
//!
//! Case count follows `PROPTEST_CASES` (proptest's default is 256), e.g.
//! `PROPTEST_CASES=20000 cargo test --release proptests`.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

const FULL_EXAMPLE: &str = include_str!("testdata/full_example.dbx");
const FIXTURE: &str = include_str!("testdata/validation.dbx");

/// Fragments that exercise every lexer and parser path.
const FRAGMENTS: &[&str] = &[
    "aggregate",
    "field",
    "event",
    "type",
    "rules",
    "fields",
    "note",
    "locked",
    "hidden",
    "hidden_fields",
    "field_locks",
    "snapshot_threshold",
    "order",
    "person",
    "a_b",
    "X-y",
    "_",
    "Order",
    "{",
    "}",
    "[",
    "]",
    "=",
    ":",
    ",",
    "\"",
    "\"\"",
    "\"text\"",
    "\"decimal(12,2)\"",
    "\"numeric( 3 , 1 )\"",
    "\"decimal(99,100)\"",
    "\"reference\"",
    "\"object\"",
    "\"json\"",
    "\"format\"",
    "\"email\"",
    "\"reference\"",
    "\"required\"",
    "\"properties\"",
    "\"length\"",
    "\"range\"",
    "\"min\"",
    "\"max\"",
    "\"regex\"",
    "\"(\"",
    "\"[a-\"",
    "\"\\\\w{1000}{1000}\"",
    "\"tenant\"",
    "\"aggregate_type\"",
    "\"integrity\"",
    "\"cascade\"",
    "\"weak\"",
    "\"strong\"",
    "true",
    "false",
    "null",
    "0",
    "-1",
    "1e999",
    "-0.0",
    "12.50",
    "01",
    "1.",
    "99999999999999999999999",
    "#",
    "# comment\n",
    "//",
    "// c\n",
    "/",
    "\\",
    "\"\\u\"",
    "\"\\ud800\"",
    "\"\\ud83d\\ude00\"",
    "\"\\u00e9\"",
    "\"\\q\"",
    "é",
    "日本",
    "\u{0}",
    "\u{202e}",
    "\u{feff}",
    "🎉",
    "'",
    "\r\n",
    "\t",
    "{\"properties\": {",
    "{\"range\": {\"min\": ",
    "{\"reference\": {\"aggregate_type\": \"",
    "\"regex\": [\"(\"]",
    "{\"length\": {\"min\": 5, \"max\": 2}}",
    "[[[[[[[[[[[[[[[[",
    "]]]]]]]]",
    "{{{{{{{{",
    "}}}}}}}}",
    "event e {}",
    "field f { type = \"text\" }",
    "aggregate a {",
    "\"2026-01-01T00:00:00Z\"",
    "\"2026-02-30\"",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => "\\PC{0,8}",
        1 => any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&[" ", " ", "\n", "\n  ", "", "\t"][..])
}

/// Random DSL-ish token soup.
fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec((fragment(), separator()), 0..120).prop_map(|parts| {
        let mut s = String::new();
        for (frag, sep) in parts {
            s.push_str(&frag);
            s.push_str(sep);
        }
        s
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    Duplicate(usize, usize),
    Replace(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), fragment()).prop_map(|(a, f)| Mutation::Insert(a, f)),
        (any::<usize>(), 1usize..80).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
        (any::<usize>(), fragment()).prop_map(|(a, f)| Mutation::Replace(a, f)),
    ]
}

/// Applies mutations at character positions (so the result stays UTF-8).
fn mutate(source: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = source.chars().collect();
    for m in mutations {
        let len = chars.len().max(1);
        match m {
            Mutation::Delete(at, n) => {
                let start = at % len;
                let end = (start + n).min(chars.len());
                if start < end {
                    chars.drain(start..end);
                }
            }
            Mutation::Insert(at, frag) => {
                let pos = at % (chars.len() + 1);
                chars.splice(pos..pos, frag.chars());
            }
            Mutation::Duplicate(at, n) => {
                let start = at % len;
                let end = (start + n).min(chars.len());
                if start < end {
                    let copy: Vec<char> = chars[start..end].to_vec();
                    chars.splice(end..end, copy);
                }
            }
            Mutation::Replace(at, frag) => {
                let start = at % len;
                let end = (start + frag.chars().count()).min(chars.len());
                if start <= end {
                    chars.splice(start..end, frag.chars());
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// Compiles and checks the invariants that hold for any input.
fn check_compile(source: &str) -> Result<(), TestCaseError> {
    match compile(source, "fuzz.dbx") {
        Ok(set) => {
            let json = set.to_json();
            let again =
                compile(source, "fuzz.dbx").map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&json, &again.to_json());
            let loaded = CompiledSchemaSet::from_json(&json)
                .map_err(|e| TestCaseError::fail(format!("reload failed: {e}")))?;
            prop_assert_eq!(&loaded, &set);
            for w in &set.warnings {
                prop_assert!(w.line >= 1 && w.column >= 1);
                prop_assert_eq!(w.severity, Severity::Warning);
            }
        }
        Err(errs) => {
            prop_assert!(!errs.errors.is_empty());
            prop_assert!(errs.errors.len() <= limits::MAX_DIAGNOSTICS + 1);
            for e in &errs.errors {
                prop_assert!(e.line >= 1 && e.column >= 1);
                prop_assert_eq!(e.severity, Severity::Error);
                prop_assert!(!e.message.is_empty());
            }
            prop_assert!(!errs.to_string().is_empty());
        }
    }
    Ok(())
}

/// Arbitrary JSON values, biased towards shapes the fixture cares about.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(
            &[
                "person#p1",
                "#p1",
                "default#person#p2",
                "acme#x#y",
                "order#o1",
                "#",
                "##",
                "2026-06-01T12:00:00+02:00",
                "2026-02-29",
                "12.345",
                "-0",
                "1e5",
                "AQID",
                "AQIDBA",
                "ada@example.com",
                "https://example.com",
                "4111 1111 1111 1111",
                "NZ",
                "51.5,-0.1",
                "abc",
                "Abc_1",
                "",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(
                        &[
                            "country", "nickname", "since", "boss", "address", "zip", "geo", "lat",
                            "lon", "when", "n", "x",
                        ][..]
                    ),
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn payload() -> impl Strategy<Value = Map<String, Value>> {
    let keys = prop::sample::select(
        &[
            "int",
            "float",
            "dec",
            "dec0",
            "bool",
            "text",
            "ts",
            "day",
            "doc",
            "blob",
            "obj",
            "words",
            "email",
            "url",
            "card",
            "country",
            "iso",
            "geo",
            "geo_obj",
            "geo_any",
            "camel",
            "person_ref",
            "weak_ref",
            "any_ref",
            "profile",
            "loose",
            "unknown",
        ][..],
    );
    prop::collection::vec((keys, json_value()), 0..6)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Schema for the `required` oracle test: only `required` can fail.
const REQUIRED_SCHEMA: &str = r#"aggregate r {
  field email { type = "json" rules = {"required": true} }
  field address {
    type = "json"
    rules = {"properties": {"zip": {"type": "json", "required": true}, "city": "json"}}
  }
  event e {}
}"#;

fn required_payload() -> impl Strategy<Value = Map<String, Value>> {
    let small = prop_oneof![
        Just(Value::Null),
        Just(Value::from(1)),
        Just(Value::from("x")),
        Just(Value::Array(vec![])),
    ];
    let nested = prop::collection::vec(
        (
            prop::sample::select(&["zip", "city", "other"][..]),
            small.clone(),
        ),
        0..3,
    )
    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    let value = prop_oneof![small, nested];
    prop::collection::vec(
        (prop::sample::select(&["email", "address"][..]), value),
        0..3,
    )
    .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn present(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

struct Lookup;

impl ReferenceLookup for Lookup {
    fn aggregate_exists(&self, aggregate_type: &str, aggregate_id: &str) -> bool {
        aggregate_type.len() % 2 == aggregate_id.len() % 2
    }
}

proptest! {
    #[test]
    fn compile_never_panics_on_token_soup(source in token_soup()) {
        check_compile(&source)?;
    }

    #[test]
    fn compile_never_panics_on_mutated_full_example(
        mutations in prop::collection::vec(mutation(), 1..6)
    ) {
        let source = mutate(FULL_EXAMPLE, &mutations);
        check_compile(&source)?;
    }

    #[test]
    fn compile_never_panics_on_arbitrary_text(source in "\\PC{0,200}") {
        check_compile(&source)?;
    }

    #[test]
    fn validate_never_panics(
        payload in payload(),
        prior in prop::option::of(payload()),
        event in prop::sample::select(&["set", "person_created", "nope"][..]),
    ) {
        let set = compile(FIXTURE, "f").map_err(|e| TestCaseError::fail(e.to_string()))?;
        for agg in set.aggregates.values() {
            match agg.validate_event(event, &payload, prior.as_ref(), &Lookup) {
                Ok(v) => {
                    // Normalization never adds or drops payload keys.
                    let in_keys: Vec<&String> = payload.keys().collect();
                    let out_keys: Vec<&String> = v.payload.keys().collect();
                    prop_assert_eq!(in_keys, out_keys);
                }
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    if let Some(v) = e.value() {
                        prop_assert!(v.chars().count() <= limits::MAX_VIOLATION_VALUE_CHARS);
                    }
                }
            }
        }
    }

    #[test]
    fn required_matches_the_merge_patch_definition(
        payload in required_payload(),
        prior in prop::option::of(required_payload()),
    ) {
        // Oracle: merge the payload into the prior state with RFC 7396 and
        // look for every required value in the result.
        let mut post = prior.clone().unwrap_or_default();
        crate::merge_patch::merge_patch(&mut post, &payload);
        let email_ok = present(post.get("email"));
        let zip_ok = match post.get("address") {
            Some(Value::Object(a)) => present(a.get("zip")),
            _ => true,
        };
        let set = compile(REQUIRED_SCHEMA, "r").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let agg = set.aggregate("r").ok_or_else(|| TestCaseError::fail("missing"))?;
        let got = agg.validate_event("e", &payload, prior.as_ref(), &Lookup);
        match got {
            Ok(_) => prop_assert!(email_ok && zip_ok, "accepted but post-state is {:?}", post),
            Err(e) => {
                prop_assert_eq!(e.rule(), "required");
                prop_assert!(!(email_ok && zip_ok), "rejected ({}) but post-state is {:?}", e, post);
                let expected_field = if !zip_ok { "address.zip" } else { "email" };
                prop_assert_eq!(e.field(), Some(expected_field));
            }
        }
    }

    #[test]
    fn validation_is_idempotent(payload in payload()) {
        // Validating an already-normalized payload gives the same payload.
        let set = compile(FIXTURE, "f").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let agg = set.aggregate("kitchen_sink").ok_or_else(|| TestCaseError::fail("missing"))?;
        if let Ok(first) = agg.validate_event("set", &payload, None, &Lookup) {
            let second = agg.validate_event("set", &first.payload, None, &Lookup);
            prop_assert_eq!(second.map(|v| v.payload), Ok(first.payload));
        }
    }
}
