//! The client's options, their defaults and ranges. Validation happens once, at construction,
//! so the hot path never re-checks them.

use std::time::Duration;

use crate::curve::ClientCurve;
use crate::error::Error;
use crate::host::check_limits;
use crate::peer::ServerUid;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Default deadline of a request when the call gives none.
    pub request_timeout: Duration,
    /// Messages queued in Rust (not yet handed to the socket) before `send()` refuses.
    pub send_high_water_mark: usize,
    /// Bytes queued in Rust before `send()` refuses.
    pub send_high_water_bytes: usize,
    /// Larger payloads are rejected outright (EMSGSIZE).
    pub max_message_bytes: usize,
    /// How long `close()` may spend draining queued sends.
    pub linger: Duration,
    /// First delay between connection attempts; doubles up to `reconnect_max_interval`.
    pub reconnect_interval: Duration,
    pub reconnect_max_interval: Duration,
    /// Announced to the server in the hello (shown in its `connect` event).
    pub name: Option<String>,
    /// How often a zerowire server is pinged.
    pub heartbeat_interval: Duration,
    /// Silence from the server after which the connection is dropped and re-made.
    pub heartbeat_timeout: Duration,
    /// When the queue is full, drop the oldest queued send (reason `overflow`) instead of
    /// refusing the new one. The host still refuses at twice the marks, so memory stays bounded
    /// even if the engine thread cannot keep up.
    pub drop_oldest: bool,
    /// Replies slower than this (from the call to the reply) are reported as `Event::Slow`.
    pub slow_request: Option<Duration>,
    /// Bytes of received replies and pushes waiting for the host at most: past it the
    /// engine stops reading (the servers are pushed back by the kernel), it never drops.
    pub receive_high_water_bytes: usize,
    /// CURVE: the server key this client trusts (a server without its secret is never sent
    /// anything) and the client's own long-term keys.
    pub curve: Option<ClientCurve>,
    /// ipc://: the uid the server's process must have; checked on each connection before
    /// anything is written to it.
    pub expect_server_uid: ServerUid,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_millis(5000),
            send_high_water_mark: 100_000,
            send_high_water_bytes: 64 << 20,
            max_message_bytes: 16 << 20,
            linger: Duration::from_millis(1000),
            reconnect_interval: Duration::from_millis(100),
            reconnect_max_interval: Duration::from_millis(5000),
            name: None,
            heartbeat_interval: Duration::from_millis(1000),
            heartbeat_timeout: Duration::from_millis(3000),
            drop_oldest: false,
            slow_request: None,
            receive_high_water_bytes: 64 << 20,
            curve: None,
            expect_server_uid: ServerUid::SameOrRoot,
        }
    }
}

/// The longest `name` a client announces. Its hello must fit what any zerowire server reads
/// whatever its `maxMessageBytes` (the inbound slack of `protocol::socket_options`); a longer
/// one was dropped by the server at every attempt, a silent reconnect loop.
pub const MAX_NAME_BYTES: usize = 1024;

impl ClientOptions {
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::InvalidOption(what));
        check_limits(
            self.send_high_water_mark,
            self.send_high_water_bytes,
            self.max_message_bytes,
        )?;
        if self.receive_high_water_bytes == 0 {
            return bad("receiveHighWaterBytes must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return bad("requestTimeoutMs must be at least 1".into());
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_timeout < self.heartbeat_interval {
            // A timeout below the interval drops a healthy connection between two pings.
            return bad(
                "heartbeatIntervalMs must be ≥ 1 and at most heartbeatTimeoutMs (3× by default)"
                    .into(),
            );
        }
        if let Some(name) = &self.name {
            if name.len() > MAX_NAME_BYTES {
                return bad(format!(
                    "name must be at most {MAX_NAME_BYTES} bytes of UTF-8, got {}",
                    name.len()
                ));
            }
        }
        if let Some(curve) = &self.curve {
            curve.validate()?;
        }
        if self.reconnect_interval.is_zero()
            || self.reconnect_max_interval < self.reconnect_interval
        {
            return bad("reconnectIntervalMs must be ≥ 1 and ≤ reconnectMaxIntervalMs".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_ranges() {
        assert!(ClientOptions::default().validate().is_ok());
        let o = ClientOptions {
            send_high_water_mark: 0,
            ..Default::default()
        };
        assert!(o.validate().is_err());
        let o = ClientOptions {
            reconnect_max_interval: Duration::from_millis(1),
            ..Default::default()
        };
        assert!(o.validate().is_err());
        for (interval, timeout) in [(0, 3000), (1000, 0), (1000, 999)] {
            let o = ClientOptions {
                heartbeat_interval: Duration::from_millis(interval),
                heartbeat_timeout: Duration::from_millis(timeout),
                ..Default::default()
            };
            assert!(o.validate().is_err(), "{interval} {timeout}");
        }
        let o = ClientOptions {
            name: Some("x".repeat(MAX_NAME_BYTES + 1)),
            ..Default::default()
        };
        assert!(o.validate().is_err());
    }
}
