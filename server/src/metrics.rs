//! Prometheus metrics: requests, errors and latency by request type, bytes
//! in and out, connections, and what the store holds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use eventi_store::StoreStats;

/// Request kinds that get their own label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Thello.
    Hello,
    /// Tping.
    Ping,
    /// Tread.
    Read,
    /// Twrite.
    Write,
    /// Tsync.
    Sync,
    /// Tauth0.
    Auth,
    /// eventi's queries (Thas, Tkeyinfo).
    Query,
    /// Anything else (answered with Rerror).
    Other,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Hello,
        Kind::Ping,
        Kind::Read,
        Kind::Write,
        Kind::Sync,
        Kind::Auth,
        Kind::Query,
        Kind::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Ping => "ping",
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Sync => "sync",
            Kind::Auth => "auth",
            Kind::Query => "query",
            Kind::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabel {
    key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabel {
    key: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Counters for one request kind, resolved once so the hot path takes no
/// lock on the label map.
#[derive(Clone)]
pub struct KindMetrics {
    /// Requests answered.
    pub requests: Counter,
    /// Requests answered with Rerror.
    pub errors: Counter,
    /// Seconds from the request's arrival to its reply being queued.
    pub latency: Histogram,
}

/// All of the server's metrics.
pub struct Metrics {
    registry: Registry,
    kinds: Vec<(Kind, KindMetrics)>,
    /// Bytes read from clients.
    pub bytes_in: Counter,
    /// Bytes written to clients.
    pub bytes_out: Counter,
    /// Connections open now.
    pub connections: Gauge,
    /// Connections accepted since start.
    pub connections_accepted: Counter,
    /// Connections closed at accept because of the connection limit.
    pub connections_refused: Counter,
    /// Connections closed for a protocol violation or timeout.
    pub connections_dropped: Counter,
    /// Sessions that began encrypted (the others are plain venti).
    pub sessions_encrypted: Counter,
    /// Writes that stored a new block.
    pub writes_new: Counter,
    /// Writes of a block already stored.
    pub writes_duplicate: Counter,
    /// Reads that found stored bytes not hashing to their score.
    pub corrupt_reads: Counter,
    /// Reads whose bytes were not in the page cache (served from the
    /// blocking pool rather than inline).
    pub cold_reads: Counter,
    /// HTTP requests refused because their `Host` did not name the server.
    pub http_host_refused: Counter,
    /// Connections to the admin socket refused because the peer was
    /// neither the server's user nor root.
    pub admin_refused: Counter,
    /// Ways other users can reach the data directory (0 when private),
    /// from the audit at start and at each scrape.
    pub data_dir_exposures: Gauge,
    /// Bytes free on the data directory's filesystem.
    pub disk_free: Gauge,
    /// Bytes the store keeps free (new blocks are refused below it).
    pub disk_reserve: Gauge,
    /// 1 while the store takes no writes at all (opened read-only).
    pub read_only: Gauge,
    blocks_stored: Gauge,
    bytes_stored: Gauge,
    /// Bytes of blocks no key holds any more, still on disk.
    pub reclaimable_bytes: Gauge,
    /// Bytes compaction has given back, over the store's life.
    pub reclaimed_bytes: Gauge,
    /// Compaction passes finished since the server started.
    pub compaction_passes: Counter,
    stored_by_key: Family<KeyLabel, Counter>,
    refused_writes: Family<RefusalLabel, Counter>,
    auth_failures: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, registered under the `eventi_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("eventi");
        let requests = Family::<TypeLabel, Counter>::default();
        let errors = Family::<TypeLabel, Counter>::default();
        let latency = Family::<TypeLabel, Histogram, _>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(1e-5, 2.0, 22))) as fn() -> Histogram,
        );
        registry.register(
            "requests",
            "Venti requests answered, by type",
            requests.clone(),
        );
        registry.register(
            "request_errors",
            "Requests answered with Rerror, by type",
            errors.clone(),
        );
        registry.register(
            "request_latency_seconds",
            "Time from a request's arrival to its reply, by type",
            latency.clone(),
        );
        let kinds = Kind::ALL
            .iter()
            .map(|k| {
                let l = TypeLabel { r#type: k.label() };
                (
                    *k,
                    KindMetrics {
                        requests: requests.get_or_create(&l).clone(),
                        errors: errors.get_or_create(&l).clone(),
                        latency: latency.get_or_create(&l).clone(),
                    },
                )
            })
            .collect();
        let m = Metrics {
            registry,
            kinds,
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            connections_dropped: Counter::default(),
            sessions_encrypted: Counter::default(),
            writes_new: Counter::default(),
            writes_duplicate: Counter::default(),
            corrupt_reads: Counter::default(),
            cold_reads: Counter::default(),
            http_host_refused: Counter::default(),
            admin_refused: Counter::default(),
            data_dir_exposures: Gauge::default(),
            disk_free: Gauge::default(),
            disk_reserve: Gauge::default(),
            read_only: Gauge::default(),
            blocks_stored: Gauge::default(),
            bytes_stored: Gauge::default(),
            reclaimable_bytes: Gauge::default(),
            reclaimed_bytes: Gauge::default(),
            compaction_passes: Counter::default(),
            stored_by_key: Family::default(),
            refused_writes: Family::default(),
            auth_failures: Family::default(),
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "received_bytes",
            "Bytes received from venti clients",
            m.bytes_in.clone(),
        );
        r.register(
            "sent_bytes",
            "Bytes sent to venti clients",
            m.bytes_out.clone(),
        );
        r.register(
            "connections_open",
            "Venti connections open now",
            m.connections.clone(),
        );
        r.register(
            "connections_accepted",
            "Venti connections accepted",
            m.connections_accepted.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at the connection limit",
            m.connections_refused.clone(),
        );
        r.register(
            "connections_dropped",
            "Connections closed for a protocol violation or timeout",
            m.connections_dropped.clone(),
        );
        r.register(
            "sessions_encrypted",
            "Sessions that began encrypted (Noise), by the time their hello was answered",
            m.sessions_encrypted.clone(),
        );
        r.register(
            "writes_new_blocks",
            "Writes that stored a new block",
            m.writes_new.clone(),
        );
        r.register(
            "writes_duplicate_blocks",
            "Writes of a block already stored",
            m.writes_duplicate.clone(),
        );
        r.register(
            "corrupt_reads",
            "Reads refused because stored bytes did not match their score",
            m.corrupt_reads.clone(),
        );
        r.register(
            "cold_reads",
            "Reads whose bytes were not in the page cache",
            m.cold_reads.clone(),
        );
        r.register(
            "http_host_refused",
            "HTTP requests refused because their Host header did not name this server",
            m.http_host_refused.clone(),
        );
        r.register(
            "admin_refused",
            "Admin socket peers refused for not being the server's user or root",
            m.admin_refused.clone(),
        );
        r.register(
            "data_dir_exposures",
            "Ways other users can read, list or change the data directory (0 when private)",
            m.data_dir_exposures.clone(),
        );
        r.register(
            "disk_free_bytes",
            "Bytes free on the data directory's filesystem",
            m.disk_free.clone(),
        );
        r.register(
            "disk_reserve_bytes",
            "Free bytes kept in reserve: new blocks are refused rather than use them",
            m.disk_reserve.clone(),
        );
        r.register(
            "read_only",
            "1 while the store takes no writes at all (its filesystem was full at start)",
            m.read_only.clone(),
        );
        r.register(
            "stored_blocks",
            "Distinct blocks in the store",
            m.blocks_stored.clone(),
        );
        r.register(
            "stored_bytes",
            "Bytes of block data in the store",
            m.bytes_stored.clone(),
        );
        r.register(
            "reclaimable_bytes",
            "Bytes of blocks that prunes let go of and no key holds, still on disk until compaction",
            m.reclaimable_bytes.clone(),
        );
        r.register(
            "reclaimed_bytes",
            "Bytes compaction has given back to the filesystem, over the store's life",
            m.reclaimed_bytes.clone(),
        );
        r.register(
            "compaction_passes",
            "Compaction passes finished (after each prune, and periodically when there is dead space)",
            m.compaction_passes.clone(),
        );
        r.register(
            "key_stored_bytes",
            "Bytes of new blocks stored, by write key",
            m.stored_by_key.clone(),
        );
        r.register(
            "refused_writes",
            "Writes refused, by write key and reason",
            m.refused_writes.clone(),
        );
        r.register(
            "auth_failures",
            "Failed write-key authentications, by reason",
            m.auth_failures.clone(),
        );
        m
    }

    /// The counters for one request kind.
    pub fn kind(&self, kind: Kind) -> &KindMetrics {
        &self
            .kinds
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind is registered")
            .1
    }

    /// The counter of bytes stored by the key labelled `key`, resolved
    /// once per session so the write path takes no lock and allocates
    /// nothing for it.
    pub fn key_stored_counter(&self, key: &str) -> Counter {
        self.stored_by_key
            .get_or_create(&KeyLabel {
                key: key.to_string(),
            })
            .clone()
    }

    /// Counts a write refused for `reason` (quota, not authorized, no key).
    pub fn refused_write(&self, key: &str, reason: &'static str) {
        self.refused_writes
            .get_or_create(&RefusalLabel {
                key: key.to_string(),
                reason,
            })
            .inc();
    }

    /// Counts a failed authentication.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Renders the metrics in Prometheus/OpenMetrics text format.
    pub fn render(&self, stats: StoreStats) -> String {
        self.blocks_stored.set(stats.blocks as i64);
        self.bytes_stored.set(stats.bytes as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
