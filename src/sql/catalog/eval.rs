//! A small query evaluator over the static catalog: enough SQL (joins, subqueries, CASE,
//! UNION, window `row_number()`, simple aggregates, the catalog functions) to answer the
//! queries psql and pgjdbc send, computed rather than canned so their variants (patterns,
//! filters, other tables) answer correctly too.
//!
//! Every evaluation is bounded by a work budget; anything outside what is emulated is an
//! [`SqlError::Unsupported`] naming the missing piece.

use std::cmp::Ordering;

use sqlparser::ast::{self, Expr};

use super::data;
use super::regex::{like, Regex};
use crate::sql::error::SqlError;
use crate::sql::params::{placeholder_index, ParamTypes};
use crate::sql::parse::{data_type_to_pg, fold_ident, name_parts};
use crate::sql::plan::PgType;
use crate::sql::scalar::column_name;

/// Rows joined, filtered or produced across one evaluation before it is refused.
const WORK_BUDGET: u64 = 2_000_000;
/// Deepest nesting of expressions and subqueries evaluated. Legitimate client queries nest
/// about ten levels; the bound keeps evaluation well inside a 2 MiB thread stack even in
/// unoptimized builds (where one level costs up to ~20 KiB).
const MAX_EVAL_DEPTH: usize = 40;
/// Most rows one set-returning function may produce.
const MAX_SERIES: i64 = 10_000;

/// A runtime value. `oid`, `regclass`, `regtype` and `regnamespace` values are `Int`;
/// `name`, `"char"`, `regproc` and timestamps are `Text`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    Array(Vec<Val>),
}

#[derive(Debug, Clone)]
pub(crate) struct RelCol {
    pub qual: Option<String>,
    pub name: String,
    pub ty: PgType,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Rel {
    pub cols: Vec<RelCol>,
    pub rows: Vec<Vec<Val>>,
}

/// Name resolution context: the columns (and, when evaluating, the row) of one query level,
/// chained to the enclosing levels for correlated subqueries.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    cols: &'a [RelCol],
    row: Option<&'a [Val]>,
    parent: Option<&'a Scope<'a>>,
}

fn unsupported(what: impl Into<String>) -> SqlError {
    SqlError::unsupported(
        format!("catalog query: {}", what.into()),
        "EventDBX emulates the pg_catalog queries of psql (\\dt, \\d, \\d NAME, \\dn, \\l) and \
         pgjdbc (getTables, getColumns, type lookups)",
    )
}

fn short(x: &impl std::fmt::Display) -> String {
    let s = x.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

pub(crate) struct Engine<'p> {
    /// Bound parameter values in text form; `None` while only typing.
    params: Option<&'p [Option<String>]>,
    pub(crate) param_types: ParamTypes,
    budget: u64,
    /// Compiled patterns by (pattern, case-insensitive).
    regexes: Vec<((String, bool), Regex)>,
    /// Current nesting of `eval`/`type_of`/`query` calls.
    depth: usize,
}

