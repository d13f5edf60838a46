//! Lexer and recursive-descent parser for the `schema.dbx` DSL.
//!
//! The parser produces a syntax tree whose every name, key and JSON value
//! carries its source position, so the compiler can point at the exact token.
//! It never stops at the first syntax error: after an error it skips to the
//! next line that looks like the start of a property or block and goes on.

use super::diagnostic::{Diags, Pos};
use super::limits::MAX_JSON_DEPTH;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    /// Raw lexeme of a valid JSON number.
    Number(String),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Eq,
    Colon,
    Comma,
    /// A lexing error; the message says what is wrong.
    Invalid(String),
    Eof,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
    /// True when no other token precedes this one on its line.
    pub first_on_line: bool,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string {}", quote(s)),
        Tok::Number(n) => format!("number `{n}`"),
        Tok::LBrace => "`{`".into(),
        Tok::RBrace => "`}`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Eq => "`=`".into(),
        Tok::Colon => "`:`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Invalid(_) => "an invalid token".into(),
        Tok::Eof => "end of file".into(),
    }
}

/// JSON-quotes a string for messages, clipped to keep messages short.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 40;
    let clipped: String = s.chars().take(MAX).collect();
    let mut out = serde_json::to_string(&clipped).unwrap_or_else(|_| String::from("\"?\""));
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    col: u32,
    first_on_line: bool,
    out: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn new(source: &'a str) -> Self {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        Lexer {
            chars: source.chars().peekable(),
            line: 1,
            col: 1,
            first_on_line: true,
            out: Vec::new(),
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
            self.first_on_line = true;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    fn push(&mut self, tok: Tok, pos: Pos) {
        self.out.push(Token {
            tok,
            pos,
            first_on_line: self.first_on_line,
        });
        self.first_on_line = false;
    }

    fn skip_to_eol(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn run(mut self) -> Vec<Token> {
        loop {
            // Whitespace and comments.
            let Some(c) = self.peek() else {
                let pos = self.pos();
                self.push(Tok::Eof, pos);
                break;
            };
            if c.is_whitespace() {
                self.bump();
                continue;
            }
            if c == '#' {
                self.skip_to_eol();
                continue;
            }
            let pos = self.pos();
            if c == '/' {
                self.bump();
                if self.peek() == Some('/') {
                    self.skip_to_eol();
                } else {
                    self.push(
                        Tok::Invalid("unexpected `/`; comments start with `//` or `#`".into()),
                        pos,
                    );
                }
                continue;
            }
            let single = match c {
                '{' => Some(Tok::LBrace),
                '}' => Some(Tok::RBrace),
                '[' => Some(Tok::LBracket),
                ']' => Some(Tok::RBracket),
                '=' => Some(Tok::Eq),
                ':' => Some(Tok::Colon),
                ',' => Some(Tok::Comma),
                _ => None,
            };
            if let Some(tok) = single {
                self.bump();
                self.push(tok, pos);
                continue;
            }
            if c == '"' {
                let tok = self.lex_string();
                self.push(tok, pos);
                continue;
            }
            if c == '-' || c.is_ascii_digit() {
                let mut raw = String::new();
                while let Some(d) = self.peek() {
                    if d.is_ascii_digit() || matches!(d, '-' | '+' | '.' | 'e' | 'E') {
                        raw.push(d);
                        self.bump();
                    } else {
                        break;
                    }
                }
                let tok = if is_json_number(&raw) {
                    Tok::Number(raw)
                } else {
                    Tok::Invalid(format!("invalid number `{raw}`"))
                };
                self.push(tok, pos);
                continue;
            }
            if c.is_ascii_alphabetic() || c == '_' {
                let mut ident = String::new();
                while let Some(d) = self.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' || d == '-' {
                        ident.push(d);
                        self.bump();
                    } else {
                        break;
                    }
                }
                self.push(Tok::Ident(ident), pos);
                continue;
            }
            self.bump();
            let msg = if c == '\'' {
                "unexpected character `'`; JSON strings use double quotes".to_string()
            } else if c.is_alphanumeric() || c.is_ascii_punctuation() {
                format!("unexpected character `{c}`")
            } else {
                format!("unexpected character U+{:04X}", c as u32)
            };
            self.push(Tok::Invalid(msg), pos);
        }
        self.out
    }

    /// Lexes a JSON string starting at the opening quote. On error the
    /// returned token is `Invalid` and the lexer resumes after the string
    /// (or at the end of the line for an unterminated string).
    fn lex_string(&mut self) -> Tok {
        self.bump(); // opening quote
        let mut out = String::new();
        let mut error: Option<String> = None;
        loop {
            let Some(c) = self.peek() else {
                return Tok::Invalid("unterminated string".into());
            };
            match c {
                '"' => {
                    self.bump();
                    break;
                }
                '\n' => {
                    return Tok::Invalid(
                        "unterminated string (strings cannot span lines; use `\\n`)".into(),
                    );
                }
                '\\' => {
                    self.bump();
                    match self.bump() {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('/') => out.push('/'),
                        Some('b') => out.push('\u{8}'),
                        Some('f') => out.push('\u{c}'),
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('t') => out.push('\t'),
                        Some('u') => match self.lex_unicode_escape() {
                            Ok(ch) => out.push(ch),
                            Err(msg) => {
                                error.get_or_insert(msg);
                            }
                        },
                        Some('\n') | None => {
                            return Tok::Invalid("unterminated string".into());
                        }
                        Some(other) => {
                            error.get_or_insert(format!(
                                "invalid escape `\\{}` in string",
                                other.escape_debug()
                            ));
                        }
                    }
                }
                c if (c as u32) < 0x20 => {
                    self.bump();
                    error.get_or_insert(format!(
                        "control character U+{:04X} in string; escape it",
                        c as u32
                    ));
                }
                c => {
                    self.bump();
                    out.push(c);
                }
            }
        }
        match error {
            Some(msg) => Tok::Invalid(msg),
            None => Tok::Str(out),
        }
    }

    fn lex_hex4(&mut self) -> Result<u32, String> {
        let mut v: u32 = 0;
        for _ in 0..4 {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    self.bump();
                    v = v * 16 + d;
                }
                None => return Err("invalid `\\u` escape: expected 4 hex digits".into()),
            }
        }
        Ok(v)
    }

    fn lex_unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.lex_hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            // High surrogate: a `\uDC00`..`\uDFFF` must follow.
            if self.peek() != Some('\\') {
                return Err("invalid `\\u` escape: unpaired surrogate".into());
            }
            self.bump();
            if self.peek() != Some('u') {
                return Err("invalid `\\u` escape: unpaired surrogate".into());
            }
            self.bump();
            let lo = self.lex_hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err("invalid `\\u` escape: unpaired surrogate".into());
            }
            let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return char::from_u32(code).ok_or_else(|| "invalid `\\u` escape".to_string());
        }
        if (0xDC00..0xE000).contains(&hi) {
            return Err("invalid `\\u` escape: unpaired surrogate".into());
        }
        char::from_u32(hi).ok_or_else(|| "invalid `\\u` escape".to_string())
    }
}

