//! Write-path validation tests: a table per type, rule and format
//! (accepted values with their normalized form, rejected values with the
//! violated rule), then event-level semantics.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::*;

const FIXTURE: &str = include_str!("testdata/validation.dbx");
const FULL_EXAMPLE: &str = include_str!("testdata/full_example.dbx");

/// A fake store of existing aggregates for strong references.
struct Existing(BTreeSet<(String, String)>);

impl Existing {
    fn new(items: &[(&str, &str)]) -> Self {
        Existing(
            items
                .iter()
                .map(|(t, i)| (t.to_string(), i.to_string()))
                .collect(),
        )
    }
}

impl ReferenceLookup for Existing {
    fn aggregate_exists(&self, aggregate_type: &str, aggregate_id: &str) -> bool {
        self.0
            .contains(&(aggregate_type.to_string(), aggregate_id.to_string()))
    }
}

fn refs() -> Existing {
    Existing::new(&[("person", "p1"), ("person", "p2"), ("order", "o1")])
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn schema(source: &str) -> CompiledSchemaSet {
    match compile(source, "test.dbx") {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

enum Expect {
    /// Accepted; the normalized value.
    Ok(Value),
    /// Rejected with this rule on the field itself.
    Rule(&'static str),
    /// Rejected with this rule on a nested path.
    At(&'static str, &'static str),
}
use Expect::{At, Ok as Accept, Rule};

/// Runs one field value through `set` on the fixture's kitchen_sink.
fn check(set: &CompiledSchemaSet, field: &str, input: Value, expect: Expect) {
    let agg = set.aggregate("kitchen_sink").unwrap();
    let mut payload = Map::new();
    payload.insert(field.to_string(), input.clone());
    let prior = Map::new();
    let got = agg.validate_event("set", &payload, Some(&prior), &refs());
    match (got, expect) {
        (Ok(v), Accept(expected)) => {
            assert_eq!(v.payload.get(field), Some(&expected), "{field} <- {input}");
            assert_eq!(v.payload.len(), 1);
        }
        (Err(e), Rule(rule)) => {
            assert_eq!(
                (e.field(), e.rule()),
                (Some(field), rule),
                "{field} <- {input}: {e}"
            );
        }
        (Err(e), At(path, rule)) => {
            assert_eq!(
                (e.field(), e.rule()),
                (Some(path), rule),
                "{field} <- {input}: {e}"
            );
        }
        (Ok(v), _) => panic!(
            "{field} <- {input}: expected a violation, got {:?}",
            v.payload
        ),
        (Err(e), Accept(_)) => panic!("{field} <- {input}: expected acceptance, got {e}"),
    }
}

fn same(v: Value) -> Expect {
    Accept(v)
}

#[test]
fn types_rules_and_normalization_table() {
    let set = schema(FIXTURE);
    let cases: Vec<(&str, Value, Expect)> = vec![
        // integer: JSON integers within i64 only; strings, floats rejected.
        ("int", json!(5), same(json!(5))),
        ("int", json!(-5), same(json!(-5))),
        ("int", json!(100), same(json!(100))),
        ("int", json!(101), Rule("range.max")),
        ("int", json!(-6), Rule("range.min")),
        ("int", json!(1.5), Rule("type")),
        ("int", json!(1.0), Rule("type")),
        ("int", json!("5"), Rule("type")),
        ("int", json!(true), Rule("type")),
        ("int", json!(9223372036854775808u64), Rule("type")),
        ("int", Value::Null, same(Value::Null)),
        ("int_plain", json!(i64::MAX), same(json!(i64::MAX))),
        ("int_plain", json!(i64::MIN), same(json!(i64::MIN))),
        // float: any JSON number.
        ("float", json!(0.5), same(json!(0.5))),
        ("float", json!(10), same(json!(10))),
        ("float", json!(10.01), Rule("range.max")),
        ("float", json!(0.4), Rule("range.min")),
        ("float", json!("1.0"), Rule("type")),
        // decimal(6,2): number or string -> string with exactly 2 decimals.
        ("dec", json!("12.5"), same(json!("12.50"))),
        ("dec", json!(12.5), same(json!("12.50"))),
        ("dec", json!(0), same(json!("0.00"))),
        ("dec", json!(-0.5), same(json!("-0.50"))),
        ("dec", json!("1.230"), same(json!("1.23"))),
        ("dec", json!("-10.00"), same(json!("-10.00"))),
        ("dec", json!(1000), same(json!("1000.00"))),
        ("dec", json!("-10.01"), Rule("range.min")),
        ("dec", json!("1000.01"), Rule("range.max")),
        ("dec", json!("1.234"), Rule("type")),
        ("dec", json!("10000"), Rule("type")),
        ("dec", json!("1e3"), Rule("type")),
        ("dec", json!("abc"), Rule("type")),
        ("dec", json!(true), Rule("type")),
        ("dec0", json!("123"), same(json!("123"))),
        ("dec0", json!(5.0), same(json!("5"))),
        ("dec0", json!("1000"), Rule("type")),
        ("dec0", json!("5.5"), Rule("type")),
        // boolean
        ("bool", json!(true), same(json!(true))),
        ("bool", json!("true"), Rule("type")),
        ("bool", json!(1), Rule("type")),
        // text + length (characters, not bytes)
        ("text", json!("ab"), same(json!("ab"))),
        ("text", json!("abcde"), same(json!("abcde"))),
        ("text", json!("日本語"), same(json!("日本語"))),
        ("text", json!("a"), Rule("length.min")),
        ("text", json!("abcdef"), Rule("length.max")),
        ("text", json!("🎉🎉🎉🎉🎉🎉"), Rule("length.max")),
        ("text", json!(5), Rule("type")),
        // timestamp: RFC 3339 -> UTC `Z`
        (
            "ts",
            json!("2026-06-01T12:00:00+02:00"),
            same(json!("2026-06-01T10:00:00Z")),
        ),
        (
            "ts",
            json!("2026-01-01T00:00:00Z"),
            same(json!("2026-01-01T00:00:00Z")),
        ),
        (
            "ts",
            json!("2026-12-31T23:59:59.999Z"),
            same(json!("2026-12-31T23:59:59.999Z")),
        ),
        (
            "ts",
            json!("2026-03-01T00:00:00.5+00:00"),
            same(json!("2026-03-01T00:00:00.500Z")),
        ),
        ("ts", json!("2025-12-31T23:59:59Z"), Rule("range.min")),
        ("ts", json!("2026-01-01T01:00:00+02:00"), Rule("range.min")),
        ("ts", json!("2027-01-01T00:00:00Z"), Rule("range.max")),
        ("ts", json!("2026-06-01"), Rule("type")),
        ("ts", json!("2026-06-01T12:00:00"), Rule("type")),
        ("ts", json!(1_700_000_000), Rule("type")),
        // date: strict YYYY-MM-DD, real calendar dates
        ("day", json!("2026-02-28"), same(json!("2026-02-28"))),
        ("day", json!("2026-02-29"), Rule("type")),
        ("day", json!("2026-1-05"), Rule("type")),
        ("day", json!("2025-12-31"), Rule("range.min")),
        ("day", json!("2027-01-01"), Rule("range.max")),
        // json: anything
        ("doc", json!({"a": [1, 2]}), same(json!({"a": [1, 2]}))),
        ("doc", json!("x"), same(json!("x"))),
        ("doc", json!(5), same(json!(5))),
        // binary: base64, canonical padding, length in decoded bytes
        ("blob", json!("AQID"), same(json!("AQID"))),
        ("blob", json!("AQIDBA=="), same(json!("AQIDBA=="))),
        ("blob", json!("AQIDBA"), same(json!("AQIDBA=="))),
        ("blob", json!("AQIDBAU="), Rule("length.max")),
        ("blob", json!(""), Rule("length.min")),
        ("blob", json!("not base64!"), Rule("type")),
        ("blob", json!(5), Rule("type")),
        // object
        ("obj", json!({"k": 1}), same(json!({"k": 1}))),
        ("obj", json!([1]), Rule("type")),
        ("obj", json!("x"), Rule("type")),
        // contains / does_not_contain / regex, in that order
        ("words", json!("abc"), same(json!("abc"))),
        ("words", json!("bc"), Rule("contains")),
        ("words", json!("abxc"), Rule("does_not_contain")),
        ("words", json!("abAc"), Rule("regex")),
        ("words", json!("cab"), Rule("regex")),
        // formats
        (
            "email",
            json!("ada@example.com"),
            same(json!("ada@example.com")),
        ),
        ("email", json!("ada.example.com"), Rule("format")),
        (
            "url",
            json!("https://example.com/x?y=1"),
            same(json!("https://example.com/x?y=1")),
        ),
        ("url", json!("example.com"), Rule("format")),
        (
            "card",
            json!("4111 1111 1111 1111"),
            same(json!("4111 1111 1111 1111")),
        ),
        ("card", json!("4111 1111 1111 1112"), Rule("format")),
        ("country", json!("NZ"), same(json!("NZ"))),
        ("country", json!("nz"), Rule("format")),
        ("country", json!("XX"), Rule("format")),
        ("iso", json!("2026-01-01"), same(json!("2026-01-01"))),
        (
            "iso",
            json!("2026-01-01T00:00:00+01:00"),
            same(json!("2026-01-01T00:00:00+01:00")),
        ),
        ("iso", json!("tomorrow"), Rule("format")),
        ("geo", json!("51.5,-0.12"), same(json!("51.5,-0.12"))),
        ("geo", json!("100,0"), Rule("format")),
        (
            "geo_obj",
            json!({"lat": 1, "lon": 2}),
            same(json!({"lat": 1, "lon": 2})),
        ),
        ("geo_obj", json!({"lat": 1}), Rule("format")),
        ("geo_obj", json!([1, 2]), Rule("type")),
        ("geo_any", json!([1, 2]), same(json!([1, 2]))),
        ("geo_any", json!("1,2"), same(json!("1,2"))),
        (
            "geo_any",
            json!({"latitude": 1, "longitude": 2}),
            same(json!({"latitude": 1, "longitude": 2})),
        ),
        ("geo_any", json!(5), Rule("format")),
        ("camel", json!("camelCase"), same(json!("camelCase"))),
        ("camel", json!("CamelCase"), Rule("format")),
        ("snake", json!("snake_case"), same(json!("snake_case"))),
        ("snake", json!("snake-case"), Rule("format")),
        ("kebab", json!("kebab-case"), same(json!("kebab-case"))),
        ("kebab", json!("kebab_case"), Rule("format")),
        ("pascal", json!("PascalCase"), same(json!("PascalCase"))),
        ("pascal", json!("pascalCase"), Rule("format")),
        ("upper", json!("UPPER_SNAKE"), same(json!("UPPER_SNAKE"))),
        ("upper", json!("Upper_Snake"), Rule("format")),
        (
            "ts_iso",
            json!("2026-01-01T00:00:00+01:00"),
            same(json!("2025-12-31T23:00:00Z")),
        ),
        // references: canonicalized to aggregate#id
        ("person_ref", json!("person#p1"), same(json!("person#p1"))),
        ("person_ref", json!("#p1"), same(json!("person#p1"))),
        (
            "person_ref",
            json!("default#person#p2"),
            same(json!("person#p2")),
        ),
        (
            "person_ref",
            json!("order#o1"),
            Rule("reference.aggregate_type"),
        ),
        (
            "person_ref",
            json!("person#ghost"),
            Rule("reference.integrity"),
        ),
        (
            "person_ref",
            json!("acme#person#p1"),
            Rule("reference.domain"),
        ),
        ("person_ref", json!("p1"), Rule("format")),
        ("person_ref", json!("person#a b"), Rule("format")),
        ("person_ref", json!(5), Rule("type")),
        (
            "weak_ref",
            json!("order#nowhere"),
            same(json!("order#nowhere")),
        ),
        (
            "weak_ref",
            json!("default#order#o9"),
            same(json!("order#o9")),
        ),
        ("weak_ref", json!("#x"), Rule("reference.aggregate_type")),
        ("any_ref", json!("order#o1"), same(json!("order#o1"))),
        ("any_ref", json!("order#o2"), Rule("reference.integrity")),
        ("any_ref", json!("#o1"), Rule("reference.aggregate_type")),
        // nested properties on an object: validated and normalized, with paths
        (
            "profile",
            json!({"country": "NZ", "since": "2026-01-01T10:00:00+10:00", "boss": "#p1",
                   "address": {"zip": "12345", "geo": "1,2"}, "extra": [1]}),
            same(
                json!({"country": "NZ", "since": "2026-01-01T00:00:00Z", "boss": "person#p1",
                        "address": {"zip": "12345", "geo": "1,2"}, "extra": [1]}),
            ),
        ),
        (
            "profile",
            json!({"address": null}),
            same(json!({"address": null})),
        ),
        (
            "profile",
            json!({"country": "nz"}),
            At("profile.country", "format"),
        ),
        (
            "profile",
            json!({"nickname": "waytoolong"}),
            At("profile.nickname", "length.max"),
        ),
        (
            "profile",
            json!({"since": "noon"}),
            At("profile.since", "type"),
        ),
        (
            "profile",
            json!({"boss": "#ghost"}),
            At("profile.boss", "reference.integrity"),
        ),
        (
            "profile",
            json!({"boss": "order#o1"}),
            At("profile.boss", "reference.aggregate_type"),
        ),
        (
            "profile",
            json!({"address": {}}),
            At("profile.address.zip", "required"),
        ),
        (
            "profile",
            json!({"address": {"zip": null}}),
            At("profile.address.zip", "required"),
        ),
        (
            "profile",
            json!({"address": {"zip": "1234"}}),
            At("profile.address.zip", "regex"),
        ),
        (
            "profile",
            json!({"address": {"zip": "12345", "geo": [91, 0]}}),
            At("profile.address.geo", "format"),
        ),
        ("profile", json!("x"), Rule("type")),
        // nested properties on json: validated, stored as given
        (
            "loose",
            json!({"when": "2026-01-01T10:00:00+10:00", "n": 2}),
            same(json!({"when": "2026-01-01T10:00:00+10:00", "n": 2})),
        ),
        ("loose", json!({"n": 4}), At("loose.n", "range.max")),
        ("loose", json!({"when": "bad"}), At("loose.when", "type")),
        (
            "loose",
            json!("not an object"),
            same(json!("not an object")),
        ),
    ];
    let n = cases.len();
    for (field, input, expect) in cases {
        check(&set, field, input, expect);
    }
    assert!(n >= 140, "{n}");
}

#[test]
fn rule_order_is_deterministic() {
    // One value failing length, contains, regex and format at once: length wins.
    let set = schema(
        r#"aggregate a {
  field s {
    type = "text"
    rules = {"format": "email", "regex": ["^z"], "contains": ["@"], "length": {"min": 10}}
  }
  field t { type = "text" rules = {"required": true} }
  event e {}
}"#,
    );
    let agg = set.aggregate("a").unwrap();
    let payload = obj(json!({"s": "abc", "t": 5}));
    // Fields are checked in name order, each through its whole rule chain.
    let err = agg
        .validate_event("e", &payload, None, &refs())
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("s"), "length.min"));
    let payload = obj(json!({"s": "abcdefghijk"}));
    let err = agg
        .validate_event("e", &payload, None, &refs())
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("s"), "contains"));
    let payload = obj(json!({"s": "abcdefghij@k"}));
    let err = agg
        .validate_event("e", &payload, None, &refs())
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("s"), "regex"));
    let payload = obj(json!({"s": "zbcdefghij@k"}));
    let err = agg
        .validate_event("e", &payload, None, &refs())
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("s"), "format"));
    // Type comes before required.
    let payload = obj(json!({"s": "zed@example.com", "t": 5}));
    let err = agg
        .validate_event("e", &payload, None, &refs())
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("t"), "type"));
    let payload = obj(json!({"s": "zed@example.com"}));
    let err = agg
        .validate_event("e", &payload, None, &refs())
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("t"), "required"));
}