impl<'p> Engine<'p> {
    pub(crate) fn new(params: Option<&'p [Option<String>]>) -> Engine<'p> {
        Engine {
            params,
            param_types: ParamTypes::default(),
            budget: WORK_BUDGET,
            regexes: Vec::new(),
            depth: 0,
        }
    }

    /// Matches `text` against a POSIX pattern, compiling each pattern once and charging the
    /// match's cost to the budget.
    fn regex_match(&mut self, text: &str, pattern: &str, ci: bool) -> Result<bool, SqlError> {
        let key = (pattern.to_string(), ci);
        let idx = match self.regexes.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.spend(pattern.len() as u64 / 16 + 1)?;
                let re = Regex::new(pattern, ci)?;
                self.regexes.push((key, re));
                self.regexes.len() - 1
            }
        };
        let re = &self.regexes[idx].1;
        let cost = (re.len() as u64).saturating_mul(text.chars().count() as u64 + 1) / 256 + 1;
        let hit = re.is_match(text);
        self.spend(cost)?;
        Ok(hit)
    }

    fn spend(&mut self, n: u64) -> Result<(), SqlError> {
        self.budget = self
            .budget
            .checked_sub(n)
            .ok_or_else(|| SqlError::too_complex("catalog query does too much work"))?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Queries
    // -----------------------------------------------------------------------------------

    /// Runs (or, with `eval == false`, only types) a query.
    /// Runs `f` one nesting level deeper, refusing to go past [`MAX_EVAL_DEPTH`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        if self.depth >= MAX_EVAL_DEPTH {
            return Err(SqlError::too_complex(format!(
                "catalog query nests deeper than {MAX_EVAL_DEPTH} levels"
            )));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    pub(crate) fn query(
        &mut self,
        q: &ast::Query,
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        self.nested(|me| me.query_inner(q, outer, eval))
    }

    fn query_inner(
        &mut self,
        q: &ast::Query,
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        if q.with.is_some() {
            return Err(unsupported("WITH"));
        }
        if q.fetch.is_some() || !q.locks.is_empty() || q.for_clause.is_some() {
            return Err(unsupported("FETCH / FOR clauses"));
        }
        let order = match &q.order_by {
            None => None,
            Some(o) => match &o.kind {
                ast::OrderByKind::Expressions(list) => Some(list.as_slice()),
                ast::OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL")),
            },
        };
        let mut rel = match q.body.as_ref() {
            ast::SetExpr::Select(s) => self.select(s, order, outer, eval)?,
            other => {
                let mut rel = self.set_expr(other, outer, eval)?;
                if let Some(order) = order {
                    self.sort_output(&mut rel, order)?;
                }
                rel
            }
        };
        let (limit, offset) = match &q.limit_clause {
            None => (None, None),
            Some(ast::LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) if limit_by.is_empty() => (limit.as_ref(), offset.as_ref().map(|o| &o.value)),
            Some(_) => return Err(unsupported("this LIMIT form")),
        };
        for e in limit.iter().chain(offset.iter()) {
            self.infer_params(e, PgType::Int8)?;
        }
        if eval {
            if let Some(o) = offset {
                let n = self.const_int(o)?.max(0);
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                rel.rows = rel.rows.split_off(n.min(rel.rows.len()));
            }
            if let Some(l) = limit {
                if let Some(n) = self.const_opt_int(l)? {
                    rel.rows
                        .truncate(usize::try_from(n.max(0)).unwrap_or(usize::MAX));
                }
            }
        }
        Ok(rel)
    }

    fn const_opt_int(&mut self, e: &Expr) -> Result<Option<i64>, SqlError> {
        let scope = Scope {
            cols: &[],
            row: Some(&[]),
            parent: None,
        };
        match self.eval(e, &scope)? {
            Val::Null => Ok(None),
            v => Ok(Some(to_int(&v)?)),
        }
    }

    fn const_int(&mut self, e: &Expr) -> Result<i64, SqlError> {
        Ok(self.const_opt_int(e)?.unwrap_or(0))
    }

    fn set_expr(
        &mut self,
        body: &ast::SetExpr,
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        match body {
            ast::SetExpr::Select(s) => self.select(s, None, outer, eval),
            ast::SetExpr::Query(q) => self.query(q, outer, eval),
            ast::SetExpr::SetOperation {
                left,
                op: ast::SetOperator::Union,
                set_quantifier,
                right,
            } => {
                let mut l = self.set_expr(left, outer, eval)?;
                let r = self.set_expr(right, outer, eval)?;
                if l.cols.len() != r.cols.len() {
                    return Err(SqlError::Syntax {
                        message: "each UNION query must have the same number of columns".into(),
                        position: None,
                    });
                }
                for (lc, rc) in l.cols.iter_mut().zip(&r.cols) {
                    if lc.ty == PgType::Unknown {
                        lc.ty = rc.ty;
                    }
                }
                l.rows.extend(r.rows);
                let all = matches!(
                    set_quantifier,
                    ast::SetQuantifier::All | ast::SetQuantifier::AllByName
                );
                if !all {
                    dedupe(&mut l.rows);
                }
                for c in &mut l.cols {
                    if c.ty == PgType::Unknown {
                        c.ty = PgType::Text;
                    }
                }
                Ok(l)
            }
            ast::SetExpr::Values(v) => {
                let scope = Scope {
                    cols: &[],
                    row: Some(&[]),
                    parent: outer,
                };
                let mut rel = Rel::default();
                for (i, row) in v.rows.iter().enumerate() {
                    if i == 0 {
                        for (j, e) in row.content.iter().enumerate() {
                            rel.cols.push(RelCol {
                                qual: None,
                                name: format!("column{}", j + 1),
                                ty: self.type_of(e, &scope)?,
                            });
                        }
                    }
                    if eval {
                        self.spend(1)?;
                        let vals = row
                            .content
                            .iter()
                            .map(|e| self.eval(e, &scope))
                            .collect::<Result<Vec<_>, _>>()?;
                        if vals.len() != rel.cols.len() {
                            return Err(SqlError::Syntax {
                                message: "VALUES lists must all be the same length".into(),
                                position: None,
                            });
                        }
                        rel.rows.push(vals);
                    }
                }
                Ok(rel)
            }
            _ => Err(unsupported(short(body))),
        }
    }

    fn sort_output(&mut self, rel: &mut Rel, order: &[ast::OrderByExpr]) -> Result<(), SqlError> {
        let mut keys = Vec::new();
        for o in order {
            let idx = match &o.expr {
                Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => {
                        n.parse::<usize>().ok().and_then(|i| i.checked_sub(1))
                    }
                    _ => None,
                },
                Expr::Identifier(i) => {
                    let n = fold_ident(i);
                    rel.cols.iter().position(|c| c.name == n)
                }
                _ => None,
            };
            let idx = idx.filter(|i| *i < rel.cols.len()).ok_or_else(|| {
                unsupported(format!("ORDER BY {} on a set operation", short(&o.expr)))
            })?;
            keys.push((idx, sort_dir(o)?));
        }
        let mut err = None;
        rel.rows.sort_by(|a, b| {
            for (idx, (desc, nulls_first)) in &keys {
                match compare_for_sort(&a[*idx], &b[*idx], *desc, *nulls_first) {
                    Ok(Ordering::Equal) => continue,
                    Ok(o) => return o,
                    Err(e) => {
                        err.get_or_insert(e);
                        return Ordering::Equal;
                    }
                }
            }
            Ordering::Equal
        });
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn select(
        &mut self,
        s: &ast::Select,
        order: Option<&[ast::OrderByExpr]>,
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        if s.top.is_some()
            || s.into.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.named_window.is_empty()
            || s.qualify.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.having.is_some()
            || s.exclude.is_some()
        {
            return Err(unsupported("this SELECT clause"));
        }
        if !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        {
            return Err(unsupported("GROUP BY"));
        }
        let distinct = match &s.distinct {
            None | Some(ast::Distinct::All) => false,
            Some(ast::Distinct::Distinct) => true,
            Some(_) => return Err(unsupported("DISTINCT ON")),
        };
        // FROM
        let source = self.from(&s.from, outer, eval)?;
        let typing = Scope {
            cols: &source.cols,
            row: None,
            parent: outer,
        };
        if let Some(w) = &s.selection {
            self.infer_params(w, PgType::Bool)?;
            self.check_types(w, &typing)?;
        }
        // Output columns.
        let mut items: Vec<Item> = Vec::new();
        let mut cols = Vec::new();
        for item in &s.projection {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    let idx: Vec<usize> = (0..source.cols.len()).collect();
                    for &i in &idx {
                        cols.push(RelCol {
                            qual: None,
                            name: source.cols[i].name.clone(),
                            ty: source.cols[i].ty,
                        });
                    }
                    items.push(Item::Columns(idx));
                }
                ast::SelectItem::QualifiedWildcard(
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let q = name_parts(n).last().cloned().unwrap_or_default();
                    let idx: Vec<usize> = source
                        .cols
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.qual.as_deref() == Some(q.as_str()))
                        .map(|(i, _)| i)
                        .collect();
                    if idx.is_empty() {
                        return Err(unsupported(format!("{q}.* (no such relation)")));
                    }
                    for &i in &idx {
                        cols.push(RelCol {
                            qual: None,
                            name: source.cols[i].name.clone(),
                            ty: source.cols[i].ty,
                        });
                    }
                    items.push(Item::Columns(idx));
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    self.infer_params(e, PgType::Unknown)?;
                    let ty = self.type_of(e, &typing)?;
                    cols.push(RelCol {
                        qual: None,
                        name: column_name(e),
                        ty: output_type(ty),
                    });
                    items.push(Item::Expr(e));
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    self.infer_params(expr, PgType::Unknown)?;
                    let ty = self.type_of(expr, &typing)?;
                    cols.push(RelCol {
                        qual: None,
                        name: fold_ident(alias),
                        ty: output_type(ty),
                    });
                    items.push(Item::Expr(expr));
                }
                _ => return Err(unsupported(format!("select item {}", short(item)))),
            }
        }
        if let Some(order) = order {
            for o in order {
                self.infer_params(&o.expr, PgType::Unknown)?;
            }
        }
        if !eval {
            return Ok(Rel { cols, rows: vec![] });
        }
        // WHERE
        let mut rows = Vec::with_capacity(source.rows.len());
        for row in source.rows {
            self.spend(1)?;
            let keep = match &s.selection {
                None => true,
                Some(w) => {
                    let scope = Scope {
                        cols: &source.cols,
                        row: Some(&row),
                        parent: outer,
                    };
                    self.eval(w, &scope)? == Val::Bool(true)
                }
            };
            if keep {
                rows.push(row);
            }
        }
        let aggregate = items
            .iter()
            .any(|i| matches!(i, Item::Expr(e) if is_aggregate(e)));
        if aggregate {
            return self.aggregate(&items, &source.cols, rows, cols, outer);
        }
        // Window functions (only `row_number() OVER (...)` as a whole select item).
        let mut windows: Vec<Option<Vec<Val>>> = vec![None; items.len()];
        for (i, item) in items.iter().enumerate() {
            if let Item::Expr(Expr::Function(f)) = item {
                if f.over.is_some() {
                    windows[i] = Some(self.row_number(f, &source.cols, &rows, outer)?);
                }
            }
        }
        // Project, computing sort keys against the source row.
        let mut out: Vec<(Vec<Val>, Vec<Val>)> = Vec::with_capacity(rows.len());
        let order = order.unwrap_or(&[]);
        for (r, row) in rows.iter().enumerate() {
            self.spend(1)?;
            let scope = Scope {
                cols: &source.cols,
                row: Some(row),
                parent: outer,
            };
            let mut vals = Vec::with_capacity(cols.len());
            for (i, item) in items.iter().enumerate() {
                match (item, &windows[i]) {
                    (Item::Columns(idx), _) => vals.extend(idx.iter().map(|&c| row[c].clone())),
                    (Item::Expr(_), Some(win)) => vals.push(win[r].clone()),
                    (Item::Expr(e), None) => vals.push(self.eval(e, &scope)?),
                }
            }
            let mut keys = Vec::with_capacity(order.len());
            for o in order {
                let by_output = match &o.expr {
                    Expr::Value(v) => match &v.value {
                        ast::Value::Number(n, _) => {
                            let i = n
                                .parse::<usize>()
                                .ok()
                                .and_then(|i| i.checked_sub(1))
                                .filter(|i| *i < vals.len())
                                .ok_or_else(|| unsupported(format!("ORDER BY position {n}")))?;
                            Some(vals[i].clone())
                        }
                        _ => None,
                    },
                    Expr::Identifier(id) => {
                        let n = fold_ident(id);
                        cols.iter()
                            .position(|c| c.name == n)
                            .map(|i| vals[i].clone())
                    }
                    _ => None,
                };
                let key = match by_output {
                    Some(v) => v,
                    None => self.eval(&o.expr, &scope)?,
                };
                keys.push(key);
            }
            out.push((vals, keys));
        }
        if !order.is_empty() {
            let dirs = order.iter().map(sort_dir).collect::<Result<Vec<_>, _>>()?;
            let mut err = None;
            out.sort_by(|a, b| {
                for (i, (desc, nulls_first)) in dirs.iter().enumerate() {
                    match compare_for_sort(&a.1[i], &b.1[i], *desc, *nulls_first) {
                        Ok(Ordering::Equal) => continue,
                        Ok(o) => return o,
                        Err(e) => {
                            err.get_or_insert(e);
                            return Ordering::Equal;
                        }
                    }
                }
                Ordering::Equal
            });
            if let Some(e) = err {
                return Err(e);
            }
        }
        let mut rows: Vec<Vec<Val>> = out.into_iter().map(|(v, _)| v).collect();
        if distinct {
            dedupe(&mut rows);
        }
        Ok(Rel { cols, rows })
    }

    fn row_number(
        &mut self,
        f: &ast::Function,
        cols: &[RelCol],
        rows: &[Vec<Val>],
        outer: Option<&Scope>,
    ) -> Result<Vec<Val>, SqlError> {
        let name = function_name(f)?;
        let Some(ast::WindowType::WindowSpec(spec)) = &f.over else {
            return Err(unsupported("named windows"));
        };
        if name != "row_number" || spec.window_frame.is_some() || !fn_args(f)?.is_empty() {
            return Err(unsupported(format!("window function {}", short(f))));
        }
        let mut keyed = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let scope = Scope {
                cols,
                row: Some(row),
                parent: outer,
            };
            let part = spec
                .partition_by
                .iter()
                .map(|e| self.eval(e, &scope))
                .collect::<Result<Vec<_>, _>>()?;
            let ord = spec
                .order_by
                .iter()
                .map(|o| self.eval(&o.expr, &scope))
                .collect::<Result<Vec<_>, _>>()?;
            keyed.push((part, ord, i));
        }
        let dirs = spec
            .order_by
            .iter()
            .map(sort_dir)
            .collect::<Result<Vec<_>, _>>()?;
        let mut err = None;
        keyed.sort_by(|a, b| {
            for (x, y) in a.0.iter().zip(&b.0) {
                match compare_for_sort(x, y, false, false) {
                    Ok(Ordering::Equal) => {}
                    Ok(o) => return o,
                    Err(e) => {
                        err.get_or_insert(e);
                        return Ordering::Equal;
                    }
                }
            }
            for (i, (desc, nf)) in dirs.iter().enumerate() {
                match compare_for_sort(&a.1[i], &b.1[i], *desc, *nf) {
                    Ok(Ordering::Equal) => {}
                    Ok(o) => return o,
                    Err(e) => {
                        err.get_or_insert(e);
                        return Ordering::Equal;
                    }
                }
            }
            a.2.cmp(&b.2)
        });
        if let Some(e) = err {
            return Err(e);
        }
        let mut out = vec![Val::Null; rows.len()];
        let mut n = 0;
        let mut prev: Option<&Vec<Val>> = None;
        for (part, _, i) in &keyed {
            if prev != Some(part) {
                n = 0;
            }
            n += 1;
            out[*i] = Val::Int(n);
            prev = Some(part);
        }
        Ok(out)
    }

    fn aggregate(
        &mut self,
        items: &[Item],
        cols: &[RelCol],
        rows: Vec<Vec<Val>>,
        out_cols: Vec<RelCol>,
        outer: Option<&Scope>,
    ) -> Result<Rel, SqlError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Item::Expr(e) = item else {
                return Err(unsupported("* with an aggregate"));
            };
            let Expr::Function(f) = e else {
                return Err(unsupported(format!("{} mixed with aggregates", short(e))));
            };
            if !is_aggregate(e) || f.filter.is_some() || f.over.is_some() {
                return Err(unsupported(format!("{} mixed with aggregates", short(e))));
            }
            let name = function_name(f)?;
            let args = fn_args(f)?;
            let star = matches!(&f.args, ast::FunctionArguments::List(l)
                if matches!(l.args.as_slice(), [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)]));
            let mut values = Vec::with_capacity(rows.len());
            for row in &rows {
                let scope = Scope {
                    cols,
                    row: Some(row),
                    parent: outer,
                };
                values.push(match args.first() {
                    Some(a) => self.eval(a, &scope)?,
                    None => Val::Bool(true),
                });
            }
            let present: Vec<Val> = values.into_iter().filter(|v| *v != Val::Null).collect();
            out.push(match name.as_str() {
                "count" if star => Val::Int(rows.len() as i64),
                "count" => Val::Int(present.len() as i64),
                "string_agg" => {
                    let scope = Scope {
                        cols: &[],
                        row: Some(&[]),
                        parent: outer,
                    };
                    let sep = match args.get(1) {
                        Some(s) => to_text(&self.eval(s, &scope)?),
                        None => String::new(),
                    };
                    if present.is_empty() {
                        Val::Null
                    } else {
                        Val::Text(present.iter().map(to_text).collect::<Vec<_>>().join(&sep))
                    }
                }
                "array_agg" => {
                    if rows.is_empty() {
                        Val::Null
                    } else {
                        Val::Array(present)
                    }
                }
                "max" | "min" => {
                    let mut best: Option<Val> = None;
                    for v in present {
                        best = Some(match best {
                            None => v,
                            Some(b) => {
                                let o = compare(&v, &b)?.unwrap_or(Ordering::Equal);
                                if (name == "max") == (o == Ordering::Greater) {
                                    v
                                } else {
                                    b
                                }
                            }
                        });
                    }
                    best.unwrap_or(Val::Null)
                }
                "bool_and" | "bool_or" => {
                    if present.is_empty() {
                        Val::Null
                    } else {
                        let want = name == "bool_or";
                        Val::Bool(present.contains(&Val::Bool(want)) == want)
                    }
                }
                other => return Err(unsupported(format!("aggregate {other}"))),
            });
        }
        Ok(Rel {
            cols: out_cols,
            rows: vec![out],
        })
    }

    // -----------------------------------------------------------------------------------
    // FROM
    // -----------------------------------------------------------------------------------

    fn from(
        &mut self,
        from: &[ast::TableWithJoins],
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        let mut rel = Rel {
            cols: vec![],
            rows: vec![vec![]],
        };
        for twj in from {
            let right = self.table_with_joins(twj, outer, eval)?;
            rel = self.join(rel, right, JoinKind::Cross, None, outer, eval)?;
        }
        if !eval {
            rel.rows.clear();
        }
        Ok(rel)
    }

    fn table_with_joins(
        &mut self,
        twj: &ast::TableWithJoins,
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        let mut rel = self.factor(&twj.relation, outer, eval)?;
        for j in &twj.joins {
            let right = self.factor(&j.relation, outer, eval)?;
            use ast::JoinOperator as J;
            let (kind, constraint) = match &j.join_operator {
                J::Join(c) | J::Inner(c) => (JoinKind::Inner, Some(c)),
                J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, Some(c)),
                J::CrossJoin(_) => (JoinKind::Cross, None),
                other => {
                    return Err(unsupported(format!(
                        "join {}",
                        short(&format!("{other:?}"))
                    )))
                }
            };
            rel = self.join(rel, right, kind, constraint, outer, eval)?;
        }
        Ok(rel)
    }

    fn join(
        &mut self,
        left: Rel,
        right: Rel,
        kind: JoinKind,
        constraint: Option<&ast::JoinConstraint>,
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        let mut cols = left.cols.clone();
        cols.extend(right.cols.iter().cloned());
        // USING (a, b): equality of same-named columns.
        let using: Vec<(usize, usize)> = match constraint {
            Some(ast::JoinConstraint::Using(names)) => names
                .iter()
                .map(|n| {
                    let name = name_parts(n).last().cloned().unwrap_or_default();
                    let l = left.cols.iter().position(|c| c.name == name);
                    let r = right.cols.iter().position(|c| c.name == name);
                    match (l, r) {
                        (Some(l), Some(r)) => Ok((l, left.cols.len() + r)),
                        _ => Err(unsupported(format!("USING ({name})"))),
                    }
                })
                .collect::<Result<_, _>>()?,
            _ => vec![],
        };
        let on = match constraint {
            Some(ast::JoinConstraint::On(e)) => Some(e),
            Some(ast::JoinConstraint::Using(_)) | Some(ast::JoinConstraint::None) | None => None,
            Some(_) => return Err(unsupported("NATURAL joins")),
        };
        if let Some(e) = on {
            let scope = Scope {
                cols: &cols,
                row: None,
                parent: outer,
            };
            self.infer_params(e, PgType::Bool)?;
            self.check_types(e, &scope)?;
        }
        let mut rows = Vec::new();
        if eval {
            for l in &left.rows {
                let mut matched = false;
                for r in &right.rows {
                    self.spend(1)?;
                    let mut row = l.clone();
                    row.extend(r.iter().cloned());
                    let mut ok = true;
                    for &(a, b) in &using {
                        if compare(&row[a], &row[b])? != Some(Ordering::Equal) {
                            ok = false;
                        }
                    }
                    if ok {
                        if let Some(e) = on {
                            let scope = Scope {
                                cols: &cols,
                                row: Some(&row),
                                parent: outer,
                            };
                            ok = self.eval(e, &scope)? == Val::Bool(true);
                        }
                    }
                    if ok {
                        matched = true;
                        rows.push(row);
                    }
                }
                if !matched && kind == JoinKind::Left {
                    let mut row = l.clone();
                    row.extend(std::iter::repeat_n(Val::Null, right.cols.len()));
                    rows.push(row);
                }
            }
        }
        Ok(Rel { cols, rows })
    }

    fn factor(
        &mut self,
        f: &ast::TableFactor,
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        match f {
            ast::TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let parts = name_parts(name);
                let table = match parts.as_slice() {
                    [t] if t.starts_with("pg_") => t,
                    [s, t] if s == "pg_catalog" => t,
                    _ => return Err(unsupported(format!("relation {}", parts.join(".")))),
                };
                let Some(data) = data::table(table) else {
                    return Err(unsupported(format!("relation {}", parts.join("."))));
                };
                let qual = alias
                    .as_ref()
                    .map(|a| fold_ident(&a.name))
                    .unwrap_or_else(|| table.clone());
                let mut cols: Vec<RelCol> = data
                    .columns
                    .iter()
                    .map(|(n, t)| RelCol {
                        qual: Some(qual.clone()),
                        name: n.to_string(),
                        ty: *t,
                    })
                    .collect();
                rename(&mut cols, alias.as_ref())?;
                Ok(Rel {
                    cols,
                    rows: data.rows,
                })
            }
            ast::TableFactor::Table {
                name,
                alias,
                args: Some(args),
                ..
            } => self.table_function(name, &args.args, alias.as_ref(), outer, eval),
            ast::TableFactor::Function {
                lateral: false,
                name,
                args,
                with_ordinality: false,
                alias,
            } => self.table_function(name, args, alias.as_ref(), outer, eval),
            ast::TableFactor::Derived {
                lateral: false,
                subquery,
                alias,
                ..
            } => {
                let mut rel = self.query(subquery, outer, eval)?;
                let qual = alias.as_ref().map(|a| fold_ident(&a.name));
                for c in &mut rel.cols {
                    c.qual = qual.clone();
                }
                rename(&mut rel.cols, alias.as_ref())?;
                Ok(rel)
            }
            ast::TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => self.table_with_joins(table_with_joins, outer, eval),
            other => Err(unsupported(format!("FROM item {}", short(other)))),
        }
    }

    fn table_function(
        &mut self,
        name: &ast::ObjectName,
        args: &[ast::FunctionArg],
        alias: Option<&ast::TableAlias>,
        outer: Option<&Scope>,
        eval: bool,
    ) -> Result<Rel, SqlError> {
        let parts = name_parts(name);
        let fname = match parts.as_slice() {
            [n] => n.clone(),
            [s, n] if s == "pg_catalog" => n.clone(),
            _ => return Err(unsupported(format!("function {}", parts.join(".")))),
        };
        let exprs: Vec<&Expr> = args
            .iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                _ => Err(unsupported(format!("argument {}", short(a)))),
            })
            .collect::<Result<_, _>>()?;
        let scope = Scope {
            cols: &[],
            row: Some(&[]),
            parent: outer,
        };
        let typing = Scope {
            cols: &[],
            row: None,
            parent: outer,
        };
        let (ty, rows) = match fname.as_str() {
            "generate_series" => {
                if exprs.len() < 2 || exprs.len() > 3 {
                    return Err(unsupported("generate_series with these arguments"));
                }
                let mut rows = vec![];
                if eval {
                    let vals = exprs
                        .iter()
                        .map(|e| self.eval(e, &scope))
                        .collect::<Result<Vec<_>, _>>()?;
                    if vals.iter().all(|v| *v != Val::Null) {
                        let start = to_int(&vals[0])?;
                        let stop = to_int(&vals[1])?;
                        let step = match vals.get(2) {
                            Some(v) => to_int(v)?,
                            None => 1,
                        };
                        if step == 0 {
                            return Err(SqlError::invalid("step size cannot equal zero"));
                        }
                        let count = if step > 0 {
                            stop.saturating_sub(start) / step + 1
                        } else {
                            start.saturating_sub(stop) / step.checked_neg().unwrap_or(i64::MAX) + 1
                        };
                        if count > MAX_SERIES {
                            return Err(SqlError::too_complex("generate_series too long"));
                        }
                        let mut i = start;
                        for _ in 0..count.max(0) {
                            rows.push(vec![Val::Int(i)]);
                            i = i.saturating_add(step);
                        }
                    }
                }
                let ty = self.type_of(exprs[0], &typing)?;
                (
                    if ty == PgType::Int8 {
                        PgType::Int8
                    } else {
                        PgType::Int4
                    },
                    rows,
                )
            }
            "unnest" => {
                let [e] = exprs.as_slice() else {
                    return Err(unsupported("unnest with several arguments"));
                };
                let aty = self.type_of(e, &typing)?;
                let mut rows = vec![];
                if eval {
                    match self.eval(e, &scope)? {
                        Val::Array(items) => {
                            if items.len() as i64 > MAX_SERIES {
                                return Err(SqlError::too_complex("unnest too long"));
                            }
                            rows = items.into_iter().map(|v| vec![v]).collect()
                        }
                        Val::Null => {}
                        Val::Text(t) => {
                            rows = parse_array_literal(&t)?
                                .into_iter()
                                .map(|v| vec![v])
                                .collect()
                        }
                        _ => return Err(unsupported("unnest of a non-array")),
                    }
                }
                (aty.element_type().unwrap_or(PgType::Text), rows)
            }
            other => return Err(unsupported(format!("function {other} in FROM"))),
        };
        let qual = alias.map(|a| fold_ident(&a.name));
        let col_name = match alias {
            Some(a) if a.columns.is_empty() => fold_ident(&a.name),
            _ => fname.clone(),
        };
        let mut cols = vec![RelCol {
            qual: qual.clone().or(Some(fname)),
            name: col_name,
            ty,
        }];
        rename(&mut cols, alias)?;
        Ok(Rel { cols, rows })
    }

    // -----------------------------------------------------------------------------------
    // Names
    // -----------------------------------------------------------------------------------

    fn resolve<'s>(
        &self,
        parts: &[ast::Ident],
        scope: &'s Scope<'s>,
    ) -> Result<(&'s RelCol, Option<&'s Val>), SqlError> {
        let folded: Vec<String> = parts.iter().map(fold_ident).collect();
        let (qual, name) = match folded.as_slice() {
            [n] => (None, n.as_str()),
            [q, n] => (Some(q.as_str()), n.as_str()),
            [_, q, n] => (Some(q.as_str()), n.as_str()),
            _ => return Err(unsupported(format!("name {}", folded.join(".")))),
        };
        let mut level = Some(scope);
        while let Some(s) = level {
            let found = s
                .cols
                .iter()
                .position(|c| c.name == name && qual.is_none_or(|q| c.qual.as_deref() == Some(q)));
            if let Some(i) = found {
                return Ok((&s.cols[i], s.row.map(|r| &r[i])));
            }
            level = s.parent;
        }
        Err(unsupported(format!("column {}", folded.join("."))))
    }

    // -----------------------------------------------------------------------------------
    // Parameters
    // -----------------------------------------------------------------------------------

    /// The parameter an expression is (`$1`, `$1::int4`), with its cast.
    fn param_of(e: &Expr) -> Option<(usize, Option<PgType>)> {
        // A loop, not recursion: cast chains can be a thousand deep. The parameter's type is
        // its innermost cast's (`$1::int4::int8` is an int4 parameter).
        let mut e = e;
        let mut cast = None;
        loop {
            match e {
                Expr::Value(v) => {
                    return match &v.value {
                        ast::Value::Placeholder(p) => placeholder_index(p).ok().map(|i| (i, cast)),
                        _ => None,
                    }
                }
                Expr::Cast {
                    expr, data_type, ..
                } => {
                    cast = data_type_to_pg(data_type);
                    e = expr;
                }
                Expr::Nested(inner) => e = inner,
                _ => return None,
            }
        }
    }

    /// Records the types parameters get from their context in `e` (expected type `want`).
    fn infer_params(&mut self, e: &Expr, want: PgType) -> Result<(), SqlError> {
        if let Some((i, cast)) = Self::param_of(e) {
            match cast {
                Some(t) => self.param_types.cast(i, t),
                None => {
                    self.param_types.seen(i);
                    let _ = self.param_types.context(i, want);
                }
            }
        }
        Ok(())
    }

    /// Types the comparisons of a predicate, which records the parameters' types.
    fn check_types(&mut self, e: &Expr, scope: &Scope) -> Result<(), SqlError> {
        match e {
            Expr::BinaryOp {
                op: op @ (ast::BinaryOperator::And | ast::BinaryOperator::Or),
                ..
            } => {
                for leaf in flatten(e, op) {
                    self.check_types(leaf, scope)?;
                }
                Ok(())
            }
            Expr::BinaryOp { left, right, .. } => {
                let lt = self.type_of(left, scope)?;
                let rt = self.type_of(right, scope)?;
                self.infer_params(left, rt)?;
                self.infer_params(right, lt)
            }
            Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => {
                self.check_types(inner, scope)
            }
            Expr::In {
                expr,
                target: ast::InTarget::List(list),
                ..
            } => {
                let t = self.type_of(expr, scope)?;
                for x in list {
                    self.infer_params(x, t)?;
                }
                Ok(())
            }
            Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
                self.infer_params(expr, PgType::Text)?;
                self.infer_params(pattern, PgType::Text)
            }
            Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
                let rt = self.type_of(right, scope)?;
                self.infer_params(left, rt.element_type().unwrap_or(PgType::Unknown))
            }
            _ => Ok(()),
        }
    }

    // -----------------------------------------------------------------------------------
    // Types
    // -----------------------------------------------------------------------------------

    fn type_of(&mut self, e: &Expr, scope: &Scope) -> Result<PgType, SqlError> {
        self.nested(|me| me.type_of_inner(e, scope))
    }

    fn type_of_inner(&mut self, e: &Expr, scope: &Scope) -> Result<PgType, SqlError> {
        Ok(match e {
            Expr::Identifier(i) => self.resolve(std::slice::from_ref(i), scope)?.0.ty,
            Expr::CompoundIdentifier(parts) => self.resolve(parts, scope)?.0.ty,
            Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => match n.parse::<i64>() {
                    Ok(i) if i32::try_from(i).is_ok() => PgType::Int4,
                    Ok(_) => PgType::Int8,
                    Err(_) => PgType::Numeric,
                },
                ast::Value::Boolean(_) => PgType::Bool,
                ast::Value::Placeholder(p) => {
                    let i = placeholder_index(p)?;
                    self.param_types.seen(i);
                    PgType::Unknown
                }
                _ => PgType::Unknown,
            },
            Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => {
                self.type_of(inner, scope)?
            }
            Expr::Cast { data_type, .. } => cast_target(data_type)?,
            Expr::TypedString(ts) => cast_target(&ts.data_type)?,
            Expr::BinaryOp { left, op, right } => match op {
                ast::BinaryOperator::StringConcat => {
                    let (l, r) = (self.type_of(left, scope)?, self.type_of(right, scope)?);
                    if l.element_type().is_some() {
                        l
                    } else if r.element_type().is_some() {
                        r
                    } else {
                        PgType::Text
                    }
                }
                ast::BinaryOperator::Plus
                | ast::BinaryOperator::Minus
                | ast::BinaryOperator::Multiply
                | ast::BinaryOperator::Divide
                | ast::BinaryOperator::Modulo => match self.type_of(left, scope)? {
                    PgType::Unknown => PgType::Int4,
                    t => t,
                },
                _ => {
                    self.type_of(left, scope)?;
                    self.type_of(right, scope)?;
                    PgType::Bool
                }
            },
            Expr::UnaryOp { op, expr } => match op {
                ast::UnaryOperator::Not => PgType::Bool,
                _ => self.type_of(expr, scope)?,
            },
            Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::IsDistinctFrom(_, _)
            | Expr::IsNotDistinctFrom(_, _)
            | Expr::In { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::AnyOp { .. }
            | Expr::AllOp { .. }
            | Expr::Exists { .. } => PgType::Bool,
            Expr::Case {
                conditions,
                else_result,
                ..
            } => {
                let mut ty = PgType::Unknown;
                for c in conditions {
                    let t = self.type_of(&c.result, scope)?;
                    if ty == PgType::Unknown {
                        ty = t;
                    }
                }
                if let Some(e) = else_result {
                    let t = self.type_of(e, scope)?;
                    if ty == PgType::Unknown {
                        ty = t;
                    }
                }
                if ty == PgType::Unknown {
                    PgType::Text
                } else {
                    ty
                }
            }
            Expr::Subquery(q) => {
                let rel = self.query(q, Some(scope), false)?;
                rel.cols.first().map(|c| c.ty).unwrap_or(PgType::Unknown)
            }
            Expr::Array(a) => match a.elem.first() {
                Some(e) => self
                    .type_of(e, scope)?
                    .array_type()
                    .unwrap_or(PgType::TextArray),
                None => PgType::TextArray,
            },
            Expr::CompoundFieldAccess { root, access_chain } => {
                let mut t = self.type_of(root, scope)?;
                for a in access_chain {
                    match a {
                        ast::AccessExpr::Subscript(ast::Subscript::Index { .. }) => {
                            t = t.element_type().unwrap_or(PgType::Unknown)
                        }
                        _ => return Err(unsupported(format!("access {}", short(e)))),
                    }
                }
                t
            }
            Expr::Function(f) => self.function_type(f, scope)?,
            other => return Err(unsupported(format!("expression {}", short(other)))),
        })
    }

    fn function_type(&mut self, f: &ast::Function, scope: &Scope) -> Result<PgType, SqlError> {
        let name = function_name(f)?;
        if name == "array" {
            if let ast::FunctionArguments::Subquery(q) = &f.args {
                let rel = self.query(q, Some(scope), false)?;
                let t = rel.cols.first().map(|c| c.ty).unwrap_or(PgType::Text);
                return Ok(t.array_type().unwrap_or(PgType::TextArray));
            }
        }
        let args = fn_args(f)?;
        Ok(match name.as_str() {
            "pg_get_userbyid"
            | "pg_encoding_to_char"
            | "current_schema"
            | "current_database"
            | "current_user"
            | "session_user"
            | "user"
            | "current_catalog" => PgType::Name,
            "format_type"
            | "pg_get_expr"
            | "pg_get_indexdef"
            | "pg_get_constraintdef"
            | "pg_get_statisticsobjdef_columns"
            | "pg_get_viewdef"
            | "pg_get_triggerdef"
            | "col_description"
            | "obj_description"
            | "shobj_description"
            | "array_to_string"
            | "string_agg"
            | "pg_size_pretty"
            | "quote_ident"
            | "lower"
            | "upper"
            | "version"
            | "current_setting"
            | "concat"
            | "textcat"
            | "pg_get_partkeydef" => PgType::Text,
            "pg_table_is_visible"
            | "pg_type_is_visible"
            | "pg_function_is_visible"
            | "pg_relation_is_publishable"
            | "has_table_privilege"
            | "has_schema_privilege"
            | "has_database_privilege"
            | "pg_has_role"
            | "bool_and"
            | "bool_or" => PgType::Bool,
            "current_schemas" => PgType::NameArray,
            "array_upper" | "array_lower" | "array_length" | "pg_backend_pid" => PgType::Int4,
            "row_number"
            | "count"
            | "pg_table_size"
            | "pg_relation_size"
            | "pg_total_relation_size"
            | "pg_indexes_size" => PgType::Int8,
            "nullif" | "coalesce" | "max" | "min" => {
                let mut ty = PgType::Unknown;
                for a in &args {
                    let t = self.type_of(a, scope)?;
                    if ty == PgType::Unknown {
                        ty = t;
                    }
                }
                ty
            }
            "array_agg" => match args.first() {
                Some(a) => self
                    .type_of(a, scope)?
                    .array_type()
                    .unwrap_or(PgType::TextArray),
                None => PgType::TextArray,
            },
            other => return Err(unsupported(format!("function {other}"))),
        })
    }

    // -----------------------------------------------------------------------------------
    // Values
    // -----------------------------------------------------------------------------------

    pub(crate) fn eval(&mut self, e: &Expr, scope: &Scope) -> Result<Val, SqlError> {
        self.nested(|me| me.eval_inner(e, scope))
    }

    fn eval_inner(&mut self, e: &Expr, scope: &Scope) -> Result<Val, SqlError> {
        match e {
            Expr::Identifier(i) => self.column_value(std::slice::from_ref(i), scope),
            Expr::CompoundIdentifier(parts) => self.column_value(parts, scope),
            Expr::Value(v) => self.literal(&v.value),
            Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => self.eval(inner, scope),
            Expr::Cast {
                expr, data_type, ..
            } => {
                let target = cast_target(data_type)?;
                let from = self.type_of(expr, scope)?;
                let v = self.eval(expr, scope)?;
                cast(v, from, target)
            }
            Expr::TypedString(ts) => {
                let target = cast_target(&ts.data_type)?;
                let v = self.literal(&ts.value.value)?;
                cast(v, PgType::Unknown, target)
            }
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right, scope),
            Expr::UnaryOp { op, expr } => {
                let v = self.eval(expr, scope)?;
                match (op, v) {
                    (_, Val::Null) => Ok(Val::Null),
                    (ast::UnaryOperator::Not, Val::Bool(b)) => Ok(Val::Bool(!b)),
                    (ast::UnaryOperator::Minus, v) => {
                        Ok(Val::Int(to_int(&v)?.checked_neg().ok_or_else(|| {
                            SqlError::invalid("integer out of range")
                        })?))
                    }
                    (ast::UnaryOperator::Plus, v) => Ok(Val::Int(to_int(&v)?)),
                    (op, _) => Err(unsupported(format!("operator {op}"))),
                }
            }
            Expr::IsNull(x) => Ok(Val::Bool(self.eval(x, scope)? == Val::Null)),
            Expr::IsNotNull(x) => Ok(Val::Bool(self.eval(x, scope)? != Val::Null)),
            Expr::IsTrue(x) => Ok(Val::Bool(self.eval(x, scope)? == Val::Bool(true))),
            Expr::IsNotTrue(x) => Ok(Val::Bool(self.eval(x, scope)? != Val::Bool(true))),
            Expr::IsFalse(x) => Ok(Val::Bool(self.eval(x, scope)? == Val::Bool(false))),
            Expr::IsNotFalse(x) => Ok(Val::Bool(self.eval(x, scope)? != Val::Bool(false))),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                let (x, y) = (self.eval(a, scope)?, self.eval(b, scope)?);
                let same = match (&x, &y) {
                    (Val::Null, Val::Null) => true,
                    (Val::Null, _) | (_, Val::Null) => false,
                    _ => compare(&x, &y)? == Some(Ordering::Equal),
                };
                Ok(Val::Bool(
                    same == matches!(e, Expr::IsNotDistinctFrom(_, _)),
                ))
            }
            Expr::In {
                expr,
                target,
                negated,
                ..
            } => {
                let x = self.eval(expr, scope)?;
                let candidates: Vec<Val> = match target {
                    ast::InTarget::List(list) => list
                        .iter()
                        .map(|e| self.eval(e, scope))
                        .collect::<Result<_, _>>()?,
                    ast::InTarget::Subquery(q) => {
                        let rel = self.query(q, Some(scope), true)?;
                        rel.rows
                            .into_iter()
                            .filter_map(|r| r.into_iter().next())
                            .collect()
                    }
                    _ => return Err(unsupported("IN UNNEST")),
                };
                let r = any_compare(&x, &candidates, |o| o == Ordering::Equal)?;
                Ok(negate_opt(r, *negated))
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.eval(expr, scope)?;
                let lo = self.eval(low, scope)?;
                let hi = self.eval(high, scope)?;
                let r = match (compare(&x, &lo)?, compare(&x, &hi)?) {
                    (Some(a), Some(b)) => Val::Bool(a != Ordering::Less && b != Ordering::Greater),
                    _ => Val::Null,
                };
                Ok(negate_opt(r, *negated))
            }
            Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            } => {
                let ci = matches!(e, Expr::ILike { .. });
                let escape = match escape_char {
                    None => Some('\\'),
                    Some(c) => to_text(&self.eval(c, scope)?).chars().next(),
                };
                let (x, p) = (self.eval(expr, scope)?, self.eval(pattern, scope)?);
                if x == Val::Null || p == Val::Null {
                    return Ok(Val::Null);
                }
                let (text, pattern) = (to_text(&x), to_text(&p));
                self.spend(like_cost(&text, &pattern))?;
                Ok(Val::Bool(like(&text, &pattern, escape, ci) != *negated))
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let subject = match operand {
                    Some(o) => Some(self.eval(o, scope)?),
                    None => None,
                };
                for c in conditions {
                    let hit = match &subject {
                        Some(s) => {
                            let w = self.eval(&c.condition, scope)?;
                            compare(s, &w)? == Some(Ordering::Equal)
                        }
                        None => self.eval(&c.condition, scope)? == Val::Bool(true),
                    };
                    if hit {
                        return self.eval(&c.result, scope);
                    }
                }
                match else_result {
                    Some(e) => self.eval(e, scope),
                    None => Ok(Val::Null),
                }
            }
            Expr::Subquery(q) => {
                let rel = self.query(q, Some(scope), true)?;
                match rel.rows.len() {
                    0 => Ok(Val::Null),
                    1 => Ok(rel.rows[0].first().cloned().unwrap_or(Val::Null)),
                    _ => Err(unsupported(
                        "more than one row returned by a subquery used as an expression",
                    )),
                }
            }
            Expr::Exists { subquery, negated } => {
                let rel = self.query(subquery, Some(scope), true)?;
                Ok(Val::Bool(rel.rows.is_empty() == *negated))
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                let x = self.eval(left, scope)?;
                let arr = match self.eval(right, scope)? {
                    Val::Array(a) => a,
                    Val::Null => return Ok(Val::Null),
                    Val::Text(t) => parse_array_literal(&t)?,
                    _ => return Err(unsupported("ANY/ALL of a non-array")),
                };
                let test = ordering_test(compare_op)?;
                if matches!(e, Expr::AnyOp { .. }) {
                    any_compare(&x, &arr, test)
                } else {
                    // ALL: not (any element fails).
                    let mut saw_null = false;
                    for v in &arr {
                        match compare(&x, v)? {
                            Some(o) if !test(o) => return Ok(Val::Bool(false)),
                            None => saw_null = true,
                            _ => {}
                        }
                    }
                    Ok(if saw_null { Val::Null } else { Val::Bool(true) })
                }
            }
            Expr::Array(a) => Ok(Val::Array(
                a.elem
                    .iter()
                    .map(|e| self.eval(e, scope))
                    .collect::<Result<_, _>>()?,
            )),
            Expr::CompoundFieldAccess { root, access_chain } => {
                let mut v = self.eval(root, scope)?;
                for a in access_chain {
                    let ast::AccessExpr::Subscript(ast::Subscript::Index { index }) = a else {
                        return Err(unsupported(format!("access {}", short(e))));
                    };
                    let i = self.eval(index, scope)?;
                    v = match (v, i) {
                        (Val::Array(items), Val::Int(i)) => usize::try_from(i)
                            .ok()
                            .and_then(|i| i.checked_sub(1))
                            .and_then(|i| items.get(i).cloned())
                            .unwrap_or(Val::Null),
                        (Val::Array(items), Val::Text(t)) => {
                            let i: i64 = t.trim().parse().map_err(|_| {
                                SqlError::invalid(format!("invalid array subscript \"{t}\""))
                            })?;
                            usize::try_from(i)
                                .ok()
                                .and_then(|i| i.checked_sub(1))
                                .and_then(|i| items.get(i).cloned())
                                .unwrap_or(Val::Null)
                        }
                        _ => Val::Null,
                    };
                }
                Ok(v)
            }
            Expr::Function(f) => self.call(f, scope),
            other => Err(unsupported(format!("expression {}", short(other)))),
        }
    }

    fn column_value(&self, parts: &[ast::Ident], scope: &Scope) -> Result<Val, SqlError> {
        match self.resolve(parts, scope)? {
            (_, Some(v)) => Ok(v.clone()),
            (_, None) => Err(unsupported("a column read while typing")),
        }
    }

    fn literal(&self, v: &ast::Value) -> Result<Val, SqlError> {
        Ok(match v {
            ast::Value::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => Val::Int(i),
                Err(_) => Val::Text(n.clone()),
            },
            ast::Value::Boolean(b) => Val::Bool(*b),
            ast::Value::Null => Val::Null,
            ast::Value::Placeholder(p) => {
                let i = placeholder_index(p)?;
                match self.params {
                    None => return Err(unsupported("a parameter read while typing")),
                    Some(ps) => match ps.get(i) {
                        Some(Some(t)) => Val::Text(t.clone()),
                        Some(None) => Val::Null,
                        None => {
                            return Err(SqlError::UnknownParameter {
                                param: format!("${}", i + 1),
                            })
                        }
                    },
                }
            }
            ast::Value::SingleQuotedString(s)
            | ast::Value::EscapedStringLiteral(s)
            | ast::Value::UnicodeStringLiteral(s)
            | ast::Value::NationalStringLiteral(s) => Val::Text(s.clone()),
            ast::Value::DollarQuotedString(d) => Val::Text(d.value.clone()),
            other => return Err(unsupported(format!("literal {}", short(other)))),
        })
    }

    fn binary(
        &mut self,
        left: &Expr,
        op: &ast::BinaryOperator,
        right: &Expr,
        scope: &Scope,
    ) -> Result<Val, SqlError> {
        use ast::BinaryOperator as B;
        if matches!(op, B::And | B::Or) {
            // Three-valued logic over the whole chain, evaluated in a loop (chains are long
            // and left-deep; recursion would cost a stack frame per operand).
            let decisive = Val::Bool(matches!(op, B::Or));
            let mut saw_null = false;
            let leaves = flatten(left, op).into_iter().chain(flatten(right, op));
            for leaf in leaves {
                match self.eval(leaf, scope)? {
                    v if v == decisive => return Ok(v),
                    Val::Null => saw_null = true,
                    Val::Bool(_) => {}
                    other => {
                        return Err(SqlError::mismatch(format!(
                            "argument of {op} must be type boolean, not {}",
                            short(&to_text(&other))
                        )))
                    }
                }
            }
            return Ok(if saw_null {
                Val::Null
            } else {
                Val::Bool(!matches!(op, B::Or))
            });
        }
        let l = self.eval(left, scope)?;
        let r = self.eval(right, scope)?;
        let name: String = match op {
            B::PGCustomBinaryOperator(parts) => match parts.as_slice() {
                [op] => op.clone(),
                [s, op] if s.eq_ignore_ascii_case("pg_catalog") => op.clone(),
                _ => return Err(unsupported(format!("operator {op}"))),
            },
            B::Eq => "=".into(),
            B::NotEq => "<>".into(),
            B::Lt => "<".into(),
            B::LtEq => "<=".into(),
            B::Gt => ">".into(),
            B::GtEq => ">=".into(),
            B::PGRegexMatch => "~".into(),
            B::PGRegexIMatch => "~*".into(),
            B::PGRegexNotMatch => "!~".into(),
            B::PGRegexNotIMatch => "!~*".into(),
            B::PGLikeMatch => "~~".into(),
            B::PGILikeMatch => "~~*".into(),
            B::PGNotLikeMatch => "!~~".into(),
            B::PGNotILikeMatch => "!~~*".into(),
            B::StringConcat => "||".into(),
            B::Plus => "+".into(),
            B::Minus => "-".into(),
            B::Multiply => "*".into(),
            _ => return Err(unsupported(format!("operator {op}"))),
        };
        if l == Val::Null || r == Val::Null {
            // `||` on arrays treats NULL as empty; everything else is NULL.
            if name == "||" {
                if let (Val::Array(a), Val::Null) | (Val::Null, Val::Array(a)) = (&l, &r) {
                    return Ok(Val::Array(a.clone()));
                }
            }
            return Ok(Val::Null);
        }
        match name.as_str() {
            "=" | "<>" | "!=" | "<" | "<=" | ">" | ">=" => {
                let o = compare(&l, &r)?;
                let test = ordering_test(&match name.as_str() {
                    "=" => B::Eq,
                    "<>" | "!=" => B::NotEq,
                    "<" => B::Lt,
                    "<=" => B::LtEq,
                    ">" => B::Gt,
                    _ => B::GtEq,
                })?;
                Ok(o.map_or(Val::Null, |o| Val::Bool(test(o))))
            }
            "~" | "~*" | "!~" | "!~*" => {
                let text = to_text(&l);
                let hit = self.regex_match(&text, &to_text(&r), name.ends_with('*'))?;
                Ok(Val::Bool(hit != name.starts_with('!')))
            }
            "~~" | "~~*" | "!~~" | "!~~*" => {
                let (text, pattern) = (to_text(&l), to_text(&r));
                self.spend(like_cost(&text, &pattern))?;
                Ok(Val::Bool(
                    like(&text, &pattern, Some('\\'), name.ends_with('*')) != name.starts_with('!'),
                ))
            }
            "||" => match (l, r) {
                (Val::Array(mut a), Val::Array(b)) => {
                    a.extend(b);
                    Ok(Val::Array(a))
                }
                (Val::Array(mut a), v) => {
                    a.push(v);
                    Ok(Val::Array(a))
                }
                (v, Val::Array(mut a)) => {
                    a.insert(0, v);
                    Ok(Val::Array(a))
                }
                (a, b) => Ok(Val::Text(format!("{}{}", to_text(&a), to_text(&b)))),
            },
            "+" | "-" | "*" => {
                let (a, b) = (to_int(&l)?, to_int(&r)?);
                let v = match name.as_str() {
                    "+" => a.checked_add(b),
                    "-" => a.checked_sub(b),
                    _ => a.checked_mul(b),
                };
                v.map(Val::Int)
                    .ok_or_else(|| SqlError::invalid("integer out of range"))
            }
            other => Err(unsupported(format!("operator {other}"))),
        }
    }

    fn call(&mut self, f: &ast::Function, scope: &Scope) -> Result<Val, SqlError> {
        let name = function_name(f)?;
        if f.over.is_some() {
            return Err(unsupported(format!(
                "window function {name} inside an expression"
            )));
        }
        if is_aggregate_name(&name) {
            return Err(unsupported(format!(
                "aggregate {name} inside an expression"
            )));
        }
        if name == "array" {
            if let ast::FunctionArguments::Subquery(q) = &f.args {
                let rel = self.query(q, Some(scope), true)?;
                return Ok(Val::Array(
                    rel.rows
                        .into_iter()
                        .filter_map(|r| r.into_iter().next())
                        .collect(),
                ));
            }
        }
        let arg_exprs = fn_args(f)?;
        let mut args = Vec::with_capacity(arg_exprs.len());
        for a in &arg_exprs {
            args.push(self.eval(a, scope)?);
        }
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Val::Null);
        Ok(match name.as_str() {
            "pg_get_userbyid" => match arg(0) {
                Val::Null => Val::Null,
                v if to_int(&v)? == data::OWNER_OID => Val::Text(data::OWNER.into()),
                v => Val::Text(format!("unknown (OID={})", to_int(&v)?)),
            },
            "pg_table_is_visible" => match arg(0) {
                Val::Null => Val::Null,
                v => Val::Bool(crate::sql::plan::Table::from_oid(to_int(&v)?).is_some()),
            },
            "pg_type_is_visible" | "pg_function_is_visible" => match arg(0) {
                Val::Null => Val::Null,
                _ => Val::Bool(true),
            },
            "has_table_privilege"
            | "has_schema_privilege"
            | "has_database_privilege"
            | "pg_has_role" => Val::Bool(true),
            "pg_relation_is_publishable" => Val::Bool(false),
            "format_type" => match arg(0) {
                Val::Null => Val::Null,
                v => {
                    let oid = to_int(&v)?;
                    match u32::try_from(oid).ok().and_then(PgType::from_oid) {
                        Some(t) => Val::Text(t.format_type().into()),
                        None => Val::Text("???".into()),
                    }
                }
            },
            "pg_get_expr"
            | "pg_get_indexdef"
            | "pg_get_constraintdef"
            | "pg_get_statisticsobjdef_columns"
            | "pg_get_viewdef"
            | "pg_get_triggerdef"
            | "col_description"
            | "obj_description"
            | "shobj_description"
            | "pg_get_partkeydef" => Val::Null,
            "pg_encoding_to_char" => match arg(0) {
                Val::Null => Val::Null,
                v if to_int(&v)? == data::UTF8_ENCODING => Val::Text("UTF8".into()),
                _ => Val::Text(String::new()),
            },
            "current_schema" => Val::Text("public".into()),
            "current_database" | "current_catalog" => Val::Text(data::DATABASE.into()),
            "current_user" | "session_user" | "user" => Val::Text(data::OWNER.into()),
            "current_schemas" => {
                let implicit = arg(0) == Val::Bool(true) || to_text(&arg(0)) == "t";
                let mut v = Vec::new();
                if implicit {
                    v.push(Val::Text("pg_catalog".into()));
                }
                v.push(Val::Text("public".into()));
                Val::Array(v)
            }
            "array_to_string" => match (arg(0), arg(1)) {
                (Val::Null, _) | (_, Val::Null) => Val::Null,
                (Val::Array(items), sep) => {
                    let null = args.get(2).map(to_text);
                    let sep = to_text(&sep);
                    Val::Text(
                        items
                            .iter()
                            .filter_map(|v| match v {
                                Val::Null => null.clone(),
                                v => Some(to_text(v)),
                            })
                            .collect::<Vec<_>>()
                            .join(&sep),
                    )
                }
                (v, _) => Val::Text(to_text(&v)),
            },
            "array_upper" | "array_length" => match arg(0) {
                Val::Array(a) if !a.is_empty() => Val::Int(a.len() as i64),
                _ => Val::Null,
            },
            "array_lower" => match arg(0) {
                Val::Array(a) if !a.is_empty() => Val::Int(1),
                _ => Val::Null,
            },
            "nullif" => {
                let (a, b) = (arg(0), arg(1));
                if compare(&a, &b)? == Some(Ordering::Equal) {
                    Val::Null
                } else {
                    a
                }
            }
            "coalesce" => args
                .iter()
                .find(|v| **v != Val::Null)
                .cloned()
                .unwrap_or(Val::Null),
            "lower" => map_text(arg(0), |s| s.to_lowercase()),
            "upper" => map_text(arg(0), |s| s.to_uppercase()),
            "quote_ident" => map_text(arg(0), |s| {
                if !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !s.starts_with(|c: char| c.is_ascii_digit())
                {
                    s.to_string()
                } else {
                    format!("\"{}\"", s.replace('"', "\"\""))
                }
            }),
            "pg_table_size" | "pg_relation_size" | "pg_total_relation_size" | "pg_indexes_size" => {
                Val::Int(0)
            }
            "pg_size_pretty" => match arg(0) {
                Val::Null => Val::Null,
                v => Val::Text(format!("{} bytes", to_int(&v)?)),
            },
            "concat" | "textcat" => Val::Text(
                args.iter()
                    .filter(|v| **v != Val::Null)
                    .map(to_text)
                    .collect(),
            ),
            other => return Err(unsupported(format!("function {other}"))),
        })
    }
}

