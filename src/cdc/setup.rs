//! Setup on the replication session, before streaming: checks `wal_level`, the
//! publication and the slot, creates them when asked, and lists the published tables.

use std::collections::HashSet;

use pgwire_replication::ReplicationClient;

use super::consumer::{PublicationTables, Settings, SlotKind};
use super::relation::quote_ident;
use super::sink::Target;
use super::{CdcError, Lsn};

/// What setup found.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The published tables, `(schema, table)`.
    pub published: Vec<(String, String)>,
    /// Changes before this session's start may have been missed (a new or temporary slot):
    /// every published table must be invalidated before streaming.
    pub invalidate_all: bool,
    /// The slot's confirmed position: everything before it is applied once every
    /// published table is invalidated.
    pub start_lsn: Lsn,
    /// The OIDs of the database's enum types.
    pub enums: HashSet<u32>,
}

type Rows = Vec<Vec<Option<String>>>;

pub(crate) async fn query(client: &mut ReplicationClient, sql: &str) -> Result<Rows, CdcError> {
    let rows = client.simple_query(sql).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .collect()
        })
        .collect())
}

/// The first column of the first row.
async fn scalar(client: &mut ReplicationClient, sql: &str) -> Result<String, CdcError> {
    query(client, sql)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .ok_or_else(|| CdcError::Protocol(format!("no value from {sql:?}")))
}

/// `s` as an SQL string literal.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs every check, creating the publication and the slot when the settings ask.
pub(crate) async fn prepare(
    client: &mut ReplicationClient,
    cfg: &Settings,
    target: &Target,
) -> Result<Prepared, CdcError> {
    let wal_level = scalar(client, "SHOW wal_level").await?;
    if wal_level != "logical" {
        return Err(CdcError::WalLevel { found: wal_level });
    }
    let version: u32 = scalar(client, "SHOW server_version_num")
        .await?
        .parse()
        .map_err(|_| CdcError::Protocol("server_version_num is not a number".into()))?;

    publication(client, cfg, version).await?;
    let published = query(
        client,
        &format!(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = {}",
            literal(&cfg.publication)
        ),
    )
    .await?
    .into_iter()
    .filter_map(|r| match r.as_slice() {
        [Some(s), Some(t)] => Some((s.clone(), t.clone())),
        _ => None,
    })
    .collect();

    let invalidate_all = slot(client, cfg, version, target).await?;
    let start_lsn = query(
        client,
        &format!(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = {}",
            literal(&cfg.slot)
        ),
    )
    .await?
    .into_iter()
    .next()
    .and_then(|r| r.into_iter().next().flatten())
    .and_then(|s| s.parse().ok())
    .unwrap_or(Lsn::ZERO);
    let enums = query(client, "SELECT oid::text FROM pg_type WHERE typtype = 'e'")
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
        .collect();
    Ok(Prepared {
        published,
        invalidate_all,
        start_lsn,
        enums,
    })
}

