//! [`Consumer`]: the builder, and the loop that streams, applies and acknowledges.

use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};

use super::assemble::Assembler;
use super::clock;
use super::conninfo::ConnInfo;
use super::event::{CdcEvent, CdcListener};
use super::handle::{ConsumerHandle, Runner, Shared, Status};
use super::names::TableNames;
use super::setup;
use super::sink::Target;
use super::tx::TxChanges;
use super::types::SESSION_OPTIONS;
use super::{CdcError, Lsn};
use crate::codec::Codec;
use crate::Cache;

/// Which replication slot the consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A slot that outlives the consumer: after a restart it resumes from the last
    /// acknowledged position, so nothing committed meanwhile is missed. The server keeps
    /// WAL for it while the consumer is away (bounded by `max_slot_wal_keep_size`; past it
    /// the slot is lost and the consumer refuses it with [`CdcError::SlotUnusable`]). A
    /// slot no consumer reads any more keeps retaining WAL: drop it when retiring the
    /// consumer (`SELECT pg_drop_replication_slot('name')`).
    Persistent,
    /// A slot that lives as long as the connection. Nothing is retained while the consumer
    /// is away, so every published table is invalidated on each (re)connect.
    Temporary,
}

/// The tables a publication created by the consumer covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicationTables {
    All,
    Tables(Vec<String>),
}

/// Everything the consumer's thread needs.
#[derive(Clone)]
pub(crate) struct Settings {
    pub conn: ConnInfo,
    pub publication: String,
    pub slot: String,
    pub slot_kind: SlotKind,
    pub create_slot: bool,
    pub create_publication: Option<PublicationTables>,
    pub names: TableNames,
    pub max_rows: usize,
    pub listener: Option<CdcListener>,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub status_interval: Duration,
    pub standby_interval: Duration,
}

impl Settings {
    fn emit(&self, e: &CdcEvent<'_>) {
        if let Some(l) = &self.listener {
            l(e);
        }
    }

    /// The delay before retry number `attempt` (from 1): doubling from the minimum.
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.min_delay.saturating_mul(factor).min(self.max_delay)
    }

    fn replication_config(&self) -> ReplicationConfig {
        let c = &self.conn;
        ReplicationConfig::new(
            c.host.clone(),
            c.user.clone(),
            c.password.clone(),
            c.dbname.clone(),
            self.slot.clone(),
            self.publication.clone(),
        )
        .with_port(c.port)
        .with_tls(c.tls())
        .with_options(SESSION_OPTIONS)
        .with_application_name("stampcache-cdc")
        .with_status_interval(self.status_interval)
        .with_wakeup_interval(self.status_interval)
    }
}

/// The change-stream consumer: invalidates the cache from PostgreSQL's logical replication
/// stream, for every committed write from any client.
///
/// ```no_run
/// use stampcache::Cache;
/// use stampcache::cdc::Consumer;
///
/// let cache = Cache::from_url("redis://127.0.0.1/")?;
/// let consumer = Consumer::builder("host=127.0.0.1 user=postgres dbname=app")
///     .publication("stampcache")
///     .create_publication(["public.article", "public.author"])
///     .slot("stampcache")
///     .create_slot(true)
///     .spawn(cache.clone())?;
/// // ... no on_update calls needed: writes from any client invalidate.
/// consumer.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Consumer;

impl Consumer {
    /// A builder for a consumer of the database at `conninfo`: libpq's `key=value` form
    /// (`host`, `port`, `user`, `password`, `dbname`, `sslmode`, `sslrootcert`) or a
    /// `postgres://user:password@host:port/dbname?sslmode=…` URL. `sslmode` defaults to
    /// `disable`; `prefer` is refused (say `disable` or `require`). The user needs the
    /// `REPLICATION` attribute (and, to create a publication, ownership of its tables).
    pub fn builder(conninfo: &str) -> ConsumerBuilder {
        let (conn, error) = match ConnInfo::parse(conninfo) {
            Ok(c) => (c, None),
            Err(e) => (ConnInfo::default(), Some(e)),
        };
        ConsumerBuilder {
            settings: Settings {
                conn,
                publication: "stampcache".into(),
                slot: "stampcache".into(),
                slot_kind: SlotKind::Persistent,
                create_slot: false,
                create_publication: None,
                names: TableNames::new(),
                max_rows: 10_000,
                listener: None,
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(5),
                status_interval: Duration::from_secs(1),
                standby_interval: Duration::from_secs(1),
            },
            error,
        }
    }
}

