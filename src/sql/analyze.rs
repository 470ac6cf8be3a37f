//! SQL text to a read's shape: the tables it reads, and per table a condition with
//! parameter slots. What is not understood widens (a whole table), never narrows.
//!
//! The rules, for one `SELECT`:
//! - every table named anywhere in the statement (subqueries, CTEs, `UNION` branches,
//!   outer-joined tables) depends on the whole table, unless it is in the *scope*;
//! - the scope: the tables of the top `SELECT`'s `FROM` list and its inner joins (named
//!   tables, no table functions). Their `WHERE` and `ON` conditions are granular: `col = v`,
//!   `col IN (…)`, `col = ANY($n)`, `col IS NULL`, under `AND`, `OR`, `NOT`; a join equality
//!   `a.x = b.y` outside any `NOT` is dropped (dropping a conjunct only widens); anything
//!   else widens the tables its columns belong to;
//! - volatile SQL (a volatile function, `FOR UPDATE`/`SHARE`, a write in a CTE) and
//!   anything that is not a single query is not cached.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    self, BinaryOperator, Expr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart,
    Query, SetExpr, Statement, TableFactor, UnaryOperator,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::template::{Arg, CondT};
use super::NotCached;
use crate::cond::FieldRef;
use crate::value::Value;

/// What a query reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Analysis {
    /// The read's own table (the first of the scope, or the first table named).
    pub root: String,
    /// The condition: granular where understood, whole tables elsewhere.
    pub cond: CondT,
}

/// Functions whose result changes between calls of the same statement (PostgreSQL's
/// volatile and session-dependent built-ins): a read using one is not cached.
const VOLATILE: &[&str] = &[
    "now",
    "random",
    "setseed",
    "nextval",
    "currval",
    "lastval",
    "setval",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_setting",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "txid_current",
    "pg_current_xact_id",
    "pg_backend_pid",
    "inet_client_addr",
    "pg_sleep",
];

/// Built-in functions that read nothing but their arguments (and aggregates, window and
/// set-returning built-ins that do the same). Any other function may read tables the SQL
/// does not name (a user function, `pg_*` catalog functions): a read calling one is not
/// cached.
const KNOWN: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "lower",
    "upper",
    "length",
    "char_length",
    "octet_length",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "mod",
    "power",
    "sqrt",
    "sign",
    "exp",
    "ln",
    "log",
    "concat",
    "concat_ws",
    "substring",
    "substr",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "split_part",
    "left",
    "right",
    "position",
    "strpos",
    "starts_with",
    "md5",
    "to_char",
    "to_number",
    "to_date",
    "date_trunc",
    "date_part",
    "extract",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_build_object",
    "jsonb_build_object",
    "json_object_agg",
    "jsonb_object_agg",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    "bool_and",
    "bool_or",
    "every",
    "array_length",
    "cardinality",
    "format",
    "lpad",
    "rpad",
    "initcap",
    "reverse",
    "repeat",
    "unnest",
    "generate_series",
    "json_array_elements",
    "jsonb_array_elements",
    "stddev",
    "variance",
    "bit_and",
    "bit_or",
];

/// Refuses table functions other than the known built-ins, and other non-table relations
/// whose reads the SQL does not name.
struct Relations(Option<NotCached>);

impl ast::Visitor for Relations {
    type Break = ();
    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        let unknown = match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                let f = name
                    .0
                    .last()
                    .and_then(ObjectNamePart::as_ident)
                    .map(|i| i.value.to_lowercase())
                    .unwrap_or_default();
                (!KNOWN.contains(&f.as_str())).then_some(f)
            }
            TableFactor::Table { .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. } => None,
            other => Some(other.to_string()),
        };
        match unknown {
            Some(f) => {
                self.0 = Some(NotCached::UnknownFunction(f));
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }
}

