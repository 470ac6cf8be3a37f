//! Planning: a [`Read`] (or the dependencies of a `cached_as` call) becomes a [`Plan`]: the
//! entry's key, the stamps it depends on, the schemes to register and its lifetime. Pure: no
//! I/O, no local tier, no scope; the same read always gets the same plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::dnf::{to_dnf, Conj, DnfLimits};
use crate::keys::{hash_hex, scheme_of, KeySpace};
use crate::profile::{Profile, Profiles};
use crate::read::{Dep, Force, Read};
use crate::value::escape_into;

/// Longest lifetime an entry gets (a larger profile timeout is clamped to it).
pub(crate) const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Everything a store needs to read or fill one cached entry, and the conditions it
/// depends on.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The entry's key.
    pub entry: String,
    /// Stamp keys the entry depends on, in a fixed order.
    pub stamps: Vec<String>,
    /// Scheme sets to register before the loader runs.
    pub schemes: Vec<SchemeSet>,
    /// Entry lifetime.
    pub ttl: Duration,
    /// The conjunctions per table the entry depends on (what a written row is matched
    /// against without the store, e.g. in a scope's overlay).
    pub depends: Vec<(String, Vec<Conj>)>,
    /// One loader across processes (the profile's `lock`).
    pub lock: bool,
    /// Stale-while-revalidate grace (the profile's `stale_grace`).
    pub stale: Option<Duration>,
    /// What identifies the entry (operation, table, condition, extra; or a function's
    /// name and dependencies): the text its key hashes, named in widening events.
    pub description: String,
}

impl Plan {
    /// The key of the entry's cross-process loader lock (same slot as the entry).
    pub fn lock_key(&self) -> String {
        format!("{}:lock", self.entry)
    }
    /// The list of processes waiting for the lock.
    pub fn waiters_key(&self) -> String {
        format!("{}:waiters", self.entry)
    }
    /// The prefix of each waiter's own wake-up list.
    pub fn wake_prefix(&self) -> String {
        format!("{}:wake:", self.entry)
    }
    /// Stamps outlive every entry that uses them (cacheops' `2 * timeout + 10 s`).
    pub fn stamp_ttl(&self) -> Duration {
        self.ttl
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(10))
    }
    /// How long a scheme stays registered after the last `PREPARE` or `STORE` that used
    /// it: the entry lives `ttl` after its `STORE`, and a local copy made by a hit at the
    /// end of that life lives `ttl` more; 10 s spare. The stamps' lifetime.
    pub fn scheme_ttl(&self) -> Duration {
        self.stamp_ttl()
    }
}

/// One table's scheme set, and the schemes a plan registers in it.
#[derive(Debug, Clone)]
pub(crate) struct SchemeSet {
    /// The set's key.
    pub key: String,
    /// The table's generation stamp: it dies when the set is found missing (see `PREPARE`).
    pub gen: String,
    /// The schemes (field lists) to add.
    pub schemes: Vec<String>,
}

/// What turns reads into plans: the profiles, the key space and the DNF limits.
pub(crate) struct Planner {
    pub profiles: Profiles,
    pub keys: KeySpace,
    pub max_in: usize,
    pub max_conjs: usize,
}

impl Planner {
    /// The profile in force for a read, or `None` when the read bypasses the cache.
    pub fn profile_of(&self, read: &Read) -> Option<&Profile> {
        match read.force {
            Some(Force::NoCache) => None,
            Some(Force::Cache) => Some(self.profiles.get_or_default(&read.table)),
            None => self
                .profiles
                .get(&read.table)
                .filter(|p| p.ops.contains(read.op)),
        }
    }

    /// The plan of a read under its profile.
    pub fn plan_read(&self, read: &Read, profile: &Profile) -> Plan {
        let mut deps = Deps::default();
        self.add_read(read, profile, &mut deps);
        let mut plan = deps.into_plan(&self.keys, profile.timeout.min(MAX_TTL));
        plan.lock = profile.lock;
        plan.stale = profile.stale_grace;
        plan
    }

    /// The plan of a function call cached under `deps` (see `cached_as`): the name, the
    /// canonical arguments and `extra` go into the key. The lifetime is `timeout`, or the
    /// shortest of the dependencies' profiles.
    pub fn plan_call(
        &self,
        deps: &[Dep],
        name: &str,
        args: &[u8],
        extra: &str,
        timeout: Option<Duration>,
    ) -> Plan {
        let mut acc = Deps::default();
        let mut shortest: Option<Duration> = None;
        for dep in deps {
            let (table, db) = match dep {
                Dep::Read(r) => (r.table(), r.db.as_str()),
                Dep::Table(t) => (t.as_str(), "default"),
            };
            let profile = self.profiles.get_or_default(table);
            shortest = Some(shortest.map_or(profile.timeout, |t| t.min(profile.timeout)));
            match dep {
                Dep::Read(r) => self.add_read(r, profile, &mut acc),
                Dep::Table(t) => self.add_table(t, db, &mut acc),
            }
        }
        for part in [name.as_bytes(), args, extra.as_bytes()] {
            let _ = write!(acc.description, "[{}:{}]", part.len(), hash_hex(part));
        }
        let ttl = timeout
            .or(shortest)
            .unwrap_or_else(|| self.profiles.get_or_default("").timeout);
        acc.into_plan(&self.keys, ttl.min(MAX_TTL))
    }

