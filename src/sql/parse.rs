//! SQL text -> [`Statement`] plans: the entry point, limits, and the planners for INSERT,
//! SELECT over the virtual tables, the table functions and FROM-less scalar SELECTs.

use sqlparser::ast::{self, Expr};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::catalog;
use super::error::{SqlError, IMMUTABLE_HINT};
use super::params::{self, comparable};
use super::plan::*;
use super::session;

/// Longest SQL string accepted, in bytes. A statement stream this long is already far beyond
/// any legitimate single request (10,000 VALUES rows of 100 bytes is 1 MB), and bounding it
/// bounds the tokenizer's and parser's memory and time for hostile input.
pub const MAX_SQL_BYTES: usize = 1 << 20;
/// Most statements in one query string (simple protocol).
pub const MAX_STATEMENTS: usize = 1_000;
/// Most items in one IN list, and most rows in one INSERT ... VALUES.
pub const MAX_LIST_ITEMS: usize = 10_000;
/// sqlparser's recursion limit (nesting of parentheses, subqueries, function calls).
pub const RECURSION_LIMIT: usize = 64;
/// Most operator tokens one expression may chain. sqlparser builds `a + b + c ...` as a
/// left-deep tree without counting recursion, and walking (or dropping) a tree of 50,000
/// levels overflows the stack; this bound is checked on tokens before parsing.
pub const MAX_OPERATOR_CHAIN: usize = 1_000;

/// The shapes the planner supports, shown as the hint of `Unsupported` errors.
pub const SUPPORTED_SHAPES: &str = "supported: INSERT INTO events (aggregate_type, aggregate_id, \
event_type, payload [, metadata, note, expected_version, idempotency_key]) VALUES (...) [RETURNING ...]; \
SELECT <columns | col -> 'key' | col ->> 'key' | COUNT(*)> FROM events | outbox | aggregates | schemas \
[WHERE col <op> value AND ...] [ORDER BY col [DESC]] [LIMIT n] [OFFSET n]; \
SELECT * FROM read_outbox(after, take); CALL verify([aggregate_type [, aggregate_id]]); \
CALL apply_schema(source); SET/SHOW/RESET/BEGIN/COMMIT/ROLLBACK/DISCARD/DEALLOCATE; \
SELECT version(), current_setting(...), current_schema(), ...";

/// Parses a query string (one or more `;`-separated statements) into plans.
///
/// An empty string, or one holding only `;` and comments, is `[Statement::Empty]`.
pub fn parse(sql: &str) -> Result<Vec<Statement>, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::too_complex(format!(
            "query text is {} bytes; the limit is {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| SqlError::Syntax {
            message: e.message.clone(),
            position: char_position(sql, e.location.line, e.location.column),
        })?;
    check_operator_chains(&tokens)?;
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let parsed = parser
        .parse_statements()
        .map_err(|e| parser_error(sql, e))?;
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(SqlError::Syntax {
            message: format!("unexpected {} after the end of a statement", rest.token),
            position: char_position(sql, rest.span.start.line, rest.span.start.column),
        });
    }
    if parsed.len() > MAX_STATEMENTS {
        return Err(SqlError::too_complex(format!(
            "{} statements in one query string; the limit is {MAX_STATEMENTS}",
            parsed.len()
        )));
    }
    if parsed.is_empty() {
        return Ok(vec![Statement::Empty]);
    }
    parsed
        .into_iter()
        .map(|stmt| {
            params::check_placeholders(&stmt)?;
            let mut planned = plan_statement(&stmt)?;
            params::param_types(&planned)?;
            if let (Statement::Catalog(answer), ast::Statement::Query(q)) = (&mut planned, stmt) {
                if answer.awaiting_query() {
                    answer.attach(q);
                }
            }
            Ok(planned)
        })
        .collect()
}

/// Rejects expressions whose operator chains would build a tree too deep to walk safely.
///
/// Counts operator tokens per comma-separated segment, summed over the open parentheses
/// (a conservative bound on the depth sqlparser's left-deep trees reach).
/// Also counts statements (non-empty `;`-separated segments) so that a string of 100,000
/// statements is refused before it is parsed.
fn check_operator_chains(tokens: &[TokenWithSpan]) -> Result<(), SqlError> {
    let mut stack: Vec<usize> = vec![0];
    let mut depth: usize = 0;
    let mut statements: usize = 0;
    let mut segment_empty = true;
    for t in tokens {
        match &t.token {
            Token::SemiColon => segment_empty = true,
            Token::Whitespace(_) | Token::EOF => {}
            _ => {
                if segment_empty {
                    statements += 1;
                    if statements > MAX_STATEMENTS {
                        return Err(SqlError::too_complex(format!(
                            "more than {MAX_STATEMENTS} statements in one query string"
                        )));
                    }
                }
                segment_empty = false;
            }
        }
        let counts = match &t.token {
            Token::LParen | Token::LBracket => {
                stack.push(0);
                continue;
            }
            Token::RParen | Token::RBracket => {
                if stack.len() > 1 {
                    if let Some(n) = stack.pop() {
                        depth = depth.saturating_sub(n);
                    }
                }
                continue;
            }
            Token::Comma | Token::SemiColon => {
                if let Some(n) = stack.last_mut() {
                    depth = depth.saturating_sub(*n);
                    *n = 0;
                }
                continue;
            }
            Token::Word(w) => matches!(
                w.keyword,
                sqlparser::keywords::Keyword::AND
                    | sqlparser::keywords::Keyword::OR
                    | sqlparser::keywords::Keyword::NOT
                    | sqlparser::keywords::Keyword::IS
                    | sqlparser::keywords::Keyword::LIKE
                    | sqlparser::keywords::Keyword::ILIKE
                    | sqlparser::keywords::Keyword::SIMILAR
                    | sqlparser::keywords::Keyword::BETWEEN
                    | sqlparser::keywords::Keyword::COLLATE
                    | sqlparser::keywords::Keyword::AT
                    | sqlparser::keywords::Keyword::IN
                    | sqlparser::keywords::Keyword::OPERATOR
            ),
            Token::Whitespace(_)
            | Token::EOF
            | Token::Period
            | Token::Number(_, _)
            | Token::Placeholder(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::UnicodeStringLiteral(_) => false,
            _ => true,
        };
        if counts {
            if let Some(n) = stack.last_mut() {
                *n += 1;
            }
            depth += 1;
            if depth > MAX_OPERATOR_CHAIN {
                return Err(SqlError::too_complex(format!(
                    "more than {MAX_OPERATOR_CHAIN} chained operators in one expression"
                )));
            }
        }
    }
    Ok(())
}

/// 1-based character offset of a (line, column) location, as PostgreSQL reports positions.
fn char_position(sql: &str, line: u64, column: u64) -> Option<u32> {
    if line == 0 || column == 0 {
        return None;
    }
    let mut pos: u64 = 0;
    for (i, l) in sql.split('\n').enumerate() {
        if (i as u64) + 1 == line {
            return u32::try_from(pos + column).ok();
        }
        pos += l.chars().count() as u64 + 1;
    }
    None
}

fn parser_error(sql: &str, e: ParserError) -> SqlError {
    match e {
        ParserError::RecursionLimitExceeded => {
            SqlError::too_complex(format!("nesting deeper than {RECURSION_LIMIT} levels"))
        }
        ParserError::ParserError(msg) | ParserError::TokenizerError(msg) => {
            let (message, position) = match msg.rfind(" at Line: ") {
                Some(i) => {
                    let loc = &msg[i + " at Line: ".len()..];
                    let mut it = loc.split(", Column: ");
                    let line = it.next().and_then(|l| l.trim().parse::<u64>().ok());
                    let col = it.next().and_then(|c| c.trim().parse::<u64>().ok());
                    let pos = match (line, col) {
                        (Some(l), Some(c)) => char_position(sql, l, c),
                        _ => None,
                    };
                    (msg[..i].to_string(), pos)
                }
                None if msg.ends_with("found: EOF") => {
                    (msg.clone(), u32::try_from(sql.chars().count() + 1).ok())
                }
                None => (msg.clone(), None),
            };
            SqlError::Syntax { message, position }
        }
    }
}

/// Case-folds an identifier as PostgreSQL does: unquoted names fold to lower case.
pub(crate) fn fold_ident(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The folded parts of an object name (`public.Events` -> `["public", "events"]`).
pub(crate) fn name_parts(name: &ast::ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => fold_ident(i),
            ast::ObjectNamePart::Function(f) => fold_ident(&f.name),
        })
        .collect()
}

