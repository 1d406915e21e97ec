//! Client options and their limits. Defaults follow the README; validation happens once, at
//! construction, so the hot path never re-checks them.

use std::time::Duration;

use crate::error::Error;

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
        }
    }
}

/// The largest queue we agree to preallocate: the channel is bounded by the message HWM.
pub const MAX_HIGH_WATER_MARK: usize = 10_000_000;
/// Frames above this size are never sent; also bounds `maxMessageBytes`.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

impl ClientOptions {
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::InvalidOption(what));
        if self.send_high_water_mark == 0 || self.send_high_water_mark > MAX_HIGH_WATER_MARK {
            return bad(format!(
                "sendHighWaterMark must be 1..={MAX_HIGH_WATER_MARK}, got {}",
                self.send_high_water_mark
            ));
        }
        if self.send_high_water_bytes == 0 {
            return bad("sendHighWaterBytes must be at least 1".into());
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > MAX_MESSAGE_BYTES {
            return bad(format!(
                "maxMessageBytes must be 1..={MAX_MESSAGE_BYTES}, got {}",
                self.max_message_bytes
            ));
        }
        if self.request_timeout.is_zero() {
            return bad("requestTimeoutMs must be at least 1".into());
        }
        if self.reconnect_interval.is_zero()
            || self.reconnect_max_interval < self.reconnect_interval
        {
            return bad("reconnectIntervalMs must be ≥ 1 and ≤ reconnectMaxIntervalMs".into());
        }
        Ok(())
    }
}

/// Parses and checks an endpoint. The zeromq crate panics or aborts on some malformed input in
/// places, so we refuse anything that is not plainly `ipc://<path>` or `tcp://<host>:<port>`.
pub fn validate_endpoint(endpoint: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::InvalidEndpoint(format!("{endpoint:?}: {why}")));
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        if path.is_empty() {
            return bad("ipc:// needs a path");
        }
        if path.contains('\0') {
            return bad("path contains a NUL byte");
        }
        // sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
        if path.len() > 107 {
            return bad("ipc path is longer than 107 bytes (the Unix socket limit)");
        }
        Ok(())
    } else if let Some(rest) = endpoint.strip_prefix("tcp://") {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return bad("tcp:// needs host:port");
        };
        if host.is_empty() {
            return bad("tcp:// needs a host");
        }
        match port.parse::<u16>() {
            Ok(p) if p != 0 => Ok(()),
            _ => bad("port must be 1..=65535"),
        }
    } else {
        bad("only ipc:// and tcp:// endpoints are supported")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(validate_endpoint("ipc:///tmp/a.sock").is_ok());
        assert!(validate_endpoint("tcp://127.0.0.1:5555").is_ok());
        assert!(validate_endpoint("tcp://[::1]:5555").is_ok());
        assert!(validate_endpoint("inproc://x").is_err());
        assert!(validate_endpoint("tcp://127.0.0.1").is_err());
        assert!(validate_endpoint("tcp://127.0.0.1:0").is_err());
        assert!(validate_endpoint("tcp://:80").is_err());
        assert!(validate_endpoint("ipc://").is_err());
        let long = format!("ipc:///tmp/{}", "x".repeat(120));
        assert_eq!(
            validate_endpoint(&long).unwrap_err().code(),
            "ERR_INVALID_ARG_VALUE"
        );
    }

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
    }
}
