//! Planning: a [`Read`] (or the dependencies of a `cached_as` call) becomes a [`Plan`]: the
//! entry's key, the stamps it depends on, the schemes to register and its lifetime. Pure: no
//! I/O, no local tier, no scope; the same read always gets the same plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::dnf::{to_dnf, Conj, DnfLimits};
use crate::keys::{hash_hex, kind_member, scheme_of, KeySpace};
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
    /// The kinds of value its conditions compare each field with, as `=<field>=<kind>`
    /// (`keys::kind_member`): registered beside the schemes in Redis, so a writer in another
    /// process learns of a clash (`INVALIDATE`). Never a scheme: fields never hold `=`.
    pub kinds: Vec<String>,
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
        extra: &[String],
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
        for part in [name.as_bytes(), args] {
            let _ = write!(acc.description, "[{}:{}]", part.len(), hash_hex(part));
        }
        // No part or one: as one text (the key of a single `extra` is that of its text).
        // More: marked, each part on its own, so parts never run together.
        match extra {
            [] => {
                let _ = write!(acc.description, "[0:{}]", hash_hex(b""));
            }
            [one] => {
                let _ = write!(
                    acc.description,
                    "[{}:{}]",
                    one.len(),
                    hash_hex(one.as_bytes())
                );
            }
            parts => {
                acc.description.push_str("[+");
                for p in parts {
                    let _ = write!(acc.description, "{}:{},", p.len(), hash_hex(p.as_bytes()));
                }
                acc.description.push(']');
            }
        }
        let ttl = timeout
            .or(shortest)
            .unwrap_or_else(|| self.profiles.get_or_default("").timeout);
        acc.into_plan(&self.keys, ttl.min(MAX_TTL))
    }

    /// The memo key of a `cached_as` plan: everything [`plan_call`](Planner::plan_call)
    /// reads but the configuration (each dependency's plan key, table and database, the
    /// name, the arguments, `extra`, the timeout), length-prefixed and hashed like a plan
    /// key. Equal keys mean equal plans under one planner.
    pub fn call_key(
        &self,
        deps: &[Dep],
        name: &str,
        args: &[u8],
        extra: &[String],
        timeout: Option<Duration>,
    ) -> u128 {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(256));
        }
        fn part(b: &mut Vec<u8>, bytes: &[u8]) {
            b.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            b.extend_from_slice(bytes);
        }
        BUF.with(|b| {
            let mut b = b.borrow_mut();
            b.clear();
            b.extend_from_slice(b"call\0");
            for dep in deps {
                match dep {
                    Dep::Read(r) => {
                        let profile = self.profiles.get_or_default(&r.table);
                        b.push(b'r');
                        b.extend_from_slice(&plan_key(r, profile).to_le_bytes());
                        part(&mut b, r.table.as_bytes());
                        part(&mut b, r.db.as_bytes());
                    }
                    Dep::Table(t) => {
                        b.push(b't');
                        part(&mut b, t.as_bytes());
                    }
                }
            }
            b.push(b'|');
            part(&mut b, name.as_bytes());
            part(&mut b, args);
            b.extend_from_slice(&(extra.len() as u64).to_le_bytes());
            for e in extra {
                part(&mut b, e.as_bytes());
            }
            match timeout {
                Some(t) => {
                    b.push(b'T');
                    b.extend_from_slice(&t.as_nanos().to_le_bytes());
                }
                None => b.push(b'N'),
            }
            key_hash(&b)
        })
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
            let kinds = deps.kinds.entry(tk.schemes.clone()).or_default();
            for (field, value) in conjs.iter().flatten() {
                if let Some(kind) = value.kind() {
                    kinds.insert(kind_member(field, kind));
                }
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
    /// Scheme set key -> kind members of its table's condition fields.
    kinds: BTreeMap<String, BTreeSet<String>>,
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
                    kinds: self
                        .kinds
                        .get(&key)
                        .map(|k| k.iter().cloned().collect())
                        .unwrap_or_default(),
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
/// and of whether it is forced (which picks the profile). Computed once per `Read` value
/// (memoised in it, `read::KeyMemo`), in a reused buffer.
pub(crate) fn plan_key(read: &Read, profile: &Profile) -> u128 {
    // Memoised in the read: a `Read` used again costs one load.
    let [hi, lo] = *read.memo.0[usize::from(profile.db_agnostic)].get_or_init(|| {
        let k = describe_key(read, profile);
        [(k >> 64) as u64, k as u64]
    });
    (u128::from(hi) << 64) | u128::from(lo)
}

/// The plan key computed: the read's description, hashed.
fn describe_key(read: &Read, profile: &Profile) -> u128 {
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
        key_hash(b.as_bytes())
    })
}

