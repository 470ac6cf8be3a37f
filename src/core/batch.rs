//! An invalidation batch: rows per table, whole tables, simple keys, or everything.

use std::collections::{BTreeMap, BTreeSet};

use crate::keys::TableKeys;
use crate::store::EncodedRow;

/// An invalidation batch: what one write (or one scope commit, or one replay) kills.
/// Sent in as few round trips as the store allows.
#[derive(Debug, Default, Clone)]
pub(crate) struct Batch {
    /// Row images per table (by generation key, which identifies table and prefix).
    pub rows: BTreeMap<String, (TableKeys, Vec<EncodedRow>)>,
    /// Tables to invalidate whole: generation key -> table name.
    pub tables: BTreeMap<String, String>,
    /// Simple-cache keys to delete.
    pub keys: BTreeSet<String>,
    /// Everything.
    pub all: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.tables.is_empty() && self.keys.is_empty() && !self.all
    }

    /// Number of queued items, for events.
    pub fn len(&self) -> usize {
        self.rows.values().map(|(_, r)| r.len()).sum::<usize>()
            + self.tables.len()
            + self.keys.len()
            + usize::from(self.all)
    }

    fn row_count(&self) -> usize {
        self.rows.values().map(|(_, r)| r.len()).sum()
    }

    /// Adds `other` (no limit: for batching, not queueing).
    pub fn absorb(&mut self, other: Batch) {
        self.merge(other, usize::MAX);
    }

    /// Adds `other`, keeping the batch within `limit`: past it, rows collapse into whole
    /// tables and simple keys into "everything" (coarser, never less).
    pub fn merge(&mut self, other: Batch, limit: usize) {
        self.all |= other.all;
        self.tables.extend(other.tables);
        self.keys.extend(other.keys);
        for (gen, (t, rows)) in other.rows {
            self.rows
                .entry(gen)
                .or_insert_with(|| (t, Vec::new()))
                .1
                .extend(rows);
        }
        if self.row_count() > limit {
            // Too many rows to keep: their tables die whole instead.
            let rows = std::mem::take(&mut self.rows);
            self.tables
                .extend(rows.into_iter().map(|(gen, (t, _))| (gen, t.table)));
        }
        if self.keys.len() > limit {
            // Simple keys cannot be widened per table: everything dies instead.
            self.keys.clear();
            self.all = true;
        }
        // Once everything is to die, the rest is implied.
        if self.all {
            self.rows.clear();
            self.tables.clear();
            self.keys.clear();
        }
    }
}
