//! Syntax tree -> [`CompiledSchemaSet`], with every compile-time check.
//!
//! Checking goes on after an error, across aggregates, fields and events,
//! so one run reports as many problems as it can find.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::diagnostic::{Diags, Pos};
use super::formats::{format_timestamp, is_snake_name, parse_date, parse_timestamp, Decimal};
use super::limits::{
    MAX_AGGREGATES, MAX_EVENTS_PER_AGGREGATE, MAX_FIELDS_PER_AGGREGATE, MAX_NAME_CHARS,
    MAX_NOTE_CHARS, MAX_PROPERTIES_DEPTH,
};
use super::parse::{quote, AggregateAst, Block, FileAst, JsonNode, JsonValue, Name};
use super::types::{
    AggregateSchema, Bound, Cascade, CompiledSchemaSet, EventSchema, FieldSchema, FieldType,
    Format, Integrity, LengthRule, ParsedType, RangeRule, ReferenceRule, RegexPattern, Rules,
};

const AGGREGATE_KEYS: &str = "snapshot_threshold, locked, hidden, hidden_fields, field_locks";
const FIELD_KEYS: &str = "type, rules, hidden, locked";
const EVENT_KEYS: &str = "fields, note";
const RULE_KEYS: &str =
    "required, contains, does_not_contain, regex, length, range, format, reference, properties";

/// Names visible to every aggregate while compiling (for reference checks).
struct Ctx<'a> {
    aggregate_names: BTreeSet<&'a str>,
}

pub(crate) fn compile_file(ast: &FileAst, d: &mut Diags) -> CompiledSchemaSet {
    let ctx = Ctx {
        aggregate_names: ast
            .aggregates
            .iter()
            .map(|a| a.name.text.as_str())
            .collect(),
    };
    let mut set = CompiledSchemaSet::default();
    if ast.aggregates.is_empty() {
        d.warning(Pos { line: 1, col: 1 }, "schema defines no aggregates");
    }
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for (index, agg) in ast.aggregates.iter().enumerate() {
        if index == MAX_AGGREGATES {
            d.error(
                agg.name.pos,
                format!("too many aggregates: a schema may define at most {MAX_AGGREGATES}"),
            );
            break;
        }
        check_name(d, "aggregate", &agg.name, true);
        let duplicate = match seen.get(agg.name.text.as_str()) {
            Some(first) => {
                d.error(
                    agg.name.pos,
                    format!(
                        "duplicate aggregate `{}` (first defined on line {})",
                        agg.name.text, first.line
                    ),
                );
                true
            }
            None => {
                seen.insert(&agg.name.text, agg.name.pos);
                false
            }
        };
        let compiled = compile_aggregate(agg, &ctx, d);
        if !duplicate {
            set.aggregates.insert(agg.name.text.clone(), compiled);
        }
    }
    set
}

/// Aggregate and event names must be snake_case; every name must be 1 to
/// `MAX_NAME_CHARS` characters.
fn check_name(d: &mut Diags, kind: &str, name: &Name, snake: bool) -> bool {
    let len = name.text.chars().count();
    if len == 0 {
        d.error(name.pos, format!("{kind} name must not be empty"));
        return false;
    }
    if len > MAX_NAME_CHARS {
        d.error(
            name.pos,
            format!("{kind} name is {len} characters long; the maximum is {MAX_NAME_CHARS}"),
        );
        return false;
    }
    if snake && !is_snake_name(&name.text) {
        d.error(
            name.pos,
            format!(
                "{kind} name {} must be snake_case (lowercase letters, digits and `_`, \
                 starting with a letter)",
                quote(&name.text)
            ),
        );
        return false;
    }
    true
}

/// Reports a repeated property key; returns true if `key` was seen before.
fn repeated<'a>(seen: &mut HashMap<&'a str, Pos>, key: &'a Name, d: &mut Diags) -> bool {
    if let Some(first) = seen.get(key.text.as_str()) {
        d.error(
            key.pos,
            format!(
                "duplicate property `{}` (first set on line {})",
                key.text, first.line
            ),
        );
        return true;
    }
    seen.insert(&key.text, key.pos);
    false
}