/// The operands of a chain of one associative operator (`a AND b AND c`), left to right,
/// collected with an explicit stack.
fn flatten<'e>(e: &'e Expr, op: &ast::BinaryOperator) -> Vec<&'e Expr> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        match x {
            Expr::BinaryOp { left, op: o, right } if o == op => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: o, .. } if o == op) => {
                stack.push(inner)
            }
            other => out.push(other),
        }
    }
    out
}

/// Budget units a LIKE match costs (it is O(text x pattern) at worst).
fn like_cost(text: &str, pattern: &str) -> u64 {
    (text.len() as u64 + 1).saturating_mul(pattern.len() as u64 + 1) / 256 + 1
}

/// A select-list item: source columns (`*`, `t.*`) or an expression.
enum Item<'a> {
    Columns(Vec<usize>),
    Expr(&'a Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    Inner,
    Left,
    Cross,
}

fn rename(cols: &mut [RelCol], alias: Option<&ast::TableAlias>) -> Result<(), SqlError> {
    if let Some(a) = alias {
        if a.columns.len() > cols.len() {
            return Err(unsupported("more column aliases than columns"));
        }
        for (c, n) in cols.iter_mut().zip(&a.columns) {
            c.name = fold_ident(&n.name);
        }
    }
    Ok(())
}