/// Configures and starts a [`Consumer`].
pub struct ConsumerBuilder {
    settings: Settings,
    error: Option<CdcError>,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("publication", &self.settings.publication)
            .field("slot", &self.settings.slot)
            .field("slot_kind", &self.settings.slot_kind)
            .finish_non_exhaustive()
    }
}

impl ConsumerBuilder {
    /// The publication to stream (default `stampcache`).
    pub fn publication(mut self, name: impl Into<String>) -> Self {
        self.settings.publication = name.into();
        self
    }

    /// Creates the publication if it does not exist, for these tables (`schema.table` or
    /// `table`, as SQL names them).
    pub fn create_publication<T: Into<String>>(
        mut self,
        tables: impl IntoIterator<Item = T>,
    ) -> Self {
        let tables = tables.into_iter().map(Into::into).collect();
        self.settings.create_publication = Some(PublicationTables::Tables(tables));
        self
    }

    /// Creates the publication if it does not exist, `FOR ALL TABLES` (needs a superuser).
    pub fn create_publication_for_all_tables(mut self) -> Self {
        self.settings.create_publication = Some(PublicationTables::All);
        self
    }

    /// The replication slot's name (default `stampcache`): lowercase letters, digits and
    /// `_`, as PostgreSQL requires. One slot per consumer process.
    pub fn slot(mut self, name: impl Into<String>) -> Self {
        self.settings.slot = name.into();
        self
    }

    /// Creates the persistent slot if it does not exist (default: refuse to start). A new
    /// slot starts at the present, so every published table is invalidated once.
    pub fn create_slot(mut self, yes: bool) -> Self {
        self.settings.create_slot = yes;
        self
    }

    /// Persistent (default) or temporary slot; see [`SlotKind`].
    pub fn slot_kind(mut self, kind: SlotKind) -> Self {
        self.settings.slot_kind = kind;
        self
    }

    /// How relations are named for the cache (default: see [`TableNames`]).
    pub fn table_names(mut self, names: TableNames) -> Self {
        self.settings.names = names;
        self
    }

    /// Writes to `relation` (`schema.table`) invalidate the cache's table `cache_table`.
    pub fn map_table(
        mut self,
        relation: impl Into<String>,
        cache_table: impl Into<String>,
    ) -> Self {
        self.settings.names = self.settings.names.map(relation, cache_table);
        self
    }

    /// A transaction with more row images than this for one table invalidates the whole
    /// table instead (default 10,000), bounding memory and the size of one call.
    pub fn max_rows_per_transaction(mut self, n: usize) -> Self {
        self.settings.max_rows = n.max(1);
        self
    }

