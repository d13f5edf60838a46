//! Compile diagnostics: positions, severities and the rustc-like rendering.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::limits::{MAX_DIAGNOSTICS, MAX_DIAGNOSTIC_LINE_CHARS};

/// How bad a diagnostic is. Only errors make [`super::compile`] fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Severity::Error => f.write_str("error"),
            Severity::Warning => f.write_str("warning"),
        }
    }
}

/// One message about a position in a schema source file.
///
/// `line` and `column` are 1-based; the column counts Unicode scalar values
/// (characters), not bytes. `source_line` is the text of the offending line
/// (lines longer than [`MAX_DIAGNOSTIC_LINE_CHARS`] are clipped with `…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub severity: Severity,
    pub source_line: String,
}

impl fmt::Display for Diagnostic {
    /// Renders the diagnostic like rustc:
    ///
    /// ```text
    /// error: event `order_paid` lists undeclared field `amount`
    ///  --> schema.dbx:12:25
    ///    |
    /// 12 |     fields = ["status", "amount"]
    ///    |                         ^
    /// ```
    ///
    /// The gutter is as wide as the line number. No trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line_no = self.line.to_string();
        let pad = " ".repeat(line_no.chars().count());
        writeln!(f, "{}: {}", self.severity, self.message)?;
        writeln!(f, " --> {}:{}:{}", self.file, self.line, self.column)?;
        writeln!(f, "{pad} |")?;
        if self.source_line.is_empty() {
            writeln!(f, "{line_no} |")?;
        } else {
            writeln!(f, "{line_no} | {}", self.source_line)?;
        }
        // Reproduce tabs so the caret lines up under tab-indented sources.
        let wanted = self.column.saturating_sub(1) as usize;
        let mut caret_pad = String::with_capacity(wanted);
        let mut chars = self.source_line.chars();
        for _ in 0..wanted.min(MAX_DIAGNOSTIC_LINE_CHARS + 1) {
            match chars.next() {
                Some('\t') => caret_pad.push('\t'),
                _ => caret_pad.push(' '),
            }
        }
        write!(f, "{pad} | {caret_pad}^")
    }
}

/// All diagnostics of a failed compile: at least one error, plus any warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileErrors {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for CompileErrors {
    /// Every error, then every warning, separated by blank lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for d in self.errors.iter().chain(self.warnings.iter()) {
            if !first {
                f.write_str("\n\n")?;
            }
            first = false;
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileErrors {}

/// A position in the source: 1-based line and character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct RawDiag {
    pub pos: Pos,
    pub severity: Severity,
    pub message: String,
}

/// Collects diagnostics while parsing and compiling, capped at
/// [`MAX_DIAGNOSTICS`] so a garbage file cannot produce unbounded output.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    items: Vec<RawDiag>,
    dropped: usize,
    error_count: usize,
}

impl Diags {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, Severity::Error, message.into());
    }

    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, Severity::Warning, message.into());
    }

    fn push(&mut self, pos: Pos, severity: Severity, message: String) {
        if severity == Severity::Error {
            self.error_count = self.error_count.saturating_add(1);
        }
        if self.items.len() >= MAX_DIAGNOSTICS {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.items.push(RawDiag {
            pos,
            severity,
            message,
        });
    }

    pub fn error_count(&self) -> usize {
        self.error_count
    }

    /// Turns the raw diagnostics into rendered ones, sorted by position
    /// (stable, so diagnostics at one position keep their discovery order).
    pub fn finish(self, source: &str, file: &str) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let lines: Vec<&str> = source.split('\n').collect();
        let mut items = self.items;
        items.sort_by_key(|d| d.pos);
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let last_pos = items.last().map(|d| d.pos).unwrap_or_default();
        for raw in items {
            let d = render(&lines, file, raw);
            match d.severity {
                Severity::Error => errors.push(d),
                Severity::Warning => warnings.push(d),
            }
        }
        if self.dropped > 0 {
            let raw = RawDiag {
                pos: last_pos,
                severity: Severity::Error,
                message: format!(
                    "too many diagnostics: {} more not shown (the limit is {MAX_DIAGNOSTICS})",
                    self.dropped
                ),
            };
            let d = render(&lines, file, raw);
            if self.error_count > 0 {
                errors.push(d);
            } else {
                warnings.push(Diagnostic {
                    severity: Severity::Warning,
                    ..d
                });
            }
        }
        (errors, warnings)
    }
}

fn render(lines: &[&str], file: &str, raw: RawDiag) -> Diagnostic {
    let line = raw.pos.line.max(1);
    let text = lines
        .get(line.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("");
    let text = text.strip_suffix('\r').unwrap_or(text);
    let source_line = if text.chars().count() > MAX_DIAGNOSTIC_LINE_CHARS {
        let mut clipped: String = text.chars().take(MAX_DIAGNOSTIC_LINE_CHARS).collect();
        clipped.push('…');
        clipped
    } else {
        text.to_string()
    };
    Diagnostic {
        file: file.to_string(),
        line,
        column: raw.pos.col.max(1),
        message: raw.message,
        severity: raw.severity,
        source_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc_with_adaptive_gutter() {
        let d = Diagnostic {
            file: "schema.dbx".into(),
            line: 12,
            column: 25,
            message: "event `order_paid` lists undeclared field `amount`".into(),
            severity: Severity::Error,
            source_line: "    fields = [\"status\", \"amount\"]".into(),
        };
        let expected = "error: event `order_paid` lists undeclared field `amount`\n \
--> schema.dbx:12:25\n   |\n12 |     fields = [\"status\", \"amount\"]\n   |                         ^";
        assert_eq!(d.to_string(), expected);

        let d1 = Diagnostic {
            line: 3,
            column: 1,
            severity: Severity::Warning,
            source_line: "x".into(),
            ..d.clone()
        };
        assert_eq!(
            d1.to_string(),
            "warning: event `order_paid` lists undeclared field `amount`\n --> schema.dbx:3:1\n  |\n3 | x\n  | ^"
        );
        let d3 = Diagnostic {
            line: 100,
            column: 3,
            source_line: "\tab".into(),
            ..d
        };
        assert_eq!(
            d3.to_string(),
            "error: event `order_paid` lists undeclared field `amount`\n --> schema.dbx:100:3\n    |\n100 | \tab\n    | \t ^"
        );
    }

    #[test]
    fn caps_and_sorts() {
        let mut d = Diags::new();
        for i in 0..(MAX_DIAGNOSTICS + 5) {
            d.error(
                Pos {
                    line: (MAX_DIAGNOSTICS + 10 - i) as u32,
                    col: 1,
                },
                "e",
            );
        }
        assert_eq!(d.error_count(), MAX_DIAGNOSTICS + 5);
        let (errors, warnings) = d.finish("", "f");
        assert!(warnings.is_empty());
        assert_eq!(errors.len(), MAX_DIAGNOSTICS + 1);
        assert!(errors
            .windows(2)
            .take(MAX_DIAGNOSTICS - 1)
            .all(|w| w[0].line <= w[1].line));
        assert_eq!(
            errors.last().map(|e| e.message.as_str()),
            Some("too many diagnostics: 5 more not shown (the limit is 100)")
        );
    }
}
