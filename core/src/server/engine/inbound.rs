//! What clients send a server: control traffic answered here (hello, goodbye, pings),
//! numbered sends checked against their session, and everything else sniffed for its route
//! and published to the host as one event.

use super::*;

impl ServerEngine {
    pub(super) fn inbound(&mut self, message: ZmqMessage, arrival: Arrival) {
        if let Some(message) = self.admit(message, arrival) {
            self.handle_inbound(message, arrival);
        }
    }

    pub(super) fn handle_inbound(&mut self, message: ZmqMessage, arrival: Arrival) {
        bump(&self.counters.received, 1);
        let mut frames = message.into_vec();
        if frames.len() != 3 || frames[1].len() > protocol::MAX_CORR_LEN {
            bump(&self.counters.malformed, 1);
            return;
        }
        let body = frames.pop().expect("three frames");
        let corr = frames.pop().expect("three frames");
        let identity = frames.pop().expect("three frames");
        // Received bytes are freed later (by the host): they count towards a trim.
        self.trim
            .released(body.len() as u64, Instant::from_std(arrival.at));
        // One lookup by identity per message; the batch's arrival time is the clock read.
        let known = self.by_identity.get(&identity).copied();
        if let Some(peer) = known.and_then(|i| self.peers.get_mut(&i)) {
            peer.last_heard = Instant::from_std(arrival.at);
        }
        match protocol::control_kind(&corr) {
            Some(CONTROL_HELLO) => {
                let index = self.peer_for(&identity, Some(&body));
                self.start_run(index, &body, true);
                let id = self.peers[&index].id.clone();
                let ack = protocol::ack_body(&id, std::process::id());
                self.backlog
                    .push_back(Outbound::control(Self::reply_frames(&identity, corr, ack)));
            }
            Some(CONTROL_GOODBYE) => {
                let index = self.by_identity.get(&identity).copied();
                if let Some(index) = index.filter(|&i| self.unconfirmed(i)) {
                    // The reply confirms everything before it, as an ack does: not before the
                    // host has handled it all and the sinks have committed their rows. One held
                    // per client (the latest), however many a peer sends.
                    match self.goodbyes.iter_mut().find(|(c, _)| *c == index) {
                        Some(held) => held.1 = corr,
                        None => self.goodbyes.push((index, corr)),
                    }
                    return;
                }
                // Everything this client sent before the goodbye is confirmed: say so.
                self.answer_goodbye(&identity, corr, index);
            }
            Some(protocol::CONTROL_SEQ) => {
                // A sequence mark is not answered: it only renumbers what follows.
                if let Some(index) = known {
                    self.start_run(index, &body, false);
                }
            }
            Some(_) => {
                // Pings, and unknown kinds (a newer client), get an empty reply.
                self.backlog.push_back(Outbound::control(Self::reply_frames(
                    &identity,
                    corr,
                    Bytes::new(),
                )));
            }
            None => {
                let client = match known {
                    Some(index) => index,
                    None => self.peer_for(&identity, None),
                };
                let seq = if corr.is_empty() {
                    match self.sequence(client) {
                        acks::Sequenced::Duplicate => {
                            // Read before by this process: handled (or about to be), and
                            // acked with the original.
                            bump(&self.counters.duplicates, 1);
                            return;
                        }
                        acks::Sequenced::Seq(seq) => Some(seq),
                        acks::Sequenced::Unnumbered => None,
                    }
                } else {
                    None
                };
                let route = match self.sniffer.sniff(&body).and_then(|n| self.routes.get(n)) {
                    Some(&Target::Host(index)) => index,
                    Some(&Target::Sink(i)) => {
                        self.sink(i, client, (&identity, corr), body, arrival, seq);
                        return;
                    }
                    None => NO_ROUTE,
                };
                bump(
                    if route == NO_ROUTE {
                        &self.counters.unrouted
                    } else {
                        &self.counters.routed
                    },
                    1,
                );
                let token = if corr.is_empty() {
                    if let Some(seq) = &seq {
                        self.count_send(seq, None);
                    }
                    NO_TOKEN
                } else {
                    bump(&self.counters.requests, 1);
                    if self.tokens.len() >= self.max_pending_requests {
                        // The host is not answering: say so now rather than hold more.
                        bump(&self.counters.requests_refused, 1);
                        let mut m = Self::reply_frames(
                            &identity,
                            corr,
                            Bytes::from_static(b"too many requests pending on the server"),
                        );
                        m.push_back(Bytes::from_static(ERROR_STATUS));
                        self.backlog.push_back(Outbound::data(m, None, None));
                        return;
                    }
                    let now = Instant::from_std(arrival.at);
                    self.spin.after_traffic(now);
                    let token = self.new_token();
                    let corr = Bytes::copy_from_slice(&corr);
                    self.tokens.insert(
                        token,
                        PendingReply {
                            client,
                            corr,
                            at: arrival.at,
                        },
                    );
                    self.token_order.push_back((now, token));
                    if let Some(peer) = self.peers.get_mut(&client) {
                        peer.pending += 1;
                    }
                    token
                };
                self.events.push(ServerEvent::Message {
                    route,
                    client,
                    token,
                    body,
                    arrived: arrival.at,
                    seq,
                });
            }
        }
    }
}