/// A short, bounded rendering of an expression for error messages.
fn show(expr: &impl std::fmt::Display) -> String {
    let s = expr.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn unsupported(what: impl Into<String>) -> SqlError {
    SqlError::unsupported(what, SUPPORTED_SHAPES)
}

/// What kind of statement this is, for messages.
fn statement_kind(stmt: &ast::Statement) -> String {
    let text = stmt.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [a, b]
            if matches!(
                a.to_ascii_uppercase().as_str(),
                "CREATE" | "DROP" | "ALTER" | "COPY" | "GRANT" | "REVOKE"
            ) =>
        {
            format!("{} {}", a.to_ascii_uppercase(), b.to_ascii_uppercase())
        }
        [a, ..] => a.to_ascii_uppercase(),
        [] => "this statement".to_string(),
    }
}

fn plan_statement(stmt: &ast::Statement) -> Result<Statement, SqlError> {
    use ast::Statement as S;
    if let Some(s) = session::plan(stmt)? {
        return Ok(Statement::Session(s));
    }
    match stmt {
        S::Insert(insert) => plan_insert(insert),
        S::Query(q) => plan_query(q),
        S::Call(f) => plan_call(f),
        S::Update(_) => Err(SqlError::ImmutableEvents {
            what: "UPDATE".into(),
        }),
        S::Delete(_) => Err(SqlError::ImmutableEvents {
            what: "DELETE".into(),
        }),
        S::Truncate(_) => Err(SqlError::ImmutableEvents {
            what: "TRUNCATE".into(),
        }),
        S::Merge(_) => Err(SqlError::ImmutableEvents {
            what: "MERGE".into(),
        }),
        S::Drop { .. } | S::AlterTable(_) | S::RenameTable(_) => Err(SqlError::ImmutableEvents {
            what: statement_kind(stmt),
        }),
        S::CreateTable(_)
        | S::CreateView(_)
        | S::CreateIndex(_)
        | S::CreateSchema { .. }
        | S::CreateDatabase { .. }
        | S::CreateFunction(_)
        | S::CreateTrigger(_)
        | S::CreateSequence { .. }
        | S::CreateType { .. }
        | S::CreateDomain(_)
        | S::CreateExtension(_)
        | S::CreateProcedure { .. }
        | S::CreateRole(_)
        | S::AlterIndex { .. }
        | S::AlterView(_)
        | S::AlterSchema(_)
        | S::AlterType(_)
        | S::AlterRole { .. } => Err(SqlError::unsupported(
            statement_kind(stmt),
            format!(
                "the relations are fixed (events, outbox, aggregates, schemas); {IMMUTABLE_HINT}"
            ),
        )),
        _ => Err(unsupported(statement_kind(stmt))),
    }
}

// ---------------------------------------------------------------------------------------
// Operands
// ---------------------------------------------------------------------------------------

/// Where an operand is used: compared with a column, or assigned to one (INSERT), which
/// allows PostgreSQL's assignment casts (an integer into a text column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Compare,
    Assign,
}

/// The PostgreSQL type an SQL data type names.
pub(crate) fn data_type_to_pg(dt: &ast::DataType) -> Option<PgType> {
    use ast::DataType as D;
    Some(match dt {
        D::Bool | D::Boolean => PgType::Bool,
        D::SmallInt(_) | D::Int2(_) => PgType::Int2,
        D::Int(_) | D::Integer(_) | D::Int4(_) => PgType::Int4,
        D::BigInt(_) | D::Int8(_) => PgType::Int8,
        D::Real | D::Float4 => PgType::Float4,
        D::Float8 | D::DoublePrecision | D::Double(_) => PgType::Float8,
        D::Float(_) => PgType::Float8,
        D::Numeric(_) | D::Decimal(_) | D::Dec(_) => PgType::Numeric,
        D::Text | D::String(_) => PgType::Text,
        D::Varchar(_) | D::CharacterVarying(_) | D::CharVarying(_) => PgType::Varchar,
        D::Char(_) | D::Character(_) => PgType::Text,
        D::JSON => PgType::Json,
        D::JSONB => PgType::Jsonb,
        D::Bytea => PgType::Bytea,
        D::Date => PgType::Date,
        D::Timestamp(_, tz) => match tz {
            ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => PgType::Timestamptz,
            _ => PgType::Timestamp,
        },
        D::Regclass => PgType::Regclass,
        D::Custom(name, mods) if mods.is_empty() => {
            let parts = name_parts(name);
            let last = parts.last()?;
            if parts.len() > 2 || (parts.len() == 2 && parts[0] != "pg_catalog") {
                return None;
            }
            let quoted_char = name.0.last().is_some_and(
                |p| matches!(p, ast::ObjectNamePart::Identifier(i) if i.quote_style.is_some()),
            ) && last == "char";
            if quoted_char {
                PgType::Char
            } else if last == "char" || last == "bpchar" {
                PgType::Text
            } else {
                PgType::from_sql_name(last)?
            }
        }
        D::Array(elem) => {
            let inner = match elem {
                ast::ArrayElemTypeDef::SquareBracket(t, _)
                | ast::ArrayElemTypeDef::AngleBracket(t)
                | ast::ArrayElemTypeDef::Parenthesis(t) => t,
                _ => return None,
            };
            data_type_to_pg(inner)?.array_type()?
        }
        _ => return None,
    })
}

fn pg_type_of(dt: &ast::DataType) -> Result<PgType, SqlError> {
    data_type_to_pg(dt).ok_or_else(|| {
        SqlError::unsupported(
            format!("type {}", show(dt)),
            "supported casts: int2, int4, int8, numeric, float8, text, varchar, bool, json, jsonb, \
             timestamptz, timestamp, date",
        )
    })
}

/// The text of a string literal value, if it is one.
fn string_literal(v: &ast::Value) -> Option<&str> {
    match v {
        ast::Value::SingleQuotedString(s)
        | ast::Value::EscapedStringLiteral(s)
        | ast::Value::UnicodeStringLiteral(s)
        | ast::Value::NationalStringLiteral(s) => Some(s),
        ast::Value::DollarQuotedString(d) => Some(&d.value),
        _ => None,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn number_operand(text: &str, negative: bool) -> Result<Operand, SqlError> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    if let Ok(i) = signed.parse::<i64>() {
        return Ok(Operand::Int(i));
    }
    match signed.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Operand::Float(f)),
        _ => Err(SqlError::invalid(format!(
            "invalid numeric literal: \"{}\"",
            signed.chars().take(40).collect::<String>()
        ))),
    }
}

/// The payload and metadata of one INSERT row that are literal JSON objects, parsed.
fn literal_objects(columns: &[InsertColumn], row: &[Operand]) -> LiteralObjects {
    let object = |wanted: InsertColumn| {
        let (_, operand) = columns.iter().zip(row).find(|(c, _)| **c == wanted)?;
        match operand {
            Operand::Text(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) => Some(map),
                _ => None,
            },
            _ => None,
        }
    };
    LiteralObjects {
        payload: object(InsertColumn::Payload)
            .map(|object| std::sync::Arc::new(crate::payload::Payload::new(object))),
        metadata: object(InsertColumn::Metadata),
    }
}

fn check_json(text: &str, ty: PgType) -> Result<(), SqlError> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|_| ())
        .map_err(|e| SqlError::invalid(format!("invalid input syntax for type {}: {e}", ty.name())))
}

