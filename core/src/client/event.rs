//! What the client engine tells its host: the events of a batch, and why a send was dropped.

use bytes::Bytes;

use crate::host::queue::Weighed;

#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent {
    Reply {
        id: u32,
        body: Bytes,
    },
    /// The server answered with an error reply; `message` is its text.
    ErrorReply {
        id: u32,
        message: Bytes,
    },
    Timeout {
        id: u32,
    },
    /// The request was written on a connection that went down before its reply.
    Reset {
        id: u32,
    },
    /// No endpoint would complete the CURVE handshake (wrong server key, our key refused, a
    /// plaintext server): the request was never sent.
    AuthFailed {
        id: u32,
    },
    /// No endpoint was an ipc server of a uid `expectServerUid` allows: the request was never
    /// sent.
    ServerUidRefused {
        id: u32,
    },
    /// A message the server pushed (empty corr).
    Push {
        body: Bytes,
    },
    /// A zerowire server acknowledged our hello on the connection to endpoint `link`.
    Ready {
        link: u32,
        client_id: String,
        server_pid: u32,
    },
    /// The connection to endpoint `link` went down (the engine reconnects by itself).
    Disconnected {
        link: u32,
    },
    /// An attempt to connect to endpoint `link` failed; the next one starts in `retry_ms`.
    /// `errno` is the OS error number, 0 when the failure was not the OS's (a timeout, a
    /// refused handshake); `message` says what happened. `auth`: the server refused the
    /// security handshake (CURVE keys). `peer_uid`: the ipc server runs as a uid
    /// `expectServerUid` refuses, and was dropped before anything was written to it.
    ConnectFailed {
        link: u32,
        errno: u32,
        timed_out: bool,
        auth: bool,
        peer_uid: bool,
        retry_ms: u32,
        message: String,
    },
    /// The reply to request `id` took `micros`, more than the `slow_request` threshold. Comes
    /// just before the reply's own event.
    Slow {
        id: u32,
        micros: u64,
    },
    /// Fire-and-forget messages dropped for `reason` since the last such event (reported at
    /// most once per second per client, and once more at close).
    Dropped {
        reason: DropReason,
        count: u64,
    },
    /// A refused `send()` or `request()` can be retried: the queue is down to half its
    /// high-water marks. Once per refusal episode.
    Drain,
    /// The engine finished closing; every request still pending is to be rejected.
    Closed,
}

/// What an event holds of what was received, for the client's receive bound.
impl Weighed for ClientEvent {
    fn bytes(&self) -> u64 {
        match self {
            ClientEvent::Reply { body, .. } | ClientEvent::Push { body } => body.len() as u64,
            ClientEvent::ErrorReply { message, .. } => message.len() as u64,
            _ => 0,
        }
    }
}

/// Why an accepted fire-and-forget message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Pushed out of a full queue by a newer message (`whenFull: "drop-oldest"`).
    Overflow,
    /// Still queued, or written but unconfirmed, when `close()` gave up after its linger time.
    Closed,
    /// Written to a connection that died before the server confirmed reading it.
    PeerLost,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::Overflow,
        DropReason::Closed,
        DropReason::PeerLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Overflow => "overflow",
            DropReason::Closed => "closed",
            DropReason::PeerLost => "peer-lost",
        }
    }
}

/// Drops not yet reported to the host, by reason: at most one `Dropped` event per reason per
/// interval (and all at close).
#[derive(Default)]
pub(super) struct DropTally {
    pending: [u64; 3],
    next_report: Option<tokio::time::Instant>,
}

impl DropTally {
    /// Drop events are rate-limited to one per reason per this interval.
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

    pub fn add(&mut self, reason: DropReason, count: u64) {
        self.pending[reason as usize] += count;
    }

    /// When the next report is due, if one is waiting.
    pub fn due(&self) -> Option<tokio::time::Instant> {
        self.pending
            .iter()
            .any(|&n| n > 0)
            .then_some(self.next_report)
            .flatten()
    }

    /// Appends the `Dropped` events due at `now` (all of them with `force`).
    pub fn report(
        &mut self,
        now: tokio::time::Instant,
        force: bool,
        events: &mut Vec<ClientEvent>,
    ) {
        if self.pending.iter().all(|&n| n == 0) {
            return;
        }
        if !force && self.next_report.is_some_and(|t| now < t) {
            return;
        }
        for reason in DropReason::ALL {
            let count = std::mem::take(&mut self.pending[reason as usize]);
            if count > 0 {
                events.push(ClientEvent::Dropped { reason, count });
            }
        }
        self.next_report = Some(now + Self::INTERVAL);
    }
}
