//! Session and transaction statements: SET, RESET, SHOW, BEGIN, COMMIT, ROLLBACK, DISCARD,
//! DEALLOCATE. The parser only normalizes them; the server keeps the session state.

use sqlparser::ast;

use super::error::SqlError;
use super::plan::{Column, CommandTag, PgType};

/// Isolation levels as PostgreSQL spells them in `SHOW transaction_isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl IsolationLevel {
    /// The setting's text (`read committed`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            IsolationLevel::ReadUncommitted => "read uncommitted",
            IsolationLevel::ReadCommitted => "read committed",
            IsolationLevel::RepeatableRead => "repeatable read",
            IsolationLevel::Serializable => "serializable",
        }
    }
}

/// Transaction characteristics given to BEGIN or SET [SESSION CHARACTERISTICS AS] TRANSACTION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransactionModes {
    pub isolation: Option<IsolationLevel>,
    /// `Some(true)` for READ ONLY, `Some(false)` for READ WRITE.
    pub read_only: Option<bool>,
}

/// The value of a SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetValue {
    /// `SET x TO DEFAULT` (same as `RESET x`).
    Default,
    /// The value list as text: `SET DATESTYLE TO 'ISO', 'MDY'` gives `["ISO", "MDY"]`;
    /// numbers and bare words keep their spelling (`3`, `public`, `on`).
    Values(Vec<String>),
}

impl SetValue {
    /// The setting as PostgreSQL would store it: the values joined with `", "`.
    pub fn joined(&self) -> Option<String> {
        match self {
            SetValue::Default => None,
            SetValue::Values(v) => Some(v.join(", ")),
        }
    }
}

/// `DISCARD ALL | PLANS | SEQUENCES | TEMP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardKind {
    All,
    Plans,
    Sequences,
    Temp,
}

/// A session or transaction-control statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatement {
    /// `SET [SESSION|LOCAL] name {=|TO} value`, `SET TIME ZONE v` (name `timezone`),
    /// `SET NAMES 'x'` (name `client_encoding`). `name` is lower-case.
    Set {
        name: String,
        value: SetValue,
        local: bool,
    },
    /// `SET TRANSACTION ...` (`session: false`) or
    /// `SET SESSION CHARACTERISTICS AS TRANSACTION ...` (`session: true`).
    SetTransaction {
        modes: TransactionModes,
        session: bool,
    },
    /// `RESET name` (lower-case) or `RESET ALL` (`None`).
    Reset {
        name: Option<String>,
    },
    /// `SHOW name` (lower-case), `SHOW ALL` (`all`); `SHOW TRANSACTION ISOLATION LEVEL` is
    /// `transaction_isolation`.
    Show {
        name: String,
    },
    /// `BEGIN [modes]` (`start: false`) or `START TRANSACTION [modes]` (`start: true`).
    Begin {
        modes: TransactionModes,
        start: bool,
    },
    /// `COMMIT` or `END`.
    Commit,
    /// `ROLLBACK` or `ABORT`.
    Rollback,
    Discard(DiscardKind),
    /// `DEALLOCATE [PREPARE] name` or `DEALLOCATE ALL` (`None`).
    Deallocate {
        name: Option<String>,
    },
}

/// Canonical spellings PostgreSQL uses for the SHOW column of these settings.
const CANONICAL_NAMES: &[&str] = &[
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "application_name",
    "client_encoding",
    "server_encoding",
    "server_version",
    "server_version_num",
    "standard_conforming_strings",
    "integer_datetimes",
    "search_path",
    "extra_float_digits",
    "transaction_isolation",
    "transaction_read_only",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "is_superuser",
    "session_authorization",
    "max_identifier_length",
    "lc_collate",
    "lc_ctype",
    "statement_timeout",
    "lock_timeout",
    "bytea_output",
    "client_min_messages",
    "in_hot_standby",
];

/// The column name `SHOW name` returns (`SHOW timezone` is `TimeZone`).
pub fn show_column_name(name: &str) -> String {
    CANONICAL_NAMES
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .map(|c| c.to_string())
        .unwrap_or_else(|| name.to_string())
}