/// Converts a literal operand to `target` as `literal::target` would.
fn convert_literal(op: Operand, target: PgType) -> Result<Operand, SqlError> {
    let bad = |v: &str| {
        SqlError::invalid(format!(
            "invalid input syntax for type {}: \"{}\"",
            target.format_type(),
            v.chars().take(60).collect::<String>()
        ))
    };
    Ok(match (target.family(), op) {
        (_, Operand::Null) => Operand::Null,
        (_, p @ Operand::Param { .. }) => p,
        (TypeFamily::String | TypeFamily::Json | TypeFamily::Unknown, c @ Operand::Concat(_)) => c,
        (_, Operand::Concat(_)) => {
            return Err(SqlError::mismatch(format!(
                "a text concatenation cannot be used as {}",
                target.format_type()
            )))
        }
        (TypeFamily::Number, Operand::Text(s)) => {
            let t = s.trim();
            let integer = matches!(
                target,
                PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid
            );
            let parsed = if integer {
                Operand::Int(t.parse::<i64>().map_err(|_| bad(&s))?)
            } else {
                number_operand(t, false).map_err(|_| bad(&s))?
            };
            range_check(parsed, target, &s)?
        }
        (TypeFamily::Number, Operand::Int(i)) => {
            range_check(Operand::Int(i), target, &i.to_string())?
        }
        (TypeFamily::Number, Operand::Float(f)) => {
            if matches!(
                target,
                PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid
            ) {
                range_check(Operand::Int(f.round() as i64), target, &f.to_string())?
            } else {
                Operand::Float(f)
            }
        }
        (TypeFamily::Number, Operand::Bool(b)) if target == PgType::Int4 => {
            Operand::Int(i64::from(b))
        }
        (TypeFamily::String, Operand::Text(s)) => Operand::Text(s),
        (TypeFamily::String, Operand::Int(i)) => Operand::Text(i.to_string()),
        (TypeFamily::String, Operand::Float(f)) => Operand::Text(f.to_string()),
        (TypeFamily::String, Operand::Bool(b)) => {
            Operand::Text(if b { "true" } else { "false" }.into())
        }
        (TypeFamily::Bool, Operand::Bool(b)) => Operand::Bool(b),
        (TypeFamily::Bool, Operand::Text(s)) => {
            Operand::Bool(parse_bool(&s).ok_or_else(|| bad(&s))?)
        }
        (TypeFamily::Bool, Operand::Int(i)) if target == PgType::Bool => Operand::Bool(i != 0),
        (TypeFamily::Json, Operand::Text(s)) => {
            check_json(&s, target)?;
            Operand::Text(s)
        }
        (TypeFamily::Time, Operand::Text(s)) => {
            if s.trim().is_empty() {
                return Err(bad(&s));
            }
            Operand::Text(s)
        }
        (TypeFamily::Unknown, op) => op,
        (_, op) => {
            return Err(SqlError::mismatch(format!(
                "cannot cast {} to {}",
                operand_type_name(&op),
                target.format_type()
            )))
        }
    })
}

fn range_check(op: Operand, target: PgType, text: &str) -> Result<Operand, SqlError> {
    if let Operand::Int(i) = op {
        let ok = match target {
            PgType::Int2 => i16::try_from(i).is_ok(),
            PgType::Int4 => i32::try_from(i).is_ok(),
            PgType::Oid => u32::try_from(i).is_ok(),
            _ => true,
        };
        if !ok {
            return Err(SqlError::invalid(format!(
                "value \"{text}\" is out of range for type {}",
                target.format_type()
            )));
        }
    }
    Ok(op)
}

fn operand_type_name(op: &Operand) -> &'static str {
    match op {
        Operand::Null => "unknown",
        Operand::Bool(_) => "boolean",
        Operand::Int(_) => "integer",
        Operand::Float(_) => "numeric",
        Operand::Text(_) => "text",
        Operand::Param { .. } => "parameter",
        Operand::Concat(_) => "text",
    }
}

/// Plans a value: a literal, `NULL`, `$n`, a negative number, or a cast of one of these.
/// Returns the operand and, for casts, the cast's type.
pub(crate) fn raw_operand(expr: &Expr) -> Result<(Operand, Option<PgType>), SqlError> {
    // Peel casts and parentheses with a loop: `1::int8::int8...` may be a thousand deep.
    let mut casts: Vec<&ast::DataType> = Vec::new();
    let mut base = expr;
    loop {
        match base {
            Expr::Nested(inner) => base = inner,
            Expr::Cast {
                kind: ast::CastKind::Cast | ast::CastKind::DoubleColon,
                expr: inner,
                data_type,
                format: None,
            } => {
                casts.push(data_type);
                base = inner;
            }
            _ => break,
        }
    }
    let (mut op, mut ty) = base_operand(base)?;
    for data_type in casts.iter().rev() {
        let target = pg_type_of(data_type)?;
        op = match op {
            // The parameter's own type is its innermost cast's.
            Operand::Param { index, cast } => Operand::Param {
                index,
                cast: cast.or(Some(target)),
            },
            other => convert_literal(other, target)?,
        };
        ty = Some(target);
    }
    Ok((op, ty))
}

/// Most parts one `||` chain may have (the token-level operator-chain limit applies too).
const MAX_CONCAT_PARTS: usize = 64;

/// A literal, `NULL`, `$n`, signed number (no casts), or a `||` chain of those.
fn base_operand(expr: &Expr) -> Result<(Operand, Option<PgType>), SqlError> {
    match expr {
        Expr::BinaryOp {
            op: ast::BinaryOperator::StringConcat,
            ..
        } => {
            // Flatten left-deep chains with a loop, not recursion.
            let mut parts = Vec::new();
            let mut pending = vec![expr];
            while let Some(next) = pending.pop() {
                match next {
                    Expr::BinaryOp {
                        op: ast::BinaryOperator::StringConcat,
                        left,
                        right,
                    } => {
                        pending.push(right);
                        pending.push(left);
                    }
                    Expr::Nested(inner) => pending.push(inner),
                    other => {
                        let (part, _) = raw_operand(other)?;
                        if matches!(part, Operand::Concat(_)) {
                            return Err(unsupported(format!("expression {}", show(expr))));
                        }
                        parts.push(part);
                    }
                }
                if parts.len() > MAX_CONCAT_PARTS {
                    return Err(SqlError::too_complex(format!(
                        "more than {MAX_CONCAT_PARTS} parts in one || chain"
                    )));
                }
            }
            Ok((Operand::Concat(parts), Some(PgType::Text)))
        }
        Expr::Value(v) => {
            let op = match &v.value {
                ast::Value::Number(n, _) => number_operand(n, false)?,
                ast::Value::Boolean(b) => Operand::Bool(*b),
                ast::Value::Null => Operand::Null,
                ast::Value::Placeholder(p) => Operand::Param {
                    index: params::placeholder_index(p)?,
                    cast: None,
                },
                other => match string_literal(other) {
                    Some(s) => Operand::Text(s.to_string()),
                    None => return Err(unsupported(format!("literal {}", show(other)))),
                },
            };
            Ok((op, None))
        }
        Expr::UnaryOp { op, expr: inner } => match (op, inner.as_ref()) {
            (ast::UnaryOperator::Minus | ast::UnaryOperator::Plus, Expr::Value(v)) => {
                match &v.value {
                    ast::Value::Number(n, _) => Ok((
                        number_operand(n, matches!(op, ast::UnaryOperator::Minus))?,
                        None,
                    )),
                    _ => Err(unsupported(format!("expression {}", show(expr)))),
                }
            }
            _ => Err(unsupported(format!("expression {}", show(expr)))),
        },
        Expr::TypedString(ts) => {
            let target = pg_type_of(&ts.data_type)?;
            let text = string_literal(&ts.value.value)
                .ok_or_else(|| unsupported(format!("literal {}", show(expr))))?;
            Ok((
                convert_literal(Operand::Text(text.to_string()), target)?,
                Some(target),
            ))
        }
        _ => Err(SqlError::unsupported(
            format!("expression {}", show(expr)),
            "values must be literals, NULL, $n parameters, or casts of these",
        )),
    }
}