/// Parses `sql` in PostgreSQL's dialect. SQL that does not parse and has `?` in it is
/// parsed again with each `?` as the next positional parameter (`$1`, `$2`, … in the order
/// they are written: SQLite's and MySQL's placeholders). PostgreSQL's own `?` (a `jsonb`
/// operator) parses the first time, and stays an operator.
pub(crate) fn parse(sql: &str) -> Result<Vec<Statement>, sqlparser::parser::ParserError> {
    let dialect = PostgreSqlDialect {};
    let first = Parser::parse_sql(&dialect, sql);
    if first.is_ok() || !sql.contains('?') {
        return first;
    }
    let mut n = 0;
    let mut tokens = Vec::new();
    let tokenized = sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
        .tokenize_with_location_into_buf_with_mapper(&mut tokens, |mut t| {
            if t.token == sqlparser::tokenizer::Token::Question {
                n += 1;
                t.token = sqlparser::tokenizer::Token::Placeholder(format!("${n}"));
            }
            t
        });
    if tokenized.is_err() || sql.contains('$') {
        return first; // `?` beside `$n`: not one numbering
    }
    Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .or(first)
}

/// Analyses one statement (PostgreSQL's dialect); also says the highest `$n` it uses.
pub(crate) fn analyze(sql: &str) -> (Result<Analysis, NotCached>, usize) {
    let statements = match parse(sql) {
        Ok(s) => s,
        Err(e) => return (Err(NotCached::Parse(e.to_string())), 0),
    };
    let mut highest = 0;
    for s in &statements {
        let _ = ast::visit_expressions(s, |e| {
            if let Some(i) = param(e) {
                highest = highest.max(i + 1);
            }
            ControlFlow::<()>::Continue(())
        });
    }
    (analyze_statements(statements), highest)
}

fn analyze_statements(mut statements: Vec<Statement>) -> Result<Analysis, NotCached> {
    if statements.len() != 1 {
        return Err(NotCached::NotARead);
    }
    let statement = statements.remove(0);
    let Statement::Query(query) = &statement else {
        return Err(NotCached::NotARead);
    };
    refuse_volatile(&statement)?;

    // Every table named anywhere, CTE names aside.
    let ctes = cte_names(query);
    let mut tables: Vec<String> = Vec::new();
    let _ = ast::visit_relations(&statement, |name| {
        if let Some(t) = table_name(name) {
            let is_cte = name.0.len() == 1 && ctes.contains(&t);
            if !is_cte && !tables.contains(&t) {
                tables.push(t);
            }
        }
        ControlFlow::<()>::Continue(())
    });

    let scope = match &*query.body {
        SetExpr::Select(select) => Scope::of(select, &ctes),
        _ => Scope::default(),
    };
    let root = match scope.tables.first() {
        Some((_, t)) => t.clone(),
        None => tables.first().cloned().ok_or(NotCached::NoTable)?,
    };
    let mut parts = Vec::new();
    if let SetExpr::Select(select) = &*query.body {
        if !scope.tables.is_empty() {
            for e in scope.on.iter().chain(select.selection.as_ref()) {
                parts.push(scope.cond(e, true, &root));
            }
        }
    }
    // The rest of the tables, whole. (The root is always a dependency: no mention needed.)
    for t in &tables {
        if *t != root && !scope.tables.iter().any(|(_, s)| s == t) {
            parts.push(CondT::Other(field_table(t, &root)));
        }
    }
    // Every scope table is named once more, so one that no condition names is still a
    // dependency (a conjunct "any row" leaves the others' terms as they are).
    for (_, t) in &scope.tables {
        if *t != root {
            parts.push(CondT::Other(field_table(t, &root)));
        }
    }
    // One flat `AND` (or its one term): binding and describing it per call walks less.
    let mut flat = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            CondT::And(inner) => flat.extend(inner),
            p => flat.push(p),
        }
    }
    let cond = match flat.len() {
        1 => flat.pop().expect("one term"),
        _ => CondT::And(flat),
    };
    Ok(Analysis { root, cond })
}

/// `None` for the root table (fields of the read's own table), else the table's name.
fn field_table(t: &str, root: &str) -> Option<String> {
    (t != root).then(|| t.to_owned())
}