#[test]
fn locked_aggregate_rejects_every_write() {
    let set = schema(
        "aggregate vault {\n  locked = true\n  field x { type = \"text\" }\n  event opened {}\n}",
    );
    let agg = set.aggregate("vault").unwrap();
    for prior in [None, Some(Map::new())] {
        let err = agg
            .validate_event("opened", &Map::new(), prior.as_ref(), &refs())
            .unwrap_err();
        assert_eq!(
            err,
            SchemaViolation::AggregateLocked {
                aggregate: "vault".into()
            }
        );
        assert_eq!(err.kind(), ViolationKind::Locked);
        assert_eq!(
            (err.field(), err.rule(), err.value()),
            (None, "locked", None)
        );
        assert_eq!(
            err.to_string(),
            "aggregate `vault` is locked: writes are rejected"
        );
    }
    // Even an undeclared event: the lock is checked first.
    let err = agg
        .validate_event("nope", &Map::new(), None, &refs())
        .unwrap_err();
    assert_eq!(err.rule(), "locked");
}

#[test]
fn unknown_event_lists_declared_events() {
    let set = schema(include_str!("testdata/quick_start.dbx"));
    let order = set.aggregate("order").unwrap();
    let err = order
        .validate_event("order_shipped", &obj(json!({"status": "x"})), None, &refs())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "event `order_shipped` is not declared for aggregate `order`; declared events: order_created, order_paid"
    );
    assert_eq!(
        (err.kind(), err.field(), err.rule()),
        (ViolationKind::Check, None, "event")
    );
}