/// Plans a value used where a value of type `expected` is needed (`what` names the place).
fn operand(expr: &Expr, expected: PgType, usage: Use, what: &str) -> Result<Operand, SqlError> {
    let (op, cast) = raw_operand(expr)?;
    if let Some(c) = cast {
        let ok = comparable(c, expected)
            || (usage == Use::Assign && expected.family() == TypeFamily::String);
        if !ok {
            return Err(SqlError::mismatch(format!(
                "{what} is of type {} but the expression is of type {}",
                expected.format_type(),
                c.format_type()
            )));
        }
    }
    if matches!(op, Operand::Param { .. } | Operand::Null) {
        return Ok(op);
    }
    if matches!(op, Operand::Concat(_)) {
        return convert_literal(op, expected);
    }
    if let Some(c) = cast {
        // A cast literal keeps the cast's value (`'5'::int8` is Int(5)); only check families.
        if c.family() == expected.family() || expected.family() == TypeFamily::String {
            return convert_literal(op, expected);
        }
        return Ok(op);
    }
    let mismatch = |op: &Operand| {
        SqlError::mismatch(format!(
            "{what} is of type {} but the expression is of type {}",
            expected.format_type(),
            operand_type_name(op)
        ))
    };
    match (expected.family(), &op) {
        // An untyped string literal converts to the column's type, as in PostgreSQL.
        (_, Operand::Text(_)) => convert_literal(op, expected),
        (TypeFamily::Number, Operand::Int(_) | Operand::Float(_)) => convert_literal(op, expected),
        (TypeFamily::Bool, Operand::Bool(_)) => Ok(op),
        (TypeFamily::String, Operand::Int(_) | Operand::Float(_) | Operand::Bool(_))
            if usage == Use::Assign =>
        {
            convert_literal(op, expected)
        }
        (TypeFamily::Unknown, _) => Ok(op),
        _ => Err(mismatch(&op)),
    }
}

// ---------------------------------------------------------------------------------------
// Columns and JSON paths
// ---------------------------------------------------------------------------------------

/// The relation a SELECT (or RETURNING) reads, with the names it may be qualified by.
struct Scope {
    table: Table,
    alias: Option<String>,
}

impl Scope {
    fn qualifier_ok(&self, q: &str) -> bool {
        match &self.alias {
            Some(a) => a == q,
            None => q == self.table.name(),
        }
    }

    /// Resolves a column reference; `Ok(None)` when `expr` is not an identifier.
    fn column(&self, expr: &Expr) -> Result<Option<ColumnRef>, SqlError> {
        let (qualifier, name) = match expr {
            Expr::Identifier(i) => (None, fold_ident(i)),
            Expr::CompoundIdentifier(parts) => {
                let folded: Vec<String> = parts.iter().map(fold_ident).collect();
                match folded.as_slice() {
                    [q, c] => (Some(q.clone()), c.clone()),
                    [s, q, c] if s == "public" && self.alias.is_none() => {
                        (Some(q.clone()), c.clone())
                    }
                    _ => return Err(unsupported(format!("column reference {}", show(expr)))),
                }
            }
            Expr::Nested(inner) => return self.column(inner),
            _ => return Ok(None),
        };
        if let Some(q) = &qualifier {
            if !self.qualifier_ok(q) {
                return Err(SqlError::UnknownTable {
                    name: format!("{q} (missing FROM-clause entry)"),
                });
            }
        }
        match self.table.column(&name) {
            Some(c) => Ok(Some(c)),
            None => Err(SqlError::UnknownColumn {
                table: self.table.name().into(),
                column: name,
            }),
        }
    }

    /// Resolves a column or JSON path expression; `Ok(None)` when it is neither.
    fn value_ref(&self, expr: &Expr) -> Result<Option<ValueRef>, SqlError> {
        if let Some(c) = self.column(expr)? {
            return Ok(Some(ValueRef::Column(c)));
        }
        match expr {
            Expr::Nested(inner) => self.value_ref(inner),
            Expr::BinaryOp { op, .. } if is_json_op(op) => {
                let (column, path, as_text) = self.json_path(expr)?;
                Ok(Some(ValueRef::Json {
                    column,
                    path,
                    as_text,
                }))
            }
            _ => Ok(None),
        }
    }

    /// `col -> k1 ->> k2`: the column, the path and whether the last step yields text.
    fn json_path(&self, expr: &Expr) -> Result<(ColumnRef, Vec<Operand>, bool), SqlError> {
        let Expr::BinaryOp { left, op, right } = expr else {
            if let Expr::Nested(inner) = expr {
                return self.json_path(inner);
            }
            return Err(unsupported(format!("expression {}", show(expr))));
        };
        let (column, mut path, prev_text) = match self.column(left)? {
            Some(c) => (c, Vec::new(), false),
            None => self.json_path(left)?,
        };
        if prev_text || column.ty().family() != TypeFamily::Json {
            let left_ty = if prev_text { PgType::Text } else { column.ty() };
            return Err(SqlError::mismatch(format!(
                "operator does not exist: {} {op} unknown",
                left_ty.format_type()
            )));
        }
        match op {
            ast::BinaryOperator::Arrow | ast::BinaryOperator::LongArrow => {
                path.push(path_step(right)?);
            }
            ast::BinaryOperator::HashArrow | ast::BinaryOperator::HashLongArrow => {
                path.extend(text_array_path(right)?);
            }
            _ => return Err(unsupported(format!("operator {op}"))),
        }
        let as_text = matches!(
            op,
            ast::BinaryOperator::LongArrow | ast::BinaryOperator::HashLongArrow
        );
        Ok((column, path, as_text))
    }
}

fn is_json_op(op: &ast::BinaryOperator) -> bool {
    matches!(
        op,
        ast::BinaryOperator::Arrow
            | ast::BinaryOperator::LongArrow
            | ast::BinaryOperator::HashArrow
            | ast::BinaryOperator::HashLongArrow
    )
}

/// One `->` step: a key (text), an array index (integer) or a parameter.
fn path_step(expr: &Expr) -> Result<Operand, SqlError> {
    let (op, cast) = raw_operand(expr)?;
    match (&op, cast) {
        (Operand::Text(_) | Operand::Int(_) | Operand::Param { .. }, _) => Ok(op),
        _ => Err(SqlError::mismatch(format!(
            "a JSON path step must be a text key or an integer index, not {}",
            show(expr)
        ))),
    }
}

/// The path of `#>` / `#>>`: a text array literal such as `'{a,0,b}'`.
fn text_array_path(expr: &Expr) -> Result<Vec<Operand>, SqlError> {
    let (op, _) = raw_operand(expr)?;
    let Operand::Text(text) = op else {
        return Err(SqlError::unsupported(
            format!("JSON path {}", show(expr)),
            "write the #> path as a text array literal such as '{a,0,b}'",
        ));
    };
    Ok(super::catalog::parse_text_array(&text)?
        .into_iter()
        .map(|element| element.map(Operand::Text).unwrap_or(Operand::Null))
        .collect())
}

// ---------------------------------------------------------------------------------------
// SELECT items, WHERE, ORDER BY, LIMIT
// ---------------------------------------------------------------------------------------

fn is_count_star(f: &ast::Function) -> bool {
    let parts = name_parts(&f.name);
    if parts.last().map(String::as_str) != Some("count") || f.over.is_some() || f.filter.is_some() {
        return false;
    }
    match &f.args {
        ast::FunctionArguments::List(list) if list.duplicate_treatment.is_none() => {
            match list.args.as_slice() {
                [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)] => true,
                [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Value(v)))] => {
                    matches!(&v.value, ast::Value::Number(n, _) if n == "1")
                }
                _ => false,
            }
        }
        _ => false,
    }
}

