//! Write-path validation: checks one event payload against its aggregate's
//! compiled schema and returns the normalized payload.
//!
//! Order of checks (the first failure is returned):
//! 1. aggregate `locked`;
//! 2. event declared;
//! 3. payload keys: event allowlist (`fields`) or declared fields;
//! 4. every allowlisted field present and non-null;
//! 5. field locks (only once the aggregate exists);
//! 6. per declared field, in name order: type, required, length, range,
//!    contains, does_not_contain, regex, format, reference, then nested
//!    `properties` (same order, recursively, with dotted paths).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::formats::{
    check_format, format_timestamp, parse_date, parse_reference, parse_timestamp, Decimal,
};
use super::limits::MAX_VIOLATION_VALUE_CHARS;
use super::types::{AggregateSchema, Bound, FieldSchema, FieldType, Format, Integrity, RangeRule};

/// Answers whether a referenced aggregate exists (used for `strong` references).
pub trait ReferenceLookup {
    fn aggregate_exists(&self, aggregate_type: &str, aggregate_id: &str) -> bool;
}

/// An accepted event: the normalized payload to append, and the event's
/// default note from the schema (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedEvent {
    pub payload: Map<String, Value>,
    pub default_note: Option<String>,
}

/// Coarse class of a violation, for mapping to SQLSTATE codes:
/// `Check` -> 23514, `ReferenceMissing` -> 23503, `Locked` -> 55000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    Check,
    ReferenceMissing,
    Locked,
}

/// Why an event was rejected. Every field-level variant names the field
/// (a dotted path for nested properties), the rule, and the offending
/// value as compact JSON clipped to 64 characters (`(absent)` if missing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaViolation {
    #[error("aggregate `{aggregate}` is locked: writes are rejected")]
    AggregateLocked { aggregate: String },
    #[error(
        "event `{event}` is not declared for aggregate `{aggregate}`; declared events: {}",
        .declared.join(", ")
    )]
    UnknownEvent {
        aggregate: String,
        event: String,
        declared: Vec<String>,
    },
    #[error("field `{field}` is not declared in aggregate `{aggregate}` (value: {value})")]
    UnknownField {
        aggregate: String,
        field: String,
        value: String,
    },
    #[error(
        "field `{field}` is not allowed in event `{event}`; allowed fields: {} (value: {value})",
        .allowed.join(", ")
    )]
    FieldNotAllowed {
        event: String,
        field: String,
        allowed: Vec<String>,
        value: String,
    },
    #[error("event `{event}` requires field `{field}` in its payload (value: {value})")]
    MissingEventField {
        event: String,
        field: String,
        value: String,
    },
    #[error("field `{field}` is locked and cannot be changed once the aggregate exists (value: {value})")]
    FieldLocked { field: String, value: String },
    #[error("field `{field}` is required: it must be present and non-null after this event (value: {value})")]
    Required { field: String, value: String },
    #[error("field `{field}` violates rule `{rule}`: {message} (value: {value})")]
    Invalid {
        field: String,
        rule: String,
        value: String,
        message: String,
    },
    #[error("field `{field}` references `{reference}`, which does not exist (value: {value})")]
    ReferenceMissing {
        field: String,
        reference: String,
        value: String,
    },
}

impl SchemaViolation {
    pub fn kind(&self) -> ViolationKind {
        match self {
            SchemaViolation::AggregateLocked { .. } | SchemaViolation::FieldLocked { .. } => {
                ViolationKind::Locked
            }
            SchemaViolation::ReferenceMissing { .. } => ViolationKind::ReferenceMissing,
            _ => ViolationKind::Check,
        }
    }