async fn publication(
    client: &mut ReplicationClient,
    cfg: &Settings,
    version: u32,
) -> Result<(), CdcError> {
    let name = &cfg.publication;
    let select = format!(
        "SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = {}",
        literal(name)
    );
    let mut rows = query(client, &select).await?;
    if rows.is_empty() {
        let Some(tables) = &cfg.create_publication else {
            return Err(CdcError::PublicationMissing {
                publication: name.clone(),
            });
        };
        let target = match tables {
            PublicationTables::All => "ALL TABLES".to_owned(),
            PublicationTables::Tables(t) => format!("TABLE {}", t.join(", ")),
        };
        // Partitions' writes are published under their root's name, the one reads use.
        let with = if version >= 130_000 {
            " WITH (publish_via_partition_root = true)"
        } else {
            ""
        };
        query(
            client,
            &format!(
                "CREATE PUBLICATION {} FOR {target}{with}",
                quote_ident(name)
            ),
        )
        .await?;
        rows = query(client, &select).await?;
    }
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| CdcError::PublicationMissing {
            publication: name.clone(),
        })?;
    let missing: Vec<&str> = ["insert", "update", "delete", "truncate"]
        .into_iter()
        .zip(&row)
        .filter(|(_, v)| v.as_deref() != Some("t"))
        .map(|(op, _)| op)
        .collect();
    if !missing.is_empty() {
        return Err(CdcError::PublicationIncomplete {
            publication: name.clone(),
            missing: missing.join(", "),
        });
    }
    if version >= 130_000 {
        let partitions = query(
            client,
            &format!(
                "SELECT t.schemaname || '.' || t.tablename FROM pg_publication_tables t \
                 JOIN pg_namespace n ON n.nspname = t.schemaname \
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename \
                 WHERE t.pubname = {} AND c.relispartition LIMIT 1",
                literal(name)
            ),
        )
        .await?;
        if let Some(table) = partitions
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
        {
            return Err(CdcError::PublicationPartitions {
                publication: name.clone(),
                table,
            });
        }
    }
    if version >= 150_000 {
        let filtered = query(
            client,
            &format!(
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables \
                 WHERE pubname = {} AND rowfilter IS NOT NULL LIMIT 1",
                literal(name)
            ),
        )
        .await?;
        if let Some(table) = filtered
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
        {
            return Err(CdcError::PublicationRowFilter {
                publication: name.clone(),
                table,
            });
        }
    }
    Ok(())
}

/// Checks (or creates) the slot; true when it was just created (nothing before it streams).
///
/// Before creating a persistent slot, the position published for it is deleted: it is
/// written again only after the new slot's invalidation of every published table, so a
/// crash in between leaves no key, and the next start invalidates everything again.
async fn slot(
    client: &mut ReplicationClient,
    cfg: &Settings,
    version: u32,
    target: &Target,
) -> Result<bool, CdcError> {
    let name = &cfg.slot;
    if cfg.slot_kind == SlotKind::Temporary {
        // A temporary slot of this name belongs to another live session: stand by.
        query(
            client,
            &format!("CREATE_REPLICATION_SLOT {name} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT"),
        )
        .await
        .map_err(|e| e.slot_in_use(name))?;
        return Ok(true);
    }
    let status = if version >= 130_000 {
        "wal_status"
    } else {
        "NULL"
    };
    let rows = query(
        client,
        &format!(
            "SELECT plugin, database = current_database(), {status} FROM pg_replication_slots \
             WHERE slot_name = {}",
            literal(name)
        ),
    )
    .await?;
    let Some(row) = rows.into_iter().next() else {
        if !cfg.create_slot {
            return Err(CdcError::SlotMissing { slot: name.clone() });
        }
        target.forget(name).await?;
        // Another consumer may have created it since: stand by, then use it.
        query(
            client,
            &format!("CREATE_REPLICATION_SLOT {name} LOGICAL pgoutput NOEXPORT_SNAPSHOT"),
        )
        .await
        .map_err(|e| e.slot_in_use(name))?;
        return Ok(true);
    };
    let unusable = |problem: String| CdcError::SlotUnusable {
        slot: name.clone(),
        problem,
    };
    match row.as_slice() {
        [plugin, same_db, wal_status] => {
            if plugin.as_deref() != Some("pgoutput") {
                return Err(unusable(format!(
                    "uses the output plugin {:?}, not pgoutput: drop it (SELECT \
                     pg_drop_replication_slot({})) or pick another slot name",
                    plugin.as_deref().unwrap_or("(none: a physical slot)"),
                    literal(name)
                )));
            }
            if same_db.as_deref() != Some("t") {
                return Err(unusable(
                    "belongs to another database: connect to that database or pick another slot name"
                        .into(),
                ));
            }
            if wal_status.as_deref() == Some("lost") {
                return Err(unusable(format!(
                    "lost WAL it needed (max_slot_wal_keep_size): writes may have been missed; \
                     drop it (SELECT pg_drop_replication_slot({})) and let the consumer create a \
                     new one, which invalidates every published table",
                    literal(name)
                )));
            }
            Ok(false)
        }
        _ => Err(CdcError::Protocol(
            "pg_replication_slots: unexpected columns".into(),
        )),
    }
}