fn select_item(scope: &Scope, item: &ast::SelectItem) -> Result<SelectItem, SqlError> {
    let (expr, alias) = match item {
        ast::SelectItem::Wildcard(opts) => {
            check_wildcard_options(opts)?;
            return Ok(SelectItem::Wildcard);
        }
        ast::SelectItem::QualifiedWildcard(kind, opts) => {
            check_wildcard_options(opts)?;
            let ok = match kind {
                ast::SelectItemQualifiedWildcardKind::ObjectName(name) => {
                    let parts = name_parts(name);
                    match parts.as_slice() {
                        [q] => scope.qualifier_ok(q),
                        [s, q] => s == "public" && scope.alias.is_none() && scope.qualifier_ok(q),
                        _ => false,
                    }
                }
                ast::SelectItemQualifiedWildcardKind::Expr(_) => false,
            };
            if !ok {
                return Err(SqlError::UnknownTable {
                    name: format!("{} (missing FROM-clause entry)", show(item)),
                });
            }
            return Ok(SelectItem::Wildcard);
        }
        ast::SelectItem::UnnamedExpr(e) => (e, None),
        ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(fold_ident(alias))),
        ast::SelectItem::ExprWithAliases { .. } => {
            return Err(unsupported(format!("select item {}", show(item))))
        }
    };
    let mut inner = expr;
    while let Expr::Nested(e) = inner {
        inner = e;
    }
    if let Expr::Function(f) = inner {
        if is_count_star(f) {
            return Ok(SelectItem::CountStar { alias });
        }
    }
    match scope.value_ref(inner)? {
        Some(ValueRef::Column(column)) => Ok(SelectItem::Column { column, alias }),
        Some(ValueRef::Json {
            column,
            path,
            as_text,
        }) => Ok(SelectItem::Json {
            column,
            path,
            as_text,
            alias,
        }),
        None => Err(SqlError::unsupported(
            format!("select item {}", show(expr)),
            "select *, column names, col -> 'key' / col ->> 'key' paths, or COUNT(*) alone",
        )),
    }
}

fn check_wildcard_options(opts: &ast::WildcardAdditionalOptions) -> Result<(), SqlError> {
    if opts.opt_ilike.is_some()
        || opts.opt_exclude.is_some()
        || opts.opt_except.is_some()
        || opts.opt_replace.is_some()
        || opts.opt_rename.is_some()
    {
        return Err(unsupported("wildcard options"));
    }
    Ok(())
}

fn compare_op(op: &ast::BinaryOperator) -> Option<CompareOp> {
    Some(match op {
        ast::BinaryOperator::Eq => CompareOp::Eq,
        ast::BinaryOperator::NotEq => CompareOp::NotEq,
        ast::BinaryOperator::Lt => CompareOp::Lt,
        ast::BinaryOperator::LtEq => CompareOp::LtEq,
        ast::BinaryOperator::Gt => CompareOp::Gt,
        ast::BinaryOperator::GtEq => CompareOp::GtEq,
        _ => return None,
    })
}

fn comparison(
    scope: &Scope,
    left: &ValueRef,
    op: CompareOp,
    value: &Expr,
) -> Result<Predicate, SqlError> {
    let ty = left.ty();
    if ty.family() == TypeFamily::Json {
        return Err(SqlError::mismatch(format!(
            "operator does not exist: json {} unknown (compare a ->> text path instead)",
            match op {
                CompareOp::Eq => "=",
                CompareOp::NotEq => "<>",
                CompareOp::Lt => "<",
                CompareOp::LtEq => "<=",
                CompareOp::Gt => ">",
                CompareOp::GtEq => ">=",
            }
        )));
    }
    if scope.value_ref(value)?.is_some() {
        return Err(unsupported("comparing two columns"));
    }
    let right = operand(value, ty, Use::Compare, &describe(left))?;
    Ok(Predicate::Compare {
        left: left.clone(),
        op,
        right,
    })
}

fn describe(v: &ValueRef) -> String {
    match v {
        ValueRef::Column(c) => format!("column \"{}\"", c.name()),
        ValueRef::Json { column, .. } => format!("JSON path on \"{}\"", column.name()),
    }
}

/// Plans a WHERE clause: a conjunction of predicates. The AND tree (left-deep and up to
/// [`MAX_OPERATOR_CHAIN`] long) is walked with an explicit stack, not recursion.
fn predicates(scope: &Scope, expr: &Expr, out: &mut Vec<Predicate>) -> Result<(), SqlError> {
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Nested(inner) => stack.push(inner),
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::And,
                right,
            } => {
                stack.push(right);
                stack.push(left);
            }
            leaf => predicate(scope, leaf, out)?,
        }
    }
    Ok(())
}

/// Plans one conjunct of a WHERE clause.
fn predicate(scope: &Scope, expr: &Expr, out: &mut Vec<Predicate>) -> Result<(), SqlError> {
    match expr {
        Expr::BinaryOp {
            op: ast::BinaryOperator::Or,
            ..
        } => Err(SqlError::unsupported(
            "OR in WHERE",
            "combine predicates with AND; use IN (...) for alternatives of one column",
        )),
        Expr::BinaryOp { left, op, right } if compare_op(op).is_some() => {
            let op = compare_op(op).unwrap_or(CompareOp::Eq);
            if let Some(l) = scope.value_ref(left)? {
                out.push(comparison(scope, &l, op, right)?);
                Ok(())
            } else if let Some(r) = scope.value_ref(right)? {
                out.push(comparison(scope, &r, op.flipped(), left)?);
                Ok(())
            } else {
                Err(SqlError::unsupported(
                    format!("comparison {}", show(expr)),
                    "one side of a comparison must be a column or a JSON path",
                ))
            }
        }
        Expr::In {
            expr: left,
            target,
            negated,
            ..
        } => {
            let Some(l) = scope.value_ref(left)? else {
                return Err(unsupported(format!("IN on {}", show(left))));
            };
            if *negated {
                return Err(SqlError::unsupported(
                    "NOT IN",
                    "list the wanted values with IN (...) or use <> for one value",
                ));
            }
            let ast::InTarget::List(list) = target else {
                return Err(SqlError::unsupported(
                    "IN with a subquery",
                    "IN takes a list of literals or parameters",
                ));
            };
            if list.len() > MAX_LIST_ITEMS {
                return Err(SqlError::too_complex(format!(
                    "IN list of {} items; the limit is {MAX_LIST_ITEMS}",
                    list.len()
                )));
            }
            if l.ty().family() == TypeFamily::Json {
                return Err(SqlError::mismatch(
                    "operator does not exist: json = unknown (compare a ->> text path instead)",
                ));
            }
            let what = describe(&l);
            let values = list
                .iter()
                .map(|e| operand(e, l.ty(), Use::Compare, &what))
                .collect::<Result<_, _>>()?;
            out.push(Predicate::In { left: l, values });
            Ok(())
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
            let Some(l) = scope.value_ref(inner)? else {
                return Err(unsupported(format!("IS NULL on {}", show(inner))));
            };
            out.push(Predicate::IsNull {
                left: l,
                negated: matches!(expr, Expr::IsNotNull(_)),
            });
            Ok(())
        }
        Expr::Between {
            expr: inner,
            negated: false,
            low,
            high,
        } => {
            let Some(l) = scope.value_ref(inner)? else {
                return Err(unsupported(format!("BETWEEN on {}", show(inner))));
            };
            out.push(comparison(scope, &l, CompareOp::GtEq, low)?);
            out.push(comparison(scope, &l, CompareOp::LtEq, high)?);
            Ok(())
        }
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            // A bare boolean column: `WHERE hidden`.
            match scope.column(expr)? {
                Some(c) if c.ty() == PgType::Bool => {
                    out.push(Predicate::Compare {
                        left: ValueRef::Column(c),
                        op: CompareOp::Eq,
                        right: Operand::Bool(true),
                    });
                    Ok(())
                }
                _ => Err(SqlError::mismatch(format!(
                    "argument of WHERE must be type boolean: {}",
                    show(expr)
                ))),
            }
        }
        Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            expr: inner,
        } => match scope.column(inner)? {
            Some(c) if c.ty() == PgType::Bool => {
                out.push(Predicate::Compare {
                    left: ValueRef::Column(c),
                    op: CompareOp::Eq,
                    right: Operand::Bool(false),
                });
                Ok(())
            }
            _ => Err(SqlError::unsupported(
                "NOT in WHERE",
                "write the negated comparison instead (<>, IS NOT NULL)",
            )),
        },
        _ => Err(SqlError::unsupported(
            format!("predicate {}", show(expr)),
            "predicates are col = | <> | < | <= | > | >= value, col IN (...), col IS [NOT] NULL, \
             col BETWEEN a AND b, joined with AND",
        )),
    }
}

