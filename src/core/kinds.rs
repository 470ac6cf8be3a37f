//! Value kinds per field: where a condition and a row image of one field meet with kinds
//! that can never match (text against a number, bytes against text), say so once.
//!
//! Such a pair is a read that no write of that field ever invalidates (stale until its
//! TTL), or a write that never reaches the reads it should. Coercible pairs (a number in
//! text, a bool against `1`) are merged by [`Value`](crate::Value)'s encoding and are not
//! mismatches. What this process has seen is kept here, per table and field: the first kind
//! a condition used (and the entry of that read), the first kind a row image held.
//!
//! Across processes: a plan registers `=<field>=<kind>` members beside its schemes
//! (`keys::kind_member`), with the schemes' lifetime; Redis' `INVALIDATE` compares each
//! row value's kind with them and returns the clashes, which the writer reports here
//! ([`KindBook::remote`]). The embedded store is one process: nothing to learn there.

use std::collections::HashMap;

use crate::store::KindClash;
use crate::sync::Mutex;
use crate::value::{Kind, Value};

/// A mismatch found at its first occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub table: String,
    pub field: String,
    /// The kind the condition used.
    pub condition: Kind,
    /// The kind the row image held.
    pub row: Kind,
    /// The entry key of the read whose condition it was.
    pub read: String,
}

#[derive(Default)]
struct Seen {
    condition: Option<(Kind, String)>,
    row: Option<Kind>,
    reported: bool,
}

/// The kinds seen in this process, by table and field.
#[derive(Default)]
pub(crate) struct KindBook {
    tables: Mutex<HashMap<String, HashMap<String, Seen>>>,
}

impl KindBook {
    /// A condition of the read with entry key `read` compares `table.field` with `value`.
    pub fn condition(
        &self,
        table: &str,
        field: &str,
        value: &Value,
        read: &str,
    ) -> Option<Mismatch> {
        let kind = value.kind()?;
        self.note(table, field, |seen| {
            if seen.condition.is_none() {
                seen.condition = Some((kind, read.to_owned()));
            }
            // A mismatch is between a row's kind and any condition's.
            (seen.row.is_some_and(|row| row != kind)).then(|| (kind, read.to_owned()))
        })
    }

    /// A row image of `table` holds `value` in `field`.
    pub fn row(&self, table: &str, field: &str, value: &Value) -> Option<Mismatch> {
        let kind = value.kind()?;
        self.note(table, field, |seen| {
            seen.row.get_or_insert(kind);
            seen.condition
                .as_ref()
                .filter(|(cond, _)| *cond != kind)
                .cloned()
        })
        .map(|mut m| {
            // `note` reports the condition's side; the row's is this value.
            m.row = kind;
            m
        })
    }

    /// A clash the store found between a written row and a read of another process (its
    /// condition's kind registered beside the table's schemes): reported once per field,
    /// like the clashes this process sees itself.
    pub fn remote(&self, c: &KindClash) -> Option<Mismatch> {
        self.note(&c.table, &c.field, |seen| {
            seen.row.get_or_insert(c.row);
            Some((c.condition, String::from("(a read of another process)")))
        })
        .map(|mut m| {
            m.row = c.row;
            m
        })
    }

    /// Updates what `table.field` has seen; `check` returns the condition's kind and read
    /// when the new value clashes. Each field reports once.
    fn note(
        &self,
        table: &str,
        field: &str,
        check: impl FnOnce(&mut Seen) -> Option<(Kind, String)>,
    ) -> Option<Mismatch> {
        let mut tables = self.tables.lock();
        let fields = match tables.get_mut(table) {
            Some(f) => f,
            None => tables.entry(table.to_owned()).or_default(),
        };
        let seen = match fields.get_mut(field) {
            Some(s) => s,
            None => fields.entry(field.to_owned()).or_default(),
        };
        let (condition, read) = check(seen)?;
        if std::mem::replace(&mut seen.reported, true) {
            return None;
        }
        Some(Mismatch {
            table: table.to_owned(),
            field: field.to_owned(),
            condition,
            row: seen.row.unwrap_or(condition),
            read,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_against_a_number_is_reported_once_with_both_sides() {
        let book = KindBook::default();
        assert_eq!(book.row("app.article", "category", &Value::from(3)), None);
        let m = book
            .condition("app.article", "category", &Value::from("three"), "k1")
            .expect("a mismatch");
        assert_eq!(
            (m.condition, m.row, m.read.as_str()),
            (Kind::Text, Kind::Number, "k1")
        );
        assert_eq!(
            book.condition("app.article", "category", &Value::from("x"), "k2"),
            None
        );
        assert_eq!(book.row("app.article", "category", &Value::from(4)), None);
    }

    #[test]
    fn a_row_after_the_condition_is_reported_too() {
        let book = KindBook::default();
        assert_eq!(
            book.condition("t", "f", &Value::from(vec![1_u8]), "k"),
            None
        );
        let m = book.row("t", "f", &Value::from("a")).expect("a mismatch");
        assert_eq!((m.condition, m.row), (Kind::Bytes, Kind::Text));
    }

    #[test]
    fn coercible_pairs_and_nulls_are_not_mismatches() {
        let book = KindBook::default();
        book.row("t", "id", &Value::from(7_i64));
        book.row("t", "flag", &Value::from(true));
        book.row("t", "n", &Value::Null);
        assert_eq!(book.condition("t", "id", &Value::from("7"), "k"), None);
        assert_eq!(book.condition("t", "flag", &Value::from(1), "k"), None);
        assert_eq!(book.condition("t", "n", &Value::from("x"), "k"), None);
        assert_eq!(book.row("t", "n", &Value::from("y")), None);
    }
}
