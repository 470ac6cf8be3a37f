//! What a write statement can change, from its SQL text: never less than it affects.
//!
//! - `INSERT … VALUES` with a column list: the inserted rows' images (a value that is not a
//!   literal or a parameter is left out of the image, which widens the schemes needing it);
//! - any other `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`: the written tables whole
//!   (their old rows are not in the SQL);
//! - a query that calls no function but aggregates, and transaction control (`BEGIN`,
//!   `COMMIT`, `SET`, …): nothing;
//! - anything else (DDL, `CALL`, `DO`, a function call that might write, SQL that does not
//!   parse): everything.
//!
//! A write with `RETURNING` can do better: the rows it returns are the images of what it
//! changed ([`Returning`]): `INSERT … RETURNING` (any source, `ON CONFLICT DO NOTHING`) the
//! new rows, `DELETE … RETURNING` the old rows, `UPDATE … RETURNING` the new rows, and the
//! old rows as the new ones without the columns its `SET` assigns, but for the values its
//! `WHERE` pins (a top-level `AND` of `col = value`). Only a returned column
//! that is exactly a column of the written table goes into an image; a scheme needing a
//! field an image lacks widens to the whole table.
//!
//! Triggers and `ON DELETE CASCADE` write tables the SQL does not name: this analysis cannot
//! see them. The change stream (`postgres-cdc`) sees every write.

use std::ops::ControlFlow;

use sqlparser::ast::{self, Expr, SetExpr, Statement, TableObject};

use super::analyze::{arg as arg_of, ident as column_name, parse, table_name};
use super::template::{Arg, Param};
use crate::row::Row;

/// What executing a statement can change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Writes {
    /// Row images per table (inserted rows).
    pub rows: Vec<(String, Vec<Row>)>,
    /// Tables written whole.
    pub tables: Vec<String>,
    /// Anything at all.
    pub everything: bool,
}

/// A write statement analysed once; [`writes`](WriteShape::writes) per call.
#[derive(Debug, Clone)]
pub struct WriteShape {
    effect: Effect,
    returning: Option<Returning>,
}

/// How the rows a write statement returns (`RETURNING`) are the images of every row it
/// changed, so that those rows, not the whole table, are invalidated.
#[derive(Debug, Clone, PartialEq)]
pub struct Returning {
    table: String,
    columns: Option<Vec<Option<String>>>,
    images: Images,
}

/// What one row returned by a write is an image of.
#[derive(Debug, Clone, PartialEq)]
enum Images {
    /// The new row (`INSERT`).
    New,
    /// The old row (`DELETE`).
    Old,
    /// The new row of an `UPDATE`; its old row is the same without the columns assigned
    /// (`set`), but for those the `WHERE` pins (`pinned`: a top-level `AND` of `col = v`).
    Updated {
        set: Vec<String>,
        pinned: Vec<(String, Arg)>,
    },
}

impl Returning {
    /// The written table (the cache's name).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The returned columns by position, each the table column it is (`None`: an
    /// expression, left out of the images); `None` for `RETURNING *`: every column, by name.
    pub fn columns(&self) -> Option<&[Option<String>]> {
        self.columns.as_deref()
    }

    /// Pushes to `out` the images one returned row (`returned`, its table columns by name)
    /// stands for, with the statement's `params` bound: the row itself (`INSERT`: the new
    /// row, `DELETE`: the old row), and for an `UPDATE` its old row as well.
    pub fn images_of(&self, returned: Row, params: &[Param], out: &mut Vec<Row>) {
        if let Images::Updated { set, pinned } = &self.images {
            let mut old = returned.clone();
            for c in set {
                old.remove(c);
            }
            for (c, arg) in pinned.iter().filter(|(c, _)| set.contains(c)) {
                let value = match arg {
                    Arg::Lit(v) => Some(v.clone()),
                    Arg::Param(i) => match params.get(*i) {
                        Some(Param::Scalar(v)) => Some(v.clone()),
                        _ => None,
                    },
                };
                if let Some(v) = value {
                    old.insert(c.as_str(), v);
                }
            }
            out.push(old);
        }
        out.push(returned);
    }
}

