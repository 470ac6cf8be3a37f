//! The pgoutput logical replication messages (protocol version 1), decoded from the bytes of
//! one `XLogData` payload.
//!
//! Decoding never panics: truncated or malformed input is a [`DecodeError`] naming the
//! message and what was wrong. Column values stay as PostgreSQL sent them (text); turning
//! them into [`Value`](crate::Value)s needs the column types and is done in `relation.rs`.

use std::fmt;

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// A transaction starts; its changes follow, then [`Message::Commit`].
    Begin {
        /// Where the transaction's commit record ends up.
        final_lsn: u64,
    },
    /// The transaction ended.
    Commit {
        /// The end of the commit record: the position to acknowledge.
        end_lsn: u64,
    },
    /// A relation's description, sent before its first change in a session and again
    /// after its schema changed.
    Relation(RelationMsg),
    /// A row was inserted.
    Insert {
        /// The relation id (its OID).
        relation: u32,
        /// The new row.
        new: Tuple,
    },
    /// A row was updated.
    Update {
        /// The relation id.
        relation: u32,
        /// The old row: its key columns (`Key`), the whole row (`Full`) or nothing, when
        /// the replica identity did not change (identity `DEFAULT` or `INDEX`).
        old: OldTuple,
        /// The new row.
        new: Tuple,
    },
    /// A row was deleted.
    Delete {
        /// The relation id.
        relation: u32,
        /// The old row: key columns or the whole row.
        old: OldTuple,
    },
    /// Relations were truncated.
    Truncate {
        /// Their relation ids.
        relations: Vec<u32>,
    },
    /// Something that changes no row (origin, type, logical message): skipped.
    Other(u8),
}

/// A Relation message: the columns of a relation as the following changes send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelationMsg {
    /// The relation's OID.
    pub id: u32,
    /// Its schema (`pg_catalog` when PostgreSQL sent an empty name).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Its columns, in order.
    pub columns: Vec<ColumnMsg>,
}

/// One column of a [`RelationMsg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnMsg {
    /// Part of the replica identity key.
    pub key: bool,
    /// The column's name.
    pub name: String,
    /// Its type's OID.
    pub type_oid: u32,
}

/// The old row of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OldTuple {
    /// Not sent (the key did not change, under identity `DEFAULT` or `INDEX`).
    Absent,
    /// The replica identity's key columns only; the other columns are null placeholders.
    Key(Tuple),
    /// The whole old row (identity `FULL`).
    Full(Tuple),
}

/// One column value of a tuple, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Datum {
    /// SQL `NULL`.
    Null,
    /// An unchanged TOASTed value: not sent.
    Unchanged,
    /// The value in text form.
    Text(Vec<u8>),
    /// The value in binary form (only sent when binary mode is asked for, which we do not).
    Binary(Vec<u8>),
}

/// The column values of one row, in the relation's column order.
pub(crate) type Tuple = Vec<Datum>;

