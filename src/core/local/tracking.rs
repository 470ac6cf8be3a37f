//! The push channel of `Tracked` mode: Redis client-side caching in broadcast mode.
//!
//! One dedicated connection asks Redis to track every key under the stamp prefix and to
//! send the invalidations to itself (`CLIENT TRACKING on REDIRECT <own id> BCAST PREFIX p`),
//! then subscribes to `__redis__:invalidate`. Each message names changed stamp keys (set,
//! deleted, expired or evicted): their epochs are bumped. A `nil` message (FLUSHDB) drops
//! everything.
//!
//! The channel is *up* only while that connection is known to be alive: it answers a PING
//! within a heartbeat. When it is lost, `up` goes false and then every snapshot is killed
//! and the local entries dropped (in that order: a fill reads the generation before `up`, so
//! it either sees the channel down or is killed by the bump). Until the connection is back,
//! tracked reads neither serve nor fill locally.

use std::thread;
use std::time::Duration;

use redis::Value as RValue;

use super::epochs::Epochs;
use super::LocalMap;
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering};

/// State of the push channel, shared with the local tier.
pub(crate) struct Channel {
    epochs: Epochs,
    pushes: AtomicU64,
    flushes: AtomicU64,
    stop: AtomicBool,
    client_id: AtomicU64,
}

impl Channel {
    /// A channel that is always up: no push is needed (no tracked reads, or an embedded
    /// store, where every invalidation is this process' own).
    pub fn always_up(epochs: Epochs) -> Arc<Channel> {
        Arc::new(Channel {
            epochs,
            pushes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            client_id: AtomicU64::new(0),
        })
    }

    /// The epoch table the channel bumps.
    pub fn epochs(&self) -> &Epochs {
        &self.epochs
    }

    /// True while pushes are known to reach this process.
    pub fn is_up(&self) -> bool {
        self.epochs.is_up()
    }

    /// Invalidation messages received.
    pub fn pushes(&self) -> u64 {
        self.pushes.load(Ordering::Relaxed)
    }

    /// Times the channel was lost (each drops the local tier).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// The Redis client id of the push connection (0 when none).
    pub fn client_id(&self) -> u64 {
        self.client_id.load(Ordering::SeqCst)
    }

    /// Marks the channel lost (see `Epochs::lost` for the order that makes it safe).
    pub fn lost(&self, entries: &LocalMap) {
        self.epochs.lost();
        entries.invalidate_all();
        self.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks the background thread to end (it does within one heartbeat).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Applies the payload of one invalidation message: the changed keys, or `nil` for a
    /// flush (everything changed).
    fn apply(&self, payload: &RValue, entries: &LocalMap) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        match payload {
            RValue::Array(keys) => {
                for k in keys {
                    match k {
                        RValue::BulkString(k) => {
                            // Ours are text; anything else is not one of our keys.
                            if let Ok(k) = std::str::from_utf8(k) {
                                self.epochs.bump(k);
                            }
                        }
                        _ => {
                            self.epochs.bump_all();
                            entries.invalidate_all();
                        }
                    }
                }
            }
            _ => {
                self.epochs.bump_all();
                entries.invalidate_all();
            }
        }
    }
}

/// Settings of the push connection.
#[derive(Debug, Clone)]
pub(crate) struct TrackingOptions {
    /// The stamp key prefix to track.
    pub prefix: String,
    /// How often the connection must prove it is alive.
    pub heartbeat: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// Starts the push channel's thread; the channel starts down and comes up once tracking is
/// on. The thread ends when the channel is stopped (the cache dropped).
pub(crate) fn spawn(
    client: redis::Client,
    opts: TrackingOptions,
    epochs: Epochs,
    entries: LocalMap,
) -> Arc<Channel> {
    let channel = Channel::always_up(epochs);
    channel.epochs.lost();
    let ch = channel.clone();
    thread::Builder::new()
        .name("stampcache-tracking".into())
        .spawn(move || run(client, opts, ch, entries))
        .map(|_| ())
        .unwrap_or_else(|e| {
            // No thread, no pushes: the channel stays down and tracked reads use Redis.
            eprintln!("stampcache: cannot start the tracking thread: {e}");
        });
    channel
}

fn run(client: redis::Client, opts: TrackingOptions, ch: Arc<Channel>, entries: LocalMap) {
    let mut backoff = Duration::from_millis(20);
    while !ch.stop.load(Ordering::SeqCst) {
        if let Ok(mut conn) = open(&client, &opts, &ch) {
            backoff = Duration::from_millis(20);
            listen(&mut conn, &ch, &entries);
            if ch.is_up() {
                ch.lost(&entries);
            }
            ch.client_id.store(0, Ordering::SeqCst);
        }
        thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    ch.epochs.lost();
}

/// Opens the push connection and turns tracking on, redirected to itself (before it
/// subscribes: a subscribed RESP2 connection accepts no other command).
fn open(
    client: &redis::Client,
    opts: &TrackingOptions,
    ch: &Channel,
) -> redis::RedisResult<redis::Connection> {
    let mut conn = client.get_connection_with_timeout(opts.connect_timeout)?;
    conn.set_read_timeout(Some(opts.heartbeat))?;
    conn.set_write_timeout(Some(opts.heartbeat))?;
    let id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut conn)?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("on")
        .arg("REDIRECT")
        .arg(id)
        .arg("BCAST")
        .arg("PREFIX")
        .arg(&opts.prefix)
        .query::<()>(&mut conn)?;
    ch.client_id.store(id, Ordering::SeqCst);
    Ok(conn)
}

/// Subscribes, marks the channel up, and reads pushes until the connection fails or misses
/// a heartbeat. (`PubSub::get_message` is used rather than raw reads: after a read timeout
/// the raw reader may skip the next reply.)
fn listen(conn: &mut redis::Connection, ch: &Channel, entries: &LocalMap) {
    let mut ps = conn.as_pubsub();
    if ps.subscribe("__redis__:invalidate").is_err() {
        return;
    }
    // Subscribed: from here on, every change under the prefix is pushed.
    ch.epochs.up();
    while !ch.stop.load(Ordering::SeqCst) {
        match ps.get_message() {
            Ok(msg) => match msg.get_payload::<RValue>() {
                Ok(payload) => ch.apply(&payload, entries),
                Err(_) => return,
            },
            // Quiet for a heartbeat: make sure the connection is still alive.
            Err(e) if e.is_timeout() => {
                if ps.ping::<RValue>().is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
