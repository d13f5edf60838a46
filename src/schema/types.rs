//! The compiled runtime schema: types, rules, fields, events, aggregates.
//!
//! Everything here is `Serialize + Deserialize`; the engine stores a compiled
//! set as JSON and loads it back. Serialization is deterministic (maps are
//! `BTreeMap`s, structs serialize in declaration order) and loading is
//! lossless: `from_json(to_json(x)) == x`. Regexes are recompiled on load,
//! so a hand-edited bad pattern fails to load instead of failing later.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::diagnostic::Diagnostic;
use super::limits::{
    MAX_DECIMAL_PRECISION, MAX_REGEX_COMPILED_BYTES, MAX_REGEX_DFA_BYTES, MAX_REGEX_PATTERN_CHARS,
};

// ---------------------------------------------------------------------------
// Field types
// ---------------------------------------------------------------------------

/// The value type of a field. Reference aliases (`ref`, `reference`, ...)
/// compile to [`FieldType::Text`] with [`Format::Reference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Integer,
    Float,
    Decimal { precision: u8, scale: u8 },
    Boolean,
    Text,
    Timestamp,
    Date,
    Json,
    Binary,
    Object,
}

/// Result of parsing a `type = "..."` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParsedType {
    pub field_type: FieldType,
    /// The source used a reference alias (`ref`, `reference`, ...).
    pub reference_alias: bool,
}

impl FieldType {
    /// Canonical spelling used in compiled output, e.g. `decimal(12,2)`.
    pub fn canonical(&self) -> String {
        match self {
            FieldType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            other => other.base_name().to_string(),
        }
    }

    /// Name without parameters: `integer`, `decimal`, `text`, ...
    pub fn base_name(&self) -> &'static str {
        match self {
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Decimal { .. } => "decimal",
            FieldType::Boolean => "boolean",
            FieldType::Text => "text",
            FieldType::Timestamp => "timestamp",
            FieldType::Date => "date",
            FieldType::Json => "json",
            FieldType::Binary => "binary",
            FieldType::Object => "object",
        }
    }

    /// How a normalized value of this type is stored in aggregate state
    /// (its JSON representation): `integer`, `number`, `string`,
    /// `boolean`, `object` or `any`.
    pub fn column_type(&self) -> &'static str {
        match self {
            FieldType::Integer => "integer",
            FieldType::Float => "number",
            FieldType::Decimal { .. }
            | FieldType::Text
            | FieldType::Timestamp
            | FieldType::Date
            | FieldType::Binary => "string",
            FieldType::Boolean => "boolean",
            FieldType::Object => "object",
            FieldType::Json => "any",
        }
    }

    /// Parses a type string. Case-insensitive; surrounding whitespace and
    /// whitespace inside `decimal( p , s )` are allowed.
    pub(crate) fn parse(source: &str) -> Result<ParsedType, String> {
        let lower = source.trim().to_ascii_lowercase();
        let simple = |field_type| {
            Ok(ParsedType {
                field_type,
                reference_alias: false,
            })
        };
        match lower.as_str() {
            "integer" | "int" => return simple(FieldType::Integer),
            "float" | "double" => return simple(FieldType::Float),
            "boolean" | "bool" => return simple(FieldType::Boolean),
            "text" | "string" => return simple(FieldType::Text),
            "timestamp" => return simple(FieldType::Timestamp),
            "date" => return simple(FieldType::Date),
            "json" => return simple(FieldType::Json),
            "binary" | "bytes" => return simple(FieldType::Binary),
            "object" => return simple(FieldType::Object),
            "ref" | "reference" | "aggregate_ref" | "aggregate-reference" => {
                return Ok(ParsedType {
                    field_type: FieldType::Text,
                    reference_alias: true,
                })
            }
            _ => {}
        }
        for head in ["decimal", "numeric"] {
            if let Some(rest) = lower.strip_prefix(head) {
                let rest = rest.trim_start();
                if rest.is_empty() {
                    return Err(format!(
                        "type `{head}` needs a precision and scale, e.g. `{head}(12,2)`"
                    ));
                }
                if let Some(args) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
                    return parse_decimal_args(head, args).map(|field_type| ParsedType {
                        field_type,
                        reference_alias: false,
                    });
                }
                if rest.starts_with('(') {
                    return Err(format!(
                        "malformed `{head}` type `{}`; expected `{head}(p,s)`",
                        source.trim()
                    ));
                }
            }
        }
        Err(format!(
            "unknown type `{}`; expected one of: integer, int, float, double, decimal(p,s), \
             numeric(p,s), boolean, bool, text, string, timestamp, date, json, binary, bytes, \
             object, ref, reference, aggregate_ref, aggregate-reference",
            source.trim()
        ))
    }
}

