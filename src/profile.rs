//! Per-table caching profiles and the pattern rules that pick one.

use std::collections::HashMap;

use std::time::Duration;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::error::Error;

/// The kind of read, as cacheops names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// One row by a unique condition.
    Get,
    /// A list of rows.
    Fetch,
    /// `COUNT(*)`.
    Count,
    /// Any other aggregate.
    Aggregate,
    /// `EXISTS`.
    Exists,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 5] = [Op::Get, Op::Fetch, Op::Count, Op::Aggregate, Op::Exists];

    /// Short name used in keys and events.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Fetch => "fetch",
            Op::Count => "count",
            Op::Aggregate => "aggregate",
            Op::Exists => "exists",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ops(u8);

impl Ops {
    /// No operation: only forced reads are cached.
    pub const NONE: Ops = Ops(0);
    /// All operations.
    pub const ALL: Ops = Ops(0b1_1111);

    /// True when `op` is in the set.
    pub fn contains(self, op: Op) -> bool {
        self.0 & op.bit() != 0
    }
}

impl<const N: usize> From<[Op; N]> for Ops {
    fn from(ops: [Op; N]) -> Self {
        Ops(ops.iter().fold(0, |acc, op| acc | op.bit()))
    }
}

/// How much a local hit trusts itself (see DESIGN.md, "The local tier").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalMode {
    /// No local tier for this table.
    Off,
    /// Every local hit is confirmed by reading the entry's stamps from Redis.
    Strict,
    /// Local hits cost nothing; Redis pushes stamp changes (client-side caching).
    Tracked,
    /// Local hits confirmed within the duration are served without asking Redis.
    Bounded(Duration),
    /// Local hits are served until their TTL (cacheops' `local_get`); only this process'
    /// own invalidations reach them.
    TtlOnly,
}

/// How one table is cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Operations cached without being forced.
    pub ops: Ops,
    /// Lifetime of entries.
    pub timeout: Duration,
    /// When true (default) the database alias is not part of the key.
    pub db_agnostic: bool,
    /// Field whose `get` is filled with the saved row on insert or update.
    pub cache_on_save: Option<String>,
    /// One loader across processes on a miss (a Redis lock; see DESIGN.md).
    pub lock: bool,
    /// cacheops' process-local copy: the same as `local = Some(LocalMode::TtlOnly)`.
    pub local_get: bool,
    /// The local tier's mode for this table (`None`: the cache's default).
    pub local: Option<LocalMode>,
    /// Fields left out of row images and widened in conditions (large or volatile columns).
    pub skip_fields: Vec<String>,
    /// Stale-while-revalidate: for this long after an invalidation, callers get the previous
    /// value at once (marked stale) while one caller reloads. `None` (default): never stale.
    pub stale_grace: Option<Duration>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            ops: Ops::ALL,
            timeout: Duration::from_secs(15 * 60),
            db_agnostic: true,
            cache_on_save: None,
            lock: false,
            local_get: false,
            local: None,
            skip_fields: Vec::new(),
            stale_grace: None,
        }
    }
}

impl Profile {
    /// The default profile: every operation, 15 minutes.
    pub fn new() -> Profile {
        Profile::default()
    }
    /// Sets the cached operations.
    pub fn ops(mut self, ops: impl Into<Ops>) -> Profile {
        self.ops = ops.into();
        self
    }
    /// Sets the entry lifetime.
    pub fn timeout(mut self, timeout: Duration) -> Profile {
        self.timeout = timeout;
        self
    }
    /// Sets whether the database alias is left out of keys.
    pub fn db_agnostic(mut self, yes: bool) -> Profile {
        self.db_agnostic = yes;
        self
    }
    /// Caches saved rows under the key of a `get` by this field.
    pub fn cache_on_save(mut self, field: impl Into<String>) -> Profile {
        self.cache_on_save = Some(field.into());
        self
    }
    /// One loader across processes on a miss (in one process there is always one).
    pub fn lock(mut self, yes: bool) -> Profile {
        self.lock = yes;
        self
    }
    /// cacheops' `local_get`: a process-local copy with TTL only (see [`LocalMode::TtlOnly`]).
    pub fn local_get(mut self, yes: bool) -> Profile {
        self.local_get = yes;
        self
    }
    /// The local tier's mode for this table.
    pub fn local(mut self, mode: LocalMode) -> Profile {
        self.local = Some(mode);
        self
    }
    /// Serves the previous value for `grace` after an invalidation while one caller (across
    /// processes) reloads; see [`Cache::get_or_compute_answer`](crate::Cache::get_or_compute_answer).
    pub fn stale_while_revalidate(mut self, grace: Duration) -> Profile {
        self.stale_grace = Some(grace);
        self
    }
    /// Leaves these fields out of row images and conditions.
    pub fn skip_fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Profile {
        self.skip_fields = fields.into_iter().map(Into::into).collect();
        self
    }
}