    /// The field (dotted path for nested properties), if the violation is
    /// about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            SchemaViolation::AggregateLocked { .. } | SchemaViolation::UnknownEvent { .. } => None,
            SchemaViolation::UnknownField { field, .. }
            | SchemaViolation::FieldNotAllowed { field, .. }
            | SchemaViolation::MissingEventField { field, .. }
            | SchemaViolation::FieldLocked { field, .. }
            | SchemaViolation::Required { field, .. }
            | SchemaViolation::Invalid { field, .. }
            | SchemaViolation::ReferenceMissing { field, .. } => Some(field),
        }
    }

    /// The rule that failed: `locked`, `event`, `unknown_field`,
    /// `event.fields`, `field_locks`, `required`, `type`, `length.min`,
    /// `length.max`, `range.min`, `range.max`, `contains`,
    /// `does_not_contain`, `regex`, `format`, `reference.aggregate_type`,
    /// `reference.domain` or `reference.integrity`.
    pub fn rule(&self) -> &str {
        match self {
            SchemaViolation::AggregateLocked { .. } => "locked",
            SchemaViolation::UnknownEvent { .. } => "event",
            SchemaViolation::UnknownField { .. } => "unknown_field",
            SchemaViolation::FieldNotAllowed { .. } | SchemaViolation::MissingEventField { .. } => {
                "event.fields"
            }
            SchemaViolation::FieldLocked { .. } => "field_locks",
            SchemaViolation::Required { .. } => "required",
            SchemaViolation::Invalid { rule, .. } => rule,
            SchemaViolation::ReferenceMissing { .. } => "reference.integrity",
        }
    }

    /// The offending value (compact JSON, clipped), if there is one.
    pub fn value(&self) -> Option<&str> {
        match self {
            SchemaViolation::AggregateLocked { .. } | SchemaViolation::UnknownEvent { .. } => None,
            SchemaViolation::UnknownField { value, .. }
            | SchemaViolation::FieldNotAllowed { value, .. }
            | SchemaViolation::MissingEventField { value, .. }
            | SchemaViolation::FieldLocked { value, .. }
            | SchemaViolation::Required { value, .. }
            | SchemaViolation::Invalid { value, .. }
            | SchemaViolation::ReferenceMissing { value, .. } => Some(value),
        }
    }
}

/// Compact JSON of a value, clipped to `MAX_VIOLATION_VALUE_CHARS`
/// characters (ending in `...` when clipped).
pub(crate) fn render_value(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "(absent)".to_string();
    };
    let text = serde_json::to_string(value).unwrap_or_default();
    if text.chars().count() <= MAX_VIOLATION_VALUE_CHARS {
        return text;
    }
    let mut clipped: String = text
        .chars()
        .take(MAX_VIOLATION_VALUE_CHARS.saturating_sub(3))
        .collect();
    clipped.push_str("...");
    clipped
}

fn invalid(path: &str, rule: &str, value: &Value, message: impl Into<String>) -> SchemaViolation {
    SchemaViolation::Invalid {
        field: path.to_string(),
        rule: rule.to_string(),
        value: render_value(Some(value)),
        message: message.into(),
    }
}

/// Base64 with the standard alphabet; padding optional on input.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl AggregateSchema {
    /// Validates one event about to be appended and returns its normalized
    /// payload. `prior_state` is the aggregate's materialized state before
    /// this event (`None` if the aggregate does not exist yet).
    pub fn validate_event(
        &self,
        event_type: &str,
        payload: &Map<String, Value>,
        prior_state: Option<&Map<String, Value>>,
        refs: &dyn ReferenceLookup,
    ) -> Result<ValidatedEvent, SchemaViolation> {
        if self.locked {
            return Err(SchemaViolation::AggregateLocked {
                aggregate: self.name.clone(),
            });
        }
        let Some(event) = self.events.get(event_type) else {
            return Err(SchemaViolation::UnknownEvent {
                aggregate: self.name.clone(),
                event: event_type.to_string(),
                declared: self.events.keys().cloned().collect(),
            });
        };
        for (key, value) in payload {
            if !event.fields.is_empty() {
                if !event.fields.iter().any(|f| f == key) {
                    return Err(SchemaViolation::FieldNotAllowed {
                        event: event_type.to_string(),
                        field: key.clone(),
                        allowed: event.fields.clone(),
                        value: render_value(Some(value)),
                    });
                }
            } else if !self.fields.contains_key(key) {
                return Err(SchemaViolation::UnknownField {
                    aggregate: self.name.clone(),
                    field: key.clone(),
                    value: render_value(Some(value)),
                });
            }
        }
        for name in &event.fields {
            let value = payload.get(name);
            if value.is_none_or(Value::is_null) {
                return Err(SchemaViolation::MissingEventField {
                    event: event_type.to_string(),
                    field: name.clone(),
                    value: render_value(value),
                });
            }
        }
        if prior_state.is_some() {
            for (key, value) in payload {
                if self.field_locks.iter().any(|f| f == key) {
                    return Err(SchemaViolation::FieldLocked {
                        field: key.clone(),
                        value: render_value(Some(value)),
                    });
                }
            }
        }
        let mut normalized = payload.clone();
        for (name, schema) in &self.fields {
            let prior = prior_state.and_then(|s| s.get(name));
            let out = check_field(schema, name, payload.get(name), prior, refs)?;
            if let (Some(value), Some(slot)) = (out, normalized.get_mut(name)) {
                *slot = value;
            }
        }
        Ok(ValidatedEvent {
            payload: normalized,
            default_note: event.note.clone(),
        })
    }
}

