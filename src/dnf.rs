//! Condition trees to disjunctive normal form, split per table.
//!
//! The result over-approximates the condition: any row that can satisfy the condition
//! matches at least one conjunction of its table. Non-granular terms (opaque conditions,
//! negations, `IN` lists longer than the limit, fields a profile skips) widen to "true";
//! after pushing negations down the tree is monotone, so widening a leaf only ever adds rows.

use std::collections::BTreeMap;

use crate::cond::Cond;
use crate::value::Value;

/// One conjunction of `field = value` terms on one table. Empty means "any row".
pub type Conj = BTreeMap<String, Value>;

/// A read's dependencies: for each table it reads, the conjunctions a written row must
/// match to affect it. A table with no conjunction at all cannot be affected by row writes
/// (the condition matches nothing); one with an empty conjunction is affected by any write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dnf {
    /// Conjunctions per table, each list sorted and free of redundant members.
    pub tables: BTreeMap<String, Vec<Conj>>,
}

/// Limits of the conversion.
#[derive(Clone, Copy)]
pub struct DnfLimits<'a> {
    /// `IN` lists longer than this widen to "any row" (cacheops' default is 8 too).
    pub max_in: usize,
    /// A DNF with more conjunctions than this widens to "any row".
    pub max_conjs: usize,
    /// Fields whose terms widen (fields a profile skips), by table and field.
    pub skip: &'a dyn Fn(&str, &str) -> bool,
}

impl Default for DnfLimits<'_> {
    fn default() -> Self {
        DnfLimits {
            max_in: 8,
            max_conjs: 64,
            skip: &|_, _| false,
        }
    }
}

/// A conjunction across tables: (table, field) -> value.
type Terms = BTreeMap<(String, String), Value>;

/// Converts `cond` on table `main` into per-table DNF.
pub fn to_dnf(main: &str, cond: &Cond, limits: &DnfLimits<'_>) -> Dnf {
    let conjs = walk(main, cond, true, limits);
    let mut tables: Vec<&str> = vec![main];
    cond.tables(&mut tables);
    let mut out = Dnf::default();
    for table in tables {
        let projected: Vec<Conj> = conjs
            .iter()
            .map(|terms| {
                terms
                    .iter()
                    .filter(|((t, _), _)| t == table)
                    .map(|((_, f), v)| (f.clone(), v.clone()))
                    .collect()
            })
            .collect();
        out.tables.insert(table.to_owned(), simplify(projected));
    }
    out
}

fn truth() -> Vec<Terms> {
    vec![Terms::new()]
}

/// The DNF of `cond` (or of its negation when `positive` is false), widened where needed.
fn walk(main: &str, cond: &Cond, positive: bool, limits: &DnfLimits<'_>) -> Vec<Terms> {
    let term = |f: &crate::cond::FieldRef, v: &Value| -> Option<Terms> {
        let table = f.table.as_deref().unwrap_or(main);
        if (limits.skip)(table, &f.name) {
            return None;
        }
        let mut t = Terms::new();
        t.insert((table.to_owned(), f.name.clone()), v.clone());
        Some(t)
    };
    match cond {
        Cond::Eq(f, v) if positive => term(f, v).map_or_else(truth, |t| vec![t]),
        Cond::IsNull(f) if positive => term(f, &Value::Null).map_or_else(truth, |t| vec![t]),
        Cond::In(f, vs) if positive => {
            if vs.len() > limits.max_in {
                return truth();
            }
            let mut out = Vec::with_capacity(vs.len());
            for v in vs {
                match term(f, v) {
                    Some(t) => out.push(t),
                    None => return truth(),
                }
            }
            simplify_capped(out, limits)
        }
        // Negated granular terms and opaque conditions match rows of any value.
        Cond::Eq(..) | Cond::IsNull(_) | Cond::In(..) | Cond::Other { .. } => truth(),
        Cond::Not(c) => walk(main, c, !positive, limits),
        Cond::And(cs) | Cond::Or(cs) => {
            // AND stays a product when positive; by De Morgan a negated OR is one too.
            let product = matches!(cond, Cond::And(_)) == positive;
            if product {
                let mut acc = truth();
                for c in cs {
                    let rhs = walk(main, c, positive, limits);
                    acc = and(&acc, &rhs);
                    acc = simplify_capped(acc, limits);
                    if acc.is_empty() {
                        break;
                    }
                }
                acc
            } else {
                let mut acc = Vec::new();
                for c in cs {
                    acc.extend(walk(main, c, positive, limits));
                }
                simplify_capped(acc, limits)
            }
        }
    }
}

/// The pairwise merge of two DNFs; conjunctions asking one field for two values are dropped.
fn and(a: &[Terms], b: &[Terms]) -> Vec<Terms> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        'pair: for y in b {
            let mut merged = x.clone();
            for (k, v) in y {
                match merged.get(k) {
                    Some(old) if old != v => continue 'pair,
                    Some(_) => {}
                    None => {
                        merged.insert(k.clone(), v.clone());
                    }
                }
            }
            out.push(merged);
        }
    }
    out
}