#[test]
fn event_field_allowlist() {
    let set = schema(FULL_EXAMPLE);
    let person = set.aggregate("person").unwrap();
    let r = refs();
    // Listed fields must all be present and non-null.
    let err = person
        .validate_event(
            "person_created",
            &obj(json!({"email": "a@example.com"})),
            None,
            &r,
        )
        .unwrap_err();
    assert_eq!(
        err,
        SchemaViolation::MissingEventField {
            event: "person_created".into(),
            field: "manager".into(),
            value: "(absent)".into()
        }
    );
    let err = person
        .validate_event(
            "person_created",
            &obj(json!({"email": "a@example.com", "manager": null})),
            None,
            &r,
        )
        .unwrap_err();
    assert_eq!(
        (err.field(), err.rule(), err.value()),
        (Some("manager"), "event.fields", Some("null"))
    );
    // Keys outside the list are refused, even declared ones.
    let err = person
        .validate_event(
            "person_created",
            &obj(json!({"email": "a@example.com", "manager": "person#p1", "profile": {}})),
            None,
            &r,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `profile` is not allowed in event `person_created`; allowed fields: email, manager (value: {})"
    );
    // An empty list permits any declared field but no undeclared one.
    let prior = obj(json!({"email": "a@example.com", "manager": "person#p1"}));
    let ok = person
        .validate_event(
            "person_updated",
            &obj(json!({"profile": {"country": "FR"}})),
            Some(&prior),
            &r,
        )
        .unwrap();
    assert_eq!(ok.payload, obj(json!({"profile": {"country": "FR"}})));
    let err = person
        .validate_event(
            "person_updated",
            &obj(json!({"nickname": "x"})),
            Some(&prior),
            &r,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `nickname` is not declared in aggregate `person` (value: \"x\")"
    );
    assert_eq!(err.rule(), "unknown_field");
}

#[test]
fn field_locks_apply_after_creation_only() {
    let set = schema(FULL_EXAMPLE);
    let person = set.aggregate("person").unwrap();
    let r = refs();
    let created = person
        .validate_event(
            "person_created",
            &obj(json!({"email": "ada@example.com", "manager": "#p1"})),
            None,
            &r,
        )
        .unwrap();
    assert_eq!(
        created.payload,
        obj(json!({"email": "ada@example.com", "manager": "person#p1"}))
    );
    assert_eq!(created.default_note.as_deref(), Some("Initial import"));

    let mut state = Map::new();
    crate::merge_patch::merge_patch(&mut state, &created.payload);
    for value in [json!("person#p2"), Value::Null] {
        let mut payload = Map::new();
        payload.insert("manager".into(), value.clone());
        let err = person
            .validate_event("person_updated", &payload, Some(&state), &r)
            .unwrap_err();
        assert_eq!(
            err,
            SchemaViolation::FieldLocked {
                field: "manager".into(),
                value: value.to_string()
            }
        );
        assert_eq!(
            (err.kind(), err.rule()),
            (ViolationKind::Locked, "field_locks")
        );
    }
    // Re-running the creating event on an existing aggregate hits the lock too.
    let err = person
        .validate_event(
            "person_created",
            &obj(json!({"email": "ada@example.com", "manager": "person#p1"})),
            Some(&state),
            &r,
        )
        .unwrap_err();
    assert_eq!(err.rule(), "field_locks");
    // Unlocked fields can still change.
    let ok = person
        .validate_event(
            "person_updated",
            &obj(json!({"email": "new@example.com"})),
            Some(&state),
            &r,
        )
        .unwrap();
    assert_eq!(ok.default_note, None);
}

#[test]
fn required_is_checked_on_the_merged_state() {
    let set = schema(
        r#"aggregate customer {
  field email { type = "text" rules = {"required": true, "format": "email"} }
  field name { type = "text" }
  event customer_created {}
  event customer_renamed {}
}"#,
    );
    let c = set.aggregate("customer").unwrap();
    let r = refs();
    // Creation without the required field fails.
    let err = c
        .validate_event("customer_created", &obj(json!({"name": "Ada"})), None, &r)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `email` is required: it must be present and non-null after this event (value: (absent))"
    );
    // Creation with it succeeds.
    let first = c
        .validate_event(
            "customer_created",
            &obj(json!({"email": "ada@example.com"})),
            None,
            &r,
        )
        .unwrap();
    let mut state = Map::new();
    crate::merge_patch::merge_patch(&mut state, &first.payload);
    // A later event need not repeat it.
    let second = c
        .validate_event(
            "customer_renamed",
            &obj(json!({"name": "Ada L."})),
            Some(&state),
            &r,
        )
        .unwrap();
    crate::merge_patch::merge_patch(&mut state, &second.payload);
    assert_eq!(
        state,
        obj(json!({"email": "ada@example.com", "name": "Ada L."}))
    );
    // But removing it (null) is refused.
    let err = c
        .validate_event(
            "customer_renamed",
            &obj(json!({"email": null})),
            Some(&state),
            &r,
        )
        .unwrap_err();
    assert_eq!(
        (err.field(), err.rule(), err.value()),
        (Some("email"), "required", Some("null"))
    );
    // An existing aggregate whose state lacks it (schema changed) must supply it.
    let err = c
        .validate_event(
            "customer_renamed",
            &obj(json!({"name": "x"})),
            Some(&obj(json!({}))),
            &r,
        )
        .unwrap_err();
    assert_eq!(err.rule(), "required");
}

