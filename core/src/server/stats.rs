//! The server's counters and the snapshot `stats()` returns. Each counter is written by one
//! thread only (see `counter`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::host::queue::QueueShared;
use crate::latency::{Histogram, Summary};
use crate::sink::SinkCounters;

/// Counters of the server engine (written by the engine thread only).
#[derive(Default)]
pub struct ServerCounters {
    /// Replies and pushes refused at a high-water mark (written by the host thread).
    pub refused: AtomicU64,
    pub received: AtomicU64,
    pub routed: AtomicU64,
    pub unrouted: AtomicU64,
    pub requests: AtomicU64,
    pub replies: AtomicU64,
    pub pushes: AtomicU64,
    /// Replies and pushes whose client was gone.
    pub unroutable: AtomicU64,
    pub malformed: AtomicU64,
    /// Fire-and-forget messages read again (a client's replay) and not handed on: this
    /// process had read them already.
    pub duplicates: AtomicU64,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    pub clients: AtomicU64,
    /// Replies and pushes refused because their client's own queue was full (it does not
    /// read), and what the clients' queues hold now (refreshed by the engine as it writes).
    pub peer_refused: AtomicU64,
    /// Requests waiting for the host's answer now; refused because `maxPendingRequests`
    /// were waiting; forgotten unanswered after `pendingRequestTimeoutMs`.
    pub pending_requests: AtomicU64,
    pub requests_refused: AtomicU64,
    pub requests_expired: AtomicU64,
    pub peer_queued: AtomicU64,
    pub peer_queued_bytes: AtomicU64,
    /// Messages handed to a sink.
    pub sunk: AtomicU64,
    /// CURVE clients refused by the host's `authorize` function, or disconnected because
    /// they sent more than may be held while it decides.
    pub host_unauthorized: AtomicU64,
    /// The socket's CURVE counters (set when the engine builds a CURVE socket).
    pub curve: std::sync::OnceLock<std::sync::Arc<zeromq::CurveStats>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub received: u64,
    pub routed: u64,
    pub unrouted: u64,
    pub requests: u64,
    pub replies: u64,
    pub pushes: u64,
    pub unroutable: u64,
    pub malformed: u64,
    pub duplicates: u64,
    pub connects: u64,
    pub disconnects: u64,
    pub clients: u64,
    pub refused: u64,
    pub too_large: u64,
    pub queued: u64,
    pub queued_bytes: u64,
    pub peer_refused: u64,
    pub pending_requests: u64,
    pub requests_refused: u64,
    pub requests_expired: u64,
    pub peer_queued: u64,
    pub peer_queued_bytes: u64,
    /// Messages handed to sinks, and what their writers made of them.
    pub sunk: u64,
    /// CURVE: handshakes completed; failed (wrong keys, plaintext peers, bad boxes); clients
    /// refused (by the key list or the `authorize` function); connections closed for a
    /// MESSAGE that did not open.
    pub curve_handshakes: u64,
    pub curve_failures: u64,
    pub unauthorized: u64,
    pub curve_rejected: u64,
    pub sink_rows: u64,
    pub sink_batches: u64,
    /// Failed attempts to write a batch (each retried); rows given up at close (a sink that
    /// still could not write); sinks that cannot write now.
    pub sink_errors: u64,
    pub sink_lost: u64,
    pub sink_failing: u64,
    pub queue_wait: Summary,
    pub service: Summary,
}

impl ServerStats {
    pub(crate) fn read(
        c: &ServerCounters,
        queue: &QueueShared,
        sinks: &SinkCounters,
        queue_wait: &Histogram,
        service: &Histogram,
    ) -> Self {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (host, engine) = (&queue.host, &queue.engine);
        ServerStats {
            received: r(&c.received),
            routed: r(&c.routed),
            unrouted: r(&c.unrouted),
            requests: r(&c.requests),
            replies: r(&c.replies),
            pushes: r(&c.pushes),
            unroutable: r(&c.unroutable),
            malformed: r(&c.malformed),
            duplicates: r(&c.duplicates),
            connects: r(&c.connects),
            disconnects: r(&c.disconnects),
            clients: r(&c.clients),
            refused: r(&c.refused),
            too_large: r(&host.too_large),
            queued: r(&host.pushed).saturating_sub(r(&engine.released)),
            queued_bytes: r(&host.pushed_bytes).saturating_sub(r(&engine.released_bytes)),
            peer_refused: r(&c.peer_refused),
            pending_requests: r(&c.pending_requests),
            requests_refused: r(&c.requests_refused),
            requests_expired: r(&c.requests_expired),
            peer_queued: r(&c.peer_queued),
            peer_queued_bytes: r(&c.peer_queued_bytes),
            sunk: r(&c.sunk),
            curve_handshakes: c.curve.get().map_or(0, |s| s.handshakes()),
            curve_failures: c.curve.get().map_or(0, |s| s.handshake_failures()),
            unauthorized: c.curve.get().map_or(0, |s| s.unauthorized()) + r(&c.host_unauthorized),
            curve_rejected: c.curve.get().map_or(0, |s| s.rejected_messages()),
            sink_rows: r(&sinks.rows),
            sink_batches: r(&sinks.batches),
            sink_errors: r(&sinks.errors),
            sink_lost: r(&sinks.lost),
            sink_failing: r(&sinks.failing),
            queue_wait: queue_wait.summary(),
            service: service.summary(),
        }
    }
}