    /// Calls `f` for every [`CdcEvent`] (on the consumer's thread: keep it cheap).
    pub fn on_event(mut self, f: impl Fn(&CdcEvent<'_>) + Send + Sync + 'static) -> Self {
        self.settings.listener = Some(Arc::new(f));
        self
    }

    /// Delays between retries (reconnects, and applying a held transaction): doubling from
    /// `min` up to `max` (default 100 ms to 5 s).
    pub fn retry_delays(mut self, min: Duration, max: Duration) -> Self {
        self.settings.min_delay = min.max(Duration::from_millis(1));
        self.settings.max_delay = max.max(self.settings.min_delay);
        self
    }

    /// How soon an acknowledged position reaches the server (default 1 s).
    pub fn status_interval(mut self, d: Duration) -> Self {
        self.settings.status_interval = d.max(Duration::from_millis(10));
        self
    }

    /// While another session holds the slot (another consumer: PostgreSQL lets one session
    /// stream from a slot), how often to try to take it over (default 1 s). See
    /// [`Status::Standby`].
    pub fn standby_interval(mut self, d: Duration) -> Self {
        self.settings.standby_interval = d.max(Duration::from_millis(10));
        self
    }

    /// Connects, checks the setup (typed errors say what to change), and runs the
    /// consumer on a thread of its own, invalidating `cache`.
    ///
    /// Returns once the stream started (every transaction committed from then on will be
    /// applied), once a first invalidation failed (the setup is fine, the consumer holds
    /// it: see [`ConsumerHandle::status`]), or once it is on standby because another
    /// consumer streams from the slot ([`Status::Standby`]: it takes over when that one
    /// stops or dies). Setup errors are returned; later failures are retried.
    pub fn spawn<C: Codec>(self, cache: Cache<C>) -> Result<ConsumerHandle, CdcError> {
        let s = self.checked()?;
        let target = Target::Blocking(Arc::new(cache));
        let shared = Shared::new();
        // A std channel: `spawn` may be called from inside a tokio runtime.
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("stampcache-cdc".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = first_tx.send(Err(CdcError::Config(format!("tokio runtime: {e}"))));
                        return;
                    }
                };
                let first: First = Some(Box::new(move |r| {
                    let _ = first_tx.send(r);
                }));
                rt.block_on(run(&s, &target, &thread_shared, first));
                thread_shared.set_status(Status::Stopped);
            })
            .map_err(|e| CdcError::Config(format!("cannot start the consumer thread: {e}")))?;
        let handle = ConsumerHandle::new(shared, Runner::Thread(thread));
        match first_rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CdcError::Stopped),
        }
    }

    /// [`spawn`](ConsumerBuilder::spawn) for an [`AsyncCache`](crate::AsyncCache): the
    /// consumer runs as a task on the current tokio runtime. Stop it with
    /// [`ConsumerHandle::shutdown`].
    #[cfg(feature = "tokio")]
    pub async fn spawn_async<C: Codec>(
        self,
        cache: crate::AsyncCache<C>,
    ) -> Result<ConsumerHandle, CdcError> {
        let s = self.checked()?;
        let target = Target::Async(Arc::new(cache));
        let shared = Shared::new();
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let task_shared = shared.clone();
        let task = tokio::spawn(async move {
            let first: First = Some(Box::new(move |r| {
                let _ = first_tx.send(r);
            }));
            run(&s, &target, &task_shared, first).await;
            task_shared.set_status(Status::Stopped);
        });
        let handle = ConsumerHandle::new(shared, Runner::Task(task));
        match first_rx.await {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CdcError::Stopped),
        }
    }

    /// The settings, once the builder's options are checked.
    fn checked(self) -> Result<Settings, CdcError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let s = self.settings;
        let slot_ok = !s.slot.is_empty()
            && s.slot.len() <= 63
            && s.slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !slot_ok {
            return Err(CdcError::Config(format!(
                "slot name {:?}: use 1 to 63 lowercase letters, digits and _",
                s.slot
            )));
        }
        if s.publication.is_empty() || s.publication.contains([',', ' ']) {
            return Err(CdcError::Config(format!(
                "publication name {:?}: no commas or spaces",
                s.publication
            )));
        }
        Ok(s)
    }
}

/// Tells `spawn` how the start went (once).
type First = Option<Box<dyn FnOnce(Result<(), CdcError>) + Send>>;

/// Sessions one after the other until stopped. The first session's setup error ends the
/// consumer (it is `spawn`'s error); later ones are retried.
async fn run(cfg: &Settings, target: &Target, shared: &Shared, mut first: First) {
    let mut asm = Assembler::new(cfg.names.clone(), cfg.max_rows);
    let mut attempt = 0u32;
    while !shared.stopping() {
        asm.reset();
        let result = tokio::select! {
            // The session first: streaming, it ends itself cleanly on a stop.
            biased;
            r = session(cfg, target, shared, &mut asm, &mut first, &mut attempt) => r,
            // Stuck connecting or setting up: give up at once.
            () = shared.stopped() => Err(CdcError::Stopped),
        };
        let error = match result {
            Ok(()) | Err(CdcError::Stopped) => return,
            Err(CdcError::SlotActive { pid, .. }) => {
                standby(cfg, shared, pid, &mut first).await;
                attempt = 0;
                continue;
            }
            Err(e) => e,
        };
        if let Some(f) = first.take() {
            f(Err(error));
            return;
        }
        cfg.emit(&CdcEvent::Disconnected { error: &error });
        attempt += 1;
        shared.reconnected();
        shared.set_status(Status::Reconnecting {
            attempt,
            error: error.to_string(),
        });
        pause(shared, cfg.delay(attempt)).await;
    }
}

/// Another session holds the slot: report it (once per standby), let a waiting `spawn`
/// return (the setup is fine), and wait before trying to take the slot over.
async fn standby(cfg: &Settings, shared: &Shared, pid: Option<u32>, first: &mut First) {
    if !matches!(shared.status(), Status::Standby { .. }) {
        cfg.emit(&CdcEvent::Standby {
            slot: &cfg.slot,
            pid,
        });
    }
    shared.set_status(Status::Standby { active_pid: pid });
    if let Some(f) = first.take() {
        f(Ok(()));
    }
    pause(shared, cfg.standby_interval).await;
}

/// Sleeps, or returns early when the consumer is stopped.
async fn pause(shared: &Shared, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shared.stopped() => {}
    }
}