#[test]
fn nested_required_uses_merged_nested_objects() {
    let set = schema(
        r#"aggregate site {
  field address {
    type = "object"
    rules = {"properties": {"zip": {"type": "text", "required": true}, "city": "text"}}
  }
  event site_changed {}
}"#,
    );
    let s = set.aggregate("site").unwrap();
    let r = refs();
    let prior = obj(json!({"address": {"zip": "12345", "city": "Oslo"}}));
    // The patch merges into the prior object: zip stays.
    let ok = s
        .validate_event(
            "site_changed",
            &obj(json!({"address": {"city": "Bergen"}})),
            Some(&prior),
            &r,
        )
        .unwrap();
    assert_eq!(ok.payload, obj(json!({"address": {"city": "Bergen"}})));
    // Removing zip inside the object is refused.
    let err = s
        .validate_event(
            "site_changed",
            &obj(json!({"address": {"zip": null}})),
            Some(&prior),
            &r,
        )
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("address.zip"), "required"));
    // Without a prior object the patch alone must carry zip.
    let err = s
        .validate_event(
            "site_changed",
            &obj(json!({"address": {"city": "Bergen"}})),
            None,
            &r,
        )
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("address.zip"), "required"));
    // Removing the whole object is fine (nothing left to require).
    assert!(s
        .validate_event(
            "site_changed",
            &obj(json!({"address": null})),
            Some(&prior),
            &r
        )
        .is_ok());
    // Untouched object whose stored state lacks zip: required still holds.
    let err = s
        .validate_event(
            "site_changed",
            &Map::new(),
            Some(&obj(json!({"address": {"city": "x"}}))),
            &r,
        )
        .unwrap_err();
    assert_eq!((err.field(), err.rule()), (Some("address.zip"), "required"));
}