fn function_name(f: &ast::Function) -> Result<String, SqlError> {
    let parts = name_parts(&f.name);
    match parts.as_slice() {
        [n] => Ok(n.clone()),
        [s, n] if s == "pg_catalog" => Ok(n.clone()),
        _ => Err(unsupported(format!("function {}", parts.join(".")))),
    }
}

fn fn_args(f: &ast::Function) -> Result<Vec<&Expr>, SqlError> {
    match &f.args {
        ast::FunctionArguments::None => Ok(vec![]),
        ast::FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(Ok(e)),
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => None,
                other => Some(Err(unsupported(format!("argument {}", short(other))))),
            })
            .collect(),
        ast::FunctionArguments::Subquery(_) => {
            Err(unsupported(format!("{}(subquery)", short(&f.name))))
        }
    }
}

fn is_aggregate_name(name: &str) -> bool {
    matches!(
        name,
        "count" | "string_agg" | "array_agg" | "max" | "min" | "bool_and" | "bool_or"
    )
}

fn is_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Function(f) if f.over.is_none() => {
            function_name(f).is_ok_and(|n| is_aggregate_name(&n))
        }
        _ => false,
    }
}

fn cast_target(dt: &ast::DataType) -> Result<PgType, SqlError> {
    data_type_to_pg(dt).ok_or_else(|| unsupported(format!("type {}", short(dt))))
}

