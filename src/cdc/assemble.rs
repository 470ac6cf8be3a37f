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
        }
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
                let r = Relation::from_msg(&msg, &self.names);
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