/// The local key of a plan that has no plan key (a computed prefix, a `cached_as` call):
/// the hash of its entry key.
pub(crate) fn entry_key_hash(plan: &Plan) -> u128 {
    key_hash(plan.entry.as_bytes())
}

/// The 128-bit hash of local keys: xxh3 seeded once per process, so keys are uniform and
/// unpredictable, and the maps keyed by them need not hash them again
/// (`core/local`'s `KeyHasher`). Keys never leave the process.
pub(crate) fn key_hash(bytes: &[u8]) -> u128 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(1);
        h.finish()
    });
    xxhash_rust::xxh3::xxh3_128_with_seed(bytes, seed)
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
    // No part or one: `len:text`, as one text. More: `+` then each part as `len:text`
    // (length-prefixed, so parts never run together, and `+` is no length's first byte).
    let part = |p: &str, d: &mut String| {
        crate::value::push_int(p.len() as i128, d);
        d.push(':');
        d.push_str(p);
    };
    match read.extra.as_slice() {
        [] => part("", d),
        [one] => part(one, d),
        parts => {
            d.push('+');
            for p in parts {
                part(p, d);
            }
        }
    }
    d.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cond::Cond;

    #[test]
    fn a_memoised_key_follows_every_change_of_the_read() {
        let p = Profile::new().db_agnostic(false);
        let base = Read::fetch("blog.article").filter(Cond::eq("category", 1));
        let k = plan_key(&base, &p);
        assert_eq!(plan_key(&base, &p), k, "memoised");
        assert_eq!(plan_key(&base.clone(), &p), k, "a clone has the same key");
        assert_eq!(describe_key(&base, &p), k, "the memo is the computed key");
        // Each builder method on a memoised read gives the key of the changed read.
        let changed = [
            base.clone().filter(Cond::eq("published", true)),
            base.clone().extra("LIMIT 1"),
            base.clone().db("other"),
            base.clone().cache(),
        ];
        for r in &changed {
            assert_ne!(plan_key(r, &p), k, "{r:?}");
            assert_eq!(plan_key(r, &p), describe_key(r, &p), "{r:?}");
        }
        // The key depends on the profile's db_agnostic: one slot each.
        let agnostic = Profile::new().db_agnostic(true);
        let other_db = base.clone().db("other");
        assert_eq!(plan_key(&base, &agnostic), plan_key(&other_db, &agnostic));
        assert_ne!(plan_key(&base, &p), plan_key(&other_db, &p));
        assert_eq!(
            base,
            Read::fetch("blog.article").filter(Cond::eq("category", 1))
        );
    }

    #[test]
    fn call_keys_tell_every_input_apart() {
        let planner = Planner {
            profiles: Profiles::default(),
            keys: KeySpace {
                prefix: crate::keys::Prefix::Static("p:".into()),
                version: 1,
            },
            max_in: 100,
            max_conjs: 100,
        };
        let read = || Read::count("blog.article").filter(Cond::eq("category", 1));
        let deps = || vec![Dep::from(read()), Dep::table("blog.author")];
        let secs = Some(Duration::from_secs(5));
        let key = |deps: &[Dep], name: &str, args: &[u8], extra: &str, t| {
            planner.call_key(deps, name, args, &[extra.to_owned()], t)
        };
        let k = key(&deps(), "f", b"a", "x", secs);
        assert_eq!(k, key(&deps(), "f", b"a", "x", secs), "stable");
        let author = || Dep::table("blog.author");
        let others = [
            key(&deps()[..1], "f", b"a", "x", secs),
            key(&[author(), Dep::from(read())], "f", b"a", "x", secs),
            key(
                &[Dep::from(read().db("other")), author()],
                "f",
                b"a",
                "x",
                secs,
            ),
            key(
                &[Dep::from(read()), Dep::table("blog.authors")],
                "f",
                b"a",
                "x",
                secs,
            ),
            key(&deps(), "g", b"a", "x", secs),
            key(&deps(), "f", b"b", "x", secs),
            key(&deps(), "f", b"a", "y", secs),
            key(&deps(), "f", b"a", "x", None),
            key(&deps(), "f", b"a", "x", Some(Duration::from_secs(6))),
            // Length prefixes: moving a byte between parts changes the key.
            key(&deps(), "fa", b"", "x", secs),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(*o, k, "variant {i}");
        }
        // `extra` parts stay distinct: ["a", "b"] is not ["ab"].
        let parts = |p: &[&str]| {
            let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            planner.call_key(&deps(), "f", b"a", &p, secs)
        };
        assert_ne!(parts(&["a", "b"]), parts(&["ab"]));
    }
}
