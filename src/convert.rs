//! Conversions between what JS hands over and the core's types. No N-API here.

use std::time::Duration;

use zerowire_core::latency::Summary;
use zerowire_core::server::{ServerOptions, ServerStats};
use zerowire_core::stats::StatsSnapshot;
use zerowire_core::{ClientOptions, Error};

/// Options arrive as numbers in a fixed order (NaN = use the default):
/// requestTimeoutMs, sendHighWaterMark, sendHighWaterBytes, maxMessageBytes, lingerMs,
/// reconnectIntervalMs, reconnectMaxIntervalMs, heartbeatIntervalMs, heartbeatTimeoutMs,
/// whenFull (0 refuse, 1 drop-oldest), slowRequestMs (0 = off).
pub const CLIENT_NUMBERS: usize = 11;

pub fn client_options(n: &[f64; CLIENT_NUMBERS]) -> Result<ClientOptions, Error> {
    const NAMES: [&str; CLIENT_NUMBERS] = [
        "requestTimeoutMs",
        "sendHighWaterMark",
        "sendHighWaterBytes",
        "maxMessageBytes",
        "lingerMs",
        "reconnectIntervalMs",
        "reconnectMaxIntervalMs",
        "heartbeatIntervalMs",
        "heartbeatTimeoutMs",
        "whenFull",
        "slowRequestMs",
    ];
    let mut o = ClientOptions::default();
    for (i, &v) in n.iter().enumerate() {
        let Some(u) = whole(NAMES[i], v)? else {
            continue;
        };
        let ms = Duration::from_millis(u);
        match i {
            0 => o.request_timeout = ms,
            1 => o.send_high_water_mark = u as usize,
            2 => o.send_high_water_bytes = u as usize,
            3 => o.max_message_bytes = u as usize,
            4 => o.linger = ms,
            5 => o.reconnect_interval = ms,
            6 => o.reconnect_max_interval = ms,
            7 => o.heartbeat_interval = ms,
            8 => o.heartbeat_timeout = ms,
            9 => o.drop_oldest = u == 1,
            _ => o.slow_request = (u > 0).then_some(ms),
        }
    }
    // Raising only the first interval should not trip over the default maximum.
    if n[6].is_nan() && o.reconnect_max_interval < o.reconnect_interval {
        o.reconnect_max_interval = o.reconnect_interval;
    }
    // Likewise, a shorter interval alone keeps the default ratio of three missed pings.
    if n[8].is_nan() && !n[7].is_nan() {
        o.heartbeat_timeout = o.heartbeat_interval * 3;
    }
    Ok(o)
}

/// The counters `client.stats()` shows, by their JS names.
pub fn client_stats(s: &StatsSnapshot) -> [(&'static str, u64); 26] {
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
    ]
}

/// Server options as numbers (NaN = default): sendHighWaterMark, sendHighWaterBytes,
/// maxMessageBytes, lingerMs, sniffBytes, socketMode, heartbeatTimeoutMs.
pub const SERVER_NUMBERS: usize = 7;

pub fn server_options(n: &[f64; SERVER_NUMBERS]) -> Result<ServerOptions, Error> {
    const NAMES: [&str; SERVER_NUMBERS] = [
        "sendHighWaterMark",
        "sendHighWaterBytes",
        "maxMessageBytes",
        "lingerMs",
        "sniffBytes",
        "socketMode",
        "heartbeatTimeoutMs",
    ];
    let mut o = ServerOptions::default();
    for (i, &v) in n.iter().enumerate() {
        let Some(u) = whole(NAMES[i], v)? else {
            continue;
        };
        match i {
            0 => o.send_high_water_mark = u as usize,
            1 => o.send_high_water_bytes = u as usize,
            2 => o.max_message_bytes = u as usize,
            3 => o.linger = Duration::from_millis(u),
            4 => o.sniff_bytes = u as usize,
            5 => o.socket_mode = u as u32,
            _ => o.heartbeat_timeout = Duration::from_millis(u),
        }
    }
    Ok(o)
}

/// A non-negative integer option, `None` for NaN (not given).
fn whole(name: &str, v: f64) -> Result<Option<u64>, Error> {
    if v.is_nan() {
        return Ok(None);
    }
    if v < 0.0 || v.fract() != 0.0 || v > (1u64 << 53) as f64 {
        return Err(Error::InvalidOption(format!(
            "{name} must be a non-negative integer, got {v}"
        )));
    }
    Ok(Some(v as u64))
}

pub fn server_stats(s: &ServerStats) -> [(&'static str, u64); 18] {
    [
        ("received", s.received),
        ("routed", s.routed),
        ("unrouted", s.unrouted),
        ("requests", s.requests),
        ("replies", s.replies),
        ("pushes", s.pushes),
        ("unroutable", s.unroutable),
        ("malformed", s.malformed),
        ("connects", s.connects),
        ("disconnects", s.disconnects),
        ("clients", s.clients),
        ("refused", s.refused),
        ("queued", s.queued),
        ("queuedBytes", s.queued_bytes),
        ("sunk", s.sunk),
        ("sinkRows", s.sink_rows),
        ("sinkBatches", s.sink_batches),
        ("sinkErrors", s.sink_errors),
    ]
}

/// `stats().latency` of a client: each histogram by its JS name.
pub fn client_latency(s: &StatsSnapshot) -> [(&'static str, Summary); 2] {
    [("request", s.request_rtt), ("queueWait", s.queue_wait)]
}

/// `stats().latency` of a server: each histogram by its JS name.
pub fn server_latency(s: &ServerStats) -> [(&'static str, Summary); 2] {
    [("queueWait", s.queue_wait), ("service", s.service)]
}
