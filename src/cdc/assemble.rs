//! Turns the stream's messages into [`TxChanges`]: keeps the relations, buffers a
//! transaction's row images from Begin to Commit.

use std::collections::HashSet;

use super::event::CdcEvent;
use super::names::TableNames;
use super::pgoutput::{self, Message, OldTuple};
use super::relation::{Relation, Relations};
use super::tx::TxChanges;
use super::{CdcError, Lsn};

/// The decoding state of one replication session, and what was already warned about.
pub(crate) struct Assembler {
    names: TableNames,
    max_rows: usize,
    relations: Relations,
    tx: Option<TxChanges>,
    warned_identity: HashSet<String>,
    warned_columns: HashSet<(String, String)>,
    /// The enum types' OIDs, as setup found them: their values are text.
    enums: HashSet<u32>,
}

impl Assembler {
    pub fn new(names: TableNames, max_rows: usize) -> Assembler {
        Assembler {
            names,
            max_rows,
            relations: Relations::default(),
            tx: None,
            warned_identity: HashSet::new(),
            warned_columns: HashSet::new(),
            enums: HashSet::new(),
        }
    }

    /// The enum types' OIDs (from setup; an enum created later stays unknown until the
    /// next session).
    pub fn set_enums(&mut self, enums: HashSet<u32>) {
        self.enums = enums;
    }

    /// A new session: the server sends every relation again; a transaction cut short by
    /// the disconnect is sent again whole.
    pub fn reset(&mut self) {
        self.relations = Relations::default();
        self.tx = None;
    }

    /// True between Begin and Commit.
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    pub fn begin(&mut self) {
        self.tx = Some(TxChanges::new(self.max_rows));
    }

    /// The transaction ends; its changes, to apply before acknowledging `end_lsn`.
    pub fn commit(&mut self, end_lsn: Lsn) -> Result<TxChanges, CdcError> {
        let mut tx = self
            .tx
            .take()
            .ok_or_else(|| CdcError::Protocol("Commit without Begin".into()))?;
        tx.end_lsn = end_lsn;
        Ok(tx)
    }