/// `LIMIT`/`OFFSET` value: a non-negative integer, `$n`, or NULL/ALL (no limit).
fn limit_operand(expr: &Expr, what: &str) -> Result<Option<Operand>, SqlError> {
    let op = operand(expr, PgType::Int8, Use::Compare, what)?;
    match op {
        Operand::Null => Ok(None),
        Operand::Int(i) if i < 0 => Err(SqlError::invalid(format!("{what} must not be negative"))),
        Operand::Float(_) => Err(SqlError::mismatch(format!("{what} must be an integer"))),
        other => Ok(Some(other)),
    }
}

fn order_by(
    scope: &Scope,
    items: &[SelectItem],
    order: &ast::OrderBy,
) -> Result<Vec<(ColumnRef, bool)>, SqlError> {
    let ast::OrderByKind::Expressions(list) = &order.kind else {
        return Err(unsupported("ORDER BY ALL"));
    };
    // Output columns in order, with the table column each one is, if it is one.
    let outputs: Vec<(String, Option<ColumnRef>)> = items
        .iter()
        .flat_map(|i| match i {
            SelectItem::Wildcard => scope
                .table
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), Some(*c)))
                .collect::<Vec<_>>(),
            SelectItem::Column { column, alias } => vec![(
                alias.clone().unwrap_or_else(|| column.name().to_string()),
                Some(*column),
            )],
            other => other
                .columns(scope.table)
                .into_iter()
                .map(|c| (c.name, None))
                .collect(),
        })
        .collect();
    let mut out = Vec::new();
    for o in list {
        if o.with_fill.is_some() {
            return Err(unsupported("ORDER BY ... WITH FILL"));
        }
        let desc = match &o.options.sort {
            None | Some(ast::OrderBySort::Asc) => false,
            Some(ast::OrderBySort::Desc) => true,
            Some(ast::OrderBySort::Using(_)) => return Err(unsupported("ORDER BY ... USING")),
        };
        if let Some(nulls_first) = o.options.nulls_first {
            if nulls_first != desc {
                return Err(SqlError::unsupported(
                    "NULLS FIRST/LAST other than the default",
                    "ascending order puts NULLs last, descending order first",
                ));
            }
        }
        let column = match &o.expr {
            Expr::Value(ast::ValueWithSpan {
                value: ast::Value::Number(n, _),
                ..
            }) => {
                let pos: usize = n.parse().map_err(|_| {
                    SqlError::invalid(format!("ORDER BY position {n} is not valid"))
                })?;
                match pos.checked_sub(1).and_then(|i| outputs.get(i)) {
                    Some((_, Some(c))) => *c,
                    Some((_, None)) => {
                        return Err(SqlError::unsupported(
                            format!("ORDER BY {n} (not a plain column)"),
                            "order by columns of the table",
                        ))
                    }
                    None => {
                        return Err(SqlError::invalid(format!(
                            "ORDER BY position {n} is not in select list"
                        )))
                    }
                }
            }
            Expr::Identifier(i) => {
                let name = fold_ident(i);
                match outputs.iter().find(|(n, c)| *n == name && c.is_some()) {
                    Some((_, Some(c))) => *c,
                    _ => scope
                        .column(&o.expr)?
                        .ok_or_else(|| unsupported("ORDER BY"))?,
                }
            }
            other => match scope.column(other)? {
                Some(c) => c,
                None => {
                    return Err(SqlError::unsupported(
                        format!("ORDER BY {}", show(other)),
                        "order by columns of the table",
                    ))
                }
            },
        };
        out.push((column, desc));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// SELECT
// ---------------------------------------------------------------------------------------

/// The table functions, callable with CALL or in FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableFunction {
    ReadOutbox,
    Verify,
    ApplySchema,
}

impl TableFunction {
    fn from_parts(parts: &[String]) -> Option<TableFunction> {
        let name = match parts {
            [n] => n,
            [s, n] if s == "public" => n,
            _ => return None,
        };
        match name.as_str() {
            "read_outbox" => Some(TableFunction::ReadOutbox),
            "verify" => Some(TableFunction::Verify),
            "apply_schema" => Some(TableFunction::ApplySchema),
            _ => None,
        }
    }