fn parse_decimal_args(head: &str, args: &str) -> Result<FieldType, String> {
    let mut parts = args.split(',');
    let (Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "`{head}` takes exactly two arguments, precision and scale: `{head}(p,s)`"
        ));
    };
    let parse = |what: &str, t: &str| -> Result<u32, String> {
        let t = t.trim();
        if t.is_empty() || t.len() > 3 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{head}` {what} must be a whole number, found `{t}`"
            ));
        }
        t.parse::<u32>()
            .map_err(|_| format!("`{head}` {what} must be a whole number, found `{t}`"))
    };
    let precision = parse("precision", p)?;
    let scale = parse("scale", s)?;
    if precision < 1 || precision > u32::from(MAX_DECIMAL_PRECISION) {
        return Err(format!(
            "decimal precision must be between 1 and {MAX_DECIMAL_PRECISION}, found {precision}"
        ));
    }
    if scale > precision {
        return Err(format!(
            "decimal scale must be between 0 and the precision ({precision}), found {scale}"
        ));
    }
    // Both fit u8: precision <= 38 and scale <= precision.
    let precision =
        u8::try_from(precision).map_err(|_| "decimal precision too large".to_string())?;
    let scale = u8::try_from(scale).map_err(|_| "decimal scale too large".to_string())?;
    Ok(FieldType::Decimal { precision, scale })
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl Serialize for FieldType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match FieldType::parse(&s) {
            Ok(ParsedType {
                reference_alias: false,
                field_type,
            }) => Ok(field_type),
            Ok(_) => Err(serde::de::Error::custom(
                "reference aliases are not a compiled type; use \"text\" with format \"reference\"",
            )),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

/// Built-in semantic validators (`rules.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    #[serde(rename = "email")]
    Email,
    #[serde(rename = "url")]
    Url,
    #[serde(rename = "credit_card")]
    CreditCard,
    #[serde(rename = "country_code")]
    CountryCode,
    #[serde(rename = "iso8601")]
    Iso8601,
    #[serde(rename = "wgs_84")]
    Wgs84,
    #[serde(rename = "camel_case")]
    CamelCase,
    #[serde(rename = "snake_case")]
    SnakeCase,
    #[serde(rename = "kebab_case")]
    KebabCase,
    #[serde(rename = "pascal_case")]
    PascalCase,
    #[serde(rename = "upper_case_snake_case")]
    UpperCaseSnakeCase,
    #[serde(rename = "reference")]
    Reference,
}

impl Format {
    pub const ALL: [Format; 12] = [
        Format::Email,
        Format::Url,
        Format::CreditCard,
        Format::CountryCode,
        Format::Iso8601,
        Format::Wgs84,
        Format::CamelCase,
        Format::SnakeCase,
        Format::KebabCase,
        Format::PascalCase,
        Format::UpperCaseSnakeCase,
        Format::Reference,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Format::Email => "email",
            Format::Url => "url",
            Format::CreditCard => "credit_card",
            Format::CountryCode => "country_code",
            Format::Iso8601 => "iso8601",
            Format::Wgs84 => "wgs_84",
            Format::CamelCase => "camel_case",
            Format::SnakeCase => "snake_case",
            Format::KebabCase => "kebab_case",
            Format::PascalCase => "pascal_case",
            Format::UpperCaseSnakeCase => "upper_case_snake_case",
            Format::Reference => "reference",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// Whether this format may be declared on a field of type `ty`.
    pub fn applies_to(&self, ty: FieldType) -> bool {
        match self {
            Format::Reference => ty == FieldType::Text,
            Format::Wgs84 => matches!(ty, FieldType::Text | FieldType::Json | FieldType::Object),
            Format::Iso8601 => matches!(
                ty,
                FieldType::Text | FieldType::Json | FieldType::Timestamp | FieldType::Date
            ),
            _ => matches!(ty, FieldType::Text | FieldType::Json),
        }
    }

    /// Human list of the types `applies_to` accepts.
    pub(crate) fn applicable_types(&self) -> &'static str {
        match self {
            Format::Reference => "text",
            Format::Wgs84 => "text, json or object",
            Format::Iso8601 => "text, json, timestamp or date",
            _ => "text or json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

/// `integrity` of a reference rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrity {
    /// The target aggregate must exist when the event is written.
    #[default]
    Strong,
    /// The target need not exist.
    Weak,
}

/// `cascade` of a reference rule (metadata for downstream handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cascade {
    #[default]
    None,
    Restrict,
    Nullify,
}

/// `rules.reference`, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceRule {
    #[serde(default)]
    pub integrity: Integrity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_type: Option<String>,
    #[serde(default)]
    pub cascade: Cascade,
}