impl SessionStatement {
    pub fn result_columns(&self) -> Vec<Column> {
        match self {
            SessionStatement::Show { name } if name == "all" => vec![
                Column::new("name", PgType::Text),
                Column::new("setting", PgType::Text),
                Column::new("description", PgType::Text),
            ],
            SessionStatement::Show { name } => {
                vec![Column::new(show_column_name(name), PgType::Text)]
            }
            _ => vec![],
        }
    }

    pub fn command_tag(&self) -> CommandTag {
        match self {
            SessionStatement::Set { .. } | SessionStatement::SetTransaction { .. } => {
                CommandTag::Set
            }
            SessionStatement::Reset { .. } => CommandTag::Reset,
            SessionStatement::Show { .. } => CommandTag::Show,
            SessionStatement::Begin { start: false, .. } => CommandTag::Begin,
            SessionStatement::Begin { start: true, .. } => CommandTag::StartTransaction,
            SessionStatement::Commit => CommandTag::Commit,
            SessionStatement::Rollback => CommandTag::Rollback,
            SessionStatement::Discard(kind) => CommandTag::Discard(*kind),
            SessionStatement::Deallocate { name: Some(_) } => CommandTag::Deallocate,
            SessionStatement::Deallocate { name: None } => CommandTag::DeallocateAll,
        }
    }
}

fn fold(ident: &ast::Ident) -> String {
    super::parse::fold_ident(ident)
}

fn object_name_text(name: &ast::ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part {
            ast::ObjectNamePart::Identifier(i) => fold(i),
            ast::ObjectNamePart::Function(f) => fold(&f.name),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn modes(list: &[ast::TransactionMode]) -> Result<TransactionModes, SqlError> {
    let mut out = TransactionModes::default();
    for m in list {
        match m {
            ast::TransactionMode::IsolationLevel(level) => {
                out.isolation = Some(match level {
                    ast::TransactionIsolationLevel::ReadUncommitted => {
                        IsolationLevel::ReadUncommitted
                    }
                    ast::TransactionIsolationLevel::ReadCommitted => IsolationLevel::ReadCommitted,
                    ast::TransactionIsolationLevel::RepeatableRead => {
                        IsolationLevel::RepeatableRead
                    }
                    ast::TransactionIsolationLevel::Serializable => IsolationLevel::Serializable,
                    ast::TransactionIsolationLevel::Snapshot => {
                        return Err(SqlError::unsupported(
                            "ISOLATION LEVEL SNAPSHOT",
                            "use READ COMMITTED, REPEATABLE READ or SERIALIZABLE",
                        ))
                    }
                })
            }
            ast::TransactionMode::AccessMode(a) => {
                out.read_only = Some(matches!(a, ast::TransactionAccessMode::ReadOnly))
            }
        }
    }
    Ok(out)
}

/// The text of one SET value.
fn set_value_text(expr: &ast::Expr) -> Result<String, SqlError> {
    use ast::{Expr, Value};
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::DoubleQuotedString(s) => Ok(s.clone()),
            Value::DollarQuotedString(d) => Ok(d.value.clone()),
            Value::Number(n, _) => Ok(n.clone()),
            Value::Boolean(b) => Ok(if *b { "on" } else { "off" }.to_string()),
            Value::Placeholder(_) => Err(SqlError::Syntax {
                message: "parameters are not allowed in SET".into(),
                position: None,
            }),
            _ => Err(SqlError::unsupported(
                "this SET value",
                "use a string, a number or a name",
            )),
        },
        Expr::Identifier(i) => Ok(if i.quote_style.is_some() {
            i.value.clone()
        } else {
            i.value.to_ascii_lowercase()
        }),
        Expr::CompoundIdentifier(parts) => Ok(parts.iter().map(fold).collect::<Vec<_>>().join(".")),
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => Ok(format!("-{}", set_value_text(expr)?)),
        Expr::Nested(inner) => set_value_text(inner),
        Expr::Interval(_) | Expr::TypedString(_) => Ok(expr.to_string()),
        _ => Err(SqlError::unsupported(
            "this SET value",
            "use a string, a number or a name",
        )),
    }
}