    fn plan(self, args: &[ast::FunctionArg], form: CallForm) -> Result<Statement, SqlError> {
        let exprs: Vec<&Expr> = args
            .iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                _ => Err(SqlError::unsupported(
                    format!("argument {}", show(a)),
                    "pass arguments by position",
                )),
            })
            .collect::<Result<_, _>>()?;
        let arity = |min: usize, max: usize, sig: &str| {
            if exprs.len() < min || exprs.len() > max {
                Err(SqlError::unsupported(
                    format!("{sig} with {} arguments", exprs.len()),
                    format!("call it as {sig}"),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            TableFunction::ReadOutbox => {
                arity(0, 2, "read_outbox(after_event_id int8, take int8)")?;
                let arg = |i: usize, what: &str| match exprs.get(i) {
                    Some(e) => operand(e, PgType::Int8, Use::Compare, what),
                    None => Ok(Operand::Null),
                };
                let after = arg(0, "after_event_id")?;
                let take = arg(1, "take")?;
                for (op, what) in [(&after, "after_event_id"), (&take, "take")] {
                    if matches!(op, Operand::Float(_)) {
                        return Err(SqlError::mismatch(format!("{what} must be an integer")));
                    }
                }
                Ok(Statement::ReadOutbox { after, take, form })
            }
            TableFunction::Verify => {
                arity(0, 2, "verify([aggregate_type text [, aggregate_id text]])")?;
                let arg = |i: usize, what: &str| {
                    exprs
                        .get(i)
                        .map(|e| operand(e, PgType::Text, Use::Compare, what))
                        .transpose()
                };
                Ok(Statement::Verify {
                    aggregate_type: arg(0, "aggregate_type")?,
                    aggregate_id: arg(1, "aggregate_id")?,
                    form,
                })
            }
            TableFunction::ApplySchema => {
                arity(1, 1, "apply_schema(source text)")?;
                Ok(Statement::ApplySchema {
                    source: operand(exprs[0], PgType::Text, Use::Compare, "source")?,
                    form,
                })
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            TableFunction::ReadOutbox => "read_outbox",
            TableFunction::Verify => "verify",
            TableFunction::ApplySchema => "apply_schema",
        }
    }

    fn columns(self) -> Vec<&'static str> {
        match self {
            TableFunction::ReadOutbox => vec!["events_json", "next_after_event_id"],
            TableFunction::Verify => vec![
                "aggregate_type",
                "aggregate_id",
                "version",
                "recomputed_root",
                "stored_root",
                "ok",
            ],
            TableFunction::ApplySchema => vec!["aggregate_type", "schema_version"],
        }
    }
}

fn plan_call(f: &ast::Function) -> Result<Statement, SqlError> {
    let parts = name_parts(&f.name);
    let Some(tf) = TableFunction::from_parts(&parts) else {
        return Err(SqlError::unsupported(
            format!("procedure {}", parts.join(".")),
            "the procedures are verify([aggregate_type [, aggregate_id]]), apply_schema(source) \
             and read_outbox(after, take)",
        ));
    };
    let args: &[ast::FunctionArg] = match &f.args {
        ast::FunctionArguments::None => &[],
        ast::FunctionArguments::List(list) if list.clauses.is_empty() => &list.args,
        _ => return Err(unsupported(format!("CALL {}", show(f)))),
    };
    tf.plan(args, CallForm::Call)
}

/// Whether a query reads any `pg_catalog` or `information_schema` relation.
fn references_catalog(q: &ast::Query) -> bool {
    use std::ops::ControlFlow;
    let flow = ast::visit_relations(q, |name| {
        let parts = name_parts(name);
        let catalog = match parts.as_slice() {
            [s, _] | [_, s, _] if s == "pg_catalog" || s == "information_schema" => true,
            [t] => t.starts_with("pg_"),
            _ => false,
        };
        if catalog {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    flow.is_break()
}

/// Plans a SELECT (or VALUES, set operation, ...).
fn plan_query(q: &ast::Query) -> Result<Statement, SqlError> {
    match plan_simple_query(q) {
        Ok(Some(stmt)) => Ok(stmt),
        Ok(None) => {
            if references_catalog(q) {
                catalog::answer(q)
            } else if q.with.is_some() {
                Err(SqlError::unsupported(
                    "WITH (common table expressions)",
                    "query one relation at a time",
                ))
            } else if !matches!(q.body.as_ref(), ast::SetExpr::Select(_)) {
                Err(SqlError::unsupported(
                    "UNION, INTERSECT, EXCEPT and VALUES queries",
                    "query one relation at a time",
                ))
            } else {
                Err(unknown_relation(q).unwrap_or_else(|| unsupported("this query shape")))
            }
        }
        Err(e) => Err(e),
    }
}

/// The first relation of a query that is not a virtual table, as an UnknownTable error.
fn unknown_relation(q: &ast::Query) -> Option<SqlError> {
    use std::ops::ControlFlow;
    let flow = ast::visit_relations(q, |name| {
        let parts = name_parts(name);
        let known = match parts.as_slice() {
            [t] | [_, t] => {
                Table::from_name(t).is_some() || TableFunction::from_parts(&parts).is_some()
            }
            _ => false,
        };
        if known {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(parts.join("."))
        }
    });
    match flow {
        ControlFlow::Break(name) => Some(SqlError::UnknownTable { name }),
        ControlFlow::Continue(()) => None,
    }
}

/// Plans the supported single-relation shapes; `Ok(None)` when the query has another shape
/// (joins, unions, catalog relations...).
fn plan_simple_query(q: &ast::Query) -> Result<Option<Statement>, SqlError> {
    let ast::SetExpr::Select(select) = q.body.as_ref() else {
        return Ok(None);
    };
    if q.with.is_some() {
        return Ok(None);
    }
    if select.from.is_empty() {
        return match super::scalar::plan(q, select) {
            Ok(stmt) => Ok(Some(stmt)),
            Err(scalar_err @ SqlError::Unsupported { .. }) => match catalog::answer(q) {
                Ok(stmt) => Ok(Some(stmt)),
                Err(e @ SqlError::TooComplex { .. }) => Err(e),
                Err(_) => Err(scalar_err),
            },
            Err(e) => Err(e),
        };
    }
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        if references_catalog(q) {
            return Ok(None);
        }
        if let Some(e) = unknown_relation(q) {
            return Err(e);
        }
        return Err(SqlError::unsupported(
            "joins and multiple FROM items",
            "query one relation at a time",
        ));
    }
    let (name, alias, args) = match &select.from[0].relation {
        ast::TableFactor::Table {
            name, alias, args, ..
        } => (name, alias, args.as_ref().map(|a| a.args.as_slice())),
        ast::TableFactor::Function {
            name, args, alias, ..
        } => (name, alias, Some(args.as_slice())),
        _ => {
            if references_catalog(q) {
                return Ok(None);
            }
            return Err(SqlError::unsupported(
                "subqueries in FROM",
                "query events, outbox, aggregates, schemas or a table function directly",
            ));
        }
    };
    let parts = name_parts(name);
    let table = match parts.as_slice() {
        [t] | [_, t] if args.is_none() && (parts.len() == 1 || parts[0] == "public") => {
            Table::from_name(t)
        }
        _ => None,
    };
    if let Some(table) = table {
        if let Some(a) = alias {
            if !a.columns.is_empty() {
                return Err(unsupported("column aliases on a table"));
            }
        }
        let scope = Scope {
            table,
            alias: alias.as_ref().map(|a| fold_ident(&a.name)),
        };
        return plan_table_query(q, select, &scope).map(|p| Some(Statement::Query(p)));
    }
    if let (Some(tf), Some(args)) = (TableFunction::from_parts(&parts), args) {
        let projection = check_plain_function_select(q, select, tf, alias.as_ref())?;
        let planned = tf.plan(args, CallForm::Select)?;
        return Ok(Some(match projection {
            None => planned,
            Some(columns) => Statement::Projected {
                inner: Box::new(planned),
                columns,
            },
        }));
    }
    if references_catalog(q) {
        return Ok(None);
    }
    if args.is_some() {
        return Err(SqlError::unsupported(
            format!("function {}", parts.join(".")),
            "the table functions are read_outbox(after, take), verify([aggregate_type [, \
             aggregate_id]]) and apply_schema(source)",
        ));
    }
    Err(SqlError::UnknownTable {
        name: parts.join("."),
    })
}

/// Rejects clauses a SELECT over a virtual table cannot have.
fn check_plain_select(q: &ast::Query, select: &ast::Select) -> Result<(), SqlError> {
    let clause = if select.distinct.is_some() {
        Some("DISTINCT")
    } else if select.top.is_some() {
        Some("TOP")
    } else if select.into.is_some() {
        Some("SELECT INTO")
    } else if !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
    {
        Some("GROUP BY")
    } else if select.having.is_some() {
        Some("HAVING")
    } else if !select.named_window.is_empty() || select.qualify.is_some() {
        Some("WINDOW")
    } else if !select.lateral_views.is_empty()
        || select.prewhere.is_some()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.sort_by.is_empty()
        || !select.connect_by.is_empty()
        || select.exclude.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || q.for_clause.is_some()
    {
        Some("this clause")
    } else if !q.pipe_operators.is_empty() {
        Some("pipe operators")
    } else {
        None
    };
    if let Some(c) = clause {
        return Err(unsupported(c));
    }
    if !q.locks.is_empty() {
        return Err(SqlError::unsupported(
            "row locks (FOR UPDATE / FOR SHARE)",
            "events are immutable: reads need no locks",
        ));
    }
    Ok(())
}

fn plan_table_query(
    q: &ast::Query,
    select: &ast::Select,
    scope: &Scope,
) -> Result<Query, SqlError> {
    check_plain_select(q, select)?;
    let items: Vec<SelectItem> = select
        .projection
        .iter()
        .map(|i| select_item(scope, i))
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        return Err(unsupported("an empty select list"));
    }
    if items.len() > 1
        && items
            .iter()
            .any(|i| matches!(i, SelectItem::CountStar { .. }))
    {
        return Err(SqlError::unsupported(
            "COUNT(*) together with other items",
            "COUNT(*) must be the only select item (there is no GROUP BY)",
        ));
    }
    let mut filters = Vec::new();
    if let Some(w) = &select.selection {
        predicates(scope, w, &mut filters)?;
    }
    let order = match &q.order_by {
        Some(o) => order_by(scope, &items, o)?,
        None => vec![],
    };
    let (mut limit, mut offset) = (None, None);
    match &q.limit_clause {
        None => {}
        Some(ast::LimitClause::LimitOffset {
            limit: l,
            offset: o,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(unsupported("LIMIT BY"));
            }
            if let Some(l) = l {
                limit = limit_operand(l, "LIMIT")?;
            }
            if let Some(o) = o {
                offset = limit_operand(&o.value, "OFFSET")?;
            }
        }
        Some(ast::LimitClause::OffsetCommaLimit { .. }) => {
            return Err(SqlError::unsupported(
                "LIMIT offset, count",
                "write LIMIT count OFFSET offset",
            ))
        }
    }
    if let Some(f) = &q.fetch {
        if f.with_ties || f.percent || limit.is_some() {
            return Err(unsupported("this FETCH clause"));
        }
        limit = match &f.quantity {
            Some(e) => limit_operand(e, "FETCH")?,
            None => Some(Operand::Int(1)),
        };
    }
    Ok(Query {
        table: scope.table,
        items,
        filters,
        order_by: order,
        limit,
        offset,
    })
}

/// `SELECT * FROM f(...)`, or a list of the function's columns (any order, with aliases),
/// nothing else. `None` means all columns in order; `Some` the chosen (index, name) pairs.
fn check_plain_function_select(
    q: &ast::Query,
    select: &ast::Select,
    tf: TableFunction,
    alias: Option<&ast::TableAlias>,
) -> Result<Option<Vec<(usize, String)>>, SqlError> {
    check_plain_select(q, select)?;
    let hint = format!(
        "select * or some of ({}) from the function, without WHERE, ORDER BY or LIMIT",
        tf.columns().join(", ")
    );
    if select.selection.is_some()
        || q.order_by.is_some()
        || q.limit_clause.is_some()
        || q.fetch.is_some()
    {
        return Err(SqlError::unsupported(
            "clauses on a table function".to_string(),
            hint,
        ));
    }
    if alias.is_some_and(|a| !a.columns.is_empty()) {
        return Err(SqlError::unsupported(
            "column aliases on a table function",
            hint,
        ));
    }
    let qualifier = alias.map(|a| fold_ident(&a.name));
    let star = matches!(select.projection.as_slice(), [ast::SelectItem::Wildcard(_)])
        || matches!(select.projection.as_slice(),
            [ast::SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(n), _)]
                if qualifier.as_deref() == name_parts(n).last().map(String::as_str));
    if star {
        return Ok(None);
    }
    let column_name = |e: &Expr| match e {
        Expr::Identifier(id) => Some(fold_ident(id)),
        Expr::CompoundIdentifier(p) if p.len() == 2 => {
            let q0 = fold_ident(&p[0]);
            (Some(q0) == qualifier).then(|| fold_ident(&p[1]))
        }
        _ => None,
    };
    let mut chosen = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        let (expr, output) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e, None),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(fold_ident(alias))),
            _ => {
                return Err(SqlError::unsupported(
                    "this select list on a table function".to_string(),
                    hint,
                ))
            }
        };
        let name = column_name(expr).ok_or_else(|| {
            SqlError::unsupported(
                "this select list on a table function".to_string(),
                hint.clone(),
            )
        })?;
        let index = tf
            .columns()
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| SqlError::UnknownColumn {
                table: tf.name().to_string(),
                column: name.clone(),
            })?;
        chosen.push((index, output.unwrap_or(name)));
    }
    let all_in_order = chosen.len() == tf.columns().len()
        && chosen
            .iter()
            .enumerate()
            .all(|(i, (index, name))| *index == i && tf.columns()[i] == name.as_str());
    Ok((!all_in_order).then_some(chosen))
}