#[derive(Debug, Clone)]
enum Effect {
    Nothing,
    Everything,
    Tables(Vec<String>),
    /// `INSERT INTO table (columns) VALUES rows`.
    Insert {
        table: String,
        columns: Vec<String>,
        rows: Vec<Vec<Option<Arg>>>,
    },
}

/// Aggregates a read-only query may call.
const AGGREGATES: &[&str] = &[
    "count", "sum", "min", "max", "avg", "coalesce", "lower", "upper",
];

impl WriteShape {
    /// Analyses `sql` (PostgreSQL's dialect).
    pub fn parse(sql: &str) -> WriteShape {
        let (effect, returning) = match parse(sql) {
            Ok(statements) if statements.len() == 1 => {
                let effect = effect_of(&statements[0]);
                let returning = match effect {
                    Effect::Tables(_) | Effect::Insert { .. } => returning_of(&statements[0]),
                    Effect::Nothing | Effect::Everything => None,
                };
                (effect, returning)
            }
            Ok(statements) if statements.is_empty() => (Effect::Nothing, None),
            _ => (Effect::Everything, None),
        };
        WriteShape { effect, returning }
    }

    /// The analysis of `sql`, memoised per SQL text (bounded: the 1,024 most recent).
    pub fn cached(sql: &str) -> std::sync::Arc<WriteShape> {
        static SHAPES: std::sync::OnceLock<moka::sync::Cache<String, std::sync::Arc<WriteShape>>> =
            std::sync::OnceLock::new();
        let shapes = SHAPES.get_or_init(|| moka::sync::Cache::new(1024));
        if let Some(s) = shapes.get(sql) {
            return s;
        }
        let shape = std::sync::Arc::new(WriteShape::parse(sql));
        shapes.insert(sql.to_owned(), shape.clone());
        shape
    }

    /// When the rows the statement returns are the images of every row it changes: how to
    /// read them (the front invalidates those rows instead of [`writes`](WriteShape::writes)).
    pub fn returning(&self) -> Option<&Returning> {
        self.returning.as_ref()
    }

    /// What the statement changes with `params` bound.
    pub fn writes(&self, params: &[Param]) -> Writes {
        match &self.effect {
            Effect::Nothing => Writes::default(),
            Effect::Everything => Writes {
                everything: true,
                ..Writes::default()
            },
            Effect::Tables(tables) => Writes {
                tables: tables.clone(),
                ..Writes::default()
            },
            Effect::Insert {
                table,
                columns,
                rows,
            } => {
                let images = rows
                    .iter()
                    .map(|values| {
                        let mut row = Row::new();
                        for (col, arg) in columns.iter().zip(values) {
                            let value = match arg {
                                Some(Arg::Lit(v)) => Some(v.clone()),
                                Some(Arg::Param(i)) => match params.get(*i) {
                                    Some(Param::Scalar(v)) => Some(v.clone()),
                                    _ => None,
                                },
                                None => None,
                            };
                            // Unknown values stay out: schemes that need them widen.
                            if let Some(v) = value {
                                row.insert(col.clone(), v);
                            }
                        }
                        row
                    })
                    .collect();
                Writes {
                    rows: vec![(table.clone(), images)],
                    ..Writes::default()
                }
            }
        }
    }
}

