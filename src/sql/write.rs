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
//! Triggers and `ON DELETE CASCADE` write tables the SQL does not name: this analysis cannot
//! see them. The change stream (`postgres-cdc`) sees every write.

use std::ops::ControlFlow;

use sqlparser::ast::{self, Expr, SetExpr, Statement, TableObject};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::analyze::{arg as arg_of, ident as column_name, table_name};
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
        let effect = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
            Ok(statements) if statements.len() == 1 => effect_of(&statements[0]),
            Ok(statements) if statements.is_empty() => Effect::Nothing,
            _ => Effect::Everything,
        };
        WriteShape { effect }
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
