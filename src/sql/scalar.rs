//! FROM-less `SELECT <scalar>, ...`: literals, parameters and the session functions clients
//! call on connect (`version()`, `current_setting(...)`, `current_schema()`, ...).

use sqlparser::ast::{self, Expr};

use super::error::SqlError;
use super::parse::{fold_ident, name_parts};
use super::plan::{Operand, PgType, ScalarExpr, Statement};

fn unsupported(what: String) -> SqlError {
    SqlError::unsupported(
        what,
        "SELECT without FROM supports literals, $n, casts, version(), current_setting(name), \
         current_schema(), current_database(), session_user, current_user, pg_backend_pid(), \
         now()",
    )
}

/// Plans `SELECT item, ...` without FROM.
pub(crate) fn plan(q: &ast::Query, select: &ast::Select) -> Result<Statement, SqlError> {
    let plain = select.selection.is_none()
        && select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        && q.order_by.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && q.locks.is_empty()
        && select.into.is_none();
    if !plain {
        return Err(unsupported("clauses on a SELECT without FROM".into()));
    }
    let mut items = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        let (expr, alias) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e, None),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(fold_ident(alias))),
            _ => return Err(unsupported(format!("select item {item}"))),
        };
        let scalar = scalar(expr)?;
        let name = alias.unwrap_or_else(|| column_name(expr));
        items.push((name, scalar));
    }
    if items.is_empty() {
        return Err(unsupported("an empty select list".into()));
    }
    Ok(Statement::Scalars(items))
}

/// The function a name denotes: its last part, when any qualifier is `pg_catalog`.
fn function_name(name: &ast::ObjectName) -> Option<String> {
    let parts = name_parts(name);
    match parts.as_slice() {
        [n] => Some(n.clone()),
        [s, n] if s == "pg_catalog" => Some(n.clone()),
        _ => None,
    }
}

