//! Client sessions and acks: what the server has read and handled of each client session's
//! numbered sends, duplicates recognised, and the handled seq confirmed to the client a few
//! milliseconds apart (absolute per session, so one small message confirms thousands).

use super::*;
use crate::server::event::MessageSeq;

/// How long a client's confirmed sends may wait before they are acked: acks are cumulative, so
/// under load one small message per client per interval confirms thousands.
pub(super) const ACK_DELAY: Duration = Duration::from_millis(5);

/// Sessions remembered at most. Beyond it those idle longest among the ones with no connection
/// and nothing in flight are forgotten: a replay of one is then delivered marked redelivered,
/// never dropped. (Sessions of live connections are never forgotten; a connection keeps at
/// most `PEER_SESSIONS`.)
pub(super) const MAX_SESSIONS: usize = 16_384;

/// Sessions one connection may announce (its own and, after a failover, its other
/// endpoints'); beyond it the oldest is detached from the connection.
const PEER_SESSIONS: usize = 16;

/// What this process knows of one client session.
pub(super) struct Session {
    /// Every seq below it was read (or handled elsewhere, as the client's numbering shows):
    /// a message below it is a duplicate.
    read_next: u64,
    /// Every seq below it was handled; the last value acked to the client.
    handled_next: u64,
    acked: u64,
    /// The connection acks go to (the last one to announce the session).
    peer: Option<u32>,
    /// What must be done before `handled_next` moves on: an ack confirms only what the
    /// host's handlers have run on and what sinks have committed, so a server killed right
    /// after an ack lost nothing acked.
    marks: VecDeque<Mark>,
    /// Ack even without news: a new connection has not heard the last ack.
    reack: bool,
    /// In `unacked`.
    queued: bool,
    last_active: u64,
}

/// `handled_next` becomes `next` once the host has handled `events` events and, for a sink's
/// row, sink `sink.0` has finished `sink.1` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    events: u64,
    sink: Option<(usize, u64)>,
    next: u64,
}

/// What the numbering says of a fire-and-forget message just read.
pub(super) enum Sequenced {
    /// Its client does not number its sends.
    Unnumbered,
    /// Read before by this process.
    Duplicate,
    Seq(MessageSeq),
}

impl ServerEngine {
    /// A hello or sequence mark from `client`: its next fire-and-forget message carries the
    /// run's seq.
    pub(super) fn start_run(&mut self, client: u32, body: &Bytes, hello: bool) {
        let Some(peer) = self.peers.get_mut(&client) else {
            return;
        };
        let run = match protocol::Run::parse(body) {
            Some(run) => run,
            // A client from before sessions: its sends are numbered here, in a session of its
            // connection alone (it never replays), and acked as it expects, by count.
            None if hello => {
                peer.count_acks = true;
                protocol::Run {
                    session: protocol::random_id(),
                    seq: 0,
                    resent: 0,
                }
            }
            None => return,
        };
        peer.run = Some(run);
        if !peer.sessions.contains(&run.session) {
            if peer.sessions.len() >= PEER_SESSIONS {
                let old = peer.sessions.remove(0);
                if let Some(s) = self.sessions.get_mut(&old) {
                    if s.peer == Some(client) {
                        s.peer = None;
                    }
                }
            }
            peer.sessions.push(run.session);
        }
        self.session_clock += 1;
        let clock = self.session_clock;
        if !self.sessions.contains_key(&run.session) {
            self.forget_idle_session();
        }
        let needed = self.published + self.events.len() as u64;
        let s = self.sessions.entry(run.session).or_insert(Session {
            read_next: run.seq,
            handled_next: run.seq,
            acked: 0,
            peer: None,
            marks: VecDeque::new(),
            reack: false,
            queued: false,
            last_active: clock,
        });
        s.peer = Some(client);
        s.last_active = clock;
        // The client numbers from the oldest message it has not seen acked: everything below
        // that was handled, here or by another server.
        if run.seq > s.read_next {
            s.read_next = run.seq;
            let mark = Mark {
                events: needed,
                sink: None,
                next: run.seq,
            };
            Self::push_mark(s, mark, self.published);
        }
        s.reack = true;
        if !s.queued {
            s.queued = true;
            self.unacked.push(run.session);
        }
        self.ack_at
            .get_or_insert_with(|| Instant::now() + ACK_DELAY);
    }