fn expect_bool(d: &mut Diags, what: &str, node: &JsonNode) -> Option<bool> {
    match node.value {
        JsonValue::Bool(b) => Some(b),
        _ => {
            d.error(
                node.pos,
                format!(
                    "`{what}` must be a boolean (true or false), found {}",
                    node.kind()
                ),
            );
            None
        }
    }
}

fn expect_string_array(d: &mut Diags, what: &str, node: &JsonNode) -> Option<Vec<(String, Pos)>> {
    let JsonValue::Array(items) = &node.value else {
        d.error(
            node.pos,
            format!(
                "`{what}` must be an array of strings, found {}",
                node.kind()
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match &item.value {
            JsonValue::String(s) => out.push((s.clone(), item.pos)),
            _ => {
                d.error(
                    item.pos,
                    format!("`{what}` entries must be strings, found {}", item.kind()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Parses a non-negative JSON integer lexeme (no fraction or exponent).
fn json_u64(node: &JsonNode) -> Option<u64> {
    match &node.value {
        JsonValue::Number(raw) if raw.bytes().all(|b| b.is_ascii_digit()) => raw.parse().ok(),
        _ => None,
    }
}

fn compile_aggregate(agg: &AggregateAst, ctx: &Ctx<'_>, d: &mut Diags) -> AggregateSchema {
    let mut out = AggregateSchema {
        name: agg.name.text.clone(),
        snapshot_threshold: None,
        locked: false,
        hidden: false,
        hidden_fields: Vec::new(),
        field_locks: Vec::new(),
        fields: BTreeMap::new(),
        events: BTreeMap::new(),
    };
    let mut hidden_list: Vec<(String, Pos)> = Vec::new();
    let mut lock_list: Vec<(String, Pos)> = Vec::new();
    let mut seen = HashMap::new();
    for prop in &agg.props {
        if repeated(&mut seen, &prop.key, d) {
            continue;
        }
        let node = &prop.value;
        match prop.key.text.as_str() {
            "snapshot_threshold" => match (&node.value, json_u64(node)) {
                (JsonValue::Null, _) => out.snapshot_threshold = None,
                (_, Some(n)) if n >= 1 => out.snapshot_threshold = Some(n),
                _ => d.error(
                    node.pos,
                    format!(
                        "`snapshot_threshold` must be an integer >= 1 or null, found {}",
                        describe_node(node)
                    ),
                ),
            },
            "locked" => {
                if let Some(b) = expect_bool(d, "locked", node) {
                    out.locked = b;
                }
            }
            "hidden" => {
                if let Some(b) = expect_bool(d, "hidden", node) {
                    out.hidden = b;
                }
            }
            "hidden_fields" => {
                if let Some(list) = expect_string_array(d, "hidden_fields", node) {
                    hidden_list.extend(list);
                }
            }
            "field_locks" => {
                if let Some(list) = expect_string_array(d, "field_locks", node) {
                    lock_list.extend(list);
                }
            }
            other => d.error(
                prop.key.pos,
                format!("unknown aggregate property `{other}`; expected one of: {AGGREGATE_KEYS}, or a `field`/`event` block"),
            ),
        }
    }

    // Fields.
    let declared: BTreeSet<&str> = agg.fields.iter().map(|f| f.name.text.as_str()).collect();
    let mut seen_fields: HashMap<&str, Pos> = HashMap::new();
    let mut field_hidden: Vec<String> = Vec::new();
    let mut field_locked: Vec<String> = Vec::new();
    for (index, block) in agg.fields.iter().enumerate() {
        if index == MAX_FIELDS_PER_AGGREGATE {
            d.error(
                block.name.pos,
                format!(
                    "too many fields in aggregate `{}`: the limit is {MAX_FIELDS_PER_AGGREGATE}",
                    agg.name.text
                ),
            );
            break;
        }
        check_name(d, "field", &block.name, false);
        if let Some(first) = seen_fields.get(block.name.text.as_str()) {
            d.error(
                block.name.pos,
                format!(
                    "duplicate field `{}` in aggregate `{}` (first defined on line {})",
                    block.name.text, agg.name.text, first.line
                ),
            );
            let _ = compile_field(block, ctx, d);
            continue;
        }
        seen_fields.insert(&block.name.text, block.name.pos);
        if let Some(compiled) = compile_field(block, ctx, d) {
            if compiled.hidden {
                field_hidden.push(block.name.text.clone());
            }
            if compiled.locked {
                field_locked.push(block.name.text.clone());
            }
            out.fields.insert(block.name.text.clone(), compiled.schema);
        }
    }

    // Events.
    if agg.events.is_empty() {
        d.error(
            agg.name.pos,
            format!(
                "aggregate `{}` declares no events; each aggregate must define at least one `event`",
                agg.name.text
            ),
        );
    }
    let mut seen_events: HashMap<&str, Pos> = HashMap::new();
    for (index, block) in agg.events.iter().enumerate() {
        if index == MAX_EVENTS_PER_AGGREGATE {
            d.error(
                block.name.pos,
                format!(
                    "too many events in aggregate `{}`: the limit is {MAX_EVENTS_PER_AGGREGATE}",
                    agg.name.text
                ),
            );
            break;
        }
        check_name(d, "event", &block.name, true);
        let compiled = compile_event(block, &declared, d);
        if let Some(first) = seen_events.get(block.name.text.as_str()) {
            d.error(
                block.name.pos,
                format!(
                    "duplicate event `{}` in aggregate `{}` (first defined on line {})",
                    block.name.text, agg.name.text, first.line
                ),
            );
            continue;
        }
        seen_events.insert(&block.name.text, block.name.pos);
        out.events.insert(block.name.text.clone(), compiled);
    }

    // hidden_fields / field_locks: names that match no declared field are
    // kept as metadata but warned about (the spec's Full Example lists
    // `internal_notes` and `id`, which it never declares, and must compile).
    for (what, list) in [("hidden_fields", &hidden_list), ("field_locks", &lock_list)] {
        for (name, pos) in list {
            if !declared.contains(name.as_str()) {
                d.warning(
                    *pos,
                    format!("`{what}` names undeclared field {}", quote(name)),
                );
            }
        }
    }
    out.hidden_fields = sorted_unique(hidden_list.into_iter().map(|(n, _)| n).chain(field_hidden));
    out.field_locks = sorted_unique(lock_list.into_iter().map(|(n, _)| n).chain(field_locked));
    out
}

fn sorted_unique(items: impl Iterator<Item = String>) -> Vec<String> {
    items.collect::<BTreeSet<_>>().into_iter().collect()
}

fn describe_node(node: &JsonNode) -> String {
    match &node.value {
        JsonValue::Number(raw) => format!("`{raw}`"),
        JsonValue::String(s) => quote(s),
        _ => node.kind().to_string(),
    }
}

struct CompiledField {
    schema: FieldSchema,
    hidden: bool,
    locked: bool,
}

fn compile_field(block: &Block, ctx: &Ctx<'_>, d: &mut Diags) -> Option<CompiledField> {
    let mut parsed: Option<ParsedType> = None;
    let mut type_seen = false;
    let mut rules_node: Option<&JsonNode> = None;
    let mut hidden = false;
    let mut locked = false;
    let mut seen = HashMap::new();
    for prop in &block.props {
        if repeated(&mut seen, &prop.key, d) {
            continue;
        }
        let node = &prop.value;
        match prop.key.text.as_str() {
            "type" => {
                type_seen = true;
                match &node.value {
                    JsonValue::String(s) => match FieldType::parse(s) {
                        Ok(p) => parsed = Some(p),
                        Err(msg) => d.error(node.pos, msg),
                    },
                    _ => d.error(
                        node.pos,
                        format!(
                            "`type` must be a string such as \"text\", found {}",
                            node.kind()
                        ),
                    ),
                }
            }
            "rules" => {
                if matches!(node.value, JsonValue::Object(_)) {
                    rules_node = Some(node);
                } else {
                    d.error(
                        node.pos,
                        format!("`rules` must be a JSON object, found {}", node.kind()),
                    );
                }
            }
            "hidden" => hidden = expect_bool(d, "hidden", node).unwrap_or(false),
            "locked" => locked = expect_bool(d, "locked", node).unwrap_or(false),
            other => d.error(
                prop.key.pos,
                format!("unknown field property `{other}`; expected one of: {FIELD_KEYS}"),
            ),
        }
    }
    let Some(parsed) = parsed else {
        if !type_seen && !block.broken_keys.iter().any(|k| k == "type") {
            d.error(
                block.name.pos,
                format!("field `{}` is missing its `type`", block.name.text),
            );
        }
        return None;
    };
    let entries: &[(Name, JsonNode)] = match rules_node.map(|n| &n.value) {
        Some(JsonValue::Object(entries)) => entries,
        _ => &[],
    };
    let (format, rules) = compile_rules(entries, parsed, false, 1, ctx, d);
    Some(CompiledField {
        schema: FieldSchema {
            field_type: parsed.field_type,
            format,
            rules,
        },
        hidden,
        locked,
    })
}

/// Compiles a rules object. For nested property definitions (`nested`),
/// the `type` key is handled by the caller and skipped here.
fn compile_rules(
    entries: &[(Name, JsonNode)],
    parsed: ParsedType,
    nested: bool,
    depth: usize,
    ctx: &Ctx<'_>,
    d: &mut Diags,
) -> (Option<Format>, Rules) {
    let ty = parsed.field_type;
    let type_name = ty.canonical();
    let mut rules = Rules::default();
    let mut format: Option<(Format, Pos)> = None;
    let mut reference: Option<(ReferenceRule, Pos)> = None;
    for (key, node) in entries {
        match key.text.as_str() {
            "type" if nested => {}
            "required" => rules.required = expect_bool(d, "required", node).unwrap_or(false),
            "contains" | "does_not_contain" | "regex" => {
                if ty != FieldType::Text {
                    d.error(
                        key.pos,
                        format!(
                            "rule `{}` applies only to text fields, not `{type_name}`",
                            key.text
                        ),
                    );
                    continue;
                }
                let Some(list) = expect_string_array(d, &key.text, node) else {
                    continue;
                };
                match key.text.as_str() {
                    "contains" => rules.contains = list.into_iter().map(|(s, _)| s).collect(),
                    "does_not_contain" => {
                        rules.does_not_contain = list.into_iter().map(|(s, _)| s).collect()
                    }
                    _ => {
                        for (pattern, pos) in list {
                            match RegexPattern::new(&pattern) {
                                Ok(r) => rules.regex.push(r),
                                Err(msg) => d.error(
                                    pos,
                                    format!("invalid regex {}: {msg}", quote(&pattern)),
                                ),
                            }
                        }
                    }
                }
            }
            "length" => {
                if !matches!(ty, FieldType::Text | FieldType::Binary) {
                    d.error(
                        key.pos,
                        format!(
                            "rule `length` applies only to text and binary fields, not `{type_name}`"
                        ),
                    );
                    continue;
                }
                rules.length = compile_length(node, d);
            }
            "range" => {
                if !matches!(
                    ty,
                    FieldType::Integer
                        | FieldType::Float
                        | FieldType::Decimal { .. }
                        | FieldType::Timestamp
                        | FieldType::Date
                ) {
                    d.error(
                        key.pos,
                        format!(
                            "rule `range` applies only to integer, float, decimal, timestamp \
                             and date fields, not `{type_name}`"
                        ),
                    );
                    continue;
                }
                rules.range = compile_range(node, ty, d);
            }
            "format" => {
                let JsonValue::String(name) = &node.value else {
                    d.error(
                        node.pos,
                        format!("`format` must be a string, found {}", node.kind()),
                    );
                    continue;
                };
                let Some(f) = Format::from_name(name) else {
                    let all: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                    d.error(
                        node.pos,
                        format!(
                            "unknown format {}; expected one of: {}",
                            quote(name),
                            all.join(", ")
                        ),
                    );
                    continue;
                };
                if parsed.reference_alias && f != Format::Reference {
                    d.error(
                        node.pos,
                        format!("a reference-typed field always has format `reference`, not `{f}`"),
                    );
                    continue;
                }
                if !f.applies_to(ty) {
                    d.error(
                        node.pos,
                        format!(
                            "format `{f}` cannot be used on `{type_name}` fields; it applies to {} fields",
                            f.applicable_types()
                        ),
                    );
                    continue;
                }
                format = Some((f, node.pos));
            }
            "reference" => {
                if let Some(r) = compile_reference_rule(node, ctx, d) {
                    reference = Some((r, key.pos));
                }
            }
            "properties" => {
                if !matches!(ty, FieldType::Object | FieldType::Json) {
                    d.error(
                        key.pos,
                        format!(
                            "rule `properties` applies only to object and json fields, not `{type_name}`"
                        ),
                    );
                    continue;
                }
                if depth >= MAX_PROPERTIES_DEPTH {
                    d.error(
                        key.pos,
                        format!(
                            "`properties` are nested more than {MAX_PROPERTIES_DEPTH} levels deep"
                        ),
                    );
                    continue;
                }
                rules.properties = compile_properties(node, depth, ctx, d);
            }
            other => {
                let expected = if nested {
                    format!("type, {RULE_KEYS}")
                } else {
                    RULE_KEYS.to_string()
                };
                d.error(
                    key.pos,
                    format!("unknown rule `{other}`; expected one of: {expected}"),
                );
            }
        }
    }
    let effective = if parsed.reference_alias {
        Some(Format::Reference)
    } else {
        format.map(|(f, _)| f)
    };
    if effective == Some(Format::Reference) {
        rules.reference = Some(reference.map(|(r, _)| r).unwrap_or_default());
    } else if let Some((_, pos)) = reference {
        d.error(
            pos,
            "`reference` rules require `\"format\": \"reference\"` (or a reference type)",
        );
    }
    (effective, rules)
}

fn compile_length(node: &JsonNode, d: &mut Diags) -> Option<LengthRule> {
    let JsonValue::Object(entries) = &node.value else {
        d.error(
            node.pos,
            format!(
                "`length` must be an object like {{\"min\": 1, \"max\": 10}}, found {}",
                node.kind()
            ),
        );
        return None;
    };
    let mut rule = LengthRule::default();
    let mut ok = true;
    let mut max_pos = node.pos;
    for (key, value) in entries {
        let slot = match key.text.as_str() {
            "min" => &mut rule.min,
            "max" => {
                max_pos = value.pos;
                &mut rule.max
            }
            other => {
                d.error(
                    key.pos,
                    format!("unknown key `{other}` in `length`; expected `min` or `max`"),
                );
                ok = false;
                continue;
            }
        };
        if matches!(value.value, JsonValue::Null) {
            continue;
        }
        match json_u64(value) {
            Some(n) => *slot = Some(n),
            None => {
                d.error(
                    value.pos,
                    format!(
                        "`length.{}` must be a non-negative integer, found {}",
                        key.text,
                        describe_node(value)
                    ),
                );
                ok = false;
            }
        }
    }
    if let (Some(min), Some(max)) = (rule.min, rule.max) {
        if min > max {
            d.error(
                max_pos,
                format!("`length.min` ({min}) is greater than `length.max` ({max})"),
            );
            ok = false;
        }
    }
    if ok && rule.min.is_none() && rule.max.is_none() {
        d.error(node.pos, "`length` must set `min`, `max` or both");
        ok = false;
    }
    ok.then_some(rule)
}

/// A range bound plus a comparable key used for the min <= max check.
enum BoundKey {
    Int(i64),
    Float(f64),
    Decimal(Decimal),
    Text(String),
}

fn compile_bound(
    node: &JsonNode,
    which: &str,
    ty: FieldType,
    d: &mut Diags,
) -> Option<(Bound, BoundKey)> {
    let fail = |d: &mut Diags, expected: &str| {
        d.error(
            node.pos,
            format!(
                "`range.{which}` for a `{}` field must be {expected}, found {}",
                ty.canonical(),
                describe_node(node)
            ),
        );
        None
    };
    match (ty, &node.value) {
        (FieldType::Integer, JsonValue::Number(raw)) => match raw.parse::<i64>() {
            Ok(n) => Some((Bound::Int(n), BoundKey::Int(n))),
            Err(_) => fail(d, "an integer"),
        },
        (FieldType::Integer, _) => fail(d, "an integer"),
        (FieldType::Float, JsonValue::Number(raw)) => match raw.parse::<f64>() {
            Ok(f) if f.is_finite() => Some((Bound::Float(f), BoundKey::Float(f))),
            _ => fail(d, "a finite number"),
        },
        (FieldType::Float, _) => fail(d, "a number"),
        (FieldType::Decimal { precision, scale }, JsonValue::Number(_) | JsonValue::String(_)) => {
            let parsed = match &node.value {
                JsonValue::Number(raw) => Decimal::parse(raw, true),
                JsonValue::String(s) => Decimal::parse(s, false),
                _ => None,
            };
            let Some(dec) = parsed else {
                return fail(d, "a decimal number or decimal string");
            };
            match dec.normalize(precision, scale) {
                Ok(text) => Some((Bound::Text(text), BoundKey::Decimal(dec))),
                Err(msg) => {
                    d.error(
                        node.pos,
                        format!("`range.{which}` {} {msg}", describe_node(node)),
                    );
                    None
                }
            }
        }
        (FieldType::Decimal { .. }, _) => fail(d, "a decimal number or decimal string"),
        (FieldType::Timestamp, JsonValue::String(s)) => match parse_timestamp(s) {
            Some(ts) => {
                let text = format_timestamp(&ts);
                Some((Bound::Text(text.clone()), BoundKey::Text(text)))
            }
            None => fail(d, "an RFC 3339 timestamp string"),
        },
        (FieldType::Timestamp, _) => fail(d, "an RFC 3339 timestamp string"),
        (FieldType::Date, JsonValue::String(s)) => match parse_date(s) {
            Some(date) => {
                let text = date.format("%Y-%m-%d").to_string();
                Some((Bound::Text(text.clone()), BoundKey::Text(text)))
            }
            None => fail(d, "a `YYYY-MM-DD` date string"),
        },
        (FieldType::Date, _) => fail(d, "a `YYYY-MM-DD` date string"),
        _ => None,
    }
}

fn compile_range(node: &JsonNode, ty: FieldType, d: &mut Diags) -> Option<RangeRule> {
    let JsonValue::Object(entries) = &node.value else {
        d.error(
            node.pos,
            format!(
                "`range` must be an object like {{\"min\": 0, \"max\": 10}}, found {}",
                node.kind()
            ),
        );
        return None;
    };
    let mut rule = RangeRule::default();
    let mut keys: (Option<BoundKey>, Option<BoundKey>) = (None, None);
    let mut ok = true;
    let mut max_pos = node.pos;
    for (key, value) in entries {
        let which = key.text.as_str();
        if which != "min" && which != "max" {
            d.error(
                key.pos,
                format!("unknown key `{which}` in `range`; expected `min` or `max`"),
            );
            ok = false;
            continue;
        }
        if matches!(value.value, JsonValue::Null) {
            continue;
        }
        match compile_bound(value, which, ty, d) {
            Some((bound, k)) => {
                if which == "min" {
                    rule.min = Some(bound);
                    keys.0 = Some(k);
                } else {
                    max_pos = value.pos;
                    rule.max = Some(bound);
                    keys.1 = Some(k);
                }
            }
            None => ok = false,
        }
    }
    let inverted = match (&keys.0, &keys.1) {
        (Some(BoundKey::Int(a)), Some(BoundKey::Int(b))) => a > b,
        (Some(BoundKey::Float(a)), Some(BoundKey::Float(b))) => a > b,
        (Some(BoundKey::Decimal(a)), Some(BoundKey::Decimal(b))) => a > b,
        // Normalized UTC timestamps of equal shape and dates compare as text;
        // timestamps are compared as instants to handle fraction digits.
        (Some(BoundKey::Text(a)), Some(BoundKey::Text(b))) => {
            match (parse_timestamp(a), parse_timestamp(b)) {
                (Some(x), Some(y)) => x > y,
                _ => a > b,
            }
        }
        _ => false,
    };
    if inverted {
        d.error(max_pos, "`range.min` is greater than `range.max`");
        ok = false;
    }
    if ok && rule.min.is_none() && rule.max.is_none() {
        d.error(node.pos, "`range` must set `min`, `max` or both");
        ok = false;
    }
    ok.then_some(rule)
}

fn compile_reference_rule(node: &JsonNode, ctx: &Ctx<'_>, d: &mut Diags) -> Option<ReferenceRule> {
    let JsonValue::Object(entries) = &node.value else {
        d.error(
            node.pos,
            format!("`reference` must be a JSON object, found {}", node.kind()),
        );
        return None;
    };
    let mut rule = ReferenceRule::default();
    let mut ok = true;
    for (key, value) in entries {
        match key.text.as_str() {
            "integrity" => match &value.value {
                JsonValue::String(s) if s == "strong" => rule.integrity = Integrity::Strong,
                JsonValue::String(s) if s == "weak" => rule.integrity = Integrity::Weak,
                _ => {
                    d.error(
                        value.pos,
                        format!(
                            "`reference.integrity` must be \"strong\" or \"weak\", found {}",
                            describe_node(value)
                        ),
                    );
                    ok = false;
                }
            },
            "cascade" => match &value.value {
                JsonValue::String(s) if s == "none" => rule.cascade = Cascade::None,
                JsonValue::String(s) if s == "restrict" => rule.cascade = Cascade::Restrict,
                JsonValue::String(s) if s == "nullify" => rule.cascade = Cascade::Nullify,
                _ => {
                    d.error(
                        value.pos,
                        format!(
                            "`reference.cascade` must be \"none\", \"restrict\" or \"nullify\", found {}",
                            describe_node(value)
                        ),
                    );
                    ok = false;
                }
            },
            "aggregate_type" => match &value.value {
                JsonValue::Null => rule.aggregate_type = None,
                JsonValue::String(s) => {
                    let name = Name {
                        text: s.clone(),
                        pos: value.pos,
                    };
                    if check_name(d, "`reference.aggregate_type`", &name, true) {
                        if !ctx.aggregate_names.contains(s.as_str()) {
                            d.warning(
                                value.pos,
                                format!(
                                    "`reference.aggregate_type` names `{s}`, which is not an aggregate in this schema"
                                ),
                            );
                        }
                        rule.aggregate_type = Some(s.clone());
                    } else {
                        ok = false;
                    }
                }
                _ => {
                    d.error(
                        value.pos,
                        format!(
                            "`reference.aggregate_type` must be an aggregate name string, found {}",
                            value.kind()
                        ),
                    );
                    ok = false;
                }
            },
            "tenant" => d.warning(
                key.pos,
                "`tenant` in a reference rule is ignored: EventDBX is single-tenant (domain `default`)",
            ),
            other => {
                d.error(
                    key.pos,
                    format!(
                        "unknown key `{other}` in `reference`; expected one of: integrity, aggregate_type, cascade"
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(rule)
}

fn compile_properties(
    node: &JsonNode,
    depth: usize,
    ctx: &Ctx<'_>,
    d: &mut Diags,
) -> BTreeMap<String, FieldSchema> {
    let mut out = BTreeMap::new();
    let JsonValue::Object(entries) = &node.value else {
        d.error(
            node.pos,
            format!("`properties` must be a JSON object, found {}", node.kind()),
        );
        return out;
    };
    for (key, entry) in entries {
        if !check_name(d, "property", key, false) {
            continue;
        }
        let parse_type = |d: &mut Diags, type_node: &JsonNode| -> Option<ParsedType> {
            match &type_node.value {
                JsonValue::String(s) => match FieldType::parse(s) {
                    Ok(p) => Some(p),
                    Err(msg) => {
                        d.error(type_node.pos, msg);
                        None
                    }
                },
                _ => {
                    d.error(
                        type_node.pos,
                        format!(
                            "`type` must be a string such as \"text\", found {}",
                            type_node.kind()
                        ),
                    );
                    None
                }
            }
        };
        match &entry.value {
            JsonValue::String(_) => {
                if let Some(parsed) = parse_type(d, entry) {
                    let (format, rules) = compile_rules(&[], parsed, true, depth + 1, ctx, d);
                    out.insert(
                        key.text.clone(),
                        FieldSchema {
                            field_type: parsed.field_type,
                            format,
                            rules,
                        },
                    );
                }
            }
            JsonValue::Object(sub) => {
                let Some((_, type_node)) = sub.iter().find(|(k, _)| k.text == "type") else {
                    d.error(
                        entry.pos,
                        format!("property `{}` is missing its \"type\"", key.text),
                    );
                    continue;
                };
                if let Some(parsed) = parse_type(d, type_node) {
                    let (format, rules) = compile_rules(sub, parsed, true, depth + 1, ctx, d);
                    out.insert(
                        key.text.clone(),
                        FieldSchema {
                            field_type: parsed.field_type,
                            format,
                            rules,
                        },
                    );
                }
            }
            _ => d.error(
                entry.pos,
                format!(
                    "property `{}` must be a type string or an object with \"type\", found {}",
                    key.text,
                    entry.kind()
                ),
            ),
        }
    }
    out
}

fn compile_event(block: &Block, declared: &BTreeSet<&str>, d: &mut Diags) -> EventSchema {
    let mut out = EventSchema::default();
    let mut seen = HashMap::new();
    for prop in &block.props {
        if repeated(&mut seen, &prop.key, d) {
            continue;
        }
        let node = &prop.value;
        match prop.key.text.as_str() {
            "fields" => {
                let Some(list) = expect_string_array(d, "fields", node) else {
                    continue;
                };
                for (name, pos) in list {
                    if !declared.contains(name.as_str()) {
                        d.error(
                            pos,
                            format!(
                                "event `{}` lists undeclared field {}",
                                block.name.text,
                                backquote(&name)
                            ),
                        );
                    } else if out.fields.contains(&name) {
                        d.warning(
                            pos,
                            format!("event `{}` lists field `{name}` twice", block.name.text),
                        );
                    } else {
                        out.fields.push(name);
                    }
                }
            }
            "note" => match &node.value {
                JsonValue::Null => out.note = None,
                JsonValue::String(s) => {
                    let len = s.chars().count();
                    if len > MAX_NOTE_CHARS {
                        d.error(
                            node.pos,
                            format!(
                                "note of event `{}` is {len} characters long; the maximum is {MAX_NOTE_CHARS}",
                                block.name.text
                            ),
                        );
                    } else {
                        out.note = Some(s.clone());
                    }
                }
                _ => d.error(
                    node.pos,
                    format!("`note` must be a string or null, found {}", node.kind()),
                ),
            },
            other => d.error(
                prop.key.pos,
                format!("unknown event property `{other}`; expected one of: {EVENT_KEYS}"),
            ),
        }
    }
    out
}

/// `name` in backquotes, or JSON-quoted if it has odd characters.
fn backquote(name: &str) -> String {
    if !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        format!("`{name}`")
    } else {
        quote(name)
    }
}
