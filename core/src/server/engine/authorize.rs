//! Clients the host has yet to authorize (an `authorize` function, asked about a CURVE key or
//! an ipc peer's credentials): what they send is held, bounded, until the host answers; a
//! refused one is disconnected and its messages dropped, so nothing of it reaches a handler.

use super::*;

impl ServerEngine {
    /// Under CURVE (or when the host decides about ipc peers), whether a message from a client
    /// not known yet may go on now: its record is there and approved. One waiting for the
    /// host's answer has it held; one without a record (refused, or left) is dropped and
    /// disconnected. Nothing from a client the host has not approved reaches it.
    pub(super) fn admit(&mut self, message: ZmqMessage, arrival: Arrival) -> Option<ZmqMessage> {
        let Some(keys) = self.keys.as_ref().filter(|_| self.gated) else {
            return Some(message);
        };
        let identity = message.get(0)?.clone();
        if self.by_identity.contains_key(&identity) {
            return Some(message);
        }
        if let Some(waiting) = self.awaiting.get_mut(&identity) {
            let size = message.iter().map(|f| f.len() as u64).sum::<u64>();
            if waiting.held.len() >= HELD_MESSAGES
                || self.held_bytes + size > self.receive_high_water_bytes
            {
                let request = waiting.request;
                self.refuse(request);
            } else {
                waiting.held.push_back((message, arrival));
                waiting.bytes += size;
                self.held_bytes += size;
            }
            return None;
        }
        match keys.get(&identity) {
            Some(key) if key.approved => Some(message),
            Some(key) => {
                self.next_auth = self.next_auth.wrapping_add(1).max(1);
                let request = self.next_auth;
                let size = message.iter().map(|f| f.len() as u64).sum::<u64>();
                let mut held = VecDeque::new();
                held.push_back((message, arrival));
                self.held_bytes += size;
                self.awaiting.insert(
                    identity.clone(),
                    Awaiting {
                        request,
                        held,
                        bytes: size,
                    },
                );
                self.auth_requests.insert(request, identity);
                self.events.push(ServerEvent::Authorize {
                    request,
                    public_key: key.public_key,
                    socket_type: key.socket_type,
                    credentials: key.credentials,
                });
                None
            }
            None => {
                self.cut_off.push(identity);
                None
            }
        }
    }

    /// The host's answer to an authorize request: the held messages go on, or the client
    /// is disconnected with them.
    pub(super) fn authorized(&mut self, request: u32, allow: bool) {
        if !allow {
            self.refuse(request);
            return;
        }
        let Some(identity) = self.auth_requests.remove(&request) else {
            return;
        };
        let Some(waiting) = self.awaiting.remove(&identity) else {
            return;
        };
        self.held_bytes -= waiting.bytes;
        if let Some(keys) = &self.keys {
            keys.approve(&identity);
        }
        for (message, arrival) in waiting.held {
            self.handle_inbound(message, arrival);
        }
    }

    pub(super) fn refuse(&mut self, request: u32) {
        let Some(identity) = self.auth_requests.remove(&request) else {
            return;
        };
        if let Some(waiting) = self.awaiting.remove(&identity) {
            self.held_bytes -= waiting.bytes;
        }
        bump(&self.counters.host_unauthorized, 1);
        // Without a record, whatever it still sends is dropped until it is gone.
        if let Some(keys) = &self.keys {
            keys.remove(&identity);
        }
        self.cut_off.push(identity);
    }

    /// A connection left: its key record and anything it had waiting go.
    pub(super) fn curve_peer_left(&mut self, identity: &Bytes) {
        let Some(keys) = &self.keys else {
            return;
        };
        keys.remove(identity);
        if let Some(waiting) = self.awaiting.remove(identity) {
            self.held_bytes -= waiting.bytes;
            self.auth_requests.remove(&waiting.request);
        }
    }

    /// Drops the key records of connections that failed after their authorization.
    pub(super) fn sweep_keys(&mut self, now: Instant, router: &Router) {
        let Some(keys) = &self.keys else {
            return;
        };
        if now < self.next_key_sweep {
            return;
        }
        self.next_key_sweep = now + STALE_RECORD;
        keys.sweep(|identity| {
            PeerIdentity::try_from(identity.clone())
                .is_ok_and(|p| router.send.peer_queued(&p).is_some())
        });
    }
}
