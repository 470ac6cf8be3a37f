//! A condition with parameter slots: what a SQL text says once, bound to each call's
//! parameters to give the [`Cond`] the power API takes.

use crate::cond::{Cond, FieldRef};
use crate::value::Value;

/// One bound parameter of a statement, as the front recorded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A scalar (`$1` bound to `7`).
    Scalar(Value),
    /// An array (`= ANY($1)` bound to `vec![1, 2, 3]`).
    Array(Vec<Value>),
}

impl<V: Into<Value>> From<V> for Param {
    fn from(v: V) -> Param {
        Param::Scalar(v.into())
    }
}

impl Param {
    /// An array parameter.
    pub fn array<V: Into<Value>>(values: impl IntoIterator<Item = V>) -> Param {
        Param::Array(values.into_iter().map(Into::into).collect())
    }

    /// Appends the parameter's canonical text (for the cache key).
    pub(crate) fn describe_into(&self, out: &mut String) {
        match self {
            Param::Scalar(v) => v.encode_into(out),
            Param::Array(vs) => {
                out.push('[');
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.encode_into(out);
                }
                out.push(']');
            }
        }
    }
}

/// A value in a condition: written in the SQL, or the n-th parameter (0-based).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Lit(Value),
    Param(usize),
}

/// A [`Cond`] whose values may be parameter slots.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CondT {
    Eq(FieldRef, Arg),
    In(FieldRef, Vec<Arg>),
    /// `field = ANY($n)`: the array parameter's values.
    AnyOf(FieldRef, usize),
    IsNull(FieldRef),
    And(Vec<CondT>),
    Or(Vec<CondT>),
    Not(Box<CondT>),
    /// Anything else, on one table (`None`: the read's own): every write to it matters.
    Other(Option<String>),
}

impl CondT {
    /// The condition with `params` in its slots. A slot given the wrong kind of parameter
    /// (an array where a scalar is compared, say) widens to "any row of the table": the
    /// database decides what it means, the cache only never narrows.
    pub fn bind(&self, params: &[Param]) -> Cond {
        let other = |f: &FieldRef| Cond::Other {
            table: f.table.clone(),
            sql: String::from("?"),
        };
        let scalar = |a: &Arg| -> Option<Value> {
            match a {
                Arg::Lit(v) => Some(v.clone()),
                Arg::Param(i) => match params.get(*i) {
                    Some(Param::Scalar(v)) => Some(v.clone()),
                    _ => None,
                },
            }
        };
        match self {
            CondT::Eq(f, a) => match scalar(a) {
                Some(v) => Cond::Eq(f.clone(), v),
                None => other(f),
            },
            CondT::In(f, args) => match args.iter().map(scalar).collect::<Option<Vec<_>>>() {
                Some(vs) => Cond::In(f.clone(), vs),
                None => other(f),
            },
            CondT::AnyOf(f, i) => match params.get(*i) {
                Some(Param::Array(vs)) => Cond::In(f.clone(), vs.clone()),
                _ => other(f),
            },
            CondT::IsNull(f) => Cond::IsNull(f.clone()),
            CondT::And(cs) => Cond::And(cs.iter().map(|c| c.bind(params)).collect()),
            CondT::Or(cs) => Cond::Or(cs.iter().map(|c| c.bind(params)).collect()),
            CondT::Not(c) => Cond::Not(Box::new(c.bind(params))),
            CondT::Other(table) => Cond::Other {
                table: table.clone(),
                sql: String::from("?"),
            },
        }
    }
}