/// Checks one field (or nested property) given its value in the patch
/// (`None` when the patch does not mention it) and its prior value.
/// Returns the normalized patch value.
fn check_field(
    schema: &FieldSchema,
    path: &str,
    patch: Option<&Value>,
    prior: Option<&Value>,
    refs: &dyn ReferenceLookup,
) -> Result<Option<Value>, SchemaViolation> {
    // 1. type (null means "remove", which every type allows).
    let mut value = match patch {
        None => None,
        Some(Value::Null) => Some(Value::Null),
        Some(v) => Some(check_type(schema.field_type, path, v)?),
    };
    // 2. required: present and non-null once this patch is merged.
    if schema.rules.required {
        let present = match patch {
            None => prior.is_some_and(|p| !p.is_null()),
            Some(v) => !v.is_null(),
        };
        if !present {
            return Err(SchemaViolation::Required {
                field: path.to_string(),
                value: render_value(patch),
            });
        }
    }
    match value.as_mut() {
        Some(Value::Null) => {}
        Some(v) => check_rules(schema, path, v, prior, refs)?,
        None => {
            // Untouched: nested `required` still holds over the prior value.
            if let Some(Value::Object(prior_obj)) = prior {
                for (name, child) in &schema.rules.properties {
                    let child_path = format!("{path}.{name}");
                    check_field(child, &child_path, None, prior_obj.get(name), refs)?;
                }
            }
        }
    }
    Ok(value)
}

