//! Golden tests: the spec's schemas compile to the expected runtime shape,
//! and every compile-time constraint renders its exact diagnostic
//! (`testdata/diagnostics.golden`).
//!
//! `UPDATE_GOLDEN=1 cargo test golden` rewrites the golden files from the
//! current output; review the diff before keeping it.

use serde_json::json;

use super::*;

const QUICK_START: &str = include_str!("testdata/quick_start.dbx");
const FULL_EXAMPLE: &str = include_str!("testdata/full_example.dbx");
const FULL_EXAMPLE_JSON: &str = include_str!("testdata/full_example.json");
const GRAMMAR_EXAMPLE: &str = include_str!("testdata/grammar_example.dbx");
const SPEC_SNIPPETS: &str = include_str!("testdata/spec_snippets.dbx");
const COOKBOOK: &str = include_str!("testdata/cookbook.dbx");
const DIAGNOSTICS: &str = include_str!("testdata/diagnostics.golden");

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Path of a testdata file, relative to the package root (cargo's cwd for tests).
fn testdata_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(file!())
        .parent()
        .map(|p| p.join("testdata").join(name))
        .unwrap_or_default()
}

fn compile_ok(source: &str) -> CompiledSchemaSet {
    match compile(source, "schema.dbx") {
        Ok(set) => set,
        Err(e) => panic!("expected the schema to compile, got:\n{e}"),
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn quick_start_compiles() {
    let set = compile_ok(QUICK_START);
    assert!(set.warnings.is_empty());
    let order = set.aggregate("order").unwrap();
    assert_eq!(order.snapshot_threshold, Some(100));
    assert_eq!(
        order.to_json()["fields"]["status"],
        json!({"type": "text", "column_type": "string", "rules": {"required": false}})
    );
    assert_eq!(
        order.to_json()["events"],
        json!({
            "order_created": {"fields": ["status"], "note": null},
            "order_paid": {"fields": ["status"], "note": null}
        })
    );
    assert_eq!(
        set.to_json()["aggregates"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["order"]
    );
}

#[test]
fn grammar_example_compiles() {
    let set = compile_ok(GRAMMAR_EXAMPLE);
    let status = &set.aggregate("order").unwrap().fields["status"];
    assert!(status.rules.required);
    assert_eq!(status.field_type, FieldType::Text);
}

#[test]
fn full_example_compiles_to_golden_json() {
    let set = compile_ok(FULL_EXAMPLE);
    let rendered = pretty(&set.to_json());
    if updating() {
        std::fs::write(testdata_path("full_example.json"), &rendered).unwrap();
        return;
    }
    assert_eq!(rendered, FULL_EXAMPLE_JSON);

    // Key parts, asserted directly as well.
    let person = set.aggregate("person").unwrap();
    assert_eq!(person.hidden_fields, ["internal_notes", "manager"]);
    assert_eq!(person.field_locks, ["id", "manager"]);
    assert_eq!(
        person.to_json()["fields"]["manager"],
        json!({
            "type": "text",
            "column_type": "string",
            "format": "reference",
            "rules": {
                "required": false,
                "reference": {"integrity": "strong", "aggregate_type": "person", "cascade": "restrict"}
            }
        })
    );
    assert_eq!(
        person.to_json()["fields"]["profile"]["rules"]["properties"]["nickname"]["rules"]["length"],
        json!({"max": 32})
    );
    assert_eq!(
        person.events["person_created"],
        EventSchema {
            fields: vec!["email".into(), "manager".into()],
            note: Some("Initial import".into())
        }
    );
    assert_eq!(person.events["person_updated"], EventSchema::default());
    // The ignored `tenant` key and the two undeclared list entries warn.
    let warnings: Vec<(u32, &str)> = set
        .warnings
        .iter()
        .map(|w| (w.line, w.message.as_str()))
        .collect();
    assert_eq!(
        warnings,
        [
            (5, "`hidden_fields` names undeclared field \"internal_notes\""),
            (6, "`field_locks` names undeclared field \"id\""),
            (
                20,
                "`tenant` in a reference rule is ignored: EventDBX is single-tenant (domain `default`)"
            ),
        ]
    );
}

#[test]
fn spec_snippets_compile() {
    let set = compile_ok(SPEC_SNIPPETS);
    let manager = &set.aggregate("person").unwrap().fields["manager"];
    assert_eq!(manager.format, Some(Format::Reference));
    assert_eq!(
        manager.rules.reference,
        Some(ReferenceRule {
            integrity: Integrity::Strong,
            aggregate_type: Some("person".into()),
            cascade: Cascade::Restrict
        })
    );
    let profile = &set.aggregate("customer").unwrap().fields["profile"];
    assert_eq!(
        profile.rules.properties["country"].format,
        Some(Format::CountryCode)
    );
}

#[test]
fn cookbook_entries_compile() {
    let set = compile_ok(COOKBOOK);
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    let field =
        |agg: &str, field: &str| set.aggregate(agg).unwrap().to_json()["fields"][field].clone();
    assert_eq!(
        field("cookbook_email", "email"),
        json!({"type": "text", "column_type": "string", "format": "email", "rules": {"required": true}})
    );
    assert_eq!(
        field("cookbook_sku", "sku"),
        json!({
            "type": "text", "column_type": "string", "format": "upper_case_snake_case",
            "rules": {"required": false, "regex": ["^[A-Z0-9_]+$"], "length": {"min": 3, "max": 32}}
        })
    );
    assert_eq!(
        field("cookbook_amount", "amount"),
        json!({
            "type": "decimal(12,2)", "column_type": "string",
            "rules": {"required": false, "range": {"min": "0.00", "max": "9999999999.99"}}
        })
    );
    assert_eq!(
        field("cookbook_effective_at", "effective_at"),
        json!({
            "type": "timestamp", "column_type": "string", "format": "iso8601",
            "rules": {"required": false, "range": {"min": "2026-01-01T00:00:00Z"}}
        })
    );
    assert_eq!(
        field("cookbook_attachment", "attachment"),
        json!({
            "type": "binary", "column_type": "string",
            "rules": {"required": false, "length": {"max": 1048576}}
        })
    );
}

#[test]
fn compile_is_deterministic_and_round_trips() {
    for source in [
        QUICK_START,
        FULL_EXAMPLE,
        GRAMMAR_EXAMPLE,
        SPEC_SNIPPETS,
        COOKBOOK,
    ] {
        let a = compile_ok(source);
        let b = compile_ok(source);
        let a_text = serde_json::to_string(&a.to_json()).unwrap();
        let b_text = serde_json::to_string(&b.to_json()).unwrap();
        assert_eq!(a_text, b_text);
        // Stored and loaded back: equal, and re-serializes to the same bytes.
        let loaded = CompiledSchemaSet::from_json(&a.to_json()).unwrap();
        assert_eq!(loaded, a);
        assert_eq!(serde_json::to_string(&loaded.to_json()).unwrap(), a_text);
        let reparsed: CompiledSchemaSet = serde_json::from_str(&a_text).unwrap();
        assert_eq!(reparsed, a);
    }
}

#[test]
fn loading_rejects_bad_stored_json() {
    let mut v = compile_ok(COOKBOOK).to_json();
    v["aggregates"]["cookbook_sku"]["fields"]["sku"]["rules"]["regex"] = json!(["(unclosed"]);
    let err = CompiledSchemaSet::from_json(&v).unwrap_err().to_string();
    assert!(err.contains("unclosed group"), "{err}");
    let mut v = compile_ok(COOKBOOK).to_json();
    v["aggregates"]["cookbook_sku"]["fields"]["sku"]["rules"]["bogus"] = json!(1);
    assert!(CompiledSchemaSet::from_json(&v).is_err());
    let mut v = compile_ok(COOKBOOK).to_json();
    v["aggregates"]["cookbook_sku"]["fields"]["sku"]["type"] = json!("reference");
    assert!(CompiledSchemaSet::from_json(&v).is_err());
}

#[test]
fn aliases_compile_to_canonical_types() {
    let src = r#"aggregate a {
  field a1 { type = "int" }
  field a2 { type = "double" }
  field a3 { type = "numeric(10, 4)" }
  field a4 { type = "bool" }
  field a5 { type = "string" }
  field a6 { type = "bytes" }
  field a7 { type = "aggregate-reference" }
  field a8 { type = "aggregate_ref" rules = {"reference": {"aggregate_type": "a", "integrity": "weak"}} }
  field "quoted name" { type = "date" }
  event e {}
}"#;
    let set = compile_ok(src);
    let fields = &set.aggregate("a").unwrap().to_json()["fields"];
    let types: Vec<(&str, &str)> = fields
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            ("a1", "integer"),
            ("a2", "float"),
            ("a3", "decimal(10,4)"),
            ("a4", "boolean"),
            ("a5", "text"),
            ("a6", "binary"),
            ("a7", "text"),
            ("a8", "text"),
            ("quoted name", "date"),
        ]
    );
    assert_eq!(fields["a7"]["format"], "reference");
    assert_eq!(
        fields["a7"]["rules"]["reference"],
        json!({"integrity": "strong", "cascade": "none"})
    );
    assert_eq!(
        fields["a8"]["rules"]["reference"],
        json!({"integrity": "weak", "aggregate_type": "a", "cascade": "none"})
    );
}

