//! What goes out: the host's replies, pushes and broadcasts turned into frames, and the frames
//! handed to each client's own queue in the socket (never waiting on any of them).

use super::*;

/// A message for one client, as the engine hands it to that client's queue in the socket.
pub(super) struct Outbound {
    message: ZmqMessage,
    /// For the entry that completes a host message, its bytes (released from the host's
    /// queue accounting once handed over).
    pub(super) release: Option<u64>,
    /// For a reply, when its request was read (its service time is recorded then).
    arrived: Option<std::time::Instant>,
    /// Control replies (hello acks, pongs, goodbye replies, acks) take the client's urgent
    /// lane: they never wait behind its data, and a client that does not read cannot make
    /// them wait for anyone else.
    urgent: bool,
}

impl Outbound {
    pub(super) fn control(message: ZmqMessage) -> Self {
        Outbound {
            message,
            release: None,
            arrived: None,
            urgent: true,
        }
    }

    pub(super) fn data(
        message: ZmqMessage,
        release: Option<u64>,
        arrived: Option<std::time::Instant>,
    ) -> Self {
        Outbound {
            message,
            release,
            arrived,
            urgent: false,
        }
    }
}

impl ServerEngine {
    /// Turns what the host staged into frames in the backlog.
    pub(super) fn take_queue(&mut self) {
        while let Ok(batch) = self.queue.rx.try_recv() {
            for out in batch {
                let size = out.bytes();
                match out {
                    ServerOut::Reply { token, body, error } => {
                        let target = self.tokens.remove(&token).and_then(|r| {
                            let peer = self.peers.get_mut(&r.client)?;
                            peer.pending -= 1;
                            Some((&*peer, r.corr, r.at))
                        });
                        match target {
                            Some((peer, corr, at)) => {
                                let mut m = Self::reply_frames(&peer.identity, corr, body);
                                if error {
                                    m.push_back(Bytes::from_static(ERROR_STATUS));
                                }
                                bump(&self.counters.replies, 1);
                                self.backlog
                                    .push_back(Outbound::data(m, Some(size), Some(at)));
                            }
                            None => self.unroutable(size),
                        }
                    }
                    ServerOut::SendTo { client, body } => match self.peers.get(&client) {
                        Some(peer) => {
                            let m = Self::reply_frames(&peer.identity, Bytes::new(), body);
                            bump(&self.counters.pushes, 1);
                            self.backlog.push_back(Outbound::data(m, Some(size), None));
                        }
                        None => self.unroutable(size),
                    },
                    ServerOut::Broadcast { body } => {
                        let n = self.peers.len();
                        for (i, peer) in self.peers.values().enumerate() {
                            let m = Self::reply_frames(&peer.identity, Bytes::new(), body.clone());
                            // The host's message is released with its last copy.
                            let release = (i + 1 == n).then_some(size);
                            self.backlog.push_back(Outbound::data(m, release, None));
                        }
                        bump(&self.counters.pushes, n as u64);
                        if n == 0 {
                            self.shared.release(1, size);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn unroutable(&mut self, size: u64) {
        bump(&self.counters.unroutable, 1);
        self.shared.release(1, size);
    }

    /// Hands the backlog to the clients' queues in the socket. Never waits: a client whose
    /// queue is full (it does not read) has the message refused and counted, and nobody
    /// else notices.
    pub(super) fn flush(&mut self, router: &mut Router) {
        for identity in self.cut_off.drain(..) {
            if let Ok(peer) = PeerIdentity::try_from(identity) {
                router.send.disconnect_peer(&peer);
            }
        }
        let (mut messages, mut bytes) = (0u64, 0u64);
        for out in self.backlog.drain(..) {
            if let Some(at) = out.arrived {
                self.service.record_duration(at.elapsed());
            }
            if let Some(size) = out.release {
                messages += 1;
                bytes += size;
            }
            let handed = if out.urgent {
                router.send.try_send_urgent(out.message)
            } else {
                router.send.try_send(out.message)
            };
            match handed {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::PeerDropped(_)) => {
                    bump(&self.counters.peer_refused, 1)
                }
                // The client left between our lookup and the send: nothing to retry.
                Err(_) => bump(&self.counters.unroutable, 1),
            }
        }
        if messages > 0 {
            self.shared.release(messages, bytes);
        }
        let queued = router.send.queued();
        self.counters
            .peer_queued
            .store(queued.messages as u64, Ordering::Relaxed);
        self.counters
            .peer_queued_bytes
            .store(queued.bytes as u64, Ordering::Relaxed);
    }
}