// ---------------------------------------------------------------------------------------
// INSERT
// ---------------------------------------------------------------------------------------

fn plan_insert(insert: &ast::Insert) -> Result<Statement, SqlError> {
    let ast::TableObject::TableName(name) = &insert.table else {
        return Err(unsupported("INSERT into a table function"));
    };
    let parts = name_parts(name);
    let table = match parts.as_slice() {
        [t] => Table::from_name(t),
        [s, t] if s == "public" => Table::from_name(t),
        _ => None,
    };
    match table {
        Some(Table::Events) => {}
        Some(Table::Outbox) => {
            return Err(SqlError::unsupported(
                "INSERT INTO outbox",
                "the outbox is the committed event stream: INSERT INTO events and read it back \
                 with read_outbox(after, take)",
            ))
        }
        Some(Table::Aggregates) => {
            return Err(SqlError::unsupported(
                "INSERT INTO aggregates",
                "aggregates are derived from their events: INSERT INTO events instead",
            ))
        }
        Some(Table::Schemas) => {
            return Err(SqlError::unsupported(
                "INSERT INTO schemas",
                "apply a schema with CALL apply_schema(source)",
            ))
        }
        None => {
            return Err(SqlError::UnknownTable {
                name: parts.join("."),
            })
        }
    }
    if insert.or.is_some()
        || insert.ignore
        || insert.overwrite
        || insert.partitioned.is_some()
        || !insert.after_columns.is_empty()
        || insert.overriding.is_some()
        || insert.replace_into
        || insert.priority.is_some()
        || insert.insert_alias.is_some()
        || insert.settings.is_some()
        || insert.format_clause.is_some()
        || insert.output.is_some()
        || !insert.assignments.is_empty()
        || insert.table_alias.is_some()
    {
        return Err(unsupported("this INSERT clause"));
    }
    if insert.on.is_some() {
        return Err(SqlError::unsupported(
            "ON CONFLICT",
            "for idempotent appends, set the idempotency_key column",
        ));
    }
    if insert.columns.is_empty() {
        return Err(SqlError::unsupported(
            "INSERT without a column list",
            "name the columns: INSERT INTO events (aggregate_type, aggregate_id, event_type, \
             payload) VALUES (...)",
        ));
    }
    let mut columns = Vec::with_capacity(insert.columns.len());
    for c in &insert.columns {
        let cparts = name_parts(c);
        let name = cparts.last().cloned().unwrap_or_default();
        let col = match InsertColumn::from_name(&name) {
            Some(col) if cparts.len() == 1 => col,
            _ => {
                return Err(match Table::Events.column(&name) {
                    Some(_) => SqlError::unsupported(
                        format!("writing column \"{name}\""),
                        "event_id, version, created_at, issued_by, hash and merkle_root are \
                         assigned by the server; write aggregate_type, aggregate_id, event_type, \
                         payload, metadata, note, expected_version, idempotency_key",
                    ),
                    None => SqlError::UnknownColumn {
                        table: "events".into(),
                        column: name,
                    },
                })
            }
        };
        if columns.contains(&col) {
            return Err(SqlError::DuplicateColumn {
                column: col.name().into(),
            });
        }
        columns.push(col);
    }
    if let Some(missing) = InsertColumn::ALL
        .iter()
        .find(|c| c.required() && !columns.contains(c))
    {
        return Err(SqlError::MissingInsertColumn {
            column: missing.name().into(),
        });
    }
    let Some(source) = &insert.source else {
        return Err(unsupported("INSERT without VALUES"));
    };
    let ast::SetExpr::Values(values) = source.body.as_ref() else {
        return Err(SqlError::unsupported(
            "INSERT ... SELECT",
            "insert literal rows with VALUES (...)",
        ));
    };
    if source.with.is_some()
        || source.order_by.is_some()
        || source.limit_clause.is_some()
        || source.fetch.is_some()
    {
        return Err(unsupported("clauses on INSERT ... VALUES"));
    }
    if values.rows.len() > MAX_LIST_ITEMS {
        return Err(SqlError::too_complex(format!(
            "{} VALUES rows; the limit is {MAX_LIST_ITEMS}",
            values.rows.len()
        )));
    }
    let mut rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        let row = &row.content;
        if row.len() != columns.len() {
            return Err(SqlError::Syntax {
                message: if row.len() > columns.len() {
                    "INSERT has more expressions than target columns".into()
                } else {
                    "INSERT has more target columns than expressions".into()
                },
                position: None,
            });
        }
        let mut planned = Vec::with_capacity(row.len());
        for (col, expr) in columns.iter().zip(row) {
            let what = format!("column \"{}\"", col.name());
            let op = operand(expr, col.ty(), Use::Assign, &what)?;
            if col.required() && op == Operand::Null {
                return Err(SqlError::MissingInsertColumn {
                    column: col.name().into(),
                });
            }
            if *col == InsertColumn::ExpectedVersion && matches!(op, Operand::Float(_)) {
                return Err(SqlError::mismatch("expected_version must be an integer"));
            }
            planned.push(op);
        }
        rows.push(planned);
    }
    let scope = Scope {
        table: Table::Events,
        alias: None,
    };
    let returning = match &insert.returning {
        None => vec![],
        Some(items) => {
            let planned: Vec<SelectItem> = items
                .iter()
                .map(|i| select_item(&scope, i))
                .collect::<Result<_, _>>()?;
            if planned
                .iter()
                .any(|i| matches!(i, SelectItem::CountStar { .. }))
            {
                return Err(unsupported("COUNT(*) in RETURNING"));
            }
            planned
        }
    };
    let literal_objects = match rows.as_slice() {
        [row] => Some(literal_objects(&columns, row)),
        _ => None,
    };
    Ok(Statement::Insert(InsertEvents {
        columns,
        rows,
        returning,
        literal_objects,
    }))
}