#[test]
fn aggregate_properties_and_field_flags() {
    let src = r#"
aggregate "audit_log" {
  snapshot_threshold = null
  locked = true
  hidden = true
  hidden_fields = ["b", "a", "b"]
  field_locks = ["a"]
  field a { type = "text" locked = true hidden = true }
  field b { type = "text" hidden = false }
  event written { fields = ["a", "b"] note = null }
}"#;
    let set = compile_ok(src);
    let agg = set.aggregate("audit_log").unwrap();
    assert_eq!(agg.snapshot_threshold, None);
    assert!(agg.locked && agg.hidden);
    assert_eq!(agg.hidden_fields, ["a", "b"]);
    assert_eq!(agg.field_locks, ["a"]);
    assert_eq!(agg.events["written"].fields, ["a", "b"]);
    assert_eq!(agg.events["written"].note, None);
}

#[test]
fn empty_source_compiles_with_a_warning() {
    let set = compile_ok("  # nothing here\n");
    assert!(set.aggregates.is_empty());
    assert_eq!(set.warnings.len(), 1);
    assert_eq!(set.warnings[0].message, "schema defines no aggregates");
    assert_eq!(set.to_json(), json!({"aggregates": {}}));
}

// ---------------------------------------------------------------------------
// Diagnostics golden file
// ---------------------------------------------------------------------------