/// Bytes that are not a pgoutput message of the version we asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The message kind (its first byte, as a character), or `?` for an empty payload.
    pub kind: char,
    /// What was wrong.
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgoutput message '{}': {}", self.kind, self.what)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one pgoutput message.
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let Some((&kind, rest)) = bytes.split_first() else {
        return Err(DecodeError {
            kind: '?',
            what: "empty payload".into(),
        });
    };
    let mut r = Reader {
        buf: rest,
        kind: kind as char,
    };
    let msg = match kind {
        b'B' => {
            let final_lsn = r.u64("final LSN")?;
            r.skip(8 + 4, "commit time and xid")?;
            Message::Begin { final_lsn }
        }
        b'C' => {
            r.skip(1 + 8, "flags and commit LSN")?;
            let end_lsn = r.u64("end LSN")?;
            r.skip(8, "commit time")?;
            Message::Commit { end_lsn }
        }
        b'R' => Message::Relation(relation(&mut r)?),
        b'I' => {
            let relation = r.u32("relation id")?;
            r.expect(b'N', "new tuple marker")?;
            Message::Insert {
                relation,
                new: tuple(&mut r)?,
            }
        }
        b'U' => {
            let relation = r.u32("relation id")?;
            let old = match r.u8("tuple marker")? {
                b'K' => {
                    let old = OldTuple::Key(tuple(&mut r)?);
                    r.expect(b'N', "new tuple marker")?;
                    old
                }
                b'O' => {
                    let old = OldTuple::Full(tuple(&mut r)?);
                    r.expect(b'N', "new tuple marker")?;
                    old
                }
                b'N' => OldTuple::Absent,
                other => return Err(r.error(format!("unknown tuple marker {other:#04x}"))),
            };
            Message::Update {
                relation,
                old,
                new: tuple(&mut r)?,
            }
        }
        b'D' => {
            let relation = r.u32("relation id")?;
            let old = match r.u8("tuple marker")? {
                b'K' => OldTuple::Key(tuple(&mut r)?),
                b'O' => OldTuple::Full(tuple(&mut r)?),
                other => return Err(r.error(format!("unknown tuple marker {other:#04x}"))),
            };
            Message::Delete { relation, old }
        }
        b'T' => {
            let n = r.u32("relation count")?;
            r.skip(1, "options")?;
            // Bounded by the bytes present, so a bad count cannot allocate much.
            if n as usize > r.buf.len() / 4 {
                return Err(r.error(format!("{n} relations announced, fewer sent")));
            }
            let relations = (0..n)
                .map(|_| r.u32("relation id"))
                .collect::<Result<_, _>>()?;
            Message::Truncate { relations }
        }
        // Origin, Type, logical decoding Message: nothing to invalidate.
        b'O' | b'Y' | b'M' => return Ok(Message::Other(kind)),
        other => {
            return Err(DecodeError {
                kind: other as char,
                what: "unknown message kind".into(),
            })
        }
    };
    if !r.buf.is_empty() {
        return Err(r.error(format!("{} bytes left over", r.buf.len())));
    }
    Ok(msg)
}

fn relation(r: &mut Reader<'_>) -> Result<RelationMsg, DecodeError> {
    let id = r.u32("relation id")?;
    let mut schema = r.string("namespace")?;
    if schema.is_empty() {
        schema = "pg_catalog".into();
    }
    let name = r.string("relation name")?;
    let replica_identity = r.u8("replica identity")?;
    let n = r.u16("column count")?;
    let mut columns = Vec::with_capacity(usize::from(n).min(r.buf.len() / 10));
    for _ in 0..n {
        let flags = r.u8("column flags")?;
        let name = r.string("column name")?;
        let type_oid = r.u32("column type")?;
        r.skip(4, "type modifier")?;
        columns.push(ColumnMsg {
            key: flags & 1 == 1,
            name,
            type_oid,
        });
    }
    Ok(RelationMsg {
        id,
        schema,
        name,
        replica_identity,
        columns,
    })
}

fn tuple(r: &mut Reader<'_>) -> Result<Tuple, DecodeError> {
    let n = r.u16("column count")?;
    let mut values = Vec::with_capacity(usize::from(n).min(r.buf.len()));
    for _ in 0..n {
        let datum = match r.u8("column kind")? {
            b'n' => Datum::Null,
            b'u' => Datum::Unchanged,
            b't' => Datum::Text(r.sized("text value")?),
            b'b' => Datum::Binary(r.sized("binary value")?),
            other => return Err(r.error(format!("unknown column kind {other:#04x}"))),
        };
        values.push(datum);
    }
    Ok(values)
}

/// A cursor over a message's bytes; every read checks the length first.
struct Reader<'a> {
    buf: &'a [u8],
    kind: char,
}