    /// Adds a read's stamps and description to `deps`.
    fn add_read(&self, read: &Read, profile: &Profile, deps: &mut Deps) {
        let profiles = &self.profiles;
        let skip = |table: &str, field: &str| {
            profiles
                .get(table)
                .is_some_and(|p| p.skip_fields.iter().any(|f| f == field))
        };
        let limits = DnfLimits {
            max_in: self.max_in,
            max_conjs: self.max_conjs,
            skip: &skip,
        };
        let dnf = to_dnf(&read.table, &read.cond, &limits);
        deps.note(&read.table, &read.db);
        for (table, conjs) in &dnf.tables {
            deps.depends.push((table.clone(), conjs.clone()));
            deps.note(table, &read.db);
            let tk = self.keys.table(table, &read.db);
            deps.stamp(tk.gen.clone());
            let (_, schemes) = deps
                .schemes
                .entry(tk.schemes.clone())
                .or_insert_with(|| (tk.gen.clone(), BTreeSet::new()));
            for conj in conjs {
                schemes.insert(scheme_of(conj));
            }
            for conj in conjs {
                deps.stamp(tk.conj_key(conj));
            }
        }
        describe_read(read, profile, &mut deps.description);
    }

    /// Adds a whole-table dependency to `deps`.
    fn add_table(&self, table: &str, db: &str, deps: &mut Deps) {
        deps.depends.push((table.to_owned(), vec![Conj::new()]));
        deps.note(table, db);
        let tk = self.keys.table(table, db);
        deps.stamp(tk.gen.clone());
        deps.stamp(tk.conj_key(&Default::default()));
        deps.schemes
            .entry(tk.schemes)
            .or_insert_with(|| (tk.gen, BTreeSet::new()))
            .1
            .insert(String::new());
        deps.description.push_str("table(");
        escape_into(table, &mut deps.description);
        deps.description.push(')');
    }
}

/// Stamps and key material gathered from the dependencies of one entry.
#[derive(Default)]
struct Deps {
    stamps: Vec<String>,
    depends: Vec<(String, Vec<Conj>)>,
    /// Scheme set key -> (generation key, schemes).
    schemes: BTreeMap<String, (String, BTreeSet<String>)>,
    tables: Vec<String>,
    dbs: Vec<String>,
    description: String,
}

impl Deps {
    fn stamp(&mut self, key: String) {
        // Few stamps per read: a linear check beats a set.
        if !self.stamps.contains(&key) {
            self.stamps.push(key);
        }
    }

    fn note(&mut self, table: &str, db: &str) {
        if !self.tables.iter().any(|t| t == table) {
            self.tables.push(table.to_owned());
        }
        if !self.dbs.iter().any(|d| d == db) {
            self.dbs.push(db.to_owned());
        }
    }

    fn into_plan(self, keys: &KeySpace, ttl: Duration) -> Plan {
        let tables: Vec<&str> = self.tables.iter().map(String::as_str).collect();
        let dbs: Vec<&str> = self.dbs.iter().map(String::as_str).collect();
        Plan {
            entry: keys.entry(&tables, &dbs, &self.description),
            description: self.description,
            stamps: self.stamps,
            schemes: self
                .schemes
                .into_iter()
                .map(|(key, (gen, s))| SchemeSet {
                    key,
                    gen,
                    schemes: s.into_iter().collect(),
                })
                .collect(),
            ttl,
            depends: self.depends,
            lock: false,
            stale: None,
        }
    }
}

/// The key of a read's memoised plan and local entry: the 128-bit hash of its description
/// and of whether it is forced (which picks the profile). Built in a reused buffer: this is
/// all a local hit computes.
pub(crate) fn plan_key(read: &Read, profile: &Profile) -> u128 {
    thread_local! {
        static BUF: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(256));
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        describe_read(read, profile, &mut b);
        b.push(if read.force == Some(Force::Cache) {
            '!'
        } else {
            '.'
        });
        xxhash_rust::xxh3::xxh3_128(b.as_bytes())
    })
}

/// The local key of a plan that has no plan key (a computed prefix, a `cached_as` call):
/// the hash of its entry key.
pub(crate) fn entry_key_hash(plan: &Plan) -> u128 {
    xxhash_rust::xxh3::xxh3_128(plan.entry.as_bytes())
}

/// Appends what identifies a read's result: operation, table, database unless the profile
/// is `db_agnostic`, condition and extra.
fn describe_read(read: &Read, profile: &Profile, d: &mut String) {
    d.push_str(read.op.name());
    d.push('(');
    escape_into(&read.table, d);
    if !profile.db_agnostic {
        d.push('@');
        escape_into(&read.db, d);
    }
    d.push(',');
    read.cond.describe_into(d);
    d.push(',');
    crate::value::push_int(read.extra.len() as i128, d);
    d.push(':');
    d.push_str(&read.extra);
    d.push(')');
}
