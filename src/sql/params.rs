//! Parameter (`$n`) validation and type inference.
//!
//! A parameter's type is, in order of precedence: its explicit cast (`$1::int4`), else the
//! type its context gives (the column it is compared with or inserted into, `int8` for
//! LIMIT/OFFSET and `read_outbox` arguments, `text` for `verify`/`apply_schema` arguments and
//! JSON path keys), else [`PgType::Unknown`]. When two contexts of different type families
//! claim one parameter (`aggregate_id = $1 AND event_id = $1`) planning fails with
//! [`SqlError::TypeMismatch`], as PostgreSQL's "inconsistent types deduced for parameter".

use std::ops::ControlFlow;

use sqlparser::ast::{self, visit_expressions};

use super::error::SqlError;
use super::plan::{Operand, PgType, Predicate, ScalarExpr, SelectItem, Statement, TypeFamily};

/// The highest parameter number accepted: the wire protocol counts parameters in an Int16.
pub const MAX_PARAM: usize = 65_535;

/// Parses a placeholder token (`$7`) into its 0-based index.
pub(crate) fn placeholder_index(text: &str) -> Result<usize, SqlError> {
    let unknown = || SqlError::UnknownParameter {
        param: text.chars().take(32).collect(),
    };
    let digits = text.strip_prefix('$').ok_or_else(|| SqlError::Syntax {
        message: format!(
            "unsupported placeholder {:?}: use $1, $2, ...",
            text.chars().take(32).collect::<String>()
        ),
        position: None,
    })?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown());
    }
    let n: usize = digits.parse().map_err(|_| unknown())?;
    if n == 0 || n > MAX_PARAM {
        return Err(unknown());
    }
    Ok(n - 1)
}