    /// Numbers a fire-and-forget message just read from `client`.
    pub(super) fn sequence(&mut self, client: u32) -> Sequenced {
        let Some(run) = self.peers.get_mut(&client).and_then(|p| p.run.as_mut()) else {
            return Sequenced::Unnumbered;
        };
        let seq = run.seq;
        let redelivered = run.resent > 0;
        run.seq = run.seq.wrapping_add(1);
        run.resent = run.resent.saturating_sub(1);
        let session = run.session;
        let Some(s) = self.sessions.get_mut(&session) else {
            return Sequenced::Unnumbered;
        };
        if seq < s.read_next {
            return Sequenced::Duplicate;
        }
        s.read_next = seq + 1;
        Sequenced::Seq(MessageSeq {
            session,
            seq,
            redelivered,
        })
    }

    /// Notes a numbered send. Without `sink`, its event is the next one pushed and it counts
    /// as handled once the host has run that event's handler; a row handed to sink `i` at
    /// position `p` counts once the sink has committed it and the host has handled everything
    /// pushed before it.
    pub(super) fn count_send(&mut self, seq: &MessageSeq, sink: Option<(usize, u64)>) {
        let Some(s) = self.sessions.get_mut(&seq.session) else {
            return;
        };
        let mark = Mark {
            events: self.published + self.events.len() as u64 + u64::from(sink.is_none()),
            sink,
            next: seq.seq + 1,
        };
        Self::push_mark(s, mark, self.published);
        if !s.queued {
            s.queued = true;
            self.unacked.push(seq.session);
        }
        self.ack_at
            .get_or_insert_with(|| Instant::now() + ACK_DELAY);
    }

    fn push_mark(s: &mut Session, mark: Mark, published: u64) {
        match s.marks.back_mut() {
            // Same unpublished batch (and the same sink, if any): one mark covers it.
            Some(last)
                if (last.events > published || last.events >= mark.events)
                    && (last.sink.is_none()
                        || mark.sink.is_none()
                        || last.sink.map(|k| k.0) == mark.sink.map(|k| k.0)) =>
            {
                last.events = last.events.max(mark.events);
                last.sink = match (last.sink, mark.sink) {
                    (Some((i, a)), Some((_, b))) => Some((i, a.max(b))),
                    (a, b) => a.or(b),
                };
                last.next = last.next.max(mark.next);
            }
            _ => s.marks.push_back(mark),
        }
    }

    /// Whether some of this client's numbered sends are not yet confirmed: handled by the host
    /// and, for sink rows, committed.
    pub(super) fn unconfirmed(&self, client: u32) -> bool {
        let Some(peer) = self.peers.get(&client) else {
            return false;
        };
        peer.sessions
            .iter()
            .any(|id| self.sessions.get(id).is_some_and(|s| !s.marks.is_empty()))
    }

    /// Answers the goodbyes held for sends that are now confirmed (their acks went first).
    pub(super) fn answer_goodbyes(&mut self) {
        if self.goodbyes.is_empty() {
            return;
        }
        for (client, corr) in std::mem::take(&mut self.goodbyes) {
            if self.unconfirmed(client) {
                self.goodbyes.push((client, corr));
                continue;
            }
            // Gone meanwhile: its connection closed, nobody to answer.
            if let Some(identity) = self.peers.get(&client).map(|p| p.identity.clone()) {
                self.answer_goodbye(&identity, corr, Some(client));
            }
        }
    }

    /// Answers a goodbye (everything before it is confirmed) and forgets its client, if known.
    pub(super) fn answer_goodbye(&mut self, identity: &Bytes, corr: Bytes, client: Option<u32>) {
        self.backlog.push_back(Outbound::control(Self::reply_frames(
            identity,
            corr,
            Bytes::new(),
        )));
        if let Some(client) = client {
            self.forget(client, DisconnectReason::Goodbye);
        }
    }