/// Checks the JSON number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub(crate) fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let at = |i: usize| b.get(i).copied();
    if at(i) == Some(b'-') {
        i += 1;
    }
    match at(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while matches!(at(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        _ => return false,
    }
    if at(i) == Some(b'.') {
        i += 1;
        if !matches!(at(i), Some(b'0'..=b'9')) {
            return false;
        }
        while matches!(at(i), Some(b'0'..=b'9')) {
            i += 1;
        }
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !matches!(at(i), Some(b'0'..=b'9')) {
            return false;
        }
        while matches!(at(i), Some(b'0'..=b'9')) {
            i += 1;
        }
    }
    i == b.len()
}

// ---------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------

/// A name or key with the position of its token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Name {
    pub text: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonValue {
    Null,
    Bool(bool),
    /// Raw lexeme, kept so decimals keep every digit.
    Number(String),
    String(String),
    Array(Vec<JsonNode>),
    /// Keys in source order; duplicates are reported and dropped.
    Object(Vec<(Name, JsonNode)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonNode {
    pub pos: Pos,
    pub value: JsonValue,
}

impl JsonNode {
    /// A short description of the JSON kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            JsonValue::Null => "null",
            JsonValue::Bool(_) => "a boolean",
            JsonValue::Number(_) => "a number",
            JsonValue::String(_) => "a string",
            JsonValue::Array(_) => "an array",
            JsonValue::Object(_) => "an object",
        }
    }

    /// Converts to a `serde_json::Value` (numbers go through serde_json).
    #[cfg(test)]
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            JsonValue::Null => Value::Null,
            JsonValue::Bool(b) => Value::Bool(*b),
            JsonValue::Number(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
            JsonValue::String(s) => Value::String(s.clone()),
            JsonValue::Array(items) => Value::Array(items.iter().map(|n| n.to_value()).collect()),
            JsonValue::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// `key = <json>` inside an aggregate, field or event block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prop {
    pub key: Name,
    pub value: JsonNode,
}

/// `field <name> { ... }` or `event <name> { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Block {
    pub name: Name,
    pub props: Vec<Prop>,
    /// Keys of properties whose value had a syntax error (already
    /// reported), so the compiler does not also call them missing.
    pub broken_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AggregateAst {
    pub name: Name,
    pub props: Vec<Prop>,
    pub fields: Vec<Block>,
    pub events: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct FileAst {
    pub aggregates: Vec<AggregateAst>,
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Parses a whole source file; syntax errors go to `diags`.
pub(crate) fn parse(source: &str, diags: &mut Diags) -> FileAst {
    let toks = Lexer::new(source).run();
    let mut p = Parser { toks, i: 0, diags };
    p.file()
}

struct Parser<'d> {
    toks: Vec<Token>,
    i: usize,
    diags: &'d mut Diags,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Field,
    Event,
}

impl BlockKind {
    fn word(self) -> &'static str {
        match self {
            BlockKind::Field => "field",
            BlockKind::Event => "event",
        }
    }
}

/// Marker for "an error was reported; the caller must recover".
struct Failed;

impl Parser<'_> {
    fn tok_at(&self, i: usize) -> &Tok {
        self.toks.get(i).map(|t| &t.tok).unwrap_or(&Tok::Eof)
    }

    fn peek(&self) -> &Tok {
        self.tok_at(self.i)
    }

    fn peek_token(&self) -> Option<&Token> {
        self.toks.get(self.i).or_else(|| self.toks.last())
    }

    fn pos(&self) -> Pos {
        self.peek_token().map(|t| t.pos).unwrap_or_default()
    }

    fn first_on_line(&self, i: usize) -> bool {
        self.toks.get(i).map(|t| t.first_on_line).unwrap_or(false)
    }

    fn advance(&mut self) {
        if self.i < self.toks.len() && !matches!(self.peek(), Tok::Eof) {
            self.i += 1;
        }
    }

    fn at_eof(&self) -> bool {
        matches!(self.peek(), Tok::Eof)
    }

    /// Reports an "expected X" error at the current token. An `Invalid`
    /// token reports its own lexing message instead.
    fn unexpected(&mut self, expected: &str) {
        let pos = self.pos();
        let msg = match self.peek() {
            Tok::Invalid(msg) => msg.clone(),
            other => format!("expected {expected}, found {}", describe(other)),
        };
        self.diags.error(pos, msg);
    }

    /// True if token `i` starts `field|event|aggregate <name> {`.
    fn starts_block(&self, i: usize) -> bool {
        matches!(self.tok_at(i), Tok::Ident(w) if w == "field" || w == "event" || w == "aggregate")
            && matches!(self.tok_at(i + 1), Tok::Ident(_) | Tok::Str(_))
            && matches!(self.tok_at(i + 2), Tok::LBrace)
    }

    /// True if token `i` starts `key =`.
    fn starts_prop(&self, i: usize) -> bool {
        matches!(self.tok_at(i), Tok::Ident(_)) && matches!(self.tok_at(i + 1), Tok::Eq)
    }

    /// Skips tokens after an error inside a block. Stops before a `}` that
    /// closes the enclosing block (bracket depth is counted from `start`,
    /// the first token of the broken construct), or before the first token
    /// of a line that looks like a property (`key =`) or a block header.
    /// Always consumes at least one token unless at end of file.
    fn recover(&mut self, start: usize) {
        let mut depth: i64 = 0;
        let upto = self.i.min(self.toks.len());
        for t in self.toks.get(start..upto).unwrap_or(&[]) {
            depth += bracket_delta(&t.tok);
        }
        if self.i <= start {
            depth += bracket_delta(self.peek());
            self.advance();
        }
        loop {
            if self.at_eof() {
                return;
            }
            let i = self.i;
            if matches!(self.tok_at(i), Tok::RBrace) && depth <= 0 {
                return;
            }
            if self.first_on_line(i) && (self.starts_prop(i) || self.starts_block(i)) {
                return;
            }
            depth += bracket_delta(self.peek());
            self.advance();
        }
    }

    fn file(&mut self) -> FileAst {
        let mut file = FileAst::default();
        while !self.at_eof() {
            match self.peek() {
                Tok::Ident(w) if w == "aggregate" => {
                    if let Some(agg) = self.aggregate() {
                        file.aggregates.push(agg);
                    }
                }
                _ => {
                    self.unexpected("`aggregate <name> { ... }`");
                    self.skip_to_next_aggregate();
                }
            }
        }
        file
    }

    /// Skips at least one token, then up to the next line starting with
    /// `aggregate <name> {`.
    fn skip_to_next_aggregate(&mut self) {
        self.advance();
        while !self.at_eof() {
            let i = self.i;
            if self.first_on_line(i)
                && matches!(self.tok_at(i), Tok::Ident(w) if w == "aggregate")
                && self.starts_block(i)
            {
                return;
            }
            self.advance();
        }
    }

    fn name(&mut self, what: &str) -> Result<Name, Failed> {
        let pos = self.pos();
        let text = match self.peek() {
            Tok::Ident(s) | Tok::Str(s) => s.clone(),
            _ => {
                self.unexpected(&format!("{what} name"));
                return Err(Failed);
            }
        };
        self.advance();
        Ok(Name { text, pos })
    }

    fn aggregate(&mut self) -> Option<AggregateAst> {
        self.advance(); // `aggregate`
        let Ok(name) = self.name("an aggregate") else {
            self.skip_to_next_aggregate();
            return None;
        };
        if !matches!(self.peek(), Tok::LBrace) {
            self.unexpected("`{` after the aggregate name");
            self.skip_to_next_aggregate();
            return None;
        }
        let open = self.pos();
        self.advance();
        let mut agg = AggregateAst {
            name,
            props: Vec::new(),
            fields: Vec::new(),
            events: Vec::new(),
        };
        loop {
            let i = self.i;
            match self.peek().clone() {
                Tok::RBrace => {
                    self.advance();
                    break;
                }
                Tok::Eof => {
                    self.diags.error(
                        open,
                        format!(
                            "unterminated block: `{{` of aggregate `{}` is never closed",
                            agg.name.text
                        ),
                    );
                    break;
                }
                Tok::Ident(w)
                    if w == "aggregate" && self.first_on_line(i) && !self.starts_prop(i) =>
                {
                    self.diags.error(
                        open,
                        format!(
                            "unterminated block: `{{` of aggregate `{}` is never closed",
                            agg.name.text
                        ),
                    );
                    break;
                }
                Tok::Ident(w) if (w == "field" || w == "event") && !self.starts_prop(i) => {
                    let kind = if w == "field" {
                        BlockKind::Field
                    } else {
                        BlockKind::Event
                    };
                    if let Some(block) = self.block(kind) {
                        match kind {
                            BlockKind::Field => agg.fields.push(block),
                            BlockKind::Event => agg.events.push(block),
                        }
                    }
                }
                Tok::Ident(_) => {
                    if let Ok(prop) = self.prop() {
                        agg.props.push(prop);
                    }
                }
                _ => {
                    self.unexpected("a property (`key = value`), `field`, `event` or `}`");
                    self.recover(i);
                }
            }
        }
        Some(agg)
    }

    fn block(&mut self, kind: BlockKind) -> Option<Block> {
        let start = self.i;
        self.advance(); // keyword
        let Ok(name) = self.name(&format!("a {}", kind.word())) else {
            self.recover(start);
            return None;
        };
        if !matches!(self.peek(), Tok::LBrace) {
            self.unexpected(&format!("`{{` after the {} name", kind.word()));
            self.recover(start);
            return None;
        }
        let open = self.pos();
        self.advance();
        let mut block = Block {
            name,
            props: Vec::new(),
            broken_keys: Vec::new(),
        };
        loop {
            let i = self.i;
            match self.peek().clone() {
                Tok::RBrace => {
                    self.advance();
                    break;
                }
                Tok::Eof => {
                    self.diags.error(
                        open,
                        format!(
                            "unterminated block: `{{` of {} `{}` is never closed",
                            kind.word(),
                            block.name.text
                        ),
                    );
                    break;
                }
                Tok::Ident(_) if self.first_on_line(i) && self.starts_block(i) => {
                    self.diags.error(
                        open,
                        format!(
                            "unterminated block: `{{` of {} `{}` is never closed",
                            kind.word(),
                            block.name.text
                        ),
                    );
                    break;
                }
                Tok::Ident(_) => match self.prop() {
                    Ok(prop) => block.props.push(prop),
                    Err(Some(key)) => block.broken_keys.push(key),
                    Err(None) => {}
                },
                _ => {
                    self.unexpected("a property (`key = value`) or `}`");
                    self.recover(i);
                }
            }
        }
        Some(block)
    }

    /// Parses `key = <json>`. On error, returns the key if it was read.
    fn prop(&mut self) -> Result<Prop, Option<String>> {
        let start = self.i;
        let key = match self.name("a property") {
            Ok(k) => k,
            Err(Failed) => {
                self.recover(start);
                return Err(None);
            }
        };
        if !matches!(self.peek(), Tok::Eq) {
            let pos = self.pos();
            let msg = match self.peek() {
                Tok::Invalid(msg) => msg.clone(),
                other => format!(
                    "expected `=` after property `{}`, found {}",
                    key.text,
                    describe(other)
                ),
            };
            self.diags.error(pos, msg);
            self.recover(start);
            return Err(Some(key.text));
        }
        self.advance();
        match self.json(1) {
            Ok(value) => Ok(Prop { key, value }),
            Err(Failed) => {
                self.recover(start);
                Err(Some(key.text))
            }
        }
    }

    /// Parses one JSON value. `depth` is the nesting level of this value
    /// (1 for a property value); containers deeper than `MAX_JSON_DEPTH`
    /// are rejected before recursing, so recursion is bounded.
    fn json(&mut self, depth: usize) -> Result<JsonNode, Failed> {
        let pos = self.pos();
        let value = match self.peek().clone() {
            Tok::Str(s) => {
                self.advance();
                JsonValue::String(s)
            }
            Tok::Number(n) => {
                self.advance();
                JsonValue::Number(n)
            }
            Tok::Ident(w) if w == "true" => {
                self.advance();
                JsonValue::Bool(true)
            }
            Tok::Ident(w) if w == "false" => {
                self.advance();
                JsonValue::Bool(false)
            }
            Tok::Ident(w) if w == "null" => {
                self.advance();
                JsonValue::Null
            }
            Tok::Ident(w) => {
                self.diags.error(
                    pos,
                    format!("expected a JSON value, found `{w}` (JSON strings must be quoted)"),
                );
                return Err(Failed);
            }
            Tok::LBrace | Tok::LBracket if depth > MAX_JSON_DEPTH => {
                self.diags.error(
                    pos,
                    format!("JSON value is nested more than {MAX_JSON_DEPTH} levels deep"),
                );
                return Err(Failed);
            }
            Tok::LBrace => {
                self.advance();
                JsonValue::Object(self.json_object(depth)?)
            }
            Tok::LBracket => {
                self.advance();
                JsonValue::Array(self.json_array(depth)?)
            }
            _ => {
                self.unexpected("a JSON value");
                return Err(Failed);
            }
        };
        Ok(JsonNode { pos, value })
    }

    fn json_object(&mut self, depth: usize) -> Result<Vec<(Name, JsonNode)>, Failed> {
        let mut entries: Vec<(Name, JsonNode)> = Vec::new();
        if matches!(self.peek(), Tok::RBrace) {
            self.advance();
            return Ok(entries);
        }
        loop {
            let kpos = self.pos();
            let key = match self.peek() {
                Tok::Str(s) => s.clone(),
                _ => {
                    self.unexpected("a string key in JSON object");
                    return Err(Failed);
                }
            };
            self.advance();
            if !matches!(self.peek(), Tok::Colon) {
                self.unexpected("`:` after JSON object key");
                return Err(Failed);
            }
            self.advance();
            let value = self.json(depth + 1)?;
            if let Some((first, _)) = entries.iter().find(|(k, _)| k.text == key) {
                let line = first.pos.line;
                self.diags.error(
                    kpos,
                    format!(
                        "duplicate key {} in JSON object (first set on line {line})",
                        quote(&key)
                    ),
                );
            } else {
                entries.push((
                    Name {
                        text: key,
                        pos: kpos,
                    },
                    value,
                ));
            }
            match self.peek() {
                Tok::Comma => {
                    self.advance();
                    if matches!(self.peek(), Tok::RBrace) {
                        let pos = self.pos();
                        self.diags
                            .error(pos, "trailing comma in JSON object is not allowed");
                        return Err(Failed);
                    }
                }
                Tok::RBrace => {
                    self.advance();
                    return Ok(entries);
                }
                _ => {
                    self.unexpected("`,` or `}` in JSON object");
                    return Err(Failed);
                }
            }
        }
    }

    fn json_array(&mut self, depth: usize) -> Result<Vec<JsonNode>, Failed> {
        let mut items = Vec::new();
        if matches!(self.peek(), Tok::RBracket) {
            self.advance();
            return Ok(items);
        }
        loop {
            items.push(self.json(depth + 1)?);
            match self.peek() {
                Tok::Comma => {
                    self.advance();
                    if matches!(self.peek(), Tok::RBracket) {
                        let pos = self.pos();
                        self.diags
                            .error(pos, "trailing comma in JSON array is not allowed");
                        return Err(Failed);
                    }
                }
                Tok::RBracket => {
                    self.advance();
                    return Ok(items);
                }
                _ => {
                    self.unexpected("`,` or `]` in JSON array");
                    return Err(Failed);
                }
            }
        }
    }
}

fn bracket_delta(tok: &Tok) -> i64 {
    match tok {
        Tok::LBrace | Tok::LBracket => 1,
        Tok::RBrace | Tok::RBracket => -1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(s: &str) -> Vec<Tok> {
        Lexer::new(s).run().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn json_number_grammar() {
        for ok in ["0", "-0", "12", "1.5", "-1.5e10", "1E+2", "0.0e-1"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1.2.3", "--1", "1-2",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn lexes_comments_strings_and_positions() {
        let toks = Lexer::new("a = \"x#y//z\" # c\n  // d\n  b = 1").run();
        let kinds: Vec<&Tok> = toks.iter().map(|t| &t.tok).collect();
        assert_eq!(
            kinds,
            vec![
                &Tok::Ident("a".into()),
                &Tok::Eq,
                &Tok::Str("x#y//z".into()),
                &Tok::Ident("b".into()),
                &Tok::Eq,
                &Tok::Number("1".into()),
                &Tok::Eof
            ]
        );
        let b = toks.get(3).map(|t| (t.pos, t.first_on_line));
        assert_eq!(b, Some((Pos { line: 3, col: 3 }, true)));
        assert_eq!(toks.get(4).map(|t| t.first_on_line), Some(false));
    }

    #[test]
    fn lexes_escapes() {
        assert_eq!(
            lex(r#""a\n\u00e9\ud83d\ude00\"""#),
            vec![Tok::Str("a\né😀\"".into()), Tok::Eof]
        );
        assert_eq!(
            lex(r#""\ud83d""#),
            vec![
                Tok::Invalid("invalid `\\u` escape: unpaired surrogate".into()),
                Tok::Eof
            ]
        );
        assert_eq!(
            lex("\"\\q\""),
            vec![
                Tok::Invalid("invalid escape `\\q` in string".into()),
                Tok::Eof
            ]
        );
        assert_eq!(
            lex("\"abc\nx"),
            vec![
                Tok::Invalid("unterminated string (strings cannot span lines; use `\\n`)".into()),
                Tok::Ident("x".into()),
                Tok::Eof
            ]
        );
        assert_eq!(
            lex("/ 01"),
            vec![
                Tok::Invalid("unexpected `/`; comments start with `//` or `#`".into()),
                Tok::Invalid("invalid number `01`".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn parses_nested_json_with_positions() {
        let mut d = Diags::new();
        let ast = parse(
            "aggregate a {\n  x = {\n    \"k\": [1, true, null, \"s\"]\n  }\n  event e {}\n}\n",
            &mut d,
        );
        assert_eq!(d.error_count(), 0);
        let agg = ast.aggregates.first().cloned();
        let agg = agg.map(|a| (a.name.text, a.props.len(), a.events.len()));
        assert_eq!(agg, Some(("a".to_string(), 1, 1)));
        let prop = ast
            .aggregates
            .first()
            .and_then(|a| a.props.first())
            .cloned();
        let prop = prop.map(|p| (p.key.pos, p.value.pos, p.value.to_value()));
        assert_eq!(
            prop,
            Some((
                Pos { line: 2, col: 3 },
                Pos { line: 2, col: 7 },
                serde_json::json!({"k": [1, true, null, "s"]})
            ))
        );
    }

    #[test]
    fn recovers_and_reports_several_errors() {
        let mut d = Diags::new();
        let src = "aggregate a {\n  x \"y\"\n  field f {\n    type = yes\n  }\n  event e { note = [1,, ] }\n}\n";
        let ast = parse(src, &mut d);
        let (errors, _) = d.finish(src, "s");
        let msgs: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
            .collect();
        assert_eq!(
            msgs,
            vec![
                "2:5 expected `=` after property `x`, found string \"y\"",
                "4:12 expected a JSON value, found `yes` (JSON strings must be quoted)",
                "6:23 expected a JSON value, found `,`",
            ]
        );
        let a = ast.aggregates.first();
        assert_eq!(a.map(|a| (a.fields.len(), a.events.len())), Some((1, 1)));
    }

    #[test]
    fn deep_json_is_rejected_without_recursing_forever() {
        let mut d = Diags::new();
        let deep = format!(
            "aggregate a {{ x = {}1{} }}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let _ = parse(&deep, &mut d);
        let (errors, _) = d.finish(&deep, "s");
        assert_eq!(
            errors.first().map(|e| (e.column, e.message.clone())),
            Some((
                51,
                "JSON value is nested more than 32 levels deep".to_string()
            ))
        );
    }
}