/// Refuses volatile functions, locking clauses and writes nested in the statement.
fn refuse_volatile(statement: &Statement) -> Result<(), NotCached> {
    let mut found = None;
    let _ = ast::visit_expressions(statement, |e| {
        if let Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .and_then(ObjectNamePart::as_ident)
                .map(|i| i.value.to_lowercase())
                .unwrap_or_default();
            if VOLATILE.contains(&name.as_str()) {
                found = Some(NotCached::Volatile(name));
                return ControlFlow::Break(());
            }
            if !KNOWN.contains(&name.as_str()) {
                found = Some(NotCached::UnknownFunction(name));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(why) = found {
        return Err(why);
    }
    let mut relations = Relations(None);
    let _ = ast::Visit::visit(statement, &mut relations);
    if let Some(why) = relations.0 {
        return Err(why);
    }
    let mut nested_write = false;
    let _ = ast::visit_statements(statement, |s| {
        if !matches!(s, Statement::Query(_)) {
            nested_write = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if nested_write {
        return Err(NotCached::Write);
    }
    let mut locking = false;
    let _ = ast::visit_statements(statement, |s| {
        if let Statement::Query(q) = s {
            locking |= has_locks(q);
        }
        ControlFlow::<()>::Continue(())
    });
    if locking || has_locks_deep(statement) {
        return Err(NotCached::Locking);
    }
    Ok(())
}

fn has_locks(q: &Query) -> bool {
    !q.locks.is_empty()
}

/// Locking clauses of subqueries too (the visitor reaches queries inside expressions).
fn has_locks_deep(statement: &Statement) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(statement, |e| {
        let q = match e {
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => Some(q),
            Expr::In {
                target: ast::InTarget::Subquery(q),
                ..
            } => Some(q),
            _ => None,
        };
        if q.is_some_and(|q| has_locks(q)) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// The names of the statement's CTEs (they are not tables).
fn cte_names(query: &Query) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let _ = ast::visit_statements(&Statement::Query(Box::new(query.clone())), |s| {
        if let Statement::Query(q) = s {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    out.insert(ident(&cte.alias.name));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

/// PostgreSQL folds unquoted identifiers to lower case.
pub(super) fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The cache's name of a table: `table` in schema `public` (or unqualified), else
/// `schema.table` (the change stream's default naming). `None` for names it cannot read.
pub(crate) fn table_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(ident))
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [t] => Some(t.clone()),
        [s, t] if s == "public" => Some(t.clone()),
        [s, t] => Some(format!("{s}.{t}")),
        [_db, s, t] if s == "public" => Some(t.clone()),
        [_db, s, t] => Some(format!("{s}.{t}")),
        _ => None,
    }
}

/// The top `SELECT`'s granular tables: (alias or name, table), and its inner joins' `ON`
/// conditions.
#[derive(Default)]
struct Scope {
    tables: Vec<(String, String)>,
    on: Vec<Expr>,
    /// Relations in the `FROM` clause, in scope or not (an unqualified column is placed
    /// only when there is exactly one).
    from_count: usize,
}

impl Scope {
    fn of(select: &ast::Select, ctes: &BTreeSet<String>) -> Scope {
        let mut scope = Scope::default();
        let named = |f: &TableFactor| -> Option<(String, String)> {
            let TableFactor::Table {
                name, alias, args, ..
            } = f
            else {
                return None;
            };
            if args.is_some() {
                return None;
            }
            let t = table_name(name)?;
            if name.0.len() == 1 && ctes.contains(&t) {
                return None;
            }
            let key = alias.as_ref().map_or_else(|| t.clone(), |a| ident(&a.name));
            Some((key, t))
        };
        let mut outer = false;
        for twj in &select.from {
            scope.from_count += 1 + twj.joins.len();
            if let Some(entry) = named(&twj.relation) {
                scope.tables.push(entry);
            }
            for join in &twj.joins {
                let constraint = match &join.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::CrossJoin(c)
                    | JoinOperator::StraightJoin(c) => Some(c),
                    JoinOperator::Right(_)
                    | JoinOperator::RightOuter(_)
                    | JoinOperator::FullOuter(_) => {
                        outer = true;
                        None
                    }
                    _ => None, // left, semi, anti, apply…: the joined table is whole
                };
                let Some(c) = constraint else {
                    continue;
                };
                if let Some(entry) = named(&join.relation) {
                    scope.tables.push(entry);
                    if let JoinConstraint::On(e) = c {
                        scope.on.push(e.clone());
                    }
                }
            }
        }
        if outer {
            // A right or full join keeps rows of the left side whatever the conditions say.
            return Scope::default();
        }
        scope
    }

    /// The table a column belongs to: `None` when it cannot be told (an outer reference,
    /// an ambiguous name, a table outside the scope).
    fn column(&self, e: &Expr) -> Option<(String, String)> {
        match e {
            Expr::Identifier(col) if self.tables.len() == 1 && self.from_count == 1 => {
                Some((self.tables[0].1.clone(), ident(col)))
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let col = ident(parts.last()?);
                let qualifier: Vec<String> = parts[..parts.len() - 1].iter().map(ident).collect();
                let by_alias = |q: &str| self.tables.iter().find(|(k, _)| k == q);
                let found = match qualifier.as_slice() {
                    [q] => by_alias(q),
                    _ => {
                        let name = ObjectName::from(parts[..parts.len() - 1].to_vec());
                        let t = table_name(&name);
                        self.tables.iter().find(|(_, t2)| Some(t2) == t.as_ref())
                    }
                }?;
                Some((found.1.clone(), col))
            }
            Expr::Nested(inner) => self.column(inner),
            _ => None,
        }
    }

    fn field(&self, table: String, col: String, root: &str) -> FieldRef {
        FieldRef {
            table: field_table(&table, root),
            name: col,
        }
    }

    /// Every scope table whole (a condition that cannot be placed).
    fn widen_all(&self, root: &str) -> CondT {
        CondT::And(
            self.tables
                .iter()
                .map(|(_, t)| CondT::Other(field_table(t, root)))
                .collect(),
        )
    }

    /// Widens the tables an expression's columns belong to (all of the scope when a column
    /// cannot be placed, or when none is named).
    fn widen(&self, e: &Expr, root: &str) -> CondT {
        let mut tables: Vec<String> = Vec::new();
        let mut unplaced = false;
        let _ = ast::visit_expressions(e, |x| {
            match x {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => match self.column(x) {
                    Some((t, _)) if !tables.contains(&t) => tables.push(t),
                    Some(_) => {}
                    None => unplaced = true,
                },
                Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::In {
                    target: ast::InTarget::Subquery(_) | ast::InTarget::Table { .. },
                    ..
                } => unplaced = true,
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        if unplaced || tables.is_empty() {
            return self.widen_all(root);
        }
        CondT::And(
            tables
                .iter()
                .map(|t| CondT::Other(field_table(t, root)))
                .collect(),
        )
    }

    /// `e` as a condition; `positive` is false under an odd number of `NOT`s.
    fn cond(&self, e: &Expr, positive: bool, root: &str) -> CondT {
        match e {
            Expr::Nested(inner) => self.cond(inner, positive, root),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => CondT::And(vec![
                self.cond(left, positive, root),
                self.cond(right, positive, root),
            ]),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => CondT::Or(vec![
                self.cond(left, positive, root),
                self.cond(right, positive, root),
            ]),
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => CondT::Not(Box::new(self.cond(expr, !positive, root))),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                match (self.column(left), self.column(right)) {
                    // A join equality: dropped where that widens (outside NOT).
                    (Some(_), Some(_)) if positive => return CondT::And(Vec::new()),
                    (Some((t, c)), None) => {
                        if let Some(a) = arg(right) {
                            return CondT::Eq(self.field(t, c, root), a);
                        }
                    }
                    (None, Some((t, c))) => {
                        if let Some(a) = arg(left) {
                            return CondT::Eq(self.field(t, c, root), a);
                        }
                    }
                    _ => {}
                }
                self.widen(e, root)
            }
            Expr::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => {
                let granular = self.column(expr).and_then(|(t, c)| {
                    let args = list.iter().map(arg).collect::<Option<Vec<_>>>()?;
                    Some(CondT::In(self.field(t, c, root), args))
                });
                match (granular, negated) {
                    (Some(c), false) => c,
                    (Some(c), true) => CondT::Not(Box::new(c)),
                    (None, _) => self.widen(e, root),
                }
            }
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } => match (self.column(left), param(right)) {
                (Some((t, c)), Some(i)) => CondT::AnyOf(self.field(t, c, root), i),
                _ => self.widen(e, root),
            },
            Expr::IsNull(inner) => match self.column(inner) {
                Some((t, c)) => CondT::IsNull(self.field(t, c, root)),
                None => self.widen(e, root),
            },
            Expr::IsNotNull(inner) => match self.column(inner) {
                Some((t, c)) => CondT::Not(Box::new(CondT::IsNull(self.field(t, c, root)))),
                None => self.widen(e, root),
            },
            _ => self.widen(e, root),
        }
    }
}

/// A literal or a parameter, as a condition's value; `None` for anything else.
///
/// A quoted string compares as text only when it cannot be a number, a boolean, a date, a
/// time or a UUID: PostgreSQL casts `'1'` to the column's type, so `category = '1'` must
/// match the integer 1. Strings with a digit (and `t`/`f`/`true`/`false`/`yes`/`no`/`on`/
/// `off`) are not taken as text, which widens the condition.
pub(super) fn arg(e: &Expr) -> Option<Arg> {
    match e {
        Expr::Nested(inner) => arg(inner),
        Expr::Cast { expr, .. } => match &**expr {
            // `$1::int`: the parameter's value as the application bound it.
            Expr::Value(v) if matches!(v.value, ast::Value::Placeholder(_)) => arg(expr),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match arg(expr)? {
            Arg::Lit(Value::Int(i)) => Some(Arg::Lit(Value::Int(-i))),
            Arg::Lit(Value::Float(f)) => Some(Arg::Lit(Value::Float(-f))),
            _ => None,
        },
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => number(n).map(Arg::Lit),
            ast::Value::Boolean(b) => Some(Arg::Lit(Value::Bool(*b))),
            ast::Value::Null => Some(Arg::Lit(Value::Null)),
            ast::Value::SingleQuotedString(s) if plain_text(s) => {
                Some(Arg::Lit(Value::Text(s.clone())))
            }
            ast::Value::Placeholder(_) => param(e).map(Arg::Param),
            _ => None,
        },
        _ => None,
    }
}

/// `$n` as a 0-based slot (`?` and named placeholders are not positional here: `None`).
fn param(e: &Expr) -> Option<usize> {
    match e {
        Expr::Nested(inner) => param(inner),
        Expr::Cast { expr, .. } => param(expr),
        Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| (1..=65_535).contains(n))
                .map(|n| n - 1),
            _ => None,
        },
        _ => None,
    }
}

fn number(n: &str) -> Option<Value> {
    if let Ok(i) = n.parse::<i128>() {
        return Some(Value::Int(i));
    }
    n.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::Float)
}

fn plain_text(s: &str) -> bool {
    // Words PostgreSQL reads as dates, times and special numbers.
    const SPECIAL: &[&str] = &[
        "infinity",
        "-infinity",
        "nan",
        "epoch",
        "now",
        "today",
        "tomorrow",
        "yesterday",
        "allballs",
    ];
    let lower = s.trim().to_lowercase();
    // Booleans accept any unique prefix of these.
    let boolish = !lower.is_empty()
        && ["true", "false", "yes", "no", "on", "off"]
            .iter()
            .any(|w| w.starts_with(lower.as_str()));
    !s.chars().any(|c| c.is_ascii_digit()) && !boolish && !SPECIAL.contains(&lower.as_str())
}