/// `rules.length`: characters for text, decoded bytes for binary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// One `range` bound, already normalized for the field's type:
/// `Int` for integer fields, `Float` for float fields, and `Text` holding a
/// decimal string at the field's scale, a UTC RFC 3339 timestamp, or a
/// `YYYY-MM-DD` date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Int(i64),
    Float(f64),
    Text(String),
}

/// `rules.range`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Bound>,
}

/// A regex rule: the source pattern and its compiled form. Serializes as
/// the pattern string; deserializing recompiles it (with the same size
/// limits as the compiler) and fails on a bad pattern.
#[derive(Debug, Clone)]
pub struct RegexPattern {
    pattern: String,
    regex: Regex,
}

impl RegexPattern {
    /// Compiles `pattern` with the size limits in [`super::limits`].
    pub fn new(pattern: &str) -> Result<RegexPattern, String> {
        if pattern.chars().count() > MAX_REGEX_PATTERN_CHARS {
            return Err(format!(
                "pattern is longer than {MAX_REGEX_PATTERN_CHARS} characters"
            ));
        }
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(MAX_REGEX_COMPILED_BYTES)
            .dfa_size_limit(MAX_REGEX_DFA_BYTES)
            .build()
            .map_err(|e| regex_error_message(&e))?;
        Ok(RegexPattern {
            pattern: pattern.to_string(),
            regex,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// The regex crate renders syntax errors over several lines with a caret;
/// keep only the final `error: ...` line so it fits a diagnostic message.
fn regex_error_message(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled pattern exceeds the size limit of {limit} bytes")
        }
        other => {
            let text = other.to_string();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid pattern")
                .trim();
            last.strip_prefix("error: ").unwrap_or(last).to_string()
        }
    }
}

impl PartialEq for RegexPattern {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Serialize for RegexPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

impl<'de> Deserialize<'de> for RegexPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RegexPattern::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Validation rules of one field (or nested property). `format` lives on
/// [`FieldSchema`], not here.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub does_not_contain: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regex: Vec<RegexPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<LengthRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeRule>,
    /// Present (with defaults filled in) exactly when the format is `reference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceRule>,
    /// Nested property schemas for `object` / `json` fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, FieldSchema>,
}

// ---------------------------------------------------------------------------
// Fields, events, aggregates
// ---------------------------------------------------------------------------

/// A compiled field (or nested property).
///
/// Serialized as `{"type", "column_type", "format"?, "rules"}`; `column_type`
/// is derived from `type` and ignored on load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "FieldSchemaRepr", from = "FieldSchemaRepr")]
pub struct FieldSchema {
    pub field_type: FieldType,
    pub format: Option<Format>,
    pub rules: Rules,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSchemaRepr {
    #[serde(rename = "type")]
    field_type: FieldType,
    #[serde(default)]
    column_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<Format>,
    #[serde(default)]
    rules: Rules,
}

impl From<FieldSchema> for FieldSchemaRepr {
    fn from(f: FieldSchema) -> Self {
        FieldSchemaRepr {
            column_type: Some(f.field_type.column_type().to_string()),
            field_type: f.field_type,
            format: f.format,
            rules: f.rules,
        }
    }
}

impl From<FieldSchemaRepr> for FieldSchema {
    fn from(r: FieldSchemaRepr) -> Self {
        let mut rules = r.rules;
        if r.format == Some(Format::Reference) && rules.reference.is_none() {
            rules.reference = Some(ReferenceRule::default());
        }
        FieldSchema {
            field_type: r.field_type,
            format: r.format,
            rules,
        }
    }
}

/// A compiled event declaration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSchema {
    /// Allowlist and required set of the payload; empty means "any declared field".
    #[serde(default)]
    pub fields: Vec<String>,
    /// Default note attached to events of this type.
    #[serde(default)]
    pub note: Option<String>,
}

/// One compiled aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSchema {
    pub name: String,
    pub snapshot_threshold: Option<u64>,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub hidden: bool,
    /// Sorted, deduplicated; includes fields declared with `hidden = true`.
    #[serde(default)]
    pub hidden_fields: Vec<String>,
    /// Sorted, deduplicated; includes fields declared with `locked = true`.
    #[serde(default)]
    pub field_locks: Vec<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSchema>,
    #[serde(default)]
    pub events: BTreeMap<String, EventSchema>,
}

impl AggregateSchema {
    /// This aggregate's compiled preview (`dbx schema show <aggregate>`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The result of compiling one `schema.dbx`.
///
/// `warnings` are compile-time diagnostics, not part of the runtime shape:
/// they are not serialized and equality ignores them, so a set loaded back
/// from JSON equals the one that was stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompiledSchemaSet {
    pub aggregates: BTreeMap<String, AggregateSchema>,
    #[serde(skip)]
    pub warnings: Vec<Diagnostic>,
}

impl PartialEq for CompiledSchemaSet {
    fn eq(&self, other: &Self) -> bool {
        self.aggregates == other.aggregates
    }
}

impl CompiledSchemaSet {
    /// Deterministic JSON of the compiled runtime shape: `{"aggregates": {...}}`
    /// with aggregates, fields and events sorted by name. The same source
    /// always gives the same bytes; there are no timestamps.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Loads a set previously produced by [`CompiledSchemaSet::to_json`].
    pub fn from_json(value: &serde_json::Value) -> Result<CompiledSchemaSet, serde_json::Error> {
        CompiledSchemaSet::deserialize(value)
    }

