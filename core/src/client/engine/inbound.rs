//! What a server sends a client: replies (and what they confirm), pushes, acks, and the
//! answers to the client's own hello and goodbye.

use super::*;

impl ClientEngine {
    pub(super) fn handle_inbound(&mut self, i: usize, message: ZmqMessage) {
        // One clock read per message serves the heartbeat, the round trip and the spin.
        let now = Instant::now();
        // Received bytes are freed later (by the host): they count towards a trim, as on a
        // server.
        let bytes: usize = message.iter().map(|frame| frame.len()).sum();
        self.trim.released(bytes as u64, now);
        let link = &mut self.links[i];
        link.last_heard = now;
        let counters = &self.counters.engine;
        match protocol::classify(message.into_vec()) {
            Inbound::Reply { id, body } => {
                if let Some(p) = self.requests.remove_replied(id) {
                    Self::settled(&self.options, counters, &mut self.events, link, id, &p, now);
                    // The host often answers a reply with its next request.
                    self.spin.after_traffic(now);
                    bump(&counters.replies, 1);
                    self.events.push(ClientEvent::Reply { id, body });
                } else {
                    bump(&counters.late_replies, 1);
                }
            }
            Inbound::ErrorReply { id, message } => {
                if let Some(p) = self.requests.remove_replied(id) {
                    Self::settled(&self.options, counters, &mut self.events, link, id, &p, now);
                    bump(&counters.error_replies, 1);
                    self.events.push(ClientEvent::ErrorReply { id, message });
                } else {
                    bump(&counters.late_replies, 1);
                }
            }
            Inbound::Push { body } => {
                bump(&counters.pushes, 1);
                self.events.push(ClientEvent::Push { body });
            }
            Inbound::Control { frame, body } => {
                if protocol::control_kind(&frame) == Some(protocol::CONTROL_ACK) {
                    // Absolute per session, so a stale or repeated ack changes nothing; it may
                    // confirm another endpoint's session replayed on this connection.
                    if let Some((session, handled)) = protocol::parse_ack_seq(&body) {
                        if let Some(owner) = self.links.iter_mut().find(|l| l.session == session) {
                            let (n, bytes) = owner.confirm(handled);
                            bump(&counters.delivered, n);
                            self.shared.release(n, bytes);
                        }
                    } else if let Some(count) = protocol::parse_ack_count(&body) {
                        // A server from before sessions: how many of this connection's sends
                        // it handled (cumulative).
                        let count = count.min(link.written);
                        if count > link.acked && link.server == ServerKind::Counts {
                            bump(&counters.delivered, count - link.acked);
                            link.acked = count;
                        }
                    }
                } else if link.barrier.as_ref() == Some(&frame) {
                    // Everything before the goodbye was read.
                    link.barrier = None;
                    link.unconfirmed = false;
                    let epoch = link.epoch;
                    if !link.server.keeps() {
                        bump(&counters.delivered, link.unacked());
                    }
                    link.acked = link.written;
                    for l in &mut self.links {
                        let (n, bytes) = l.release_written_on(epoch);
                        bump(&counters.delivered, n);
                        self.shared.release(n, bytes);
                    }
                } else if link.hello.as_ref() == Some(&frame) {
                    link.hello_deadline = None;
                    // A plain ROUTER may echo the hello back: only a real ack makes us ready.
                    match protocol::parse_ack(&body) {
                        Some((client_id, server_pid, sessions)) => {
                            if !sessions {
                                self.keeps_nothing(i, ServerKind::Counts);
                            }
                            let link = &mut self.links[i];
                            link.server = if sessions {
                                ServerKind::Acks
                            } else {
                                ServerKind::Counts
                            };
                            link.next_ping = Some(Instant::now() + self.options.heartbeat_interval);
                            self.events.push(ClientEvent::Ready {
                                link: i as u32,
                                client_id,
                                server_pid,
                            });
                        }
                        None => self.became_plain(i),
                    }
                }
            }
            Inbound::Malformed => bump(&counters.malformed, 1),
        }
    }

    /// A request got its (error) reply at `now`: what that confirms of the link's sends, its
    /// round trip, and a report if it was slow.
    pub(super) fn settled(
        options: &ClientOptions,
        counters: &ClientEngineCounters,
        events: &mut Vec<ClientEvent>,
        link: &mut Link,
        id: u32,
        p: &Pending,
        now: Instant,
    ) {
        Self::confirm_by_reply(link, p, counters);
        let rtt = now.saturating_duration_since(p.started);
        counters.request_rtt.record_duration(rtt);
        if options.slow_request.is_some_and(|limit| rtt >= limit) {
            let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
            events.push(ClientEvent::Slow { id, micros });
        }
    }

    /// A plain ROUTER reads a connection in order: the reply to a request proves the sends
    /// written before it were read. (A zerowire server's acks say more: handled.)
    pub(super) fn confirm_by_reply(link: &mut Link, p: &Pending, counters: &ClientEngineCounters) {
        if link.server == ServerKind::Plain
            && p.written_in == Some(link.epoch)
            && p.confirms > link.acked
        {
            bump(&counters.delivered, p.confirms - link.acked);
            link.acked = p.confirms;
        }
    }
}