#[test]
fn strong_and_weak_references() {
    let set = schema(include_str!("testdata/spec_snippets.dbx"));
    let person = set.aggregate("person").unwrap();
    let store = Existing::new(&[("person", "p1")]);
    let ok = person
        .validate_event(
            "person_created",
            &obj(json!({"manager": "#p1"})),
            None,
            &store,
        )
        .unwrap();
    assert_eq!(ok.payload["manager"], json!("person#p1"));
    let err = person
        .validate_event(
            "person_created",
            &obj(json!({"manager": "person#p9"})),
            None,
            &store,
        )
        .unwrap_err();
    assert_eq!(
        err,
        SchemaViolation::ReferenceMissing {
            field: "manager".into(),
            reference: "person#p9".into(),
            value: "\"person#p9\"".into()
        }
    );
    assert_eq!(err.kind(), ViolationKind::ReferenceMissing);
    assert_eq!(err.rule(), "reference.integrity");
    assert_eq!(
        err.to_string(),
        "field `manager` references `person#p9`, which does not exist (value: \"person#p9\")"
    );

    let weak = schema(
        r#"aggregate task {
  field owner { type = "ref" rules = {"reference": {"aggregate_type": "person", "integrity": "weak"}} }
  event task_created {}
}"#,
    );
    let task = weak.aggregate("task").unwrap();
    let ok = task
        .validate_event(
            "task_created",
            &obj(json!({"owner": "default#person#p9"})),
            None,
            &store,
        )
        .unwrap();
    assert_eq!(ok.payload["owner"], json!("person#p9"));
    let err = task
        .validate_event(
            "task_created",
            &obj(json!({"owner": "order#o1"})),
            None,
            &store,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `owner` violates rule `reference.aggregate_type`: value references aggregate `order`, \
but this field only accepts `person` (value: \"order#o1\")"
    );
}

