//! The server's options, their defaults and ranges, checked once when it binds.

use std::time::Duration;

use crate::curve::ServerCurve;
use crate::error::Error;
use crate::host::{check_limits, MAX_HIGH_WATER_MARK};

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The top-level JSON field routes are keyed by.
    pub type_field: String,
    /// How many leading bytes of a message the router looks at.
    pub sniff_bytes: usize,
    /// Mode of the ipc:// socket file.
    pub socket_mode: u32,
    pub send_high_water_mark: usize,
    pub send_high_water_bytes: usize,
    pub max_message_bytes: usize,
    pub linger: Duration,
    /// A client that said hello (so it pings) and is then silent this long is dropped with a
    /// `timeout` disconnect. Plain DEALERs, which never ping, are never timed out.
    pub heartbeat_timeout: Duration,
    /// Requests read and not yet answered, at most; one more is answered at once with an
    /// error reply (EREMOTE at the client) and never reaches a handler.
    pub max_pending_requests: usize,
    /// A request not answered by then is forgotten (its client gave up long before: its own
    /// default timeout is 5 s); a late reply is counted as unroutable.
    pub pending_request_timeout: Duration,
    /// A client whose queue has refused every reply and push for this long (it does not
    /// read) is disconnected, its queue dropped. `None`: it is only refused.
    pub drop_stuck_client_after: Option<Duration>,
    /// Bytes of received messages waiting for the host at most: past it the engine stops
    /// reading (the sockets push back on the clients), it never drops.
    pub receive_high_water_bytes: usize,
    /// Bind now but read nothing until [`Server::start`]: a host registers its routes first,
    /// so no early message is misrouted (a reconnecting client can be there at once).
    pub start_paused: bool,
    /// CURVE: encrypt every connection and authenticate every client (and who may connect).
    pub curve: Option<ServerCurve>,
    /// Serve plaintext on an address other hosts can reach (refused by default).
    pub insecure: bool,
    /// Without CURVE, on ipc://: the host decides about each peer by its credentials
    /// (`ServerEvent::Authorize`). Under CURVE, `curve.authorize` says who decides.
    pub authorize_by_host: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            type_field: "type".into(),
            sniff_bytes: 256,
            socket_mode: 0o600,
            send_high_water_mark: 100_000,
            send_high_water_bytes: 64 << 20,
            max_message_bytes: 16 << 20,
            linger: Duration::from_millis(1000),
            heartbeat_timeout: Duration::from_millis(3000),
            max_pending_requests: 100_000,
            pending_request_timeout: Duration::from_millis(60_000),
            receive_high_water_bytes: 64 << 20,
            drop_stuck_client_after: None,
            start_paused: false,
            curve: None,
            insecure: false,
            authorize_by_host: false,
        }
    }
}

impl ServerOptions {
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::InvalidOption(what));
        if self.type_field.is_empty() {
            return bad("typeField must not be empty".into());
        }
        if self.sniff_bytes == 0 || self.sniff_bytes > 1 << 20 {
            return bad("sniffBytes must be 1..=1048576".into());
        }
        if self.heartbeat_timeout.is_zero() {
            return bad("heartbeatTimeoutMs must be at least 1".into());
        }
        if self.max_pending_requests == 0 || self.max_pending_requests > MAX_HIGH_WATER_MARK {
            return bad(format!(
                "maxPendingRequests must be 1..={MAX_HIGH_WATER_MARK}, got {}",
                self.max_pending_requests
            ));
        }
        if self.pending_request_timeout.is_zero() {
            return bad("pendingRequestTimeoutMs must be at least 1".into());
        }
        if self.receive_high_water_bytes == 0 {
            return bad("receiveHighWaterBytes must be at least 1".into());
        }
        if self.socket_mode > 0o777 {
            return bad(format!(
                "socketMode must be 0..=0o777, got {:o}",
                self.socket_mode
            ));
        }
        if let Some(curve) = &self.curve {
            curve.validate()?;
        }
        check_limits(
            self.send_high_water_mark,
            self.send_high_water_bytes,
            self.max_message_bytes,
        )
    }
}