fn set_values(values: &[ast::Expr]) -> Result<SetValue, SqlError> {
    if let [ast::Expr::Identifier(i)] = values {
        if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") {
            return Ok(SetValue::Default);
        }
    }
    Ok(SetValue::Values(
        values
            .iter()
            .map(set_value_text)
            .collect::<Result<_, _>>()?,
    ))
}

/// Plans a session statement, or returns `None` when `stmt` is not one.
pub(crate) fn plan(stmt: &ast::Statement) -> Result<Option<SessionStatement>, SqlError> {
    use ast::Statement as S;
    let planned = match stmt {
        S::Set(set) => match set {
            ast::Set::SingleAssignment {
                scope,
                variable,
                values,
                ..
            } => SessionStatement::Set {
                name: object_name_text(variable),
                value: set_values(values)?,
                local: matches!(scope, Some(ast::ContextModifier::Local)),
            },
            ast::Set::SetTimeZone { local, value } => SessionStatement::Set {
                name: "timezone".into(),
                value: set_values(std::slice::from_ref(value))?,
                local: *local,
            },
            ast::Set::SetNames { charset_name, .. } => SessionStatement::Set {
                name: "client_encoding".into(),
                value: SetValue::Values(vec![charset_name.value.clone()]),
                local: false,
            },
            ast::Set::SetNamesDefault {} => SessionStatement::Set {
                name: "client_encoding".into(),
                value: SetValue::Default,
                local: false,
            },
            ast::Set::SetTransaction {
                modes: m,
                snapshot: None,
                session,
            } => SessionStatement::SetTransaction {
                modes: modes(m)?,
                session: *session,
            },
            _ => {
                return Err(SqlError::unsupported(
                    "this form of SET",
                    "use SET name = value, SET TIME ZONE, or SET [SESSION CHARACTERISTICS AS] \
                     TRANSACTION ...",
                ))
            }
        },
        S::Reset(r) => match &r.reset {
            ast::Reset::ALL => SessionStatement::Reset { name: None },
            ast::Reset::ConfigurationParameter(name) => SessionStatement::Reset {
                name: Some(object_name_text(name)),
            },
            ast::Reset::SessionAuthorization => SessionStatement::Reset {
                name: Some("session_authorization".into()),
            },
        },
        S::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(fold).collect();
            let joined = words.join(" ");
            let name = match joined.as_str() {
                "transaction isolation level" => "transaction_isolation".to_string(),
                "time zone" => "timezone".to_string(),
                "session authorization" => "session_authorization".to_string(),
                _ if words.len() == 1 => joined,
                _ => words.join("."),
            };
            SessionStatement::Show { name }
        }
        S::StartTransaction {
            modes: m,
            begin,
            statements,
            exception,
            ..
        } if statements.is_empty() && exception.is_none() => SessionStatement::Begin {
            modes: modes(m)?,
            start: !*begin,
        },
        S::Commit { chain: false, .. } => SessionStatement::Commit,
        S::Rollback {
            chain: false,
            savepoint: None,
        } => SessionStatement::Rollback,
        S::Commit { .. } | S::Rollback { .. } => {
            return Err(SqlError::unsupported(
                "AND CHAIN / ROLLBACK TO SAVEPOINT",
                "use plain COMMIT or ROLLBACK",
            ))
        }
        S::Discard { object_type } => SessionStatement::Discard(match object_type {
            ast::DiscardObject::ALL => DiscardKind::All,
            ast::DiscardObject::PLANS => DiscardKind::Plans,
            ast::DiscardObject::SEQUENCES => DiscardKind::Sequences,
            ast::DiscardObject::TEMP => DiscardKind::Temp,
        }),
        S::Deallocate { name, .. } => {
            if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
                SessionStatement::Deallocate { name: None }
            } else {
                SessionStatement::Deallocate {
                    name: Some(fold(name)),
                }
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(planned))
}