fn effect_of(statement: &Statement) -> Effect {
    // Every write target, nested ones (data-modifying CTEs) included.
    let mut targets: Vec<String> = Vec::new();
    let mut writes = 0;
    let mut unknown = false;
    let _ = ast::visit_statements(statement, |s| {
        let named: Vec<Option<String>> = match s {
            Statement::Insert(i) => vec![match &i.table {
                TableObject::TableName(n) => table_name(n),
                _ => None,
            }],
            Statement::Update(u) => vec![match &u.table.relation {
                ast::TableFactor::Table { name, .. } => table_name(name),
                _ => None,
            }],
            Statement::Delete(d) => {
                let from = match &d.from {
                    ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
                };
                let mut names: Vec<Option<String>> = d.tables.iter().map(table_name).collect();
                names.extend(from.iter().map(|twj| match &twj.relation {
                    ast::TableFactor::Table { name, .. } => table_name(name),
                    _ => None,
                }));
                names
            }
            Statement::Truncate(t) => t.table_names.iter().map(|n| table_name(&n.name)).collect(),
            Statement::Merge(_) => vec![None],
            _ => return ControlFlow::<()>::Continue(()),
        };
        writes += 1;
        for n in named {
            match n {
                Some(t) if !targets.contains(&t) => targets.push(t),
                Some(_) => {}
                None => unknown = true,
            }
        }
        ControlFlow::Continue(())
    });
    if unknown {
        return Effect::Everything;
    }
    if writes == 0 {
        return match statement {
            Statement::Query(_) if calls_only_aggregates(statement) => Effect::Nothing,
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Set(_)
            | Statement::ShowVariable { .. } => Effect::Nothing,
            _ => Effect::Everything,
        };
    }
    if writes == 1 && calls_only_aggregates(statement) {
        if let Some(insert) = granular_insert(statement) {
            return insert;
        }
    }
    Effect::Tables(targets)
}

