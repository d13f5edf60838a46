//! The `schema.dbx` compiler and the write-path validator.
//!
//! This module owns:
//! - the DSL: lexing and parsing `schema.dbx` with source positions
//!   ([`compile`]), every compile-time check, and rustc-style
//!   [`Diagnostic`]s (several per run);
//! - the compiled runtime schema ([`CompiledSchemaSet`], [`AggregateSchema`],
//!   [`FieldSchema`], [`EventSchema`], [`Rules`]) with deterministic,
//!   lossless JSON (de)serialization;
//! - write-path validation of one event ([`AggregateSchema::validate_event`]):
//!   event and field allowlists, field locks, types, rules, formats,
//!   references and nested properties, returning the normalized payload or
//!   a [`SchemaViolation`].
//!
//! It does no I/O and reads no clock. Reference existence is asked of the
//! caller through [`ReferenceLookup`]. State materialization uses
//! `crate::merge_patch::merge_patch` (RFC 7396), which this module's
//! semantics (`required` is checked on the merged state) are defined by.
//!
//! The user-facing reference is `docs/SCHEMA.md`.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::todo,
        clippy::unimplemented
    )
)]

mod compile;
mod diagnostic;
mod formats;
mod parse;
mod policy;
mod types;
mod validate;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod validate_tests;

pub use diagnostic::{CompileErrors, Diagnostic, Severity};
pub use policy::{RestrictMode, SchemaPolicy};
pub use types::{
    AggregateSchema, Bound, Cascade, CompiledSchemaSet, EventSchema, FieldSchema, FieldType,
    Format, Integrity, LengthRule, RangeRule, ReferenceRule, RegexPattern, Rules,
};
pub use validate::{ReferenceLookup, SchemaViolation, ValidatedEvent, ViolationKind};

/// Every limit the compiler and validator enforce, with the reason.
pub mod limits {
    /// Largest accepted `schema.dbx`. Real schemas are a few KiB; the cap
    /// bounds parse time and memory for a daemon that compiles untrusted
    /// uploads.
    pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;

    /// Deepest nesting of JSON arrays/objects in a property value. Bounds
    /// the parser's recursion so hostile input cannot overflow the stack.
    pub const MAX_JSON_DEPTH: usize = 32;

    /// Deepest nesting of `properties` inside `properties` (validation
    /// recurses once per level). For source files the JSON depth limit
    /// already caps it lower (each level is two JSON levels); schemas
    /// loaded from stored JSON are bounded by serde_json's recursion limit.
    pub const MAX_PROPERTIES_DEPTH: usize = 32;

    /// Aggregates per schema: keeps the compiled set (loaded on every
    /// daemon start) and `schema show` output bounded.
    pub const MAX_AGGREGATES: usize = 1024;

    /// Fields per aggregate: every write checks each declared field once,
    /// so this bounds per-event validation cost.
    pub const MAX_FIELDS_PER_AGGREGATE: usize = 512;

    /// Events per aggregate: bounds compiled size; the engine keys
    /// dispatch by event name.
    pub const MAX_EVENTS_PER_AGGREGATE: usize = 1024;

    /// Length of aggregate, field, event and property names: names appear
    /// in keys, CLI arguments and reference strings.
    pub const MAX_NAME_CHARS: usize = 64;

    /// Event notes are short labels stored with every event (spec: 128).
    pub const MAX_NOTE_CHARS: usize = 128;

    /// Characters in one regex rule's source; long patterns are almost
    /// always generated or hostile.
    pub const MAX_REGEX_PATTERN_CHARS: usize = 4096;

    /// Compiled program size of one regex (regex crate `size_limit`):
    /// bounds memory and compile time, e.g. for `\w{1000}{1000}`.
    pub const MAX_REGEX_COMPILED_BYTES: usize = 1024 * 1024;

    /// Lazy-DFA cache per regex (regex crate `dfa_size_limit`): bounds
    /// memory used while matching on the write path.
    pub const MAX_REGEX_DFA_BYTES: usize = 2 * 1024 * 1024;

    /// Decimal precision ceiling (spec: `1 <= p <= 38`, as in SQL numerics).
    pub const MAX_DECIMAL_PRECISION: u8 = 38;

    /// Characters in a decimal literal; 38 digits plus sign, point and
    /// exponent fit easily. Rejects absurd inputs before any work.
    pub const MAX_DECIMAL_INPUT_CHARS: usize = 128;

    /// Largest exponent magnitude accepted in a decimal JSON number (e.g.
    /// `1e20`); stops `1e999999999` from allocating huge digit strings.
    pub const MAX_DECIMAL_EXPONENT: i64 = 128;

    /// Characters in the id part of a reference (`aggregate#id`).
    pub const MAX_REFERENCE_ID_CHARS: usize = 128;

    /// Longest address accepted by the `email` format (RFC 5321 path limit).
    pub const MAX_EMAIL_CHARS: usize = 254;

    /// Longest URL accepted by the `url` format (common browser/server limit).
    pub const MAX_URL_CHARS: usize = 2048;

    /// Diagnostics kept per compile: a garbage file would otherwise yield
    /// one per token.
    pub const MAX_DIAGNOSTICS: usize = 100;

    /// Characters of the source line copied into a diagnostic; bounds
    /// memory for minified one-line sources.
    pub const MAX_DIAGNOSTIC_LINE_CHARS: usize = 240;

    /// Characters of an offending value quoted in a violation (the rest is
    /// cut): keeps error responses and logs small.
    pub const MAX_VIOLATION_VALUE_CHARS: usize = 64;
}

/// Compiles schema source text. Pure: no I/O, no clock. `file_name` is
/// only used in diagnostics.
///
/// On success the returned set carries any warnings; on failure every
/// error found (not only the first) plus the warnings are returned.
pub fn compile(source: &str, file_name: &str) -> Result<CompiledSchemaSet, CompileErrors> {
    let mut diags = diagnostic::Diags::new();
    if source.len() > limits::MAX_SOURCE_BYTES {
        diags.error(
            diagnostic::Pos { line: 1, col: 1 },
            format!(
                "schema source is {} bytes; the limit is {} bytes (1 MiB)",
                source.len(),
                limits::MAX_SOURCE_BYTES
            ),
        );
        let (errors, warnings) = diags.finish("", file_name);
        return Err(CompileErrors { errors, warnings });
    }
    let ast = parse::parse(source, &mut diags);
    let mut set = compile::compile_file(&ast, &mut diags);
    let failed = diags.error_count() > 0;
    let (errors, warnings) = diags.finish(source, file_name);
    if failed {
        return Err(CompileErrors { errors, warnings });
    }
    set.warnings = warnings;
    Ok(set)
}
