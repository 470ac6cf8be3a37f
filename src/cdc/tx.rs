//! [`TxChanges`]: the invalidations of one committed transaction, gathered until its Commit.

use std::collections::{BTreeMap, BTreeSet};

use super::Lsn;
use crate::Row;

/// Everything one transaction's commit invalidates: row images per cache table, and whole
/// tables (truncates, and tables with more row images than the limit).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TxChanges {
    /// The end of the commit record: acknowledged once applied.
    pub end_lsn: Lsn,
    rows: BTreeMap<String, Vec<Row>>,
    whole: BTreeSet<String>,
    max_rows: usize,
}

impl TxChanges {
    /// An empty transaction; a table past `max_rows` images is invalidated whole.
    pub fn new(max_rows: usize) -> TxChanges {
        TxChanges {
            max_rows: max_rows.max(1),
            ..TxChanges::default()
        }
    }

    /// Row images of `table` (an update adds its old and its new image).
    pub fn add_rows(&mut self, table: &str, images: impl IntoIterator<Item = Row>) {
        if self.whole.contains(table) {
            return;
        }
        let rows = self.rows.entry(table.to_owned()).or_default();
        rows.extend(images);
        if rows.len() > self.max_rows {
            self.rows.remove(table);
            self.whole.insert(table.to_owned());
        }
    }

    /// Adds the invalidations of a later transaction (transactions applied together).
    pub fn absorb(&mut self, other: TxChanges) {
        for (table, rows) in other.rows {
            self.add_rows(&table, rows);
        }
        for table in other.whole {
            self.add_table(&table);
        }
    }

    /// Every read of `table` dies (a truncate).
    pub fn add_table(&mut self, table: &str) {
        self.rows.remove(table);
        self.whole.insert(table.to_owned());
    }

    /// The row images, per table.
    pub fn rows(&self) -> impl Iterator<Item = (&str, &[Row])> {
        self.rows.iter().map(|(t, r)| (t.as_str(), r.as_slice()))
    }

    /// The tables invalidated whole.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.whole.iter().map(String::as_str)
    }

    /// How many row images.
    pub fn row_count(&self) -> usize {
        self.rows.values().map(Vec::len).sum()
    }

    /// How many whole tables.
    pub fn table_count(&self) -> usize {
        self.whole.len()
    }

    /// True when the transaction invalidates nothing.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.whole.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_truncated_tables_become_whole() {
        let mut tx = TxChanges::new(2);
        tx.add_rows("a", [Row::new().with("id", 1)]);
        tx.add_rows("b", [Row::new().with("id", 1), Row::new().with("id", 2)]);
        tx.add_rows("b", [Row::new().with("id", 3)]);
        tx.add_rows("c", [Row::new().with("id", 1)]);
        tx.add_table("c");
        tx.add_rows("c", [Row::new().with("id", 2)]);
        assert_eq!(
            tx.rows().map(|(t, r)| (t, r.len())).collect::<Vec<_>>(),
            [("a", 1)]
        );
        assert_eq!(tx.tables().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!((tx.row_count(), tx.table_count()), (1, 2));
        assert!(!tx.is_empty() && TxChanges::new(1).is_empty());
    }
}