    /// One pgoutput message (anything but Begin and Commit, which the transport reports).
    pub fn message(
        &mut self,
        bytes: &[u8],
        emit: &mut dyn FnMut(&CdcEvent<'_>),
    ) -> Result<(), CdcError> {
        match pgoutput::decode(bytes)? {
            Message::Begin { .. } => self.begin(),
            Message::Commit { .. } => {
                return Err(CdcError::Protocol(
                    "a Commit message reached the decoder".into(),
                ))
            }
            Message::Relation(msg) => {
                let r = Relation::from_msg(&msg, &self.names, &self.enums);
                self.warn(&r, emit);
                self.relations.insert(msg.id, r);
            }
            Message::Insert { relation, new } => {
                let r = self.relations.get(relation)?;
                let image = r.image(&new, None)?;
                let table = r.table.clone();
                self.tx()?.add_rows(&table, [image]);
            }
            Message::Update { relation, old, new } => {
                let r = self.relations.get(relation)?;
                let old = match &old {
                    OldTuple::Full(t) => r.image(t, None)?,
                    OldTuple::Key(t) => r.key_image(t)?,
                    // The key did not change: the new row's key is the old one's. Other old
                    // values are unknown, so the image leaves them out (the core widens).
                    OldTuple::Absent => r.key_image(&new)?,
                };
                let new = r.image(&new, Some(&old))?;
                let table = r.table.clone();
                self.tx()?.add_rows(&table, [old, new]);
            }
            Message::Delete { relation, old } => {
                let r = self.relations.get(relation)?;
                let old = match &old {
                    OldTuple::Full(t) => r.image(t, None)?,
                    OldTuple::Key(t) => r.key_image(t)?,
                    // Not sent by pgoutput; an empty image widens to the whole table.
                    OldTuple::Absent => crate::Row::new(),
                };
                let table = r.table.clone();
                self.tx()?.add_rows(&table, [old]);
            }
            Message::Truncate { relations } => {
                let tables = relations
                    .iter()
                    .map(|&id| self.relations.get(id).map(|r| r.table.clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                let tx = self.tx()?;
                for t in &tables {
                    tx.add_table(t);
                }
            }
            Message::Other(_) => {}
        }
        Ok(())
    }

    fn tx(&mut self) -> Result<&mut TxChanges, CdcError> {
        self.tx
            .as_mut()
            .ok_or_else(|| CdcError::Protocol("a change outside a transaction".into()))
    }

    /// Warns once per table about a coarse replica identity, once per column about a type
    /// without a safe conversion.
    fn warn(&mut self, r: &Relation, emit: &mut dyn FnMut(&CdcEvent<'_>)) {
        if let Some((identity, fix)) = r.coarse_identity() {
            if self.warned_identity.insert(r.table.clone()) {
                emit(&CdcEvent::ReplicaIdentity {
                    table: &r.table,
                    identity,
                    fix: &fix,
                });
            }
        } else {
            // Fixed: warn again if it is ever set back.
            self.warned_identity.remove(&r.table);
        }
        for c in r.unknown_columns() {
            if self
                .warned_columns
                .insert((r.table.clone(), c.name.clone()))
            {
                emit(&CdcEvent::UnknownColumnType {
                    table: &r.table,
                    column: &c.name,
                    type_oid: c.type_oid,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Row;

    /// pgoutput bytes, built by hand.
    struct Msg(Vec<u8>);

    impl Msg {
        fn new(kind: u8) -> Msg {
            Msg(vec![kind])
        }
        fn u8(mut self, v: u8) -> Msg {
            self.0.push(v);
            self
        }
        fn u16(mut self, v: u16) -> Msg {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Msg {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn s(mut self, v: &str) -> Msg {
            self.0.extend_from_slice(v.as_bytes());
            self.0.push(0);
            self
        }
        /// A tuple: `Some(text)` or `None` for NULL.
        fn tuple(mut self, values: &[Option<&str>]) -> Msg {
            self = self.u16(values.len() as u16);
            for v in values {
                self = match v {
                    Some(t) => self.u8(b't').u32(t.len() as u32).raw(t.as_bytes()),
                    None => self.u8(b'n'),
                };
            }
            self
        }
        fn raw(mut self, b: &[u8]) -> Msg {
            self.0.extend_from_slice(b);
            self
        }
    }

    /// `public.article (id int4 key, category int4)` with identity `identity`.
    fn relation(identity: u8) -> Vec<u8> {
        let mut m = Msg::new(b'R')
            .u32(7)
            .s("public")
            .s("article")
            .u8(identity)
            .u16(2);
        for (key, name) in [(1u8, "id"), (0, "category")] {
            m = m.u8(key).s(name).u32(23).u32(u32::MAX);
        }
        m.0
    }

    fn feed(identity: u8, changes: &[Vec<u8>]) -> (TxChanges, Vec<String>) {
        let mut asm = Assembler::new(TableNames::new(), 100);
        let mut events = Vec::new();
        let mut emit = |e: &CdcEvent<'_>| events.push(format!("{e:?}"));
        asm.message(&relation(identity), &mut emit).unwrap();
        asm.begin();
        for c in changes {
            asm.message(c, &mut emit).unwrap();
        }
        (asm.commit(Lsn(42)).unwrap(), events)
    }

    fn row(id: i64, category: Option<i64>) -> Row {
        let r = Row::new().with("id", id);
        match category {
            Some(c) => r.with("category", c),
            None => r,
        }
    }

    #[test]
    fn changes_become_old_and_new_images() {
        let insert = Msg::new(b'I')
            .u32(7)
            .u8(b'N')
            .tuple(&[Some("1"), Some("1")])
            .0;
        let update = Msg::new(b'U')
            .u32(7)
            .u8(b'O')
            .tuple(&[Some("1"), Some("1")])
            .u8(b'N')
            .tuple(&[Some("1"), Some("2")])
            .0;
        let delete = Msg::new(b'D')
            .u32(7)
            .u8(b'O')
            .tuple(&[Some("1"), Some("2")])
            .0;
        let (tx, events) = feed(b'f', &[insert, update, delete]);
        assert_eq!(tx.end_lsn, Lsn(42));
        let rows: Vec<(&str, &[Row])> = tx.rows().collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, "article");
        assert_eq!(
            rows[0].1,
            [
                row(1, Some(1)),
                row(1, Some(1)),
                row(1, Some(2)),
                row(1, Some(2))
            ]
        );
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn identity_default_sends_keys_only_and_is_warned_once() {
        // No old tuple (the key did not change): the old image is the key alone.
        let update = Msg::new(b'U')
            .u32(7)
            .u8(b'N')
            .tuple(&[Some("1"), Some("2")])
            .0;
        // A key-only old tuple: the other columns are placeholders, not NULLs.
        let delete = Msg::new(b'D').u32(7).u8(b'K').tuple(&[Some("1"), None]).0;
        let (tx, events) = feed(b'd', &[update, delete]);
        let (_, rows) = tx.rows().next().unwrap();
        assert_eq!(rows, [row(1, None), row(1, Some(2)), row(1, None)]);
        assert_eq!(rows[0].get("category"), None);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].contains("REPLICA IDENTITY FULL"));
    }

    #[test]
    fn truncates_and_protocol_errors() {
        let truncate = Msg::new(b'T').u32(1).u8(0).u32(7).0;
        let (tx, _) = feed(b'f', &[truncate]);
        assert_eq!(tx.tables().collect::<Vec<_>>(), ["article"]);
        assert!(tx.rows().next().is_none());

        let mut asm = Assembler::new(TableNames::new(), 100);
        let mut emit = |_: &CdcEvent<'_>| {};
        asm.begin();
        let unknown = Msg::new(b'I').u32(8).u8(b'N').tuple(&[Some("1")]).0;
        assert!(matches!(
            asm.message(&unknown, &mut emit),
            Err(CdcError::Protocol(_))
        ));
        asm.message(&relation(b'f'), &mut emit).unwrap();
        let short = Msg::new(b'I').u32(7).u8(b'N').tuple(&[Some("1")]).0;
        assert!(matches!(
            asm.message(&short, &mut emit),
            Err(CdcError::Protocol(_))
        ));
        let _ = asm.commit(Lsn(1)).unwrap();
        assert!(asm.commit(Lsn(2)).is_err(), "Commit without Begin");
        let outside = Msg::new(b'I')
            .u32(7)
            .u8(b'N')
            .tuple(&[Some("1"), Some("1")])
            .0;
        assert!(
            asm.message(&outside, &mut emit).is_err(),
            "a change outside a transaction"
        );
    }
}