/// True when the statement calls no function but a few pure ones (a function may write).
fn calls_only_aggregates(statement: &Statement) -> bool {
    let mut ok = true;
    let _ = ast::visit_expressions(statement, |e| {
        if let Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .and_then(ast::ObjectNamePart::as_ident)
                .map(|i| i.value.to_lowercase())
                .unwrap_or_default();
            if !AGGREGATES.contains(&name.as_str()) {
                ok = false;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    ok
}

/// `INSERT INTO t (cols) VALUES (…), …` without `ON CONFLICT … DO UPDATE`.
fn granular_insert(statement: &Statement) -> Option<Effect> {
    let Statement::Insert(insert) = statement else {
        return None;
    };
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    let table = table_name(name)?;
    if insert.columns.is_empty() {
        return None; // the columns' order is the table's: unknown here
    }
    match &insert.on {
        None => {}
        Some(ast::OnInsert::OnConflict(c))
            if matches!(c.action, ast::OnConflictAction::DoNothing) => {}
        Some(_) => return None, // an upsert updates a row whose old image is unknown
    }
    let source = insert.source.as_ref()?;
    if source.with.is_some() {
        return None;
    }
    let SetExpr::Values(values) = &*source.body else {
        return None;
    };
    let columns: Vec<String> = insert
        .columns
        .iter()
        .map(|c| {
            c.0.last()
                .and_then(ast::ObjectNamePart::as_ident)
                .map(column_name)
        })
        .collect::<Option<_>>()?;
    let rows = values
        .rows
        .iter()
        .map(|row| (row.len() == columns.len()).then(|| row.iter().map(arg_of).collect::<Vec<_>>()))
        .collect::<Option<Vec<_>>>()?;
    Some(Effect::Insert {
        table,
        columns,
        rows,
    })
}

/// The `RETURNING` of a single-table `INSERT`, `UPDATE` or `DELETE` that writes nothing else
/// and calls no function that might, when its rows are the images of every row written.
fn returning_of(statement: &Statement) -> Option<Returning> {
    if !calls_only_aggregates(statement) {
        return None;
    }
    let mut writes = 0;
    let _ = ast::visit_statements(statement, |s| {
        if matches!(
            s,
            Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
                | Statement::Merge(_)
                | Statement::Truncate(_)
        ) {
            writes += 1;
        }
        ControlFlow::<()>::Continue(())
    });
    if writes != 1 {
        return None;
    }
    let (name, alias, items, images) = match statement {
        Statement::Insert(i) => {
            let TableObject::TableName(name) = &i.table else {
                return None;
            };
            match &i.on {
                None => {}
                Some(ast::OnInsert::OnConflict(c))
                    if matches!(c.action, ast::OnConflictAction::DoNothing) => {}
                Some(_) => return None, // an upsert's old rows are not returned
            }
            let alias = i.table_alias.as_ref().map(|a| column_name(&a.alias));
            (name, alias, i.returning.as_ref()?, Images::New)
        }
        Statement::Delete(d) => {
            let from = match &d.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            if !d.tables.is_empty() || d.using.is_some() || from.len() != 1 {
                return None;
            }
            let (name, alias) = single_table(&from[0])?;
            (name, alias, d.returning.as_ref()?, Images::Old)
        }
        Statement::Update(u) => {
            if u.from.is_some() {
                return None;
            }
            let (name, alias) = single_table(&u.table)?;
            let mut set = Vec::new();
            for a in &u.assignments {
                let targets = match &a.target {
                    ast::AssignmentTarget::ColumnName(n) => vec![n],
                    ast::AssignmentTarget::Tuple(ns) => ns.iter().collect(),
                };
                for n in targets {
                    set.push(
                        n.0.last()
                            .and_then(ast::ObjectNamePart::as_ident)
                            .map(column_name)?,
                    );
                }
            }
            let pinned = match &u.selection {
                Some(w) => pinned(w, alias.as_deref(), name),
                None => Vec::new(),
            };
            (
                name,
                alias,
                u.returning.as_ref()?,
                Images::Updated { set, pinned },
            )
        }
        _ => return None,
    };
    let table = table_name(name)?;
    // A qualifier names the written table: its alias, or its own (last) name.
    let own = name
        .0
        .last()
        .and_then(ast::ObjectNamePart::as_ident)
        .map(column_name);
    let ours = |q: &ast::Ident| {
        let q = column_name(q);
        match &alias {
            Some(a) => *a == q,
            None => own.as_deref() == Some(q.as_str()),
        }
    };
    let columns = match items.as_slice() {
        [ast::SelectItem::Wildcard(_)] => None,
        [ast::SelectItem::QualifiedWildcard(
            ast::SelectItemQualifiedWildcardKind::ObjectName(n),
            _,
        )] if n.0.len() == 1 && n.0[0].as_ident().is_some_and(ours) => None,
        _ => {
            let mut columns = Vec::with_capacity(items.len());
            for item in items {
                let expr = match item {
                    ast::SelectItem::UnnamedExpr(e)
                    | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
                    // A wildcard among other items: positions unknown.
                    _ => return None,
                };
                columns.push(match expr {
                    Expr::Identifier(c) => Some(column_name(c)),
                    Expr::CompoundIdentifier(parts) if parts.len() == 2 && ours(&parts[0]) => {
                        Some(column_name(&parts[1]))
                    }
                    _ => None,
                });
            }
            Some(columns)
        }
    };
    Some(Returning {
        table,
        columns,
        images,
    })
}

/// The one named table of a `FROM` item without joins, and its alias.
fn single_table(t: &ast::TableWithJoins) -> Option<(&ast::ObjectName, Option<String>)> {
    if !t.joins.is_empty() {
        return None;
    }
    match &t.relation {
        ast::TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } if alias.as_ref().is_none_or(|a| a.columns.is_empty()) => {
            Some((name, alias.as_ref().map(|a| column_name(&a.name))))
        }
        _ => None,
    }
}

/// The `col = value` conjuncts of a top-level `AND` (a literal the analysis trusts, or a
/// parameter): every row the statement touched had those values.
fn pinned(w: &Expr, alias: Option<&str>, name: &ast::ObjectName) -> Vec<(String, Arg)> {
    let own = name
        .0
        .last()
        .and_then(ast::ObjectNamePart::as_ident)
        .map(column_name);
    let column = |e: &Expr| match e {
        Expr::Identifier(c) => Some(column_name(c)),
        Expr::CompoundIdentifier(p) if p.len() == 2 => {
            let q = column_name(&p[0]);
            let ours = match alias {
                Some(a) => a == q,
                None => own.as_deref() == Some(q.as_str()),
            };
            ours.then(|| column_name(&p[1]))
        }
        _ => None,
    };
    let mut out = Vec::new();
    let mut stack = vec![w];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Nested(inner) => stack.push(inner),
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::And,
                right,
            } => {
                stack.push(left);
                stack.push(right);
            }
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Eq,
                right,
            } => {
                let pair = match (column(left), arg_of(right)) {
                    (Some(c), Some(a)) => Some((c, a)),
                    _ => match (column(right), arg_of(left)) {
                        (Some(c), Some(a)) => Some((c, a)),
                        _ => None,
                    },
                };
                out.extend(pair);
            }
            _ => {}
        }
    }
    out
}
