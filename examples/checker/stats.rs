//! What workers report to the coordinator (one JSON line on stdout), and latency
//! histograms that merge across workers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Log-scale latency buckets: bucket `b` holds latencies around `e^(b/20)` microseconds
/// (about 5% wide), so histograms of many workers add up.
const BUCKETS: usize = 420;

/// A latency histogram.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().max(1) as f64;
        let b = ((us.ln() * 20.0) as usize).min(BUCKETS - 1);
        self.counts[b] += 1;
    }

    /// Adds another histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0..1) in microseconds (the bucket's upper bound).
    pub fn quantile(&self, q: f64) -> f64 {
        let n = self.len();
        if n == 0 {
            return 0.0;
        }
        let target = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return ((b + 1) as f64 / 20.0).exp();
            }
        }
        ((BUCKETS as f64) / 20.0).exp()
    }
}

/// One stale read, as found by a reader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stale {
    /// The read key: `r:<id>` (get), `l:<c>` (fetch of a category), `k:<c>` (flagged count).
    pub key: String,
    /// Highest version of the key whose write had returned Ok before the read started.
    pub returned: u64,
    /// The same, for writes whose invalidation reached Redis (not queued).
    pub delivered: u64,
    /// The version of the value the read returned.
    pub got: u64,
    /// When the read started, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A worker's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// `reader` or `writer`.
    pub role: String,
    /// Tier and front end (`shared/blocking`, `strict/async`, …).
    pub group: String,
    /// Operations completed, by kind (`get`, `fetch`, `count`, `write`).
    pub ops: BTreeMap<String, u64>,
    /// Latency per kind.
    pub latency: BTreeMap<String, Histogram>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Reads older than a write whose call returned Ok before they started.
    pub stale_returned: u64,
    /// Reads older than a write whose invalidation reached Redis before they started.
    pub stale_delivered: u64,
    /// The first stale reads, with details.
    pub samples: Vec<Stale>,
    /// Start times (ms since the epoch) of the stale reads, up to a bound, each with
    /// whether it was also older than a delivered write.
    pub stale_times: Vec<(u64, bool)>,
    /// Reads whose watermark could not be checked (truth unavailable).
    pub unchecked: u64,
    /// Writes whose invalidation reached Redis.
    pub writes_delivered: u64,
    /// Writes whose invalidation was queued (the call returned Ok, degraded).
    pub writes_queued: u64,
    /// Writes whose invalidation was skipped on purpose (`--break-invalidation`).
    pub writes_skipped: u64,
}

impl Report {
    /// Adds another report of the same group.
    pub fn merge(&mut self, o: &Report) {
        for (k, v) in &o.ops {
            *self.ops.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.latency {
            self.latency.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.stale_returned += o.stale_returned;
        self.stale_delivered += o.stale_delivered;
        self.samples.extend(o.samples.iter().cloned());
        self.stale_times.extend(&o.stale_times);
        self.unchecked += o.unchecked;
        self.writes_delivered += o.writes_delivered;
        self.writes_queued += o.writes_queued;
        self.writes_skipped += o.writes_skipped;
    }
}

/// Milliseconds since the Unix epoch (comparable across the checker's processes).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