/// Profiles by table pattern: `app.table`, `app.*`, `*.*`; the most specific wins.
///
/// A pattern mapped to `None` is never cached. A table that no pattern matches uses the
/// default profile.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    // xxh3: looked up on every read; keys are configuration, not attacker input.
    exact: HashMap<String, Option<Profile>, Xxh3DefaultBuilder>,
    apps: HashMap<String, Option<Profile>, Xxh3DefaultBuilder>,
    any: Option<Option<Profile>>,
    default: Profile,
}

impl Profiles {
    /// Sets the profile of a pattern (`None`: never cached). Bad patterns are errors.
    pub fn set(&mut self, pattern: &str, profile: Option<Profile>) -> Result<(), Error> {
        if pattern == "*.*" || pattern == "*" {
            self.any = Some(profile);
        } else if let Some(app) = pattern.strip_suffix(".*") {
            if app.is_empty() || app.contains('*') {
                return Err(Error::Config(format!("bad profile pattern {pattern:?}")));
            }
            self.apps.insert(app.to_owned(), profile);
        } else if pattern.is_empty() || pattern.contains('*') {
            return Err(Error::Config(format!(
                "bad profile pattern {pattern:?}: use app.table, app.* or *.*"
            )));
        } else {
            self.exact.insert(pattern.to_owned(), profile);
        }
        Ok(())
    }

    /// Sets the profile of tables no pattern matches.
    pub fn set_default(&mut self, profile: Profile) {
        self.default = profile;
    }

    /// The profile of a table, or `None` when it is never cached.
    pub fn get(&self, table: &str) -> Option<&Profile> {
        if let Some(p) = self.exact.get(table) {
            return p.as_ref();
        }
        if let Some((app, _)) = table.split_once('.') {
            if let Some(p) = self.apps.get(app) {
                return p.as_ref();
            }
        }
        match &self.any {
            Some(p) => p.as_ref(),
            None => Some(&self.default),
        }
    }

    /// True if any profile (or the default) satisfies `f`.
    pub fn any(&self, f: impl Fn(&Profile) -> bool) -> bool {
        let all = self
            .exact
            .values()
            .chain(self.apps.values())
            .chain(self.any.iter())
            .flatten();
        all.into_iter().any(&f) || f(&self.default)
    }

    /// The profile of a table, falling back to the default even for "never cached" tables
    /// (used by forced reads).
    pub fn get_or_default(&self, table: &str) -> &Profile {
        self.get(table).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_pattern_wins() {
        let mut p = Profiles::default();
        let secs = |s| Profile::new().timeout(Duration::from_secs(s));
        p.set("*.*", Some(secs(1))).unwrap();
        p.set("blog.*", Some(secs(2))).unwrap();
        p.set("blog.article", Some(secs(3))).unwrap();
        p.set("blog.log", None).unwrap();
        assert_eq!(p.get("blog.article").unwrap().timeout.as_secs(), 3);
        assert_eq!(p.get("blog.author").unwrap().timeout.as_secs(), 2);
        assert_eq!(p.get("shop.item").unwrap().timeout.as_secs(), 1);
        assert!(p.get("blog.log").is_none());
        assert_eq!(p.get_or_default("blog.log").timeout.as_secs(), 15 * 60);
    }

    #[test]
    fn default_applies_without_patterns() {
        let p = Profiles::default();
        assert_eq!(p.get("x.y"), Some(&Profile::default()));
    }

    #[test]
    fn bad_patterns_are_errors() {
        let mut p = Profiles::default();
        assert!(matches!(p.set("a*b", None), Err(Error::Config(_))));
        assert!(matches!(p.set(".*", None), Err(Error::Config(_))));
        assert!(matches!(p.set("", None), Err(Error::Config(_))));
    }

    #[test]
    fn ops_sets() {
        let ops = Ops::from([Op::Get, Op::Count]);
        assert!(ops.contains(Op::Get) && ops.contains(Op::Count));
        assert!(!ops.contains(Op::Fetch));
        assert!(Op::ALL.iter().all(|op| Ops::ALL.contains(*op)));
    }
}