struct Case {
    name: String,
    source: String,
    expect: String,
}

fn parse_golden(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for chunk in text.split("\n=== ").skip(1) {
        let (name, rest) = chunk.split_once('\n').unwrap();
        let (source, expect) = rest.split_once("\n--- expect\n").unwrap();
        cases.push(Case {
            name: name.to_string(),
            source: source.to_string(),
            expect: expect.trim_end_matches('\n').to_string(),
        });
    }
    cases
}

fn outcome(source: &str) -> String {
    match compile(source, "schema.dbx") {
        Err(e) => e.to_string(),
        Ok(set) => {
            let mut out = format!("ok; warnings: {}", set.warnings.len());
            for w in &set.warnings {
                out.push_str("\n\n");
                out.push_str(&w.to_string());
            }
            out
        }
    }
}

#[test]
fn diagnostics_golden() {
    let header_end = DIAGNOSTICS.find("\n=== ").unwrap();
    let cases = parse_golden(DIAGNOSTICS);
    assert_eq!(
        cases.len(),
        34,
        "case count changed; update this number deliberately"
    );
    if updating() {
        let mut out = DIAGNOSTICS[..header_end].to_string();
        for c in &cases {
            out.push_str(&format!(
                "\n=== {}\n{}\n--- expect\n{}\n",
                c.name,
                c.source,
                outcome(&c.source)
            ));
        }
        std::fs::write(testdata_path("diagnostics.golden"), out).unwrap();
        return;
    }
    let mut failures = Vec::new();
    for c in &cases {
        let got = outcome(&c.source);
        if got != c.expect {
            failures.push(format!(
                "--- case {}\nexpected:\n{}\ngot:\n{}",
                c.name, c.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_briefs_example_diagnostic() {
    let src = "aggregate order {
  snapshot_threshold = 100
  field status {
    type = \"text\"
  }
  event order_created {
    fields = [\"status\"]
  }

  event order_paid {
    note = \"paid\"
    fields = [\"status\", \"amount\"]
  }
}
";
    let err = compile(src, "schema.dbx").unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert!(err.warnings.is_empty());
    let d = &err.errors[0];
    assert_eq!((d.line, d.column, d.severity), (12, 25, Severity::Error));
    // The caret sits under the offending token, `"amount"` (column 25).
    assert_eq!(
        d.to_string(),
        "error: event `order_paid` lists undeclared field `amount`\n \
--> schema.dbx:12:25\n   |\n12 |     fields = [\"status\", \"amount\"]\n   |                         ^"
    );
    assert_eq!(err.to_string(), d.to_string());
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn source_size_limit() {
    let big = format!("# {}\n", "x".repeat(limits::MAX_SOURCE_BYTES));
    let err = compile(&big, "big.dbx").unwrap_err();
    assert_eq!(
        err.to_string(),
        "error: schema source is 1048579 bytes; the limit is 1048576 bytes (1 MiB)\n --> big.dbx:1:1\n  |\n1 |\n  | ^"
    );
}

#[test]
fn aggregate_count_limit() {
    let mut src = String::new();
    for i in 0..=limits::MAX_AGGREGATES {
        src.push_str(&format!("aggregate a{i} {{ event e {{}} }}\n"));
    }
    let err = compile(&src, "s").unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(
        (err.errors[0].line, err.errors[0].message.as_str()),
        (
            1025,
            "too many aggregates: a schema may define at most 1024"
        )
    );
    // Exactly at the limit compiles.
    let ok: String = (0..limits::MAX_AGGREGATES)
        .map(|i| format!("aggregate a{i} {{ event e {{}} }}\n"))
        .collect();
    assert_eq!(compile_ok(&ok).aggregates.len(), 1024);
}

#[test]
fn field_count_limit() {
    let mut src = String::from("aggregate a {\n");
    for i in 0..=limits::MAX_FIELDS_PER_AGGREGATE {
        src.push_str(&format!("  field f{i} {{ type = \"text\" }}\n"));
    }
    src.push_str("  event e {}\n}\n");
    let err = compile(&src, "s").unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(
        (
            err.errors[0].line,
            err.errors[0].column,
            err.errors[0].message.as_str()
        ),
        (514, 9, "too many fields in aggregate `a`: the limit is 512")
    );
}

#[test]
fn diagnostics_are_capped() {
    let src: String = (0..500).map(|i| format!("aggregate A{i} {{}}\n")).collect();
    let err = compile(&src, "s").unwrap_err();
    assert_eq!(err.errors.len(), limits::MAX_DIAGNOSTICS + 1);
    assert_eq!(
        err.errors.last().unwrap().message,
        "too many diagnostics: 900 more not shown (the limit is 100)"
    );
}

#[test]
fn long_source_lines_are_clipped_in_diagnostics() {
    let src = format!(
        "aggregate a {{ x = \"{}\" event e {{}} }}",
        "y".repeat(1000)
    );
    let err = compile(&src, "s").unwrap_err();
    let d = &err.errors[0];
    assert_eq!(
        d.message.split(';').next(),
        Some("unknown aggregate property `x`")
    );
    assert_eq!(
        d.source_line.chars().count(),
        limits::MAX_DIAGNOSTIC_LINE_CHARS + 1
    );
    assert!(d.source_line.ends_with('…'));
}