fn output_type(t: PgType) -> PgType {
    if t == PgType::Unknown {
        PgType::Text
    } else {
        t
    }
}

fn sort_dir(o: &ast::OrderByExpr) -> Result<(bool, bool), SqlError> {
    let desc = match &o.options.sort {
        None | Some(ast::OrderBySort::Asc) => false,
        Some(ast::OrderBySort::Desc) => true,
        Some(_) => return Err(unsupported("ORDER BY USING")),
    };
    Ok((desc, o.options.nulls_first.unwrap_or(desc)))
}

fn compare_for_sort(a: &Val, b: &Val, desc: bool, nulls_first: bool) -> Result<Ordering, SqlError> {
    Ok(match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => {
            if nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (_, Val::Null) => {
            if nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        _ => {
            let o = compare(a, b)?.unwrap_or(Ordering::Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    })
}

fn ordering_test(op: &ast::BinaryOperator) -> Result<fn(Ordering) -> bool, SqlError> {
    use ast::BinaryOperator as B;
    Ok(match op {
        B::Eq => |o| o == Ordering::Equal,
        B::NotEq => |o| o != Ordering::Equal,
        B::Lt => |o| o == Ordering::Less,
        B::LtEq => |o| o != Ordering::Greater,
        B::Gt => |o| o == Ordering::Greater,
        B::GtEq => |o| o != Ordering::Less,
        other => return Err(unsupported(format!("operator {other} with ANY/ALL"))),
    })
}

fn any_compare(x: &Val, items: &[Val], test: fn(Ordering) -> bool) -> Result<Val, SqlError> {
    if *x == Val::Null {
        return Ok(Val::Null);
    }
    let mut saw_null = false;
    for v in items {
        match compare(x, v)? {
            Some(o) if test(o) => return Ok(Val::Bool(true)),
            None => saw_null = true,
            _ => {}
        }
    }
    Ok(if saw_null {
        Val::Null
    } else {
        Val::Bool(false)
    })
}

fn negate_opt(v: Val, negated: bool) -> Val {
    match v {
        Val::Bool(b) => Val::Bool(b != negated),
        other => other,
    }
}

fn map_text(v: Val, f: impl Fn(&str) -> String) -> Val {
    match v {
        Val::Null => Val::Null,
        v => Val::Text(f(&to_text(&v))),
    }
}

fn dedupe(rows: &mut Vec<Vec<Val>>) {
    let mut out: Vec<Vec<Val>> = Vec::with_capacity(rows.len());
    for r in rows.drain(..) {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    *rows = out;
}

pub(crate) fn to_int(v: &Val) -> Result<i64, SqlError> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Bool(b) => Ok(i64::from(*b)),
        Val::Text(t) => t.trim().parse().map_err(|_| {
            SqlError::invalid(format!(
                "invalid input syntax for type integer: \"{}\"",
                t.chars().take(60).collect::<String>()
            ))
        }),
        Val::Null => Err(SqlError::invalid("NULL where an integer is needed")),
        Val::Array(_) => Err(SqlError::mismatch("an array where an integer is needed")),
    }
}

/// The text form of a value (what `::text` and the wire text format give).
pub(crate) fn to_text(v: &Val) -> String {
    match v {
        Val::Null => String::new(),
        Val::Bool(b) => if *b { "t" } else { "f" }.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Text(t) => t.clone(),
        Val::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Val::Null => "NULL".to_string(),
                    Val::Array(_) => to_text(v),
                    v => {
                        let s = to_text(v);
                        let plain = !s.is_empty()
                            && !s.eq_ignore_ascii_case("null")
                            && !s.chars().any(|c| {
                                matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace()
                            });
                        if plain {
                            s
                        } else {
                            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
                        }
                    }
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Compares two values, coercing text to the other side's type as PostgreSQL coerces an
/// untyped literal; `None` when either is NULL.
pub(crate) fn compare(a: &Val, b: &Val) -> Result<Option<Ordering>, SqlError> {
    Ok(Some(match (a, b) {
        (Val::Null, _) | (_, Val::Null) => return Ok(None),
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Text(x), Val::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Int(x), Val::Text(_)) => x.cmp(&to_int(b)?),
        (Val::Text(_), Val::Int(y)) => to_int(a)?.cmp(y),
        (Val::Bool(x), Val::Text(t)) | (Val::Text(t), Val::Bool(x)) => {
            let y = parse_bool(t).ok_or_else(|| {
                SqlError::invalid(format!("invalid input syntax for type boolean: \"{t}\""))
            })?;
            let o = x.cmp(&y);
            if matches!(a, Val::Text(_)) {
                o.reverse()
            } else {
                o
            }
        }
        (Val::Array(_), _) | (_, Val::Array(_)) => to_text(a).cmp(&to_text(b)),
        (Val::Int(x), Val::Bool(y)) => x.cmp(&i64::from(*y)),
        (Val::Bool(x), Val::Int(y)) => i64::from(*x).cmp(y),
    }))
}

/// Parses a PostgreSQL array literal (`{a,"b c",NULL}`) into text elements.
pub(crate) fn parse_array_literal(text: &str) -> Result<Vec<Val>, SqlError> {
    let bad = || SqlError::invalid(format!("malformed array literal: \"{}\"", short(&text)));
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(bad)?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut s = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => s.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => s.push(c),
                    None => return Err(bad()),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '}' || c == '"' {
                    return Err(bad());
                }
                s.push(c);
                chars.next();
            }
            s = s.trim().to_string();
        }
        out.push(if !quoted && s.eq_ignore_ascii_case("null") {
            Val::Null
        } else {
            Val::Text(s)
        });
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return Err(bad()),
        }
    }
    Ok(out)
}