    /// Sends every connected session its last ack again at the next round (cumulative, so it
    /// changes nothing but the client's last-heard time).
    pub(super) fn reack_all(&mut self, now: Instant) {
        for (id, s) in &mut self.sessions {
            if s.peer.is_some() {
                s.reack = true;
                if !s.queued {
                    s.queued = true;
                    self.unacked.push(*id);
                }
            }
        }
        self.ack_at = Some(now);
    }

    /// The connection `client` is gone: its sessions wait for another.
    pub(super) fn sessions_left(&mut self, client: u32, sessions: &[u64]) {
        for id in sessions {
            if let Some(s) = self.sessions.get_mut(id) {
                if s.peer == Some(client) {
                    s.peer = None;
                }
            }
        }
    }

    /// At the bound, forgets the sessions idle longest among those with no connection and
    /// nothing waiting to be handled: an eighth of the bound at once, so that a peer announcing
    /// session after session costs a scan per many of them, not one each.
    fn forget_idle_session(&mut self) {
        if self.sessions.len() < MAX_SESSIONS {
            return;
        }
        let mut idle: Vec<(u64, u64)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.peer.is_none() && s.marks.is_empty() && !s.queued)
            .map(|(id, s)| (s.last_active, *id))
            .collect();
        let n = (MAX_SESSIONS / 8).min(idle.len());
        if n == 0 {
            return;
        }
        idle.select_nth_unstable(n - 1);
        for (_, id) in &idle[..n] {
            self.sessions.remove(id);
        }
    }

    /// Acks, to each session's connection, the seq below which the host has handled it all.
    pub(super) fn send_acks(&mut self, now: Instant) {
        if self.ack_at.is_none_or(|t| now < t) {
            return;
        }
        let handled = self.outbox.handled();
        let mut waiting = Vec::new();
        for id in std::mem::take(&mut self.unacked) {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            s.queued = false;
            while let Some(&mark) = s.marks.front() {
                let sunk = mark
                    .sink
                    .is_none_or(|(i, n)| self.sinks[i].committed() >= n);
                if mark.events > handled || !sunk {
                    break;
                }
                s.handled_next = s.handled_next.max(mark.next);
                s.marks.pop_front();
            }
            if s.handled_next > s.acked || s.reack {
                if let Some(peer) = s.peer.and_then(|p| self.peers.get(&p)) {
                    s.acked = s.handled_next;
                    s.reack = false;
                    let (corr, body) = if peer.count_acks {
                        protocol::encode_ack_count(s.handled_next)
                    } else {
                        protocol::encode_ack(id, s.handled_next)
                    };
                    let m = Self::reply_frames(&peer.identity, corr, body);
                    self.backlog.push_back(Outbound::control(m));
                }
            }
            if !s.marks.is_empty() {
                s.queued = true;
                waiting.push(id);
            }
        }
        self.ack_at = (!waiting.is_empty()).then(|| now + ACK_DELAY);
        self.unacked = waiting;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_of_one_batch_merge() {
        let mut s = Session {
            read_next: 0,
            handled_next: 0,
            acked: 0,
            peer: None,
            marks: VecDeque::new(),
            reack: false,
            queued: false,
            last_active: 0,
        };
        let mark = |events, sink, next| Mark { events, sink, next };
        ServerEngine::push_mark(&mut s, mark(3, None, 5), 2);
        ServerEngine::push_mark(&mut s, mark(4, None, 6), 2);
        assert_eq!(s.marks, [mark(4, None, 6)]);
        // A sink's row in the same batch waits for the row too.
        ServerEngine::push_mark(&mut s, mark(4, Some((0, 10)), 7), 2);
        assert_eq!(s.marks, [mark(4, Some((0, 10)), 7)]);
        // Another sink's row: a mark of its own.
        ServerEngine::push_mark(&mut s, mark(4, Some((1, 3)), 8), 2);
        assert_eq!(s.marks.len(), 2);
        // The next batch: a mark of its own.
        ServerEngine::push_mark(&mut s, mark(9, None, 9), 4);
        assert_eq!(s.marks.len(), 3);
    }
}
