//! Sink routes on the engine's side: handing rows to a sink's writer, answering requests to a
//! sink once their row is committed, and telling the host when a sink fails or recovers.

use super::*;
use crate::server::event::MessageSeq;
use crate::sink::SinkNews;

/// The empty reply to a request whose row is not yet committed.
pub(super) struct SinkReply {
    /// Its row's position in the sink.
    row: u64,
    message: ZmqMessage,
    arrived: std::time::Instant,
}

/// While reading is held back, how often clients are told the server is alive: they would
/// otherwise take its silence (their pings unread) for a dead server past their heartbeat
/// timeout (3 s by default), and reconnect.
const KEEPALIVE: Duration = Duration::from_millis(500);

impl ServerEngine {
    /// While not reading, sends each client that pings its last ack again (cumulative, so it
    /// changes nothing but the client's last-heard time).
    pub(super) fn keep_alive(&mut self, now: Instant) {
        if !self.read_paused() {
            self.next_keepalive = None;
            return;
        }
        let due = *self.next_keepalive.get_or_insert(now + KEEPALIVE);
        if now < due {
            return;
        }
        self.next_keepalive = Some(now + KEEPALIVE);
        self.reack_all(now);
    }

    /// Hands a message to sink `i`. A send is acked, and a request answered with an empty
    /// reply, only once the row is committed.
    pub(super) fn sink(
        &mut self,
        i: usize,
        client: u32,
        (identity, corr): (&Bytes, Bytes),
        body: Bytes,
        arrival: Arrival,
        seq: Option<MessageSeq>,
    ) {
        bump(&self.counters.sunk, 1);
        let row = self.sinks[i].push(Row {
            received_at_ms: arrival.wall_ms,
            client: self.peers[&client].id.clone(),
            raw: body,
            seq: seq.as_ref().map(|s| (s.session, s.seq)),
        });
        if corr.is_empty() {
            if let Some(seq) = &seq {
                self.count_send(seq, Some((i, row)));
            }
        } else {
            bump(&self.counters.requests, 1);
            self.sink_replies[i].push_back(SinkReply {
                row,
                message: Self::reply_frames(identity, corr, Bytes::new()),
                arrived: arrival.at,
            });
        }
    }

    /// Adds a sink handed over by the host.
    pub(super) fn add_sink(&mut self, name: Vec<u8>, sink: Sink) {
        sink.attach(self.shared.clone());
        self.sinks.push(sink);
        self.sink_replies.push(VecDeque::new());
        self.routes.insert(name, Target::Sink(self.sinks.len() - 1));
    }

    /// Answers the requests whose rows are committed, and publishes what the sinks have to
    /// say (a failure once per episode, then its end).
    pub(super) fn sink_news(&mut self) {
        for (sink, replies) in self.sinks.iter_mut().zip(&mut self.sink_replies) {
            let committed = sink.committed();
            while replies.front().is_some_and(|r| r.row <= committed) {
                let r = replies.pop_front().expect("checked");
                bump(&self.counters.replies, 1);
                self.backlog
                    .push_back(Outbound::data(r.message, None, Some(r.arrived)));
            }
            while let Some(news) = sink.news() {
                self.events.push(match news {
                    SinkNews::Failing(message) => ServerEvent::SinkError {
                        route: sink.name().to_owned(),
                        message,
                    },
                    SinkNews::Recovered => ServerEvent::SinkRecovered {
                        route: sink.name().to_owned(),
                    },
                });
            }
        }
    }

    /// True when every row handed to a sink is committed and every request to one answered.
    pub(super) fn sinks_settled(&self) -> bool {
        self.sinks.iter().all(Sink::settled) && self.sink_replies.iter().all(VecDeque::is_empty)
    }

    /// Whether the engine must look at its sinks again soon, having requests waiting on them.
    pub(super) fn sink_replies_waiting(&self) -> bool {
        self.sink_replies.iter().any(|r| !r.is_empty())
    }
}
