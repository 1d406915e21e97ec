//! The client's counters and the snapshot `stats()` returns. Each counter is written by one
//! thread only (see `counter`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::host::queue::QueueShared;
use crate::latency::{Histogram, Summary};

/// Both threads' counters of one client.
#[derive(Default)]
pub struct ClientCounters {
    pub host: ClientHostCounters,
    pub engine: ClientEngineCounters,
}

/// Written by the host thread only.
#[derive(Default)]
#[repr(align(64))]
pub struct ClientHostCounters {
    /// `send()` calls, accepted or refused.
    pub sent: AtomicU64,
    /// `send()` calls refused because a high-water mark was reached.
    pub refused: AtomicU64,
    /// Requests accepted by `request()`.
    pub requests: AtomicU64,
    /// `request()` calls refused because a high-water mark was reached.
    pub requests_refused: AtomicU64,
}

/// Written by the engine thread only.
#[derive(Default)]
#[repr(align(64))]
pub struct ClientEngineCounters {
    /// Messages (sends and requests) handed to the socket.
    pub written: AtomicU64,
    /// Fire-and-forget messages the server confirmed reading (a plain ZeroMQ peer cannot
    /// confirm: for it, written counts as delivered).
    pub delivered: AtomicU64,
    /// Fire-and-forget messages dropped, by reason (see `DropReason`).
    pub dropped_overflow: AtomicU64,
    pub dropped_closed: AtomicU64,
    pub dropped_peer_lost: AtomicU64,
    /// Requests that expired or were cancelled before they could be written.
    pub expired_unsent: AtomicU64,
    /// Requests sent again (the `retries` option).
    pub retries: AtomicU64,
    /// Fire-and-forget messages written again after their connection was lost.
    pub replayed: AtomicU64,
    pub replies: AtomicU64,
    pub error_replies: AtomicU64,
    pub timeouts: AtomicU64,
    /// Requests rejected because their connection went down.
    pub resets: AtomicU64,
    /// Connections dropped because the server fell silent.
    pub heartbeat_timeouts: AtomicU64,
    pub late_replies: AtomicU64,
    pub pushes: AtomicU64,
    pub malformed: AtomicU64,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Connection attempts that failed the CURVE handshake (among `connect_failures`).
    pub auth_failures: AtomicU64,
    /// Request round trips: from the engine taking the request to its reply.
    pub request_rtt: Histogram,
    /// Time messages (sends and requests) waited in the queue before they were written.
    pub queue_wait: Histogram,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub sent: u64,
    pub refused: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub dropped_overflow: u64,
    pub dropped_closed: u64,
    pub dropped_peer_lost: u64,
    /// Accepted sends not yet delivered or dropped: sent = delivered + refused + dropped + this.
    pub in_flight: u64,
    pub requests: u64,
    pub requests_refused: u64,
    pub queued: u64,
    pub queued_bytes: u64,
    pub written: u64,
    pub expired_unsent: u64,
    pub retries: u64,
    pub replayed: u64,
    pub replies: u64,
    pub error_replies: u64,
    pub timeouts: u64,
    pub resets: u64,
    pub heartbeat_timeouts: u64,
    pub late_replies: u64,
    pub pushes: u64,
    pub malformed: u64,
    pub connects: u64,
    pub disconnects: u64,
    pub connect_failures: u64,
    pub auth_failures: u64,
    pub connected: bool,
    pub request_rtt: Summary,
    pub queue_wait: Summary,
}

impl ClientStats {
    pub(crate) fn read(counters: &ClientCounters, queue: &QueueShared) -> Self {
        let (host, engine) = (&counters.host, &counters.engine);
        let connected = engine.connects.load(Relaxed) > engine.disconnects.load(Relaxed);
        let pushed = queue.host.pushed.load(Relaxed);
        let pushed_bytes = queue.host.pushed_bytes.load(Relaxed);
        let sent = host.sent.load(Relaxed);
        let refused = host.refused.load(Relaxed);
        let delivered = engine.delivered.load(Relaxed);
        let dropped_overflow = engine.dropped_overflow.load(Relaxed);
        let dropped_closed = engine.dropped_closed.load(Relaxed);
        let dropped_peer_lost = engine.dropped_peer_lost.load(Relaxed);
        let dropped = dropped_overflow + dropped_closed + dropped_peer_lost;
        ClientStats {
            sent,
            refused,
            delivered,
            dropped,
            dropped_overflow,
            dropped_closed,
            dropped_peer_lost,
            in_flight: sent.saturating_sub(refused + delivered + dropped),
            requests: host.requests.load(Relaxed),
            requests_refused: host.requests_refused.load(Relaxed),
            queued: pushed.saturating_sub(queue.engine.released.load(Relaxed)),
            queued_bytes: pushed_bytes.saturating_sub(queue.engine.released_bytes.load(Relaxed)),
            written: engine.written.load(Relaxed),
            expired_unsent: engine.expired_unsent.load(Relaxed),
            retries: engine.retries.load(Relaxed),
            replayed: engine.replayed.load(Relaxed),
            replies: engine.replies.load(Relaxed),
            error_replies: engine.error_replies.load(Relaxed),
            timeouts: engine.timeouts.load(Relaxed),
            resets: engine.resets.load(Relaxed),
            heartbeat_timeouts: engine.heartbeat_timeouts.load(Relaxed),
            late_replies: engine.late_replies.load(Relaxed),
            pushes: engine.pushes.load(Relaxed),
            malformed: engine.malformed.load(Relaxed),
            connects: engine.connects.load(Relaxed),
            disconnects: engine.disconnects.load(Relaxed),
            connect_failures: engine.connect_failures.load(Relaxed),
            auth_failures: engine.auth_failures.load(Relaxed),
            connected,
            request_rtt: engine.request_rtt.summary(),
            queue_wait: engine.queue_wait.summary(),
        }
    }
}