impl<'a> Reader<'a> {
    fn error(&self, what: String) -> DecodeError {
        DecodeError {
            kind: self.kind,
            what,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(self.error(format!(
                "truncated at {what}: {n} bytes needed, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn skip(&mut self, n: usize, what: &str) -> Result<(), DecodeError> {
        self.take(n, what).map(drop)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), DecodeError> {
        let got = self.u8(what)?;
        if got == byte {
            Ok(())
        } else {
            Err(self.error(format!(
                "expected {what} {:?}, got {got:#04x}",
                byte as char
            )))
        }
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(self.error(format!("{what} is not NUL-terminated")));
        };
        let s = self.take(end, what)?;
        self.skip(1, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.error(format!("{what} is not UTF-8")))
    }

    /// A value preceded by its length (Int32).
    fn sized(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }

    fn relation_bytes() -> Vec<u8> {
        let mut b = vec![b'R'];
        b.extend_from_slice(&16_385u32.to_be_bytes());
        s(&mut b, "public");
        s(&mut b, "article");
        b.push(b'f');
        b.extend_from_slice(&2u16.to_be_bytes());
        for (flags, name, oid) in [(1u8, "id", 23u32), (0, "title", 25)] {
            b.push(flags);
            s(&mut b, name);
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
        }
        b
    }

    fn tuple_bytes(b: &mut Vec<u8>) {
        b.extend_from_slice(&3u16.to_be_bytes());
        b.push(b't');
        b.extend_from_slice(&1u32.to_be_bytes());
        b.push(b'7');
        b.push(b'n');
        b.push(b'u');
    }

    #[test]
    fn relations_and_changes_decode() {
        let Message::Relation(rel) = decode(&relation_bytes()).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(rel.id, 16_385);
        assert_eq!(
            (rel.schema.as_str(), rel.name.as_str()),
            ("public", "article")
        );
        assert_eq!(rel.replica_identity, b'f');
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!(rel.columns[1].type_oid, 25);

        let mut u = vec![b'U'];
        u.extend_from_slice(&16_385u32.to_be_bytes());
        u.push(b'O');
        tuple_bytes(&mut u);
        u.push(b'N');
        tuple_bytes(&mut u);
        let want = vec![Datum::Text(b"7".to_vec()), Datum::Null, Datum::Unchanged];
        assert_eq!(
            decode(&u).unwrap(),
            Message::Update {
                relation: 16_385,
                old: OldTuple::Full(want.clone()),
                new: want,
            }
        );
    }

    #[test]
    fn bad_bytes_are_typed_errors_never_panics() {
        assert_eq!(decode(&[]).unwrap_err().kind, '?');
        assert!(decode(b"Z").is_err());
        let full = relation_bytes();
        // Every truncation of a valid message is an error, not a panic.
        for n in 1..full.len() {
            assert!(decode(&full[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut t = vec![b'T'];
        t.extend_from_slice(&u32::MAX.to_be_bytes());
        t.push(0);
        assert!(decode(&t).unwrap_err().what.contains("announced"));
        let mut extra = full.clone();
        extra.push(1);
        assert!(decode(&extra).unwrap_err().what.contains("left over"));
        // Arbitrary garbage after each kind byte.
        for kind in [b'B', b'C', b'R', b'I', b'U', b'D', b'T'] {
            for len in 0..40u8 {
                let junk: Vec<u8> = std::iter::once(kind)
                    .chain((0..len).map(|i| i.wrapping_mul(37).wrapping_add(kind)))
                    .collect();
                let _ = decode(&junk);
            }
        }
    }

    #[test]
    fn truncate_lists_relations() {
        let mut t = vec![b'T'];
        t.extend_from_slice(&2u32.to_be_bytes());
        t.push(0);
        t.extend_from_slice(&5u32.to_be_bytes());
        t.extend_from_slice(&6u32.to_be_bytes());
        assert_eq!(
            decode(&t).unwrap(),
            Message::Truncate {
                relations: vec![5, 6]
            }
        );
    }
}
