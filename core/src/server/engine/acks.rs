//! Acks: which of a client's sends the host has handled (or a sink has committed), confirmed
//! to the client a few milliseconds apart (cumulative counts, so one small message confirms
//! thousands).

use super::*;

/// How long a client's confirmed sends may wait before they are acked: acks are cumulative, so
/// under load one small message per client per interval confirms thousands.
pub(super) const ACK_DELAY: Duration = Duration::from_millis(5);

/// Sends of a client up to `count` are acked once the host has handled `handled` events and,
/// for a sink row among them, once `sink.0` has committed `sink.1` rows.
pub(super) struct Mark {
    handled: u64,
    sink: Option<(usize, u64)>,
    count: u64,
}

impl Mark {
    pub(super) fn awaits_sink(&self) -> bool {
        self.sink.is_some()
    }
}

impl ServerEngine {
    /// Notes a send from a client that understands acks. Without `sink`, its event is the
    /// next one pushed and it counts as handled once the host has run that event's handler;
    /// a row handed to sink `i` at position `p` counts once the host has handled everything
    /// pushed before it and the sink has committed it.
    pub(super) fn count_send(&mut self, client: u32, sink: Option<(usize, u64)>) {
        let Some(peer) = self.peers.get_mut(&client) else {
            return;
        };
        if !peer.pings {
            return;
        }
        peer.sends_read += 1;
        let handled = self.published + self.events.len() as u64 + u64::from(sink.is_none());
        match peer.marks.back_mut() {
            // Same unpublished batch, and no other sink's rows to wait for: one mark covers it.
            Some(mark)
                if mark.handled > self.published
                    && (sink.is_none()
                        || mark.sink.is_none_or(|(i, _)| Some(i) == sink.map(|s| s.0))) =>
            {
                mark.handled = handled;
                mark.sink = sink.or(mark.sink);
                mark.count = peer.sends_read;
            }
            _ => {
                if peer.marks.is_empty() {
                    self.unacked.push(client);
                }
                peer.marks.push_back(Mark {
                    handled,
                    sink,
                    count: peer.sends_read,
                })
            }
        }
        self.ack_at
            .get_or_insert_with(|| Instant::now() + ACK_DELAY);
    }

    /// Acks, to each client with news, how many of its sends the host has handled.
    pub(super) fn send_acks(&mut self, now: Instant) {
        if self.ack_at.is_none_or(|t| now < t) {
            return;
        }
        let handled = self.outbox.handled();
        let mut waiting = Vec::new();
        for client in std::mem::take(&mut self.unacked) {
            let Some(peer) = self.peers.get_mut(&client) else {
                continue;
            };
            let mut confirmed = peer.acked;
            while let Some(mark) = peer.marks.front() {
                let stored = mark
                    .sink
                    .is_none_or(|(i, row)| self.sinks[i].committed() >= row);
                if mark.handled > handled || !stored {
                    break;
                }
                confirmed = mark.count;
                peer.marks.pop_front();
            }
            if confirmed > peer.acked {
                peer.acked = confirmed;
                let (corr, body) = protocol::encode_ack(confirmed);
                let mut m = ZmqMessage::from(peer.identity.clone());
                m.push_back(corr);
                m.push_back(body);
                self.backlog.push_back(Outbound::control(m));
            }
            if !peer.marks.is_empty() {
                waiting.push(client);
            }
        }
        self.ack_at = (!waiting.is_empty()).then(|| now + ACK_DELAY);
        self.unacked = waiting;
    }
}