/// One replication session: connect, set up, stream until an error or a stop.
async fn session(
    cfg: &Settings,
    target: &Target,
    shared: &Shared,
    asm: &mut Assembler,
    first: &mut First,
    attempt: &mut u32,
) -> Result<(), CdcError> {
    let mut client = ReplicationClient::connect_gated(cfg.replication_config()).await?;
    let prepared = setup::prepare(&mut client, cfg).await?;
    if prepared.invalidate_all {
        let mut tx = TxChanges::new(1);
        for (schema, table) in &prepared.published {
            tx.add_table(&cfg.names.name(schema, table));
        }
        apply(cfg, target, shared, Arc::new(tx), first).await?;
        cfg.emit(&CdcEvent::InvalidatedPublished {
            tables: prepared.published.len(),
        });
    }
    client.start().await?;
    // "replication slot … is active for PID …": another consumer streams; stand by.
    client
        .wait_started()
        .await
        .map_err(|e| CdcError::from(e).slot_in_use(&cfg.slot))?;
    *attempt = 0;
    shared.set_status(Status::Streaming);
    cfg.emit(&CdcEvent::Connected { slot: &cfg.slot });
    // `spawn` returns now: every transaction committed from here on will be applied.
    if let Some(f) = first.take() {
        f(Ok(()));
    }
    loop {
        let event = tokio::select! {
            ev = client.recv() => ev?,
            () = shared.stopped() => {
                let _ = client.shutdown().await;
                return Err(CdcError::Stopped);
            }
        };
        match event {
            None => return Err(CdcError::Connection("the replication stream ended".into())),
            Some(ReplicationEvent::Begin { .. }) => asm.begin(),
            Some(ReplicationEvent::XLogData { data, wal_end, .. }) => {
                shared.server_at(Lsn(wal_end.as_u64()));
                asm.message(&data, &mut |e| cfg.emit(e))?;
            }
            Some(ReplicationEvent::Commit {
                end_lsn,
                commit_time_micros,
                ..
            }) => {
                shared.server_at(Lsn(end_lsn.as_u64()));
                let tx = asm.commit(Lsn(end_lsn.as_u64()))?;
                let committed = clock::pg_time(commit_time_micros);
                if !tx.is_empty() {
                    let tx = Arc::new(tx);
                    apply(cfg, target, shared, tx.clone(), &mut None).await?;
                    cfg.emit(&CdcEvent::Applied {
                        lsn: tx.end_lsn,
                        rows: tx.row_count(),
                        tables: tx.table_count(),
                        lag: committed.map_or(Duration::ZERO, |c| {
                            clock::lag(c, std::time::SystemTime::now())
                        }),
                    });
                }
                client.update_applied_lsn(end_lsn);
                if let Some(c) = committed {
                    shared.applied_commit(c);
                }
                shared.set_applied(Lsn(end_lsn.as_u64()));
            }
            // Outside a transaction, everything the server sent up to `wal_end` is applied
            // (a transaction is sent at its commit, whole).
            Some(ReplicationEvent::KeepAlive { wal_end, .. }) => {
                shared.server_at(Lsn(wal_end.as_u64()));
                if !asm.in_transaction() {
                    client.update_applied_lsn(wal_end);
                    shared.set_applied(Lsn(wal_end.as_u64()));
                }
            }
            Some(_) => {}
        }
    }
}

/// Applies a transaction, retrying with growing delays until it succeeds (the position is
/// acknowledged only after) or the consumer stops. A failure lets a waiting `spawn` return
/// (the setup is fine; the consumer holds the transaction, as its status says).
async fn apply(
    cfg: &Settings,
    target: &Target,
    shared: &Shared,
    tx: Arc<TxChanges>,
    first: &mut First,
) -> Result<(), CdcError> {
    let mut attempt = 0u32;
    loop {
        let result = target.apply(&tx).await;
        match result {
            Ok(()) => {
                shared.applied_tx(tx.row_count(), tx.table_count());
                if attempt > 0 {
                    shared.set_status(Status::Streaming);
                }
                return Ok(());
            }
            Err(error) => {
                attempt += 1;
                shared.apply_failed();
                cfg.emit(&CdcEvent::ApplyFailed {
                    error: &error,
                    attempt,
                });
                shared.set_status(Status::Holding {
                    attempt,
                    error: error.to_string(),
                });
                if let Some(f) = first.take() {
                    f(Ok(()));
                }
            }
        }
        pause(shared, cfg.delay(attempt)).await;
        if shared.stopping() {
            return Err(CdcError::Stopped);
        }
    }
}
