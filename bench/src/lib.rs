//! What the benchmark binaries in `src/bin/` share.

use std::path::Path;

use eventdbx::engine::{Engine, EngineOptions, Issuer, KeySpec};
use serde_json::{Map, Value};

/// The median of `values` (sorted in place); the mean of the middle two for an even count,
/// NaN for none.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `value` of command-line flag `flag` parsed as a `T`; the error names the flag.
pub fn parse_flag<T>(flag: &str, value: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{flag}: {e}"))
}

/// Bytes of the JSON payload every benchmark append carries (the pgbench scripts' too).
pub const PAYLOAD_BYTES: usize = 256;
/// Aggregates the benchmark appends spread over.
pub const AGGREGATES: u64 = 10_000;

/// A [`PAYLOAD_BYTES`]-byte JSON object: a counter plus padding.
pub fn payload(n: u64) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("n".into(), Value::from(n));
    let used = serde_json::to_string(&map).map(|s| s.len()).unwrap_or(0) + r#","pad":"""#.len();
    map.insert(
        "pad".into(),
        Value::from("x".repeat(PAYLOAD_BYTES.saturating_sub(used))),
    );
    map
}

/// The issuer of every benchmark append.
pub fn issuer() -> Issuer {
    Issuer {
        group: "bench".into(),
        user: "bench".into(),
    }
}

/// Opens (creating) an engine on `dir` with every default, sealed under a fresh random data
/// key when `encrypted`.
pub fn open_engine(dir: &Path, encrypted: bool) -> Result<Engine, String> {
    let mut options = EngineOptions::new(dir);
    if encrypted {
        let key = eventdbx::engine::seal::generate_key_text().map_err(|e| e.to_string())?;
        options.encryption =
            Some(KeySpec::parse(&format!("base64:{}", key.trim())).map_err(|e| e.to_string())?);
    }
    Engine::open(options).map_err(|e| e.to_string())
}
