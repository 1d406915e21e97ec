//! Who a peer is: what a server's connection tasks learn of each peer before it joins the
//! ROUTER (its CURVE key, its ipc credentials), recorded by routing identity for the engine;
//! and the uid a client expects of the ipc server it connects to.
//!
//! The credentials are the kernel's (`SO_PEERCRED`, `getpeereid` on macOS), read by the
//! `zeromq` crate on the accepted or connected stream, so they name the process that called
//! `connect` (or `listen`) whatever it announces afterwards. The crate hands them to the
//! socket's authorizer (CURVE's, or `peer_authorizer` without CURVE) on the connection's task;
//! the authorizers made here write them down under the peer's routing identity, and the server
//! engine reads the record when the peer's first message arrives (`'connect'`, every `ctx`,
//! and an `authorize` function's `info`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::HashMap;
pub use zeromq::PeerCredentials;
use zeromq::SocketOptions;

/// What the crate's authorizer recorded of an admitted peer.
#[derive(Debug, Clone)]
pub struct PeerRecord {
    /// Under CURVE, the long-term public key (Z85) the peer proved.
    pub public_key: Option<Arc<str>>,
    pub socket_type: &'static str,
    /// On ipc, the peer process's credentials.
    pub credentials: Option<PeerCredentials>,
    /// Whether the host still has to approve it (an `authorize` function).
    pub approved: bool,
    recorded: Instant,
}

/// Routing identity → what its connection showed, for the peers admitted and not yet seen to
/// leave. Written by the authorizer (on the crate's connection tasks) and by the engine.
#[derive(Default)]
pub struct PeerRecords {
    peers: Mutex<HashMap<Bytes, PeerRecord>>,
}

/// A record still unmatched by a connected peer after this long was left by a connection
/// that failed after its authorization (the sweep removes it).
pub(crate) const STALE_RECORD: Duration = Duration::from_secs(10);

impl PeerRecords {
    /// Records a peer the authorizer lets in. A routing identity already on record belongs to
    /// a peer still connected (or whose departure the engine has yet to see): the crate would
    /// refuse the new connection anyway, and writing its record there would lend its key and
    /// credentials to the peer that has the identity.
    pub(crate) fn admit(
        &self,
        identity: Bytes,
        public_key: Option<Arc<str>>,
        socket_type: &'static str,
        credentials: Option<PeerCredentials>,
        approved: bool,
    ) -> bool {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.contains_key(&identity) {
            return false;
        }
        peers.insert(
            identity,
            PeerRecord {
                public_key,
                socket_type,
                credentials,
                approved,
                recorded: Instant::now(),
            },
        );
        true
    }

    /// Makes `options` (a plaintext ipc server's) record each peer's credentials here; the
    /// host approves each one first when `host_decides`.
    pub(crate) fn record_ipc_peers(
        self: &Arc<Self>,
        options: &mut SocketOptions,
        host_decides: bool,
    ) {
        let records = self.clone();
        options.peer_authorizer(move |peer| {
            records.admit(
                peer.identity.clone().into(),
                None,
                peer.socket_type.as_str(),
                peer.credentials,
                !host_decides,
            )
        });
    }

    pub(crate) fn get(&self, identity: &Bytes) -> Option<PeerRecord> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(identity).cloned()
    }

    pub(crate) fn approve(&self, identity: &Bytes) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = peers.get_mut(identity) {
            p.approved = true;
        }
    }

    pub(crate) fn remove(&self, identity: &Bytes) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.remove(identity);
    }

    /// Drops the records older than [`STALE_RECORD`] whose peer is not connected.
    pub(crate) fn sweep(&self, connected: impl Fn(&Bytes) -> bool) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        peers.retain(|id, p| now.duration_since(p.recorded) < STALE_RECORD || connected(id));
    }
}

/// Which uid the ipc server a client connects to must run as. Checked on each connection
/// before anything is written to it; where the platform gives no credentials (Windows) there
/// is nothing to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerUid {
    /// The client's own effective uid, or root (which can take over any socket file anyway).
    #[default]
    SameOrRoot,
    /// Exactly this uid.
    Only(u32),
    /// No check.
    Any,
}

impl ServerUid {
    /// Whether a server running as `uid` passes.
    pub fn accepts(self, uid: u32) -> bool {
        match self {
            ServerUid::SameOrRoot => uid == 0 || Some(uid) == own_uid(),
            ServerUid::Only(expected) => uid == expected,
            ServerUid::Any => true,
        }
    }

    /// Makes the connections `options` are for refuse an ipc server this does not accept.
    pub(crate) fn apply(self, options: &mut SocketOptions) {
        if self == ServerUid::Any || cfg!(not(unix)) {
            return;
        }
        options.ipc_peer_check(move |c| self.accepts(c.uid));
    }
}

#[cfg(unix)]
fn own_uid() -> Option<u32> {
    Some(rustix::process::geteuid().as_raw())
}

#[cfg(not(unix))]
fn own_uid() -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_uids() {
        let me = own_uid().unwrap_or(0);
        assert!(ServerUid::SameOrRoot.accepts(me));
        assert!(ServerUid::SameOrRoot.accepts(0));
        assert!(!ServerUid::SameOrRoot.accepts(me.wrapping_add(65_000).max(1)));
        assert!(ServerUid::Only(65_534).accepts(65_534));
        assert!(!ServerUid::Only(65_534).accepts(0));
        assert!(ServerUid::Any.accepts(12_345));
    }
}
