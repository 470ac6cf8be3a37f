//! [`Consumer`]: the builder, and the loop that streams, applies and acknowledges.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pgwire_replication::{Lsn as PgLsn, ReplicationClient, ReplicationConfig, ReplicationEvent};

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

/// Committed transactions applied together: those that arrived while the previous apply
/// was in flight (one pipeline to the store for all of them).
#[derive(Debug, Default)]
struct Queued {
    /// Their invalidations, merged (`None` while they invalidate nothing).
    tx: Option<TxChanges>,
    /// The last commit's end: acknowledged (and published) once all are applied. `None`
    /// when nothing is queued.
    end_lsn: Option<Lsn>,
    /// How many of them invalidate something.
    transactions: usize,
    /// Their transaction ids: applied only once new snapshots see them all.
    xids: Vec<u32>,
    /// The first one's commit time (server clock), for the lag event.
    oldest_commit: Option<SystemTime>,
    /// The last one's.
    newest_commit: Option<SystemTime>,
}

/// At most this many transactions are applied together.
const MAX_BATCH_TRANSACTIONS: usize = 1024;

impl Queued {
    /// Adds a committed transaction.
    fn push(&mut self, tx: TxChanges, committed: Option<SystemTime>, xid: Option<u32>) {
        self.end_lsn = Some(self.end_lsn.map_or(tx.end_lsn, |l| l.max(tx.end_lsn)));
        if tx.is_empty() {
            return;
        }
        self.transactions += 1;
        self.xids.extend(xid);
        self.oldest_commit = self.oldest_commit.or(committed);
        self.newest_commit = committed.or(self.newest_commit);
        match &mut self.tx {
            Some(all) => all.absorb(tx),
            None => self.tx = Some(tx),
        }
    }

    /// True when no more should join (the stream is not read meanwhile): bounds memory
    /// and keeps row images from collapsing into whole tables.
    fn is_full(&self, max_rows: usize) -> bool {
        self.transactions >= MAX_BATCH_TRANSACTIONS
            || self.tx.as_ref().is_some_and(|t| t.row_count() >= max_rows)
    }
}

/// An apply in flight.
type Applying<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Queued, CdcError>> + Send + 'a>>;

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
    let prepared = setup::prepare(&mut client, cfg, target).await?;
    // A plain session beside the stream, never started: it tells when committed
    // transactions are visible to new snapshots (see `visible`).
    let sql =
        tokio::sync::Mutex::new(ReplicationClient::connect_gated(cfg.replication_config()).await?);
    let sql = &sql;
    asm.set_enums(prepared.enums.clone());
    // An existing slot whose set-up is not known done (no position published: a crash
    // between the slot's creation and its invalidation of every table, or the key lost)
    // invalidates every table as a new one does.
    let invalidate_all =
        prepared.invalidate_all || !matches!(target.published(&cfg.slot).await, Ok(Some(_)));
    if invalidate_all {
        let mut tx = TxChanges::new(1);
        for (schema, table) in &prepared.published {
            tx.add_table(&cfg.names.name(schema, table));
        }
        let job = Queued {
            tx: Some(tx),
            end_lsn: Some(prepared.start_lsn),
            transactions: 0,
            ..Queued::default()
        };
        apply(cfg, target, shared, job, first, sql).await?;
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
    // Commits queue behind the apply in flight and are applied together when it is done:
    // one transaction alone when they are spaced out, many in one pipeline when they come
    // faster than the store answers. A position is acknowledged after its apply only.
    let mut queued = Queued::default();
    let mut inflight: Option<Applying<'_>> = None;
    let mut published = shared.applied();
    let mut xid = None;
    loop {
        let full = queued.is_full(cfg.max_rows);
        tokio::select! {
            biased;
            done = async {
                match inflight.as_mut() {
                    Some(f) => f.as_mut().await,
                    None => std::future::pending().await,
                }
            }, if inflight.is_some() => {
                inflight = None;
                let job: Queued = done?;
                if let Some(lsn) = job.end_lsn {
                    client.update_applied_lsn(PgLsn::from(lsn.0));
                    if let Some(c) = job.newest_commit {
                        shared.applied_commit(c);
                    }
                    shared.set_applied(lsn);
                    published = published.max(lsn);
                }
            }
            event = client.recv(), if !full => {
                match event? {
                    None => return Err(CdcError::Connection("the replication stream ended".into())),
                    Some(ReplicationEvent::Begin { xid: x, .. }) => {
                        xid = Some(x);
                        asm.begin();
                    }
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
                        queued.push(tx, clock::pg_time(commit_time_micros), xid.take());
                    }
                    // Outside a transaction, with nothing queued or in flight, everything
                    // the server sent up to `wal_end` is applied (a transaction is sent at
                    // its commit, whole): publish that position too.
                    Some(ReplicationEvent::KeepAlive { wal_end, .. }) => {
                        let lsn = Lsn(wal_end.as_u64());
                        shared.server_at(lsn);
                        if !asm.in_transaction()
                            && inflight.is_none()
                            && queued.end_lsn.is_none()
                            && lsn > published
                        {
                            queued.end_lsn = Some(lsn);
                        }
                    }
                    Some(_) => {}
                }
            }
            () = shared.stopped() => {
                // What is in flight or queued is not acknowledged: sent again next time.
                let _ = client.shutdown().await;
                return Err(CdcError::Stopped);
            }
        }
        if inflight.is_none() && queued.end_lsn.is_some() {
            let job = std::mem::take(&mut queued);
            inflight = Some(Box::pin(async move {
                apply(cfg, target, shared, job, &mut None, sql).await
            }));
        }
    }
}

