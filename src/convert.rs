//! Conversions between what JS hands over and the core's types. No N-API here.

use std::time::Duration;

use zerowire_core::stats::StatsSnapshot;
use zerowire_core::{ClientOptions, Error};

/// Options arrive as numbers in a fixed order (NaN = use the default):
/// requestTimeoutMs, sendHighWaterMark, sendHighWaterBytes, maxMessageBytes, lingerMs,
/// reconnectIntervalMs, reconnectMaxIntervalMs.
pub fn client_options(n: &[f64; 7]) -> Result<ClientOptions, Error> {
    const NAMES: [&str; 7] = [
        "requestTimeoutMs",
        "sendHighWaterMark",
        "sendHighWaterBytes",
        "maxMessageBytes",
        "lingerMs",
        "reconnectIntervalMs",
        "reconnectMaxIntervalMs",
    ];
    let mut o = ClientOptions::default();
    for (i, &v) in n.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if v < 0.0 || v.fract() != 0.0 || v > (1u64 << 53) as f64 {
            return Err(Error::InvalidOption(format!(
                "{} must be a non-negative integer, got {v}",
                NAMES[i]
            )));
        }
        let u = v as u64;
        let ms = Duration::from_millis(u);
        match i {
            0 => o.request_timeout = ms,
            1 => o.send_high_water_mark = u as usize,
            2 => o.send_high_water_bytes = u as usize,
            3 => o.max_message_bytes = u as usize,
            4 => o.linger = ms,
            5 => o.reconnect_interval = ms,
            _ => o.reconnect_max_interval = ms,
        }
    }
    // Raising only the first interval should not trip over the default maximum.
    if n[6].is_nan() && o.reconnect_max_interval < o.reconnect_interval {
        o.reconnect_max_interval = o.reconnect_interval;
    }
    Ok(o)
}

/// The counters `client.stats()` shows, by their JS names.
pub fn client_stats(s: &StatsSnapshot) -> [(&'static str, u64); 17] {
    [
        ("sent", s.sent),
        ("requests", s.requests),
        ("refused", s.refused),
        ("queued", s.queued),
        ("queuedBytes", s.queued_bytes),
        ("written", s.written),
        ("lost", s.lost),
        ("dropped", s.dropped),
        ("replies", s.replies),
        ("errorReplies", s.error_replies),
        ("timeouts", s.timeouts),
        ("lateReplies", s.late_replies),
        ("pushes", s.pushes),
        ("malformed", s.malformed),
        ("connects", s.connects),
        ("disconnects", s.disconnects),
        ("connectFailures", s.connect_failures),
    ]
}
