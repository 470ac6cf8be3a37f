//! What the consumer knows of each relation (from Relation messages), and row images built
//! from its tuples.

use std::collections::{HashMap, HashSet};

use super::names::TableNames;
use super::pgoutput::{Datum, RelationMsg, Tuple};
use super::types;
use super::CdcError;
use crate::Row;

/// One relation as the latest Relation message described it.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    /// Schema-qualified name, quoted for SQL (`"public"."article"`).
    pub qualified: String,
    /// The cache's name for it.
    pub table: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub identity: u8,
    /// Its columns, in tuple order.
    pub columns: Vec<Column>,
}

/// One column.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub type_oid: u32,
    pub key: bool,
}

impl Relation {
    /// The relation a Relation message describes, named for the cache. Columns of an enum
    /// type (`enums`: their OIDs) convert as text.
    pub fn from_msg(msg: &RelationMsg, names: &TableNames, enums: &HashSet<u32>) -> Relation {
        Relation {
            qualified: format!("{}.{}", quote_ident(&msg.schema), quote_ident(&msg.name)),
            table: names.name(&msg.schema, &msg.name),
            identity: msg.replica_identity,
            columns: msg
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    type_oid: if enums.contains(&c.type_oid) {
                        types::TEXT
                    } else {
                        c.type_oid
                    },
                    key: c.key,
                })
                .collect(),
        }
    }

    /// The identity's name when it is not `FULL` (old rows then carry the key only, or
    /// nothing), with the statement that fixes it.
    pub fn coarse_identity(&self) -> Option<(&'static str, String)> {
        let name = match self.identity {
            b'f' => return None,
            b'd' => "default",
            b'i' => "index",
            b'n' => "nothing",
            _ => "unknown",
        };
        Some((
            name,
            format!("ALTER TABLE {} REPLICA IDENTITY FULL", self.qualified),
        ))
    }

    /// The columns whose type has no safe conversion.
    pub fn unknown_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !types::is_known(c.type_oid))
    }

    fn check(&self, t: &Tuple) -> Result<(), CdcError> {
        if t.len() == self.columns.len() {
            Ok(())
        } else {
            Err(CdcError::Protocol(format!(
                "a tuple of {} has {} columns, its relation {}",
                self.qualified,
                t.len(),
                self.columns.len()
            )))
        }
    }

    /// The row image of a whole tuple. Unchanged TOASTed values come from `old` when it has
    /// them; those and values of unknown types are left out (never guessed).
    pub fn image(&self, t: &Tuple, old: Option<&Row>) -> Result<Row, CdcError> {
        self.check(t)?;
        let mut row = Row::new();
        for (col, datum) in self.columns.iter().zip(t) {
            match datum {
                Datum::Null => row.insert(col.name.clone(), crate::Value::Null),
                Datum::Text(text) => {
                    if let Some(v) = types::convert(col.type_oid, text) {
                        row.insert(col.name.clone(), v);
                    }
                }
                Datum::Unchanged => {
                    if let Some(v) = old.and_then(|o| o.get(&col.name)) {
                        row.insert(col.name.clone(), v.clone());
                    }
                }
                Datum::Binary(_) => {}
            }
        }
        Ok(row)
    }

    /// The key columns of a tuple only (a `K` old tuple sends the others as placeholders).
    pub fn key_image(&self, t: &Tuple) -> Result<Row, CdcError> {
        let mut row = self.image(t, None)?;
        for col in self.columns.iter().filter(|c| !c.key) {
            row.remove(&col.name);
        }
        Ok(row)
    }
}

/// The relations of the current session, by id. A new Relation message replaces the entry
/// (a schema change); a reconnect starts empty, as the server sends them again.
#[derive(Debug, Default)]
pub(crate) struct Relations(HashMap<u32, Relation>);

impl Relations {
    pub fn insert(&mut self, id: u32, r: Relation) {
        self.0.insert(id, r);
    }

    pub fn get(&self, id: u32) -> Result<&Relation, CdcError> {
        self.0.get(&id).ok_or_else(|| {
            CdcError::Protocol(format!(
                "a change of relation {id} came before its description"
            ))
        })
    }
}

/// `name` quoted as an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::pgoutput::ColumnMsg;
    use crate::Value;

    fn article(identity: u8) -> Relation {
        let col = |key, name: &str, type_oid| ColumnMsg {
            key,
            name: name.into(),
            type_oid,
        };
        let msg = RelationMsg {
            id: 1,
            schema: "public".into(),
            name: "article".into(),
            replica_identity: identity,
            columns: vec![
                col(true, "id", 23),
                col(false, "category", 23),
                col(false, "body", 25),
                col(false, "price", 3802),
            ],
        };
        Relation::from_msg(&msg, &TableNames::new(), &HashSet::new())
    }

    fn t(v: &str) -> Datum {
        Datum::Text(v.as_bytes().to_vec())
    }

    #[test]
    fn images_convert_and_leave_out_what_is_unknown() {
        let r = article(b'f');
        assert_eq!(r.table, "article");
        let old = r
            .image(&vec![t("1"), t("2"), t("long"), t("3.5")], None)
            .unwrap();
        assert_eq!(old.get("category"), Some(&Value::from(2)));
        assert_eq!(old.get("price"), None, "jsonb is unknown");
        let new = r
            .image(
                &vec![t("1"), Datum::Null, Datum::Unchanged, t("4")],
                Some(&old),
            )
            .unwrap();
        assert_eq!(new.get("category"), Some(&Value::Null));
        assert_eq!(
            new.get("body"),
            Some(&Value::from("long")),
            "unchanged TOAST from the old row"
        );
        let alone = r
            .image(&vec![t("1"), t("2"), Datum::Unchanged, t("4")], None)
            .unwrap();
        assert_eq!(
            alone.get("body"),
            None,
            "unchanged TOAST without an old row is unknown"
        );
        assert!(r.image(&vec![t("1")], None).is_err());
        assert_eq!(
            r.unknown_columns()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["price"]
        );
    }

    #[test]
    fn key_images_hold_the_key_only() {
        let r = article(b'd');
        let key = r
            .key_image(&vec![t("1"), Datum::Null, Datum::Null, Datum::Null])
            .unwrap();
        assert_eq!(key, Row::new().with("id", 1));
        let (name, fix) = r.coarse_identity().unwrap();
        assert_eq!(name, "default");
        assert_eq!(
            fix,
            r#"ALTER TABLE "public"."article" REPLICA IDENTITY FULL"#
        );
        assert!(article(b'f').coarse_identity().is_none());
    }
}
