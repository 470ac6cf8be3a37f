//! Widening made visible: which read of this process uses each scheme, and the
//! `Event::Widened` of a row invalidation that fell back to its whole table because a row
//! lacked a scheme's fields.
//!
//! Kept only when the cache has listeners, and bounded: past [`LIMIT`] schemes (or reported
//! widenings) new ones are not remembered (events then name no read, or say `first` again).

use std::collections::{HashMap, HashSet};

use crate::event::Event;
use crate::keys::fields_of;
use crate::plan::Plan;
use crate::store::Widening;
use crate::sync::Mutex;

/// How many schemes (and reported widenings) are remembered at most.
const LIMIT: usize = 4096;

/// The longest read description an event carries (a long `IN` list is cut).
const DESCRIPTION: usize = 300;

/// A read that uses a scheme: its description and entry key.
struct Origin {
    read: String,
    entry: String,
}

#[derive(Default)]
struct Inner {
    /// Scheme set key → scheme → the first read of this process planned with it.
    origins: HashMap<String, HashMap<String, Origin>>,
    origins_len: usize,
    /// (table, missing fields) already reported.
    reported: HashSet<(String, Vec<String>)>,
}

/// What this process knows of schemes, for widening events.
#[derive(Default)]
pub(super) struct Widened {
    inner: Mutex<Inner>,
}

impl Widened {
    /// Remembers the reads of `plan`'s schemes (the first plan of each scheme wins).
    pub fn note(&self, plan: &Plan) {
        let mut inner = self.inner.lock();
        for set in &plan.schemes {
            for scheme in &set.schemes {
                let known = inner
                    .origins
                    .get(&set.key)
                    .is_some_and(|m| m.contains_key(scheme));
                if known || inner.origins_len >= LIMIT {
                    continue;
                }
                let mut read = plan.description.clone();
                if read.len() > DESCRIPTION {
                    let mut cut = DESCRIPTION;
                    while !read.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    read.truncate(cut);
                    read.push('…');
                }
                let origin = Origin {
                    read,
                    entry: plan.entry.clone(),
                };
                inner
                    .origins
                    .entry(set.key.clone())
                    .or_default()
                    .insert(scheme.clone(), origin);
                inner.origins_len += 1;
            }
        }
    }

    /// Sends one `Event::Widened` per widening.
    pub fn report(&self, widened: &[Widening], emit: impl Fn(&Event<'_>)) {
        for w in widened {
            let fields = fields_of(&w.scheme);
            let missing: Vec<String> = w.missing.iter().flat_map(|m| fields_of(m)).collect();
            let (read, entry, first) = {
                let mut inner = self.inner.lock();
                let origin = inner.origins.get(&w.set).and_then(|m| m.get(&w.scheme));
                let (read, entry) = match origin {
                    Some(o) => (Some(o.read.clone()), Some(o.entry.clone())),
                    None => (None, None),
                };
                let key = (w.table.clone(), missing.clone());
                let first = !inner.reported.contains(&key);
                if first && inner.reported.len() < LIMIT {
                    inner.reported.insert(key);
                }
                (read, entry, first)
            };
            emit(&Event::Widened {
                table: &w.table,
                fields: &fields,
                missing: &missing,
                read: read.as_deref(),
                entry: entry.as_deref(),
                first,
            });
        }
    }
}