    pub fn aggregate(&self, name: &str) -> Option<&AggregateSchema> {
        self.aggregates.get(name)
    }

    /// Whether some aggregate hides a payload field (reads must then redact its events).
    pub fn hides_any_field(&self) -> bool {
        self.aggregates
            .values()
            .any(|schema| !schema.hidden_fields.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_parsing_table() {
        type Case<'a> = (&'a str, Result<(&'a str, bool), &'a str>);
        let cases: &[Case] = &[
            ("integer", Ok(("integer", false))),
            ("int", Ok(("integer", false))),
            ("INT", Ok(("integer", false))),
            ("float", Ok(("float", false))),
            ("double", Ok(("float", false))),
            ("decimal(12,2)", Ok(("decimal(12,2)", false))),
            ("numeric( 12 , 2 )", Ok(("decimal(12,2)", false))),
            ("decimal (38,0)", Ok(("decimal(38,0)", false))),
            ("decimal(1,1)", Ok(("decimal(1,1)", false))),
            ("boolean", Ok(("boolean", false))),
            ("bool", Ok(("boolean", false))),
            ("text", Ok(("text", false))),
            ("string", Ok(("text", false))),
            ("timestamp", Ok(("timestamp", false))),
            ("date", Ok(("date", false))),
            ("json", Ok(("json", false))),
            ("binary", Ok(("binary", false))),
            ("bytes", Ok(("binary", false))),
            ("object", Ok(("object", false))),
            ("ref", Ok(("text", true))),
            ("reference", Ok(("text", true))),
            ("aggregate_ref", Ok(("text", true))),
            ("aggregate-reference", Ok(("text", true))),
            (
                "decimal(0,0)",
                Err("decimal precision must be between 1 and 38, found 0"),
            ),
            (
                "decimal(39,2)",
                Err("decimal precision must be between 1 and 38, found 39"),
            ),
            (
                "decimal(5,6)",
                Err("decimal scale must be between 0 and the precision (5), found 6"),
            ),
            (
                "decimal",
                Err("type `decimal` needs a precision and scale, e.g. `decimal(12,2)`"),
            ),
            (
                "decimal(5)",
                Err("`decimal` takes exactly two arguments, precision and scale: `decimal(p,s)`"),
            ),
            (
                "decimal(5,-1)",
                Err("`decimal` scale must be a whole number, found `-1`"),
            ),
            (
                "decimal(5,2",
                Err("malformed `decimal` type `decimal(5,2`; expected `decimal(p,s)`"),
            ),
        ];
        for (input, expected) in cases {
            let got =
                FieldType::parse(input).map(|p| (p.field_type.canonical(), p.reference_alias));
            match expected {
                Ok((canon, alias)) => {
                    assert_eq!(got, Ok((canon.to_string(), *alias)), "{input}")
                }
                Err(msg) => assert_eq!(got, Err(msg.to_string()), "{input}"),
            }
        }
        assert!(FieldType::parse("strng")
            .err()
            .is_some_and(|e| e.starts_with("unknown type `strng`; expected one of: integer")));
    }

    #[test]
    fn column_types() {
        let got: Vec<&str> = [
            FieldType::Integer,
            FieldType::Float,
            FieldType::Decimal {
                precision: 3,
                scale: 1,
            },
            FieldType::Boolean,
            FieldType::Json,
            FieldType::Object,
        ]
        .iter()
        .map(|t| t.column_type())
        .collect();
        assert_eq!(
            got,
            ["integer", "number", "string", "boolean", "any", "object"]
        );
    }

    #[test]
    fn regex_pattern_round_trip_and_errors() {
        let r = RegexPattern::new("^[A-Z]+$").map(|r| (r.is_match("ABC"), r.is_match("abc")));
        assert_eq!(r, Ok((true, false)));
        assert_eq!(
            RegexPattern::new("(abc").err(),
            Some("unclosed group".to_string())
        );
        let big = RegexPattern::new(r"\w{1000}\w{1000}");
        assert!(
            big.as_ref()
                .err()
                .is_some_and(|e| e.starts_with("compiled pattern exceeds the size limit")),
            "{big:?}"
        );
        let v: Result<RegexPattern, _> = serde_json::from_value(serde_json::json!("(x"));
        assert!(v.is_err());
    }
}
