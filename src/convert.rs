//! The core's stats as JS names them. No N-API here.

use zerowire_core::latency::Summary;
use zerowire_core::{ClientStats, ServerStats};

/// The counters `client.stats()` shows, by their JS names.
pub fn client_stats(s: &ClientStats) -> [(&'static str, u64); 28] {
    [
        ("sent", s.sent),
        ("refused", s.refused),
        ("delivered", s.delivered),
        ("dropped", s.dropped),
        ("droppedOverflow", s.dropped_overflow),
        ("droppedClosed", s.dropped_closed),
        ("droppedPeerLost", s.dropped_peer_lost),
        ("inFlight", s.in_flight),
        ("requests", s.requests),
        ("requestsRefused", s.requests_refused),
        ("queued", s.queued),
        ("queuedBytes", s.queued_bytes),
        ("written", s.written),
        ("expiredUnsent", s.expired_unsent),
        ("retries", s.retries),
        ("replayed", s.replayed),
        ("replies", s.replies),
        ("errorReplies", s.error_replies),
        ("timeouts", s.timeouts),
        ("resets", s.resets),
        ("heartbeatTimeouts", s.heartbeat_timeouts),
        ("lateReplies", s.late_replies),
        ("pushes", s.pushes),
        ("malformed", s.malformed),
        ("connects", s.connects),
        ("disconnects", s.disconnects),
        ("connectFailures", s.connect_failures),
        ("authFailures", s.auth_failures),
    ]
}

pub fn server_stats(s: &ServerStats) -> [(&'static str, u64); 32] {
    [
        ("received", s.received),
        ("routed", s.routed),
        ("unrouted", s.unrouted),
        ("requests", s.requests),
        ("replies", s.replies),
        ("pushes", s.pushes),
        ("unroutable", s.unroutable),
        ("malformed", s.malformed),
        ("duplicates", s.duplicates),
        ("connects", s.connects),
        ("disconnects", s.disconnects),
        ("clients", s.clients),
        ("refused", s.refused),
        ("tooLarge", s.too_large),
        ("queued", s.queued),
        ("queuedBytes", s.queued_bytes),
        ("peerRefused", s.peer_refused),
        ("pendingRequests", s.pending_requests),
        ("requestsRefused", s.requests_refused),
        ("requestsExpired", s.requests_expired),
        ("peerQueued", s.peer_queued),
        ("peerQueuedBytes", s.peer_queued_bytes),
        ("sunk", s.sunk),
        ("sinkRows", s.sink_rows),
        ("sinkBatches", s.sink_batches),
        ("sinkErrors", s.sink_errors),
        ("sinkLost", s.sink_lost),
        ("sinkFailing", s.sink_failing),
        ("curveHandshakes", s.curve_handshakes),
        ("curveFailures", s.curve_failures),
        ("unauthorized", s.unauthorized),
        ("curveRejected", s.curve_rejected),
    ]
}

/// `stats().latency` of a client: each histogram by its JS name.
pub fn client_latency(s: &ClientStats) -> [(&'static str, Summary); 2] {
    [("request", s.request_rtt), ("queueWait", s.queue_wait)]
}

/// `stats().latency` of a server: each histogram by its JS name.
pub fn server_latency(s: &ServerStats) -> [(&'static str, Summary); 2] {
    [("queueWait", s.queue_wait), ("service", s.service)]
}
