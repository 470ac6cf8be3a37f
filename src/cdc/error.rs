//! [`CdcError`]: what stops the change-stream consumer, each saying what to change.

use crate::Error;

/// Why the consumer cannot start or had to reconnect.
///
/// Setup errors name the fix (the SQL or the setting to change).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdcError {
    /// A builder option is not usable (a bad name, a bad connection string).
    #[error("cdc configuration: {0}")]
    Config(String),
    /// The server does not write logical WAL.
    #[error(
        "wal_level is {found:?}, logical replication needs \"logical\": \
         set wal_level = logical in postgresql.conf and restart PostgreSQL"
    )]
    WalLevel {
        /// The server's `wal_level`.
        found: String,
    },
    /// The publication does not exist and the consumer was not asked to create it.
    #[error(
        "publication {publication:?} does not exist: run CREATE PUBLICATION {publication} \
         FOR TABLE <tables>, or call ConsumerBuilder::create_publication"
    )]
    PublicationMissing {
        /// The publication's name.
        publication: String,
    },
    /// The publication leaves out some operations, whose writes would never invalidate.
    #[error(
        "publication {publication:?} does not publish {missing}: run ALTER PUBLICATION \
         {publication} SET (publish = 'insert, update, delete, truncate')"
    )]
    PublicationIncomplete {
        /// The publication's name.
        publication: String,
        /// The operations it leaves out, comma-separated.
        missing: String,
    },
    /// The publication filters rows of a table: writes to filtered-out rows would never
    /// invalidate the reads that cover them.
    #[error(
        "publication {publication:?} has a row filter on {table}: remove it (ALTER PUBLICATION \
         {publication} SET TABLE ... without WHERE), or publish the table in another publication"
    )]
    PublicationRowFilter {
        /// The publication's name.
        publication: String,
        /// The filtered table.
        table: String,
    },
    /// The publication sends writes to a partition under the partition's name, while reads
    /// name the partitioned table: they would never be invalidated.
    #[error(
        "publication {publication:?} publishes partition {table} under its own name: run \
         ALTER PUBLICATION {publication} SET (publish_via_partition_root = true)"
    )]
    PublicationPartitions {
        /// The publication's name.
        publication: String,
        /// A published partition.
        table: String,
    },
    /// The replication slot does not exist and the consumer was not asked to create it.
    #[error(
        "replication slot {slot:?} does not exist: run SELECT pg_create_logical_replication_slot\
         ('{slot}', 'pgoutput'), or call ConsumerBuilder::create_slot"
    )]
    SlotMissing {
        /// The slot's name.
        slot: String,
    },
    /// The slot exists but cannot serve this consumer.
    #[error("replication slot {slot:?} {problem}")]
    SlotUnusable {
        /// The slot's name.
        slot: String,
        /// What is wrong with it, and what to do.
        problem: String,
    },
    /// Another session (another consumer) streams from the slot: PostgreSQL lets one session
    /// at a time hold a slot. Not a failure: the consumer waits on standby and takes over
    /// once the slot is free ([`Status::Standby`](super::Status::Standby)).
    #[error("replication slot {slot:?} is in use by {}: standing by to take over", holder(.pid))]
    SlotActive {
        /// The slot's name.
        slot: String,
        /// The server process (walsender) holding it, when the server said.
        pid: Option<u32>,
    },
    /// Connecting or authenticating failed, or the connection broke.
    #[error("postgresql connection: {0}")]
    Connection(String),
    /// The server refused a command.
    #[error("postgresql: {0}")]
    Server(String),
    /// The stream carried bytes that are not what pgoutput sends.
    #[error("replication protocol: {0}")]
    Protocol(String),
    /// The cache refused an invalidation (it is retried).
    #[error("cache: {0}")]
    Cache(#[from] Error),
    /// The consumer was stopped.
    #[error("the consumer was stopped")]
    Stopped,
}

impl CdcError {
    /// True for errors that reconnecting may cure (connection, server, protocol);
    /// false for configuration and setup errors, which need a change first.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CdcError::Connection(_)
                | CdcError::Server(_)
                | CdcError::Protocol(_)
                | CdcError::Cache(_)
                | CdcError::SlotActive { .. }
        )
    }

    /// A server error saying another session holds `slot` (SQLSTATE 55006, "replication slot
    /// … is active for PID …"; or 42710, a temporary slot of that name exists) becomes
    /// [`CdcError::SlotActive`]; any other error is returned as it is.
    pub(crate) fn slot_in_use(self, slot: &str) -> CdcError {
        let CdcError::Server(message) = &self else {
            return self;
        };
        let busy = message.contains("(SQLSTATE 55006)") && message.contains("is active for PID");
        let exists = message.contains("(SQLSTATE 42710)");
        if !busy && !exists {
            return self;
        }
        let pid = message
            .split("for PID ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok());
        CdcError::SlotActive {
            slot: slot.to_owned(),
            pid,
        }
    }
}

impl From<pgwire_replication::PgWireError> for CdcError {
    fn from(e: pgwire_replication::PgWireError) -> Self {
        use pgwire_replication::PgWireError as P;
        match e {
            P::Server(m) => CdcError::Server(m),
            P::Protocol(m) => CdcError::Protocol(m),
            other => CdcError::Connection(other.to_string()),
        }
    }
}

/// Who holds a slot, in words.
fn holder(pid: &Option<u32>) -> String {
    match pid {
        Some(p) => format!("the server process with PID {p}"),
        None => "another session".to_owned(),
    }
}

impl From<super::pgoutput::DecodeError> for CdcError {
    fn from(e: super::pgoutput::DecodeError) -> Self {
        CdcError::Protocol(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::CdcError;

    #[test]
    fn a_slot_held_elsewhere_is_recognised_and_nothing_else_is() {
        let e = CdcError::Server(
            "replication slot \"s\" is active for PID 4242 (SQLSTATE 55006)".into(),
        )
        .slot_in_use("s");
        assert!(
            matches!(&e, CdcError::SlotActive { slot, pid: Some(4242) } if slot == "s"),
            "{e:?}"
        );
        assert!(e.to_string().contains("PID 4242"), "{e}");
        let e = CdcError::Server("replication slot \"t\" already exists (SQLSTATE 42710)".into())
            .slot_in_use("t");
        assert!(matches!(e, CdcError::SlotActive { pid: None, .. }), "{e:?}");
        for other in [
            CdcError::Server("permission denied (SQLSTATE 42501)".into()),
            CdcError::Server("is active for PID 12".into()),
            CdcError::Connection("is active for PID 1 (SQLSTATE 55006)".into()),
        ] {
            let text = other.to_string();
            assert_eq!(other.slot_in_use("s").to_string(), text);
        }
    }
}