/// Checks every placeholder in a parsed statement.
pub(crate) fn check_placeholders(stmt: &ast::Statement) -> Result<(), SqlError> {
    let flow = visit_expressions(stmt, |expr| {
        if let ast::Expr::Value(v) = expr {
            if let ast::Value::Placeholder(p) = &v.value {
                if let Err(e) = placeholder_index(p) {
                    return ControlFlow::Break(e);
                }
            }
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Collects parameter types; see the module doc for the rules.
#[derive(Debug, Default)]
pub(crate) struct ParamTypes {
    cast: Vec<Option<PgType>>,
    context: Vec<Option<PgType>>,
}

impl ParamTypes {
    fn grow(&mut self, index: usize) {
        if self.cast.len() <= index {
            self.cast.resize(index + 1, None);
            self.context.resize(index + 1, None);
        }
    }

    /// Records that parameter `index` appears (so the vector is at least that long).
    pub(crate) fn seen(&mut self, index: usize) {
        self.grow(index);
    }

    /// Records an explicit cast; the first cast wins.
    pub(crate) fn cast(&mut self, index: usize, ty: PgType) {
        self.grow(index);
        if self.cast[index].is_none() {
            self.cast[index] = Some(ty);
        }
    }

    /// Records a type the context gives.
    pub(crate) fn context(&mut self, index: usize, ty: PgType) -> Result<(), SqlError> {
        self.grow(index);
        if ty == PgType::Unknown {
            return Ok(());
        }
        match self.context[index] {
            None => self.context[index] = Some(ty),
            Some(prev) if prev.family() != ty.family() && self.cast[index].is_none() => {
                return Err(SqlError::mismatch(format!(
                    "inconsistent types deduced for parameter ${}: {} versus {}",
                    index + 1,
                    prev.name(),
                    ty.name()
                )));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Records an operand used where a value of type `ty` is expected.
    pub(crate) fn operand(&mut self, op: &Operand, ty: PgType) -> Result<(), SqlError> {
        match op {
            Operand::Param { index, cast } => match cast {
                Some(c) => self.cast(*index, *c),
                None => self.context(*index, ty)?,
            },
            // Every part of a concatenation is text, whatever the result is used as.
            Operand::Concat(parts) => {
                for part in parts {
                    self.operand(part, PgType::Text)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<PgType> {
        self.cast
            .into_iter()
            .zip(self.context)
            .map(|(c, x)| c.or(x).unwrap_or(PgType::Unknown))
            .collect()
    }
}

fn item_params(p: &mut ParamTypes, item: &SelectItem) -> Result<(), SqlError> {
    if let SelectItem::Json { path, .. } = item {
        for step in path {
            p.operand(step, PgType::Text)?;
        }
    }
    Ok(())
}

fn value_ref_params(p: &mut ParamTypes, v: &super::plan::ValueRef) -> Result<(), SqlError> {
    if let super::plan::ValueRef::Json { path, .. } = v {
        for step in path {
            p.operand(step, PgType::Text)?;
        }
    }
    Ok(())
}

/// The parameter types of a planned statement.
pub(crate) fn param_types(stmt: &Statement) -> Result<Vec<PgType>, SqlError> {
    let mut p = ParamTypes::default();
    match stmt {
        Statement::Empty | Statement::Session(_) => {}
        Statement::Insert(insert) => {
            for row in &insert.rows {
                for (col, op) in insert.columns.iter().zip(row) {
                    p.operand(op, col.ty())?;
                }
            }
            for item in &insert.returning {
                item_params(&mut p, item)?;
            }
        }
        Statement::Query(q) => {
            for item in &q.items {
                item_params(&mut p, item)?;
            }
            for f in &q.filters {
                match f {
                    Predicate::Compare { left, right, .. } => {
                        value_ref_params(&mut p, left)?;
                        p.operand(right, left.ty())?;
                    }
                    Predicate::In { left, values } => {
                        value_ref_params(&mut p, left)?;
                        for v in values {
                            p.operand(v, left.ty())?;
                        }
                    }
                    Predicate::IsNull { left, .. } => value_ref_params(&mut p, left)?,
                }
            }
            for op in q.limit.iter().chain(q.offset.iter()) {
                p.operand(op, PgType::Int8)?;
            }
        }
        Statement::ReadOutbox { after, take, .. } => {
            p.operand(after, PgType::Int8)?;
            p.operand(take, PgType::Int8)?;
        }
        Statement::Verify {
            aggregate_type,
            aggregate_id,
            ..
        } => {
            for op in aggregate_type.iter().chain(aggregate_id.iter()) {
                p.operand(op, PgType::Text)?;
            }
        }
        Statement::ApplySchema { source, .. } => p.operand(source, PgType::Text)?,
        Statement::Projected { inner, .. } => return param_types(inner),
        Statement::Scalars(items) => {
            for (_, e) in items {
                match e {
                    ScalarExpr::Value { value, ty } => p.operand(value, *ty)?,
                    ScalarExpr::CurrentSetting { name, .. } => p.operand(name, PgType::Text)?,
                    ScalarExpr::Sleep { seconds } => p.operand(seconds, PgType::Float8)?,
                    _ => {}
                }
            }
        }
        Statement::Catalog(answer) => return Ok(answer.param_types.clone()),
    }
    Ok(p.finish())
}

/// Whether two types can meet in a comparison (PostgreSQL has an operator for them).
pub(crate) fn comparable(a: PgType, b: PgType) -> bool {
    let (fa, fb) = (a.family(), b.family());
    fa == TypeFamily::Unknown || fb == TypeFamily::Unknown || fa == fb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_indexes() {
        assert_eq!(placeholder_index("$1"), Ok(0));
        assert_eq!(placeholder_index("$65535"), Ok(65534));
        for bad in ["$0", "$65536", "$", "$1a", "$9999999999999999999999"] {
            let err = placeholder_index(bad).unwrap_err();
            assert_eq!(err.sqlstate(), "42P02", "{bad}");
        }
        assert_eq!(placeholder_index("?").unwrap_err().sqlstate(), "42601");
    }

    #[test]
    fn cast_beats_context_and_conflicts_are_errors() {
        let mut p = ParamTypes::default();
        p.context(0, PgType::Int8).unwrap();
        p.cast(0, PgType::Int4);
        p.seen(3);
        assert_eq!(
            p.finish(),
            vec![
                PgType::Int4,
                PgType::Unknown,
                PgType::Unknown,
                PgType::Unknown
            ]
        );
        let mut p = ParamTypes::default();
        p.context(0, PgType::Text).unwrap();
        assert_eq!(p.context(0, PgType::Int8).unwrap_err().sqlstate(), "42804");
    }
}
