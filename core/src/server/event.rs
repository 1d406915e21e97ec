//! What the server engine tells its host.

use bytes::Bytes;

use crate::host::queue::Weighed;

/// Why a client is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// It said goodbye (a zerowire client's `close()`).
    Goodbye,
    /// Its connection closed without a goodbye.
    Closed,
    /// It fell silent past the heartbeat deadline.
    Timeout,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Goodbye => "goodbye",
            DisconnectReason::Closed => "closed",
            DisconnectReason::Timeout => "timeout",
        }
    }
}

/// A fire-and-forget message's place in its client session, and whether an earlier server
/// process (or connection) may have handled it already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSeq {
    pub session: u64,
    pub seq: u64,
    pub redelivered: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A client appeared: on its hello, or on its first message if it sends none. `info` is
    /// the hello's JSON body (empty for clients that do not speak the control protocol).
    Connect {
        client: u32,
        id: String,
        info: Bytes,
        /// Under CURVE, the long-term public key (Z85) the client proved.
        public_key: Option<std::sync::Arc<str>>,
        /// On ipc, the client process's credentials, as the kernel gave them.
        credentials: Option<zeromq::PeerCredentials>,
    },
    /// A client proved `public_key` (CURVE) or connected over ipc as `credentials`; its
    /// messages wait until the host answers `ServerControl::Authorize` with this `request`.
    Authorize {
        request: u32,
        public_key: Option<std::sync::Arc<str>>,
        socket_type: &'static str,
        credentials: Option<zeromq::PeerCredentials>,
    },
    /// `route` is the index the host registered (NO_ROUTE: none matched); `token` is the
    /// request's reply token (NO_TOKEN: fire-and-forget).
    Message {
        route: u32,
        client: u32,
        token: u32,
        body: Bytes,
        /// When the engine read it.
        arrived: std::time::Instant,
        /// Where it stands in its client's numbering (fire-and-forget from a client that
        /// numbers its sends).
        seq: Option<MessageSeq>,
    },
    Disconnect {
        client: u32,
        reason: DisconnectReason,
    },
    /// A refused reply or push can be retried: the queue is down to half its high-water
    /// marks. Once per refusal episode.
    Drain,
    /// The sink of route `route` cannot write (`message`: the path and the cause). Once per
    /// episode; its rows are kept and written again, the socket is not read meanwhile.
    SinkError {
        route: String,
        message: String,
    },
    /// The sink of route `route` writes again.
    SinkRecovered {
        route: String,
    },
    Closed,
}

/// What an event holds of what was received, for the server's receive bound.
impl Weighed for ServerEvent {
    fn bytes(&self) -> u64 {
        match self {
            ServerEvent::Message { body, .. } => body.len() as u64,
            ServerEvent::Connect { info, .. } => info.len() as u64,
            _ => 0,
        }
    }
}
