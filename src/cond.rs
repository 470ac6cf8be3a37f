//! Condition trees: what a read's `WHERE` clause says, as far as invalidation cares.

use crate::value::{escape_into, Value};

/// A field, of the read's own table (`None`) or of another, joined table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldRef {
    /// The table, or `None` for the read's own table.
    pub table: Option<String>,
    /// The field (column) name.
    pub name: String,
}

impl From<&str> for FieldRef {
    fn from(name: &str) -> Self {
        FieldRef {
            table: None,
            name: name.to_owned(),
        }
    }
}
impl From<String> for FieldRef {
    fn from(name: String) -> Self {
        FieldRef { table: None, name }
    }
}
impl<T: Into<String>, F: Into<String>> From<(T, F)> for FieldRef {
    /// `("blog.author", "name")`: a field of a joined table.
    fn from((table, name): (T, F)) -> Self {
        FieldRef {
            table: Some(table.into()),
            name: name.into(),
        }
    }
}

/// A condition tree.
///
/// `Eq`, `In` and `IsNull` are granular: a write invalidates the read only when the row has
/// the value asked for. Everything else (comparisons, `LIKE`, ranges, subqueries) is
/// [`Cond::Other`], and so is any negated term: those widen to "any row of the table".
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `field = value` (`field = NULL` means `field IS NULL`, as in Django).
    Eq(FieldRef, Value),
    /// `field IN (values)`.
    In(FieldRef, Vec<Value>),
    /// `field IS NULL`.
    IsNull(FieldRef),
    /// All of these (an empty list is true).
    And(Vec<Cond>),
    /// Any of these (an empty list is false).
    Or(Vec<Cond>),
    /// The negation.
    Not(Box<Cond>),
    /// Anything else, on a table (`None`: the read's own). `sql` describes it: it is part of
    /// the cache key, so two different conditions must have different descriptions.
    Other {
        /// The table the condition reads.
        table: Option<String>,
        /// A description that identifies the condition (its SQL and parameters).
        sql: String,
    },
}

impl Cond {
    /// Always true: the whole table.
    pub fn all() -> Cond {
        Cond::And(Vec::new())
    }
    /// `field = value`.
    pub fn eq(field: impl Into<FieldRef>, value: impl Into<Value>) -> Cond {
        Cond::Eq(field.into(), value.into())
    }
    /// `field IN (values)`.
    pub fn is_in<V: Into<Value>>(
        field: impl Into<FieldRef>,
        values: impl IntoIterator<Item = V>,
    ) -> Cond {
        Cond::In(field.into(), values.into_iter().map(Into::into).collect())
    }
    /// `field IS NULL`.
    pub fn is_null(field: impl Into<FieldRef>) -> Cond {
        Cond::IsNull(field.into())
    }
    /// An opaque condition on the read's own table.
    pub fn other(sql: impl Into<String>) -> Cond {
        Cond::Other {
            table: None,
            sql: sql.into(),
        }
    }
    /// An opaque condition on another table.
    pub fn other_on(table: impl Into<String>, sql: impl Into<String>) -> Cond {
        Cond::Other {
            table: Some(table.into()),
            sql: sql.into(),
        }
    }
    /// `self AND other`.
    pub fn and(self, other: Cond) -> Cond {
        match self {
            Cond::And(mut v) => {
                v.push(other);
                Cond::And(v)
            }
            c => Cond::And(vec![c, other]),
        }
    }
    /// `self OR other`.
    pub fn or(self, other: Cond) -> Cond {
        match self {
            Cond::Or(mut v) => {
                v.push(other);
                Cond::Or(v)
            }
            c => Cond::Or(vec![c, other]),
        }
    }
    /// `NOT self`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Cond {
        Cond::Not(Box::new(self))
    }

    /// Every table the condition names (besides the read's own).
    pub(crate) fn tables<'a>(&'a self, out: &mut Vec<&'a str>) {
        let mut add = |t: &'a Option<String>| {
            if let Some(t) = t {
                if !out.contains(&t.as_str()) {
                    out.push(t);
                }
            }
        };
        match self {
            Cond::Eq(f, _) | Cond::In(f, _) | Cond::IsNull(f) => add(&f.table),
            Cond::Other { table, .. } => add(table),
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| c.tables(out)),
            Cond::Not(c) => c.tables(out),
        }
    }

    /// Appends an unambiguous description of the tree, for the cache key.
    pub(crate) fn describe_into(&self, out: &mut String) {
        let field = |f: &FieldRef, out: &mut String| {
            if let Some(t) = &f.table {
                escape_into(t, out);
                out.push('.');
            }
            escape_into(&f.name, out);
        };
        match self {
            Cond::Eq(f, v) => {
                out.push_str("eq(");
                field(f, out);
                out.push(',');
                v.encode_into(out);
                out.push(')');
            }
            Cond::In(f, vs) => {
                out.push_str("in(");
                field(f, out);
                for v in vs {
                    out.push(',');
                    v.encode_into(out);
                }
                out.push(')');
            }
            Cond::IsNull(f) => {
                out.push_str("null(");
                field(f, out);
                out.push(')');
            }
            Cond::And(cs) | Cond::Or(cs) => {
                out.push_str(if matches!(self, Cond::And(_)) {
                    "and("
                } else {
                    "or("
                });
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    c.describe_into(out);
                }
                out.push(')');
            }
            Cond::Not(c) => {
                out.push_str("not(");
                c.describe_into(out);
                out.push(')');
            }
            Cond::Other { table, sql } => {
                out.push_str("other(");
                if let Some(t) = table {
                    escape_into(t, out);
                }
                out.push(',');
                crate::value::push_int(sql.len() as i128, out);
                out.push(':');
                out.push_str(sql);
                out.push(')');
            }
        }
    }
}
