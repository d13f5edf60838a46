//! Human output helpers: aligned tables, times, durations, and stdout writing that ends
//! quietly when the reader goes away (`dbx ... | head`).

use serde_json::{Map, Value};

/// Writes formatted text to stdout. A closed pipe ends the program quietly with success,
/// as a Unix filter does; any other write error ends it with one line on stderr.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {err}");
        std::process::exit(1);
    }
}

/// `println!` that survives a closed pipe (see [`write_stdout`]).
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that survives a closed pipe (see [`write_stdout`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// Renders rows under headers as columns separated by two spaces (no trailing spaces).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Key/value lines with the keys padded to one width.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }
    out
}

/// Unix seconds as RFC 3339 UTC (`2026-01-02T03:04:05Z`).
pub fn unix_to_rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| seconds.to_string())
}

/// Current Unix seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `3725` -> `1h 2m 5s`.
pub fn human_duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
        seconds % 60,
    );
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// A JSON value as a table cell: strings bare, null as `-`, everything else compact JSON.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Rows of JSON objects as a [`table`]: one column per `(header, key)`, each cell by
/// [`cell`].
pub fn json_table(rows: &[Map<String, Value>], columns: &[(&str, &str)]) -> String {
    let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|(_, key)| cell(row.get(*key))).collect())
        .collect();
    table(&headers, &cells)
}

/// Pretty JSON (two-space indent).
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let out = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "alpha".into()],
                vec!["22".into(), "b".into()],
            ],
        );
        assert_eq!(out, "ID  NAME\n1   alpha\n22  b\n");
    }

    #[test]
    fn json_tables_pick_columns_by_key() {
        let rows: Vec<Map<String, Value>> = [
            serde_json::json!({"id": "a-1", "version": 3, "note": null}),
            serde_json::json!({"id": "b", "version": 12}),
        ]
        .into_iter()
        .filter_map(|v| v.as_object().cloned())
        .collect();
        let out = json_table(
            &rows,
            &[("VERSION", "version"), ("ID", "id"), ("NOTE", "note")],
        );
        assert_eq!(
            out,
            "VERSION  ID   NOTE\n3        a-1  -\n12       b    -\n"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(3725), "1h 2m 5s");
        assert_eq!(human_duration(90_000), "1d 1h");
    }
}