/// `value::target`, where `from` is the value's static type.
fn cast(v: Val, from: PgType, target: PgType) -> Result<Val, SqlError> {
    if v == Val::Null {
        return Ok(Val::Null);
    }
    // Values of reg* types print as names.
    let v = match (from, &v) {
        (PgType::Regclass, Val::Int(oid))
            if target.family() == crate::sql::plan::TypeFamily::String =>
        {
            return Ok(Val::Text(
                data::relation_name(*oid).unwrap_or_else(|| oid.to_string()),
            ))
        }
        (PgType::Regtype, Val::Int(oid))
            if target.family() == crate::sql::plan::TypeFamily::String =>
        {
            return Ok(Val::Text(
                u32::try_from(*oid)
                    .ok()
                    .and_then(PgType::from_oid)
                    .map(|t| t.format_type().to_string())
                    .unwrap_or_else(|| oid.to_string()),
            ))
        }
        (PgType::Regnamespace, Val::Int(oid))
            if target.family() == crate::sql::plan::TypeFamily::String =>
        {
            return Ok(Val::Text(
                data::namespace_name(*oid)
                    .map(str::to_string)
                    .unwrap_or_else(|| oid.to_string()),
            ))
        }
        _ => v,
    };
    Ok(match target {
        PgType::Text | PgType::Varchar | PgType::Name | PgType::Char => match v {
            Val::Bool(b) if target != PgType::Char => {
                Val::Text(if b { "true" } else { "false" }.into())
            }
            other => Val::Text(to_text(&other)),
        },
        PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => {
            let i = to_int(&v)?;
            let fits = match target {
                PgType::Int2 => i16::try_from(i).is_ok(),
                PgType::Int4 => i32::try_from(i).is_ok(),
                PgType::Oid => u32::try_from(i).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(SqlError::invalid(format!(
                    "value \"{i}\" is out of range for type {}",
                    target.format_type()
                )));
            }
            Val::Int(i)
        }
        PgType::Bool => match v {
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Bool(i != 0),
            other => Val::Bool(parse_bool(&to_text(&other)).ok_or_else(|| {
                SqlError::invalid(format!(
                    "invalid input syntax for type boolean: \"{}\"",
                    to_text(&other)
                ))
            })?),
        },
        PgType::Regclass => match v {
            Val::Int(i) => Val::Int(i),
            other => {
                let name = to_text(&other);
                Val::Int(
                    data::relation_oid(&name).ok_or_else(|| SqlError::UnknownTable {
                        name: name.chars().take(64).collect(),
                    })?,
                )
            }
        },
        PgType::Regtype => match v {
            Val::Int(i) => Val::Int(i),
            other => {
                let name = to_text(&other);
                let bare = name
                    .trim()
                    .strip_prefix("pg_catalog.")
                    .unwrap_or(name.trim());
                Val::Int(i64::from(
                    PgType::from_sql_name(bare)
                        .ok_or_else(|| unsupported(format!("type {}", short(&name))))?
                        .oid(),
                ))
            }
        },
        PgType::Regnamespace => match v {
            Val::Int(i) => Val::Int(i),
            other => {
                let name = to_text(&other);
                Val::Int(
                    data::namespace_oid(&name)
                        .ok_or_else(|| unsupported(format!("schema {}", short(&name))))?,
                )
            }
        },
        PgType::Regproc => {
            let name = to_text(&v);
            Val::Text(
                name.strip_prefix("pg_catalog.")
                    .unwrap_or(&name)
                    .to_string(),
            )
        }
        t if t.element_type().is_some() => match v {
            Val::Array(items) => Val::Array(items),
            other => Val::Array(parse_array_literal(&to_text(&other))?),
        },
        _ => Val::Text(to_text(&v)),
    })
}

/// The wire text of a value of type `ty` (`None` for NULL).
pub(crate) fn format_value(v: &Val, ty: PgType) -> Option<String> {
    match (v, ty) {
        (Val::Null, _) => None,
        (Val::Int(oid), PgType::Regclass) => {
            Some(data::relation_name(*oid).unwrap_or_else(|| oid.to_string()))
        }
        (Val::Int(oid), PgType::Regtype) => Some(
            u32::try_from(*oid)
                .ok()
                .and_then(PgType::from_oid)
                .map(|t| t.format_type().to_string())
                .unwrap_or_else(|| oid.to_string()),
        ),
        (Val::Int(oid), PgType::Regnamespace) => Some(
            data::namespace_name(*oid)
                .map(str::to_string)
                .unwrap_or_else(|| oid.to_string()),
        ),
        (v, _) => Some(to_text(v)),
    }
}