fn simplify_capped(conjs: Vec<Terms>, limits: &DnfLimits<'_>) -> Vec<Terms> {
    let conjs = simplify(conjs);
    if conjs.len() > limits.max_conjs {
        truth()
    } else {
        conjs
    }
}

/// Sorts, removes duplicates and drops every conjunction that a smaller one already covers.
fn simplify<K: Ord + Clone, V: Ord + Clone>(mut conjs: Vec<BTreeMap<K, V>>) -> Vec<BTreeMap<K, V>> {
    conjs.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    conjs.dedup();
    let mut kept: Vec<BTreeMap<K, V>> = Vec::with_capacity(conjs.len());
    for c in conjs {
        let covered = kept
            .iter()
            .any(|k| k.iter().all(|(f, v)| c.get(f) == Some(v)));
        if !covered {
            kept.push(c);
        }
    }
    kept.sort();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conj(terms: &[(&str, Value)]) -> Conj {
        terms
            .iter()
            .map(|(f, v)| ((*f).to_owned(), v.clone()))
            .collect()
    }

    fn dnf(cond: &Cond) -> Vec<Conj> {
        to_dnf("t", cond, &DnfLimits::default()).tables["t"].clone()
    }

    #[test]
    fn eq_is_one_term() {
        assert_eq!(dnf(&Cond::eq("id", 1)), vec![conj(&[("id", 1.into())])]);
    }

    #[test]
    fn whole_table_is_one_empty_conjunction() {
        assert_eq!(dnf(&Cond::all()), vec![Conj::new()]);
    }

    #[test]
    fn in_splits_into_terms_up_to_the_limit() {
        assert_eq!(
            dnf(&Cond::is_in("c", [1, 2, 2])),
            vec![conj(&[("c", 1.into())]), conj(&[("c", 2.into())])]
        );
        assert_eq!(dnf(&Cond::is_in("c", 0..9)), vec![Conj::new()]);
        assert_eq!(dnf(&Cond::is_in("c", 0..8)).len(), 8);
        assert_eq!(
            dnf(&Cond::is_in("c", Vec::<i32>::new())),
            Vec::<Conj>::new()
        );
    }

    #[test]
    fn is_null_is_a_null_term() {
        assert_eq!(dnf(&Cond::is_null("x")), vec![conj(&[("x", Value::Null)])]);
        assert_eq!(dnf(&Cond::eq("x", Value::Null)), dnf(&Cond::is_null("x")));
    }

    #[test]
    fn other_and_negation_widen() {
        let c = Cond::eq("c", 1).and(Cond::other("id > 5"));
        assert_eq!(dnf(&c), vec![conj(&[("c", 1.into())])]);
        assert_eq!(dnf(&Cond::eq("c", 1).not()), vec![Conj::new()]);
        let c = Cond::eq("c", 1).and(Cond::eq("a", 2).not());
        assert_eq!(dnf(&c), vec![conj(&[("c", 1.into())])]);
    }

    #[test]
    fn double_negation_is_precise() {
        assert_eq!(dnf(&Cond::eq("c", 1).not().not()), dnf(&Cond::eq("c", 1)));
    }

    #[test]
    fn de_morgan_keeps_granular_terms() {
        // NOT (NOT a OR NOT b) == a AND b
        let c = Cond::eq("a", 1).not().or(Cond::eq("b", 2).not()).not();
        assert_eq!(dnf(&c), vec![conj(&[("a", 1.into()), ("b", 2.into())])]);
    }

    #[test]
    fn contradictions_are_dropped() {
        let c = Cond::eq("c", 1).and(Cond::eq("c", 2));
        assert_eq!(dnf(&c), Vec::<Conj>::new());
        let c = Cond::is_in("c", [1, 2]).and(Cond::is_in("c", [2, 3]));
        assert_eq!(dnf(&c), vec![conj(&[("c", 2.into())])]);
    }

    #[test]
    fn or_distributes_over_and() {
        let c = Cond::eq("a", 1).or(Cond::eq("a", 2)).and(Cond::eq("b", 3));
        assert_eq!(
            dnf(&c),
            vec![
                conj(&[("a", 1.into()), ("b", 3.into())]),
                conj(&[("a", 2.into()), ("b", 3.into())])
            ]
        );
    }

    #[test]
    fn absorption_removes_narrower_conjunctions() {
        let c = Cond::eq("a", 1).or(Cond::eq("a", 1).and(Cond::eq("b", 2)));
        assert_eq!(dnf(&c), vec![conj(&[("a", 1.into())])]);
        let c = Cond::eq("a", 1).or(Cond::other("x"));
        assert_eq!(dnf(&c), vec![Conj::new()]);
    }

    #[test]
    fn empty_or_matches_nothing() {
        assert_eq!(dnf(&Cond::Or(vec![])), Vec::<Conj>::new());
        assert_eq!(dnf(&Cond::Or(vec![]).not()), vec![Conj::new()]);
    }

    #[test]
    fn joins_split_per_table() {
        let c = Cond::eq("category", 1).and(Cond::eq(("author", "name"), "ann"));
        let d = to_dnf("article", &c, &DnfLimits::default());
        assert_eq!(d.tables["article"], vec![conj(&[("category", 1.into())])]);
        assert_eq!(d.tables["author"], vec![conj(&[("name", "ann".into())])]);
        let c = Cond::eq("category", 1).and(Cond::other_on("author", "age > 3"));
        let d = to_dnf("article", &c, &DnfLimits::default());
        assert_eq!(d.tables["author"], vec![Conj::new()]);
    }

    #[test]
    fn skipped_fields_widen() {
        let skip = |_: &str, f: &str| f == "body";
        let limits = DnfLimits {
            skip: &skip,
            ..DnfLimits::default()
        };
        let c = Cond::eq("body", "x").and(Cond::eq("c", 1));
        assert_eq!(
            to_dnf("t", &c, &limits).tables["t"],
            vec![conj(&[("c", 1.into())])]
        );
    }

    #[test]
    fn blowup_is_capped_to_the_whole_table() {
        let mut c = Cond::all();
        for f in ["a", "b", "c", "d"] {
            c = c.and(Cond::is_in(f, 0..4)); // 256 combinations
        }
        assert_eq!(dnf(&c), vec![Conj::new()]);
    }

    // ---- property: the DNF never invalidates less than the condition can match ----

    const FIELDS: [(&str, &str); 4] = [("t", "a"), ("t", "b"), ("u", "x"), ("u", "y")];

    fn field_ref(i: usize) -> crate::cond::FieldRef {
        let (t, f) = FIELDS[i];
        if t == "t" {
            f.into()
        } else {
            (t, f).into()
        }
    }

    fn small_value() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), (0..3i64).prop_map(Value::from)]
    }

    fn cond_strategy() -> impl Strategy<Value = Cond> {
        let leaf = prop_oneof![
            (0..4usize, small_value()).prop_map(|(f, v)| Cond::Eq(field_ref(f), v)),
            (0..4usize, prop::collection::vec(small_value(), 0..4))
                .prop_map(|(f, vs)| Cond::In(field_ref(f), vs)),
            (0..4usize).prop_map(|f| Cond::IsNull(field_ref(f))),
            (0..2usize, 0..4u8).prop_map(|(t, n)| Cond::Other {
                table: (t == 1).then(|| "u".to_owned()),
                sql: format!("opaque{n}"),
            }),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Cond::And),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Cond::Or),
                inner.prop_map(|c| c.not()),
            ]
        })
    }

    /// Evaluates a condition on a joined row; opaque conditions read their answer from `oracle`.
    fn eval(c: &Cond, row: &BTreeMap<(String, String), Value>, oracle: &[bool; 4]) -> bool {
        let get = |f: &crate::cond::FieldRef| {
            row[&(
                f.table.clone().unwrap_or_else(|| "t".into()),
                f.name.clone(),
            )]
                .clone()
        };
        match c {
            Cond::Eq(f, v) => get(f) == *v,
            Cond::In(f, vs) => vs.contains(&get(f)),
            Cond::IsNull(f) => get(f).is_null(),
            Cond::And(cs) => cs.iter().all(|c| eval(c, row, oracle)),
            Cond::Or(cs) => cs.iter().any(|c| eval(c, row, oracle)),
            Cond::Not(c) => !eval(c, row, oracle),
            Cond::Other { sql, .. } => oracle[usize::from(sql.as_bytes()[6] - b'0')],
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn dnf_covers_every_matching_row(
            cond in cond_strategy(),
            values in prop::collection::vec(small_value(), 4),
            oracle in prop::array::uniform4(any::<bool>()),
            max_in in 1usize..5,
        ) {
            let row: BTreeMap<(String, String), Value> = FIELDS
                .iter()
                .zip(values)
                .map(|((t, f), v)| (((*t).to_owned(), (*f).to_owned()), v))
                .collect();
            let limits = DnfLimits { max_in, max_conjs: 6, ..DnfLimits::default() };
            let d = to_dnf("t", &cond, &limits);
            if eval(&cond, &row, &oracle) {
                for (table, conjs) in &d.tables {
                    let hit = conjs.iter().any(|c| {
                        c.iter().all(|(f, v)| row.get(&(table.clone(), f.clone())) == Some(v))
                    });
                    prop_assert!(hit, "table {table}: row {row:?} matches {cond:?} but no conjunction of {conjs:?}");
                }
            }
        }
    }
}