#[test]
fn violation_values_are_clipped_to_64_chars() {
    let set = schema(FIXTURE);
    let agg = set.aggregate("kitchen_sink").unwrap();
    let long = "x".repeat(500);
    let err = agg
        .validate_event("set", &obj(json!({"int": long})), None, &refs())
        .unwrap_err();
    let value = err.value().unwrap();
    assert_eq!(value.chars().count(), 64);
    assert_eq!(value, format!("\"{}...", "x".repeat(60)));
    assert_eq!(
        err.to_string(),
        format!("field `int` violates rule `type`: expected an integer, found a string (value: {value})")
    );
}

#[test]
fn display_of_check_violations() {
    let set = schema(FIXTURE);
    let agg = set.aggregate("kitchen_sink").unwrap();
    let cases = [
        (json!({"dec": "1.234"}), "field `dec` violates rule `type`: value has 3 fractional digits; the scale allows 2 (value: \"1.234\")"),
        (json!({"text": "a"}), "field `text` violates rule `length.min`: value is 1 characters long; the minimum is 2 (value: \"a\")"),
        (json!({"blob": "AQIDBAU="}), "field `blob` violates rule `length.max`: value is 5 bytes long; the maximum is 4 (value: \"AQIDBAU=\")"),
        (json!({"int": 101}), "field `int` violates rule `range.max`: value is greater than the maximum 100 (value: 101)"),
        (json!({"ts": "2025-01-01T00:00:00Z"}), "field `ts` violates rule `range.min`: value is less than the minimum 2026-01-01T00:00:00Z (value: \"2025-01-01T00:00:00Z\")"),
        (json!({"words": "bc"}), "field `words` violates rule `contains`: value must contain \"a\" (value: \"bc\")"),
        (json!({"words": "abxc"}), "field `words` violates rule `does_not_contain`: value must not contain \"x\" (value: \"abxc\")"),
        (json!({"words": "cab"}), "field `words` violates rule `regex`: value does not match the pattern \"c$\" (value: \"cab\")"),
        (json!({"email": "nope"}), "field `email` violates rule `format`: value does not match format `email` (value: \"nope\")"),
        (json!({"profile": {"country": "nz"}}), "field `profile.country` violates rule `format`: value does not match format `country_code` (value: \"nz\")"),
    ];
    for (payload, expected) in cases {
        let err = agg
            .validate_event("set", &obj(payload), None, &refs())
            .unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert_eq!(err.kind(), ViolationKind::Check);
    }
}

#[test]
fn payload_order_is_preserved_and_untouched_fields_are_not_added() {
    let set = schema(FIXTURE);
    let agg = set.aggregate("kitchen_sink").unwrap();
    let payload =
        obj(json!({"text": "abc", "dec": 1, "int": 3, "ts": "2026-05-05T05:05:05+05:00"}));
    let ok = agg.validate_event("set", &payload, None, &refs()).unwrap();
    assert_eq!(
        serde_json::to_string(&ok.payload).unwrap(),
        r#"{"text":"abc","dec":"1.00","int":3,"ts":"2026-05-05T00:05:05Z"}"#
    );
}

#[test]
fn loaded_schema_validates_like_the_compiled_one() {
    let set = schema(FIXTURE);
    let loaded = CompiledSchemaSet::from_json(&set.to_json()).unwrap();
    assert_eq!(loaded, set);
    let payload = obj(json!({"words": "abAc"}));
    let a = set
        .aggregate("kitchen_sink")
        .unwrap()
        .validate_event("set", &payload, None, &refs());
    let b =
        loaded
            .aggregate("kitchen_sink")
            .unwrap()
            .validate_event("set", &payload, None, &refs());
    assert_eq!(a.unwrap_err(), b.unwrap_err());
}