fn args_of(f: &ast::Function) -> Option<Vec<&Expr>> {
    match &f.args {
        ast::FunctionArguments::None => Some(vec![]),
        ast::FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            list.args
                .iter()
                .map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

/// The no-argument SQL value keywords (`session_user`, ...), however the parser spelled them.
fn keyword_value(name: &str, parenthesized: bool) -> Option<ScalarExpr> {
    Some(match (name, parenthesized) {
        ("session_user", false) => ScalarExpr::SessionUser,
        ("current_user" | "user", false) => ScalarExpr::CurrentUser,
        ("current_catalog", false) | ("current_database", true) => ScalarExpr::CurrentDatabase,
        ("current_schema", _) => ScalarExpr::CurrentSchema,
        ("current_timestamp", false) | ("now" | "transaction_timestamp", true) => ScalarExpr::Now,
        ("version", true) => ScalarExpr::Version,
        ("pg_backend_pid", true) => ScalarExpr::PgBackendPid,
        _ => return None,
    })
}

fn scalar(expr: &Expr) -> Result<ScalarExpr, SqlError> {
    match expr {
        Expr::Nested(inner) => scalar(inner),
        Expr::Identifier(i) if i.quote_style.is_none() => keyword_value(&fold_ident(i), false)
            .ok_or_else(|| SqlError::UnknownColumn {
                table: "(no FROM clause)".into(),
                column: fold_ident(i),
            }),
        Expr::Function(f) if f.over.is_none() && f.filter.is_none() => {
            let name = function_name(&f.name)
                .ok_or_else(|| unsupported(format!("function {}", f.name)))?;
            let args = args_of(f).ok_or_else(|| unsupported(format!("the arguments of {name}")))?;
            let parenthesized = !matches!(f.args, ast::FunctionArguments::None);
            if name == "pg_sleep" {
                let [seconds] = args.as_slice() else {
                    return Err(unsupported("pg_sleep with these arguments".into()));
                };
                let (seconds, _) = super::parse::raw_operand(seconds)?;
                if !matches!(
                    seconds,
                    Operand::Int(_) | Operand::Float(_) | Operand::Param { .. }
                ) {
                    return Err(SqlError::mismatch("pg_sleep takes a number of seconds"));
                }
                return Ok(ScalarExpr::Sleep { seconds });
            }
            if name == "current_setting" {
                let (setting, missing_ok) = match args.as_slice() {
                    [n] => (*n, false),
                    [n, Expr::Value(v)] => match v.value {
                        ast::Value::Boolean(b) => (*n, b),
                        _ => return Err(unsupported("current_setting's second argument".into())),
                    },
                    _ => return Err(unsupported("current_setting with these arguments".into())),
                };
                let name = match super::parse::raw_operand(setting)? {
                    (op @ (Operand::Text(_) | Operand::Param { .. }), _) => op,
                    _ => {
                        return Err(SqlError::mismatch(
                            "current_setting takes the setting name as text",
                        ))
                    }
                };
                return Ok(ScalarExpr::CurrentSetting { name, missing_ok });
            }
            if !args.is_empty() {
                return Err(unsupported(format!("{name} with arguments")));
            }
            keyword_value(&name, parenthesized)
                .ok_or_else(|| unsupported(format!("function {name}()")))
        }
        _ => {
            if let Expr::Cast { data_type, .. } = expr {
                let known = super::parse::data_type_to_pg(data_type)
                    .is_some_and(|t| t.family() != super::plan::TypeFamily::Other);
                if !known {
                    return Err(unsupported(format!("cast to {data_type}")));
                }
            }
            let (value, cast) = super::parse::raw_operand(expr)?;
            let ty = match (&value, cast) {
                (_, Some(t)) => t,
                (Operand::Int(i), None) if i32::try_from(*i).is_ok() => PgType::Int4,
                (Operand::Int(_), None) => PgType::Int8,
                (Operand::Float(_), None) => PgType::Numeric,
                (Operand::Bool(_), None) => PgType::Bool,
                (Operand::Text(_) | Operand::Null | Operand::Concat(_), None) => PgType::Text,
                (Operand::Param { .. }, None) => PgType::Unknown,
            };
            Ok(ScalarExpr::Value { value, ty })
        }
    }
}

/// The column name PostgreSQL gives an unaliased expression (its `FigureColname`).
pub(crate) fn column_name(expr: &Expr) -> String {
    figure(expr).unwrap_or_else(|| "?column?".to_string())
}

fn figure(expr: &Expr) -> Option<String> {
    // Casts and parentheses chain arbitrarily deep: walk them with a loop. The name is the
    // innermost named expression's, else the outermost cast's type.
    let mut e = expr;
    let mut outer_cast: Option<&ast::DataType> = None;
    loop {
        match e {
            Expr::Nested(inner) => e = inner,
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => {
                outer_cast.get_or_insert(data_type);
                e = inner;
            }
            _ => break,
        }
    }
    if let Some(data_type) = outer_cast {
        return figure_base(e).or_else(|| {
            super::parse::data_type_to_pg(data_type)
                .map(|t| t.name().to_string())
                .or_else(|| Some(data_type.to_string().to_lowercase()))
        });
    }
    figure_base(e)
}

fn figure_base(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Nested(inner) => figure(inner),
        Expr::Identifier(i) => Some(fold_ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold_ident),
        Expr::Function(f) => name_parts(&f.name).last().cloned(),
        Expr::Cast {
            expr, data_type, ..
        } => figure(expr).or_else(|| {
            super::parse::data_type_to_pg(data_type)
                .map(|t| t.name().to_string())
                .or_else(|| Some(data_type.to_string().to_lowercase()))
        }),
        Expr::TypedString(ts) => {
            super::parse::data_type_to_pg(&ts.data_type).map(|t| t.name().to_string())
        }
        Expr::Case { else_result, .. } => Some(
            else_result
                .as_deref()
                .and_then(figure)
                .unwrap_or_else(|| "case".to_string()),
        ),
        Expr::Collate { expr, .. } => figure(expr),
        Expr::Subquery(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) => match s.projection.first() {
                Some(ast::SelectItem::ExprWithAlias { alias, .. }) => Some(fold_ident(alias)),
                Some(ast::SelectItem::UnnamedExpr(e)) => figure(e),
                _ => None,
            },
            _ => None,
        },
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::CompoundFieldAccess { root, .. } => figure(root),
        _ => None,
    }
}