/// Applies queued transactions and publishes their end position, retrying with growing
/// delays until it succeeds (the position is acknowledged only after) or the consumer
/// stops. A failure lets a waiting `spawn` return (the setup is fine; the consumer holds
/// the transactions, as its status says). Returns the job, applied.
async fn apply(
    cfg: &Settings,
    target: &Target,
    shared: &Shared,
    mut job: Queued,
    first: &mut First,
    sql: &tokio::sync::Mutex<ReplicationClient>,
) -> Result<Queued, CdcError> {
    let Some(lsn) = job.end_lsn else {
        return Ok(job);
    };
    visible(sql, &job.xids, shared).await?;
    let tx = job.tx.take().map(Arc::new);
    let mut attempt = 0u32;
    loop {
        let result = target.apply(tx.as_ref(), &cfg.slot, lsn).await;
        match result {
            Ok(()) => {
                if let Some(tx) = &tx {
                    // (A new slot's invalidation of every table counts as one.)
                    let count = job.transactions.max(1);
                    shared.applied_tx(count, tx.row_count(), tx.table_count());
                    if job.transactions > 0 {
                        cfg.emit(&CdcEvent::Applied {
                            lsn,
                            transactions: job.transactions,
                            rows: tx.row_count(),
                            tables: tx.table_count(),
                            lag: job
                                .oldest_commit
                                .map_or(Duration::ZERO, |c| clock::lag(c, SystemTime::now())),
                        });
                    }
                }
                if attempt > 0 {
                    shared.set_status(Status::Streaming);
                }
                return Ok(job);
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

/// Waits until new snapshots see every transaction of `xids`.
///
/// PostgreSQL writes a commit record before it makes the transaction visible to new
/// snapshots, and the stream may deliver the commit in between. Invalidating then would let
/// a read that prepares its stamps after the invalidation, but takes its snapshot before
/// the commit is visible, store the old value under fresh stamps: a stale read. A
/// transaction is visible to a snapshot when it is below the snapshot's `xmax` and not in
/// its list of running ones (a commit not yet visible is either).
async fn visible(
    sql: &tokio::sync::Mutex<ReplicationClient>,
    xids: &[u32],
    shared: &Shared,
) -> Result<(), CdcError> {
    if xids.is_empty() {
        return Ok(());
    }
    let mut client = sql.lock().await;
    let mut pause = Duration::from_micros(50);
    loop {
        let rows = setup::query(
            &mut client,
            "SELECT txid_snapshot_xmax(s)::text, \
             array_to_string(ARRAY(SELECT txid_snapshot_xip(s)), ',') \
             FROM (SELECT txid_current_snapshot() AS s) q",
        )
        .await?;
        let row = rows.into_iter().next().unwrap_or_default();
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let xmax = text(0).parse::<u64>().ok();
        let running: Vec<u32> = text(1)
            .split(',')
            .filter_map(|x| x.parse::<u64>().ok())
            .map(|x| x as u32)
            .collect();
        let seen = |x: u32| match xmax {
            // Below xmax (modulo 2^32, as xids compare) and not running.
            Some(xmax) => (x.wrapping_sub(xmax as u32) as i32) < 0 && !running.contains(&x),
            None => false,
        };
        if xids.iter().all(|&x| seen(x)) {
            return Ok(());
        }
        if shared.stopping() {
            return Err(CdcError::Stopped);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Row;

    fn tx(end: u64, rows: usize) -> TxChanges {
        let mut t = TxChanges::new(10);
        t.end_lsn = Lsn(end);
        if rows > 0 {
            t.add_rows("a", (0..rows).map(|i| Row::new().with("id", i as i64)));
        }
        t
    }

    #[test]
    fn queued_transactions_merge_and_keep_the_last_position() {
        let mut q = Queued::default();
        assert!(q.end_lsn.is_none() && !q.is_full(10));
        let t0 = epoch_plus(1);
        q.push(tx(10, 2), Some(t0), Some(7));
        q.push(tx(20, 0), None, Some(8));
        q.push(tx(30, 3), Some(epoch_plus(2)), Some(9));
        assert_eq!(q.end_lsn, Some(Lsn(30)));
        assert_eq!(q.transactions, 2, "the empty one only moves the position");
        assert_eq!(q.tx.as_ref().map(TxChanges::row_count), Some(5));
        assert_eq!(q.oldest_commit, Some(t0));
        assert!(!q.is_full(10));
        q.push(tx(40, 5), None, None);
        assert!(q.is_full(10), "row images reached the limit: stop reading");
    }

    fn epoch_plus(s: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(s)
    }
}