fn check_type(ty: FieldType, path: &str, v: &Value) -> Result<Value, SchemaViolation> {
    let kind = json_kind(v);
    let fail = |expected: &str| {
        invalid(
            path,
            "type",
            v,
            format!("expected {expected}, found {kind}"),
        )
    };
    match ty {
        FieldType::Integer => match v {
            Value::Number(n) if n.is_i64() => Ok(v.clone()),
            Value::Number(n) if n.is_u64() => Err(invalid(
                path,
                "type",
                v,
                "integer is outside the signed 64-bit range",
            )),
            Value::Number(_) => Err(fail("an integer (no fraction or exponent)")),
            _ => Err(fail("an integer")),
        },
        FieldType::Float => match v {
            Value::Number(_) => Ok(v.clone()),
            _ => Err(fail("a number")),
        },
        FieldType::Decimal { precision, scale } => {
            let Some(dec) = Decimal::from_json(v) else {
                return Err(fail(&format!(
                    "a decimal({precision},{scale}) number or numeric string"
                )));
            };
            dec.normalize(precision, scale)
                .map(Value::String)
                .map_err(|msg| invalid(path, "type", v, format!("value {msg}")))
        }
        FieldType::Boolean => match v {
            Value::Bool(_) => Ok(v.clone()),
            _ => Err(fail("a boolean")),
        },
        FieldType::Text => match v {
            Value::String(_) => Ok(v.clone()),
            _ => Err(fail("a string")),
        },
        FieldType::Timestamp => match v {
            Value::String(s) => match parse_timestamp(s) {
                Some(ts) => Ok(Value::String(format_timestamp(&ts))),
                None => Err(fail(
                    "an RFC 3339 timestamp such as \"2026-01-01T00:00:00Z\"",
                )),
            },
            _ => Err(fail("an RFC 3339 timestamp string")),
        },
        FieldType::Date => match v {
            Value::String(s) if parse_date(s).is_some() => Ok(v.clone()),
            _ => Err(fail("a `YYYY-MM-DD` date string")),
        },
        FieldType::Json => Ok(v.clone()),
        FieldType::Binary => match v {
            Value::String(s) => match BASE64_LENIENT.decode(s) {
                Ok(bytes) => Ok(Value::String(STANDARD.encode(bytes))),
                Err(_) => Err(fail("a base64 string")),
            },
            _ => Err(fail("a base64 string")),
        },
        FieldType::Object => match v {
            Value::Object(_) => Ok(v.clone()),
            _ => Err(fail("an object")),
        },
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decoded byte length of canonical (padded) base64.
fn base64_decoded_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    (s.len() / 4).saturating_mul(3).saturating_sub(pad)
}

/// Rules after type and required, on a non-null, type-checked value.
fn check_rules(
    schema: &FieldSchema,
    path: &str,
    v: &mut Value,
    prior: Option<&Value>,
    refs: &dyn ReferenceLookup,
) -> Result<(), SchemaViolation> {
    let rules = &schema.rules;
    let ty = schema.field_type;

    if let (Some(length), Value::String(s)) = (&rules.length, &*v) {
        let (n, unit) = match ty {
            FieldType::Binary => (base64_decoded_len(s), "bytes"),
            _ => (s.chars().count(), "characters"),
        };
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        if let Some(min) = length.min.filter(|&min| n < min) {
            return Err(invalid(
                path,
                "length.min",
                v,
                format!("value is {n} {unit} long; the minimum is {min}"),
            ));
        }
        if let Some(max) = length.max.filter(|&max| n > max) {
            return Err(invalid(
                path,
                "length.max",
                v,
                format!("value is {n} {unit} long; the maximum is {max}"),
            ));
        }
    }

    if let Some(range) = &rules.range {
        check_range(ty, path, v, range)?;
    }

    if let Value::String(s) = &*v {
        if let Some(missing) = rules
            .contains
            .iter()
            .find(|needle| !s.contains(needle.as_str()))
        {
            return Err(invalid(
                path,
                "contains",
                v,
                format!("value must contain {}", super::parse::quote(missing)),
            ));
        }
        if let Some(found) = rules
            .does_not_contain
            .iter()
            .find(|needle| s.contains(needle.as_str()))
        {
            return Err(invalid(
                path,
                "does_not_contain",
                v,
                format!("value must not contain {}", super::parse::quote(found)),
            ));
        }
        if let Some(failed) = rules.regex.iter().find(|r| !r.is_match(s)) {
            return Err(invalid(
                path,
                "regex",
                v,
                format!(
                    "value does not match the pattern {}",
                    super::parse::quote(failed.pattern())
                ),
            ));
        }
    }

    match schema.format {
        Some(Format::Reference) => check_reference(schema, path, v, refs)?,
        Some(format) => check_format(format, v).map_err(|msg| invalid(path, "format", v, msg))?,
        None => {}
    }

    if !rules.properties.is_empty() {
        if let Value::Object(obj) = v {
            let prior_obj = prior.and_then(Value::as_object);
            for (name, child) in &rules.properties {
                let child_path = format!("{path}.{name}");
                let child_prior = prior_obj.and_then(|p| p.get(name));
                let out = check_field(child, &child_path, obj.get(name), child_prior, refs)?;
                // `object` fields are normalized recursively; `json` fields
                // are validated but stored exactly as given.
                if ty == FieldType::Object {
                    if let (Some(new), Some(slot)) = (out, obj.get_mut(name)) {
                        *slot = new;
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_range(
    ty: FieldType,
    path: &str,
    v: &Value,
    range: &RangeRule,
) -> Result<(), SchemaViolation> {
    use std::cmp::Ordering;
    // Compares the value to a bound; `None` when the bound does not apply.
    let compare = |bound: &Bound| -> Option<Ordering> {
        match ty {
            FieldType::Integer => {
                let n = v.as_i64()?;
                match bound {
                    Bound::Int(b) => Some(n.cmp(b)),
                    Bound::Float(b) => (n as f64).partial_cmp(b),
                    Bound::Text(_) => None,
                }
            }
            FieldType::Float => {
                let n = v.as_f64()?;
                match bound {
                    Bound::Int(b) => n.partial_cmp(&(*b as f64)),
                    Bound::Float(b) => n.partial_cmp(b),
                    Bound::Text(_) => None,
                }
            }
            FieldType::Decimal { .. } => {
                let n = Decimal::from_json(v)?;
                let b = match bound {
                    Bound::Text(t) => Decimal::parse(t, false)?,
                    Bound::Int(i) => Decimal::parse(&i.to_string(), false)?,
                    Bound::Float(f) => Decimal::parse(&f.to_string(), true)?,
                };
                Some(n.cmp(&b))
            }
            FieldType::Timestamp => {
                let Bound::Text(t) = bound else { return None };
                Some(parse_timestamp(v.as_str()?)?.cmp(&parse_timestamp(t)?))
            }
            FieldType::Date => {
                let Bound::Text(t) = bound else { return None };
                Some(parse_date(v.as_str()?)?.cmp(&parse_date(t)?))
            }
            _ => None,
        }
    };
    let show = |b: &Bound| match b {
        Bound::Int(i) => i.to_string(),
        Bound::Float(f) => f.to_string(),
        Bound::Text(t) => t.clone(),
    };
    if let Some(min) = &range.min {
        if compare(min) == Some(Ordering::Less) {
            return Err(invalid(
                path,
                "range.min",
                v,
                format!("value is less than the minimum {}", show(min)),
            ));
        }
    }
    if let Some(max) = &range.max {
        if compare(max) == Some(Ordering::Greater) {
            return Err(invalid(
                path,
                "range.max",
                v,
                format!("value is greater than the maximum {}", show(max)),
            ));
        }
    }
    Ok(())
}

/// Parses, resolves and canonicalizes a reference in place, then enforces
/// `aggregate_type`, the single `default` domain and `strong` integrity.
fn check_reference(
    schema: &FieldSchema,
    path: &str,
    v: &mut Value,
    refs: &dyn ReferenceLookup,
) -> Result<(), SchemaViolation> {
    let Value::String(text) = &*v else {
        return Err(invalid(
            path,
            "format",
            v,
            "value must be a reference string",
        ));
    };
    let parsed = parse_reference(text).map_err(|msg| invalid(path, "format", v, msg))?;
    let rule = schema.rules.reference.clone().unwrap_or_default();
    if let Some(domain) = &parsed.domain {
        if domain != "default" {
            return Err(invalid(
                path,
                "reference.domain",
                v,
                format!("value points into domain `{domain}`; only the `default` domain exists"),
            ));
        }
    }
    let aggregate =
        match (&parsed.aggregate, &rule.aggregate_type) {
            (Some(a), Some(t)) if a != t => {
                return Err(invalid(
                    path,
                    "reference.aggregate_type",
                    v,
                    format!("value references aggregate `{a}`, but this field only accepts `{t}`"),
                ))
            }
            (Some(a), _) => a.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => return Err(invalid(
                path,
                "reference.aggregate_type",
                v,
                "value uses the `#id` shorthand, but the reference rule sets no `aggregate_type`",
            )),
        };
    let canonical = format!("{aggregate}#{}", parsed.id);
    if rule.integrity == Integrity::Strong && !refs.aggregate_exists(&aggregate, &parsed.id) {
        return Err(SchemaViolation::ReferenceMissing {
            field: path.to_string(),
            reference: canonical,
            value: render_value(Some(v)),
        });
    }
    *v = Value::String(canonical);
    Ok(())
}
