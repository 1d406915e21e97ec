//! The server: a ROUTER on its own thread (same model as the client engine) that routes what
//! clients send by a field sniffed from the first bytes, knows its clients, and pushes to them.
//!
//! Inbound, per message: find (or create) the peer by routing identity; answer control
//! traffic (hello → ack, goodbye → reply) itself; sniff the route for everything else and
//! publish one [`ServerEvent::Message`] carrying the route index, so only that route's handler
//! runs in JS. Requests get a reply token; the corr stays here until the host replies with it.
//! Outbound, the host stages replies, pushes and broadcasts exactly like a client stages sends.
//! A route may instead be a [`Sink`]: its messages go to a writer thread and never reach JS.
//!
//! Latency: every message carries the instant it was read, so the host records how long it
//! waited before JS got it (`queue_wait`) and the engine how long a request took until its
//! reply was handed to the socket (`service`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
// foldhash instead of SipHash: std's hasher was ~5 % of the server's CPU per message. The
// seeds are random per process, so peer-chosen routing identities cannot aim at collisions.
use foldhash::HashMap;
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use zeromq::{
    RouterRecvHalf, RouterSendHalf, RouterSocket, Socket, SocketEvent, SocketRecv, ZmqMessage,
    ZmqResult,
};

use crate::bind::{self, SocketFile};
use crate::client::Queued;
use crate::error::Error;
use crate::hooks::EngineKind;
use crate::latency::{Histogram, Summary};
use crate::outbox::{Outbox, Waker};
use crate::protocol::{self, CONTROL_GOODBYE, CONTROL_HELLO, ERROR_STATUS};
use crate::queue::{self, Consumer, Producer, QueueShared, Refusal, Staging, Weighed};
use crate::sink::{Row, Sink, SinkCounters};
use crate::sniff::Sniffer;
use crate::spin::{SpinSlot, SPIN};
use crate::stats::bump;
use crate::thread::EngineThread;
use crate::trim::Trim;
use crate::writer::Writer;

/// Route index of messages no route matched (the `message` event).
pub const NO_ROUTE: u32 = 0;
/// Reply token of a fire-and-forget message.
pub const NO_TOKEN: u32 = 0;
/// Inbound messages waiting for the host before the engine stops reading the socket.
const MAX_UNDELIVERED: usize = 50_000;
/// How often a paused engine looks again whether the host caught up.
const PAUSE_POLL: Duration = Duration::from_millis(1);
/// At close, how long the crate's per-peer writer tasks get to flush what we handed them.
const CLOSE_GRACE: Duration = Duration::from_millis(20);
/// How long a client's confirmed sends may wait before they are acked: acks are cumulative, so
/// under load one small message per client per interval confirms thousands.
const ACK_DELAY: Duration = Duration::from_millis(5);
const RECV_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The top-level JSON field routes are keyed by.
    pub type_field: String,
    /// How many leading bytes of a message the router looks at.
    pub sniff_bytes: usize,
    /// Mode of the ipc:// socket file.
    pub socket_mode: u32,
    pub send_high_water_mark: usize,
    pub send_high_water_bytes: usize,
    pub max_message_bytes: usize,
    pub linger: Duration,
    /// A client that said hello (so it pings) and is then silent this long is dropped with a
    /// `timeout` disconnect. Plain DEALERs, which never ping, are never timed out.
    pub heartbeat_timeout: Duration,
    /// Bind now but read nothing until [`Server::start`]: a host registers its routes first,
    /// so no early message is misrouted (a reconnecting client can be there at once).
    pub start_paused: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            type_field: "type".into(),
            sniff_bytes: 256,
            socket_mode: 0o600,
            send_high_water_mark: 100_000,
            send_high_water_bytes: 64 << 20,
            max_message_bytes: 16 << 20,
            linger: Duration::from_millis(1000),
            heartbeat_timeout: Duration::from_millis(3000),
            start_paused: false,
        }
    }
}

impl ServerOptions {
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::InvalidOption(what));
        if self.type_field.is_empty() {
            return bad("typeField must not be empty".into());
        }
        if self.sniff_bytes == 0 || self.sniff_bytes > 1 << 20 {
            return bad("sniffBytes must be 1..=1048576".into());
        }
        if self.heartbeat_timeout.is_zero() {
            return bad("heartbeatTimeoutMs must be at least 1".into());
        }
        if self.socket_mode > 0o777 {
            return bad(format!(
                "socketMode must be 0..=0o777, got {:o}",
                self.socket_mode
            ));
        }
        let client = crate::ClientOptions {
            send_high_water_mark: self.send_high_water_mark,
            send_high_water_bytes: self.send_high_water_bytes,
            max_message_bytes: self.max_message_bytes,
            ..Default::default()
        };
        client.validate()
    }
}

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

#[derive(Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A client appeared: on its hello, or on its first message if it sends none. `info` is
    /// the hello's JSON body (empty for clients that do not speak the control protocol).
    Connect {
        client: u32,
        id: String,
        info: Bytes,
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
    },
    Disconnect {
        client: u32,
        reason: DisconnectReason,
    },
    /// A refused reply or push can be retried: the queue is down to half its high-water
    /// marks. Once per refusal episode.
    Drain,
    Closed,
}

/// What the host asks the server to send.
#[derive(Debug)]
pub enum ServerOut {
    Reply {
        token: u32,
        body: Bytes,
        error: bool,
    },
    SendTo {
        client: u32,
        body: Bytes,
    },
    Broadcast {
        body: Bytes,
    },
}

impl Weighed for ServerOut {
    fn bytes(&self) -> u64 {
        match self {
            ServerOut::Reply { body, .. }
            | ServerOut::SendTo { body, .. }
            | ServerOut::Broadcast { body } => body.len() as u64,
        }
    }
}

#[derive(Debug)]
pub enum ServerControl {
    /// Messages whose sniffed type equals `name` go to route `index`.
    Route {
        name: Vec<u8>,
        index: u32,
    },
    /// Messages whose sniffed type equals `name` go to this sink, not to the host.
    Sink {
        name: Vec<u8>,
        sink: Sink,
    },
    Close {
        linger: Duration,
    },
    /// Start reading (after `start_paused`).
    Start,
}

/// Counters of the server engine (written by the engine thread only).
#[derive(Default)]
pub struct ServerCounters {
    pub received: std::sync::atomic::AtomicU64,
    pub routed: std::sync::atomic::AtomicU64,
    pub unrouted: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
    pub replies: std::sync::atomic::AtomicU64,
    pub pushes: std::sync::atomic::AtomicU64,
    /// Replies and pushes whose client was gone.
    pub unroutable: std::sync::atomic::AtomicU64,
    pub malformed: std::sync::atomic::AtomicU64,
    pub connects: std::sync::atomic::AtomicU64,
    pub disconnects: std::sync::atomic::AtomicU64,
    pub clients: std::sync::atomic::AtomicU64,
    /// Messages handed to a sink.
    pub sunk: std::sync::atomic::AtomicU64,
}

/// Where a route's messages go.
enum Target {
    /// To the host, with this route index.
    Host(u32),
    /// To `sinks[i]`.
    Sink(usize),
}

/// When a batch of inbound messages was read: for latency, and for a sink row's timestamp.
#[derive(Clone, Copy)]
struct Arrival {
    at: std::time::Instant,
    wall_ms: i64,
}

impl Arrival {
    fn now() -> Arrival {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Arrival {
            at: std::time::Instant::now(),
            wall_ms,
        }
    }
}

struct Peer {
    identity: Bytes,
    /// Shared with every sink row of this client, so a row costs no allocation for it.
    id: Arc<str>,
    last_heard: Instant,
    /// It said hello, so it speaks the control protocol and pings while alive.
    pings: bool,
    /// Fire-and-forget messages read from it, and the count last acked to it.
    sends_read: u64,
    acked: u64,
    /// (events handled by the host needed, `sends_read` then): an ack confirms only what the
    /// host's handlers have run on, so a server killed right after an ack lost nothing acked.
    marks: VecDeque<(u64, u64)>,
}

struct Engine {
    shared: Arc<QueueShared>,
    counters: Arc<ServerCounters>,
    outbox: Arc<Outbox<ServerEvent>>,
    queue: Consumer<ServerOut, ServerControl>,
    sniffer: Sniffer,
    routes: HashMap<Vec<u8>, Target>,
    sinks: Vec<Sink>,
    peers: HashMap<u32, Peer>,
    by_identity: HashMap<Bytes, u32>,
    next_client: u32,
    /// Reply token → (client, corr, when the request was read).
    tokens: HashMap<u32, (u32, Bytes, std::time::Instant)>,
    next_token: u32,
    /// Ready to write: frames, for the entry that completes a host message its bytes
    /// (released from the host's queue accounting once written), and for a reply when its
    /// request was read (its service time is recorded once written).
    backlog: VecDeque<(ZmqMessage, Option<u64>, Option<std::time::Instant>)>,
    /// Request read → reply handed to the socket, µs.
    service: Arc<Histogram>,
    events: Vec<ServerEvent>,
    close_deadline: Option<Instant>,
    heartbeat_timeout: Duration,
    next_sweep: Instant,
    trim: Trim,
    /// Poll instead of parking until then: a request went to the host, its reply is near.
    spin_until: Option<Instant>,
    spin_slot: SpinSlot,
    /// Events published to the outbox so far (the host's `handled` count chases it).
    published: u64,
    /// False until the host says its routes are in place (`start_paused`).
    reading: bool,
    /// Also the inbound cap: a peer sending more is disconnected.
    max_message_bytes: usize,
    /// Peers with sends not yet acked, and when to ack them.
    unacked: Vec<u32>,
    ack_at: Option<Instant>,
}

struct Conn {
    writer: Writer<RouterSendHalf>,
    recv: RouterRecvHalf,
    monitor: mpsc::Receiver<SocketEvent>,
}

impl Engine {
    fn peer_for(&mut self, identity: &Bytes, hello: Option<&Bytes>) -> u32 {
        if let Some(&index) = self.by_identity.get(identity) {
            return index;
        }
        self.next_client = self.next_client.wrapping_add(1).max(1);
        let index = self.next_client;
        let id: Arc<str> = client_id().into();
        self.events.push(ServerEvent::Connect {
            client: index,
            id: id.to_string(),
            info: hello.cloned().unwrap_or_default(),
        });
        self.peers.insert(
            index,
            Peer {
                identity: identity.clone(),
                id,
                last_heard: Instant::now(),
                pings: hello.is_some(),
                sends_read: 0,
                acked: 0,
                marks: VecDeque::new(),
            },
        );
        self.by_identity.insert(identity.clone(), index);
        bump(&self.counters.connects, 1);
        self.counters
            .clients
            .store(self.peers.len() as u64, Ordering::Relaxed);
        index
    }

    fn forget(&mut self, index: u32, reason: DisconnectReason) {
        if let Some(peer) = self.peers.remove(&index) {
            self.by_identity.remove(&peer.identity);
            self.events.push(ServerEvent::Disconnect {
                client: index,
                reason,
            });
            bump(&self.counters.disconnects, 1);
            self.counters
                .clients
                .store(self.peers.len() as u64, Ordering::Relaxed);
        }
    }

    fn reply_frames(identity: &Bytes, corr: &Bytes, body: Bytes) -> ZmqMessage {
        let mut m = ZmqMessage::from(identity.clone());
        m.push_back(corr.clone());
        m.push_back(body);
        m
    }

    fn handle_inbound(&mut self, message: ZmqMessage, arrival: Arrival) {
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
                let id = self.peers[&index].id.clone();
                let ack = protocol::ack_body(&id, std::process::id());
                self.backlog
                    .push_back((Self::reply_frames(&identity, &corr, ack), None, None));
            }
            Some(CONTROL_GOODBYE) => {
                // Everything this client sent before the goodbye has been read: confirm it.
                self.backlog.push_back((
                    Self::reply_frames(&identity, &corr, Bytes::new()),
                    None,
                    None,
                ));
                if let Some(&index) = self.by_identity.get(&identity) {
                    self.forget(index, DisconnectReason::Goodbye);
                }
            }
            Some(_) => {
                // Pings, and unknown kinds (a newer client), get an empty reply.
                self.backlog.push_back((
                    Self::reply_frames(&identity, &corr, Bytes::new()),
                    None,
                    None,
                ));
            }
            None => {
                let client = match known {
                    Some(index) => index,
                    None => self.peer_for(&identity, None),
                };
                let route = match self.sniffer.sniff(&body).and_then(|n| self.routes.get(n)) {
                    Some(&Target::Host(index)) => index,
                    Some(&Target::Sink(i)) => {
                        if corr.is_empty() {
                            // Handed to the sink here and now: acked once all before it is.
                            self.count_send(client, false);
                        }
                        self.sink(i, client, &identity, corr, body, arrival);
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
                    self.count_send(client, true);
                    NO_TOKEN
                } else {
                    self.spin_until = Some(Instant::now() + SPIN);
                    bump(&self.counters.requests, 1);
                    self.next_token = self.next_token.wrapping_add(1).max(1);
                    self.tokens
                        .insert(self.next_token, (client, corr, arrival.at));
                    self.next_token
                };
                self.events.push(ServerEvent::Message {
                    route,
                    client,
                    token,
                    body,
                    arrived: arrival.at,
                });
            }
        }
    }

    /// Notes a send from a client that understands acks. With `to_host`, its event is the
    /// next one pushed and it counts as handled once the host has run that event's handler;
    /// otherwise (a sink took it) once the host has handled everything pushed before it.
    fn count_send(&mut self, client: u32, to_host: bool) {
        let Some(peer) = self.peers.get_mut(&client) else {
            return;
        };
        if !peer.pings {
            return;
        }
        peer.sends_read += 1;
        let needed = self.published + self.events.len() as u64 + u64::from(to_host);
        match peer.marks.back_mut() {
            // Same unpublished batch: one mark covers it.
            Some(mark) if mark.0 > self.published => *mark = (needed, peer.sends_read),
            _ => {
                if peer.marks.is_empty() {
                    self.unacked.push(client);
                }
                peer.marks.push_back((needed, peer.sends_read))
            }
        }
        self.ack_at
            .get_or_insert_with(|| Instant::now() + ACK_DELAY);
    }

    /// Acks, to each client with news, how many of its sends the host has handled.
    fn send_acks(&mut self, now: Instant) {
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
            while let Some(&(needed, count)) = peer.marks.front() {
                if needed > handled {
                    break;
                }
                confirmed = count;
                peer.marks.pop_front();
            }
            if confirmed > peer.acked {
                peer.acked = confirmed;
                let (corr, body) = protocol::encode_ack(confirmed);
                let mut m = ZmqMessage::from(peer.identity.clone());
                m.push_back(corr);
                m.push_back(body);
                self.backlog.push_back((m, None, None));
            }
            if !peer.marks.is_empty() {
                waiting.push(client);
            }
        }
        self.ack_at = (!waiting.is_empty()).then(|| now + ACK_DELAY);
        self.unacked = waiting;
    }

    /// Hands a message to sink `i`. A request there is acknowledged at once with an empty
    /// reply: the row is queued, which is all a sink promises before close().
    fn sink(
        &mut self,
        i: usize,
        client: u32,
        identity: &Bytes,
        corr: Bytes,
        body: Bytes,
        arrival: Arrival,
    ) {
        bump(&self.counters.sunk, 1);
        self.sinks[i].push(Row {
            received_at_ms: arrival.wall_ms,
            client: self.peers[&client].id.clone(),
            raw: body,
        });
        if !corr.is_empty() {
            bump(&self.counters.requests, 1);
            bump(&self.counters.replies, 1);
            self.backlog.push_back((
                Self::reply_frames(identity, &corr, Bytes::new()),
                None,
                Some(arrival.at),
            ));
        }
    }

    /// Turns what the host staged into frames in the backlog.
    fn take_queue(&mut self) {
        while let Ok(batch) = self.queue.rx.try_recv() {
            for out in batch {
                let size = out.bytes();
                match out {
                    ServerOut::Reply { token, body, error } => {
                        let target = self.tokens.remove(&token).and_then(|(client, corr, at)| {
                            self.peers.get(&client).map(|p| (p, corr, at))
                        });
                        match target {
                            Some((peer, corr, at)) => {
                                let mut m = Self::reply_frames(&peer.identity, &corr, body);
                                if error {
                                    m.push_back(Bytes::from_static(ERROR_STATUS));
                                }
                                bump(&self.counters.replies, 1);
                                self.backlog.push_back((m, Some(size), Some(at)));
                            }
                            None => self.unroutable(size),
                        }
                    }
                    ServerOut::SendTo { client, body } => match self.peers.get(&client) {
                        Some(peer) => {
                            let m = Self::reply_frames(&peer.identity, &Bytes::new(), body);
                            bump(&self.counters.pushes, 1);
                            self.backlog.push_back((m, Some(size), None));
                        }
                        None => self.unroutable(size),
                    },
                    ServerOut::Broadcast { body } => {
                        let n = self.peers.len();
                        for (i, peer) in self.peers.values().enumerate() {
                            let m = Self::reply_frames(&peer.identity, &Bytes::new(), body.clone());
                            // The host's message is released with its last copy.
                            let release = (i + 1 == n).then_some(size);
                            self.backlog.push_back((m, release, None));
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

    fn unroutable(&mut self, size: u64) {
        bump(&self.counters.unroutable, 1);
        self.shared.release(1, size);
    }

    fn take_control(&mut self, now: Instant) {
        while let Ok(order) = self.queue.ctl.try_recv() {
            match order {
                ServerControl::Route { name, index } => {
                    self.routes.insert(name, Target::Host(index));
                }
                ServerControl::Sink { name, sink } => {
                    self.sinks.push(sink);
                    self.routes.insert(name, Target::Sink(self.sinks.len() - 1));
                }
                ServerControl::Close { linger } => {
                    self.close_deadline.get_or_insert(now + linger);
                }
                ServerControl::Start => self.reading = true,
            }
        }
    }

    /// Drops clients that ping but fell silent (hung or unreachable: the socket may stay open).
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.heartbeat_timeout / 2;
        let silent: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.pings && now.saturating_duration_since(p.last_heard) > self.heartbeat_timeout
            })
            .map(|(i, _)| *i)
            .collect();
        for index in silent {
            self.forget(index, DisconnectReason::Timeout);
        }
    }

    fn flush(&mut self, conn: &mut Conn) {
        let (mut messages, mut bytes) = (0u64, 0u64);
        while !conn.writer.busy() {
            let Some((m, release, arrived)) = self.backlog.pop_front() else {
                break;
            };
            if let Some(at) = arrived {
                self.service.record_duration(at.elapsed());
            }
            if let Some(size) = release {
                messages += 1;
                bytes += size;
            }
            if let Some(Err(_)) = conn.writer.start(m) {
                // The peer left between our lookup and the send: nothing to retry.
                bump(&self.counters.unroutable, 1);
            }
        }
        if messages > 0 {
            self.shared.release(messages, bytes);
        }
    }
}

fn client_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

impl Engine {
    async fn main(mut self, listener: zeromq::Listener) {
        let mut socket =
            RouterSocket::with_options(protocol::socket_options(self.max_message_bytes));
        let monitor = socket.monitor();
        if socket.bind_listener(listener).await.is_err() {
            return;
        }
        let (send, recv) = socket.split();
        let mut conn = Conn {
            writer: Writer::new(send),
            recv,
            monitor,
        };
        loop {
            let now = Instant::now();
            self.take_control(now);
            self.take_queue();
            self.flush(&mut conn);
            if self.queue.take_drain(&self.shared) {
                self.events.push(ServerEvent::Drain);
            }
            self.sweep(now);
            self.send_acks(now);
            let (backlog, outbox) = (&self.backlog, &self.outbox);
            self.trim
                .run_if_due(now, || backlog.is_empty() && outbox.is_empty());
            self.published += self.events.len() as u64;
            self.outbox.publish(&mut self.events);
            if let Some(deadline) = self.close_deadline {
                let idle =
                    self.backlog.is_empty() && self.queue.rx.is_empty() && !conn.writer.busy();
                if idle && self.ack_at.is_some() && now < deadline {
                    // Confirm what the host handled before going, rather than leave it to
                    // the clients to count as lost.
                    self.ack_at = Some(now);
                    self.send_acks(now);
                    self.flush(&mut conn);
                }
                let idle = idle && self.backlog.is_empty() && !conn.writer.busy();
                if idle || now >= deadline {
                    if idle && now < deadline {
                        // The crate hands each peer's messages to a writer task through a
                        // queue we cannot see; those tasks end with this runtime. Give them a
                        // moment (within the linger time) to reach the kernel.
                        tokio::time::sleep_until(deadline.min(now + CLOSE_GRACE)).await;
                    }
                    break;
                }
            }
            self.wait(&mut conn).await;
        }
        // What could not be written in the linger time is dropped with the socket.
        let left = self.backlog.iter().filter(|(_, r, _)| r.is_some()).count() as u64;
        let left_bytes = self.backlog.iter().filter_map(|(_, r, _)| *r).sum();
        self.shared.release(left, left_bytes);
    }

    async fn wait(&mut self, conn: &mut Conn) {
        let shared = self.shared.clone();
        let want = self.spin_until.is_some_and(|t| t > Instant::now());
        let spinning = want && self.spin_slot.acquire();
        if !spinning {
            self.spin_until = None;
            self.spin_slot.release();
            shared.sleeping.store(true, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        if !self.queue.rx.is_empty() || !self.queue.ctl.is_empty() || self.queue.drain_due(&shared)
        {
            shared.sleeping.store(false, Ordering::Relaxed);
            return;
        }
        // Stop reading while the host has not taken what we already gave it: the kernel and
        // the crate's buffers then push back on the clients instead of our memory growing.
        for sink in &mut self.sinks {
            sink.retry();
        }
        let paused = self.outbox.len() >= MAX_UNDELIVERED || self.sinks.iter().any(Sink::backed_up);
        let mut timer = Some(
            [self.close_deadline, self.ack_at, self.trim.deadline()]
                .into_iter()
                .flatten()
                .fold(self.next_sweep, Instant::min),
        );
        if paused {
            let poll = Instant::now() + PAUSE_POLL;
            timer = Some(timer.map_or(poll, |t| t.min(poll)));
        }
        let sleep = async {
            match timer {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let reading = self.reading;
        let recv = async {
            if paused || !reading {
                std::future::pending().await
            } else {
                conn.recv.recv().await
            }
        };
        let writing = conn.writer.busy();
        let written = async {
            if writing {
                conn.writer.finish().await
            } else {
                std::future::pending().await
            }
        };
        let spin = crate::spin::turn(spinning);
        enum Woke {
            Other,
            Message(ZmqResult<ZmqMessage>),
            Monitor(Option<SocketEvent>),
        }
        let woke = tokio::select! {
            _ = shared.notify.notified() => Woke::Other,
            _ = spin => Woke::Other,
            _ = sleep => Woke::Other,
            m = recv => Woke::Message(m),
            e = conn.monitor.next() => Woke::Monitor(e),
            _ = written => Woke::Other,
        };
        shared.sleeping.store(false, Ordering::Relaxed);
        match woke {
            Woke::Other | Woke::Message(Err(_)) | Woke::Monitor(None) => {}
            Woke::Message(Ok(m)) => {
                let arrival = Arrival::now();
                self.handle_inbound(m, arrival);
                for _ in 1..RECV_BATCH {
                    match conn.recv.recv().now_or_never() {
                        Some(Ok(m)) => self.handle_inbound(m, arrival),
                        _ => break,
                    }
                }
            }
            Woke::Monitor(Some(SocketEvent::Disconnected(peer))) => {
                let identity: Bytes = peer.into();
                if let Some(&index) = self.by_identity.get(&identity) {
                    self.forget(index, DisconnectReason::Closed);
                }
            }
            Woke::Monitor(Some(_)) => {}
        }
    }
}

/// The host's handle on a server.
pub struct Server {
    endpoint: String,
    shared: Arc<QueueShared>,
    counters: Arc<ServerCounters>,
    outbox: Arc<Outbox<ServerEvent>>,
    producer: Producer<ServerOut, ServerControl>,
    max_message_bytes: usize,
    linger: Duration,
    thread: EngineThread,
    /// Read → taken by the host, µs. Written by the host thread (in `take_events*`).
    queue_wait: Histogram,
    service: Arc<Histogram>,
    sink_counters: Arc<SinkCounters>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub received: u64,
    pub routed: u64,
    pub unrouted: u64,
    pub requests: u64,
    pub replies: u64,
    pub pushes: u64,
    pub unroutable: u64,
    pub malformed: u64,
    pub connects: u64,
    pub disconnects: u64,
    pub clients: u64,
    pub refused: u64,
    pub queued: u64,
    pub queued_bytes: u64,
    /// Messages handed to sinks, and what their writers made of them.
    pub sunk: u64,
    pub sink_rows: u64,
    pub sink_batches: u64,
    pub sink_errors: u64,
    pub queue_wait: Summary,
    pub service: Summary,
}

impl Server {
    /// Binds now (so a taken address or a bad path is an error of this call) and starts the
    /// engine thread.
    pub fn bind(
        endpoint: &str,
        options: ServerOptions,
        waker: Box<dyn Waker>,
    ) -> Result<Server, Error> {
        options.validate()?;
        let bound = bind::bind(endpoint, options.socket_mode)?;
        let endpoint = bound.endpoint();
        let (listener, file) = bound.into_parts();
        let shared = Arc::new(QueueShared::new());
        let counters = Arc::new(ServerCounters::default());
        let outbox = Arc::new(Outbox::new(waker));
        let service = Arc::new(Histogram::default());
        let (producer, consumer) = queue::channel(
            options.send_high_water_mark,
            options.send_high_water_bytes,
            1,
        );
        let engine = Engine {
            shared: shared.clone(),
            counters: counters.clone(),
            outbox: outbox.clone(),
            queue: consumer,
            sniffer: Sniffer::new(&options.type_field, options.sniff_bytes),
            routes: HashMap::default(),
            sinks: Vec::new(),
            peers: HashMap::default(),
            by_identity: HashMap::default(),
            next_client: 0,
            tokens: HashMap::default(),
            next_token: 0,
            backlog: VecDeque::new(),
            service: service.clone(),
            events: Vec::new(),
            close_deadline: None,
            heartbeat_timeout: options.heartbeat_timeout,
            next_sweep: Instant::now() + options.heartbeat_timeout / 2,
            trim: Trim::default(),
            spin_until: None,
            spin_slot: SpinSlot::default(),
            published: 0,
            unacked: Vec::new(),
            ack_at: None,
            reading: !options.start_paused,
            max_message_bytes: options.max_message_bytes,
        };
        let thread_outbox = outbox.clone();
        let thread = EngineThread::spawn(EngineKind::Server, move || {
            run(engine, listener, file);
            thread_outbox.publish(&mut vec![ServerEvent::Closed]);
        })?;
        Ok(Server {
            endpoint,
            shared,
            counters,
            outbox,
            producer,
            max_message_bytes: options.max_message_bytes,
            linger: options.linger,
            thread,
            queue_wait: Histogram::default(),
            service,
            sink_counters: Arc::default(),
        })
    }

    /// The bound endpoint (with the real port for `tcp://…:0`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn route(&self, name: &str, index: u32) {
        let _ = self.producer.control(
            &self.shared,
            ServerControl::Route {
                name: name.as_bytes().to_vec(),
                index,
            },
        );
    }

    /// Messages of type `name` go to `sink` from now on (replacing a handler route of that
    /// name). The sink is flushed and its writer joined when the engine ends.
    pub fn route_to_sink(&self, name: &str, sink: Sink) -> Result<(), Error> {
        if self.thread.is_closing() {
            return Err(Error::Closed);
        }
        self.producer
            .control(
                &self.shared,
                ServerControl::Sink {
                    name: name.as_bytes().to_vec(),
                    sink,
                },
            )
            .map_err(|_| Error::Closed)
    }

    /// What the writers of this server's sinks count into (hand it to [`Sink::spawn`]).
    pub fn sink_counters(&self) -> Arc<SinkCounters> {
        self.sink_counters.clone()
    }

    fn push(&self, staging: &mut Staging<ServerOut>, out: ServerOut) -> Result<Queued, Error> {
        if self.thread.is_closing() {
            return Err(Error::Closed);
        }
        let size = out.bytes() as usize;
        if size > self.max_message_bytes {
            return Err(Error::MessageTooLarge {
                size,
                max: self.max_message_bytes,
            });
        }
        match self.producer.push(&self.shared, staging, out) {
            Ok(()) => Ok(Queued::Yes),
            Err(Refusal::Full) => {
                bump(&self.shared.host.refused, 1);
                Ok(Queued::Refused)
            }
            Err(Refusal::Closed) => Err(Error::Closed),
        }
    }

    /// Answers the request that carried `token` (`error`: an error reply, rejected with EREMOTE).
    pub fn reply(
        &self,
        staging: &mut Staging<ServerOut>,
        token: u32,
        body: Bytes,
        error: bool,
    ) -> Result<Queued, Error> {
        self.push(staging, ServerOut::Reply { token, body, error })
    }

    pub fn send_to(
        &self,
        staging: &mut Staging<ServerOut>,
        client: u32,
        body: Bytes,
    ) -> Result<Queued, Error> {
        self.push(staging, ServerOut::SendTo { client, body })
    }

    pub fn broadcast(
        &self,
        staging: &mut Staging<ServerOut>,
        body: Bytes,
    ) -> Result<Queued, Error> {
        self.push(staging, ServerOut::Broadcast { body })
    }

    pub fn flush(&self, staging: &mut Staging<ServerOut>) {
        let _ = self.producer.flush(&self.shared, staging);
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    pub fn is_closing(&self) -> bool {
        self.thread.is_closing()
    }

    /// Stops accepting calls, writes what is queued for at most the linger time, closes the
    /// socket (and removes its ipc file), then publishes `ServerEvent::Closed`.
    pub fn close(&self, staging: &mut Staging<ServerOut>) -> bool {
        self.close_with(staging, self.linger)
    }

    pub fn close_with(&self, staging: &mut Staging<ServerOut>, linger: Duration) -> bool {
        self.flush(staging);
        if !self.thread.start_closing() {
            return false;
        }
        let _ = self
            .producer
            .control(&self.shared, ServerControl::Close { linger });
        true
    }

    /// Closes (if not yet) and waits for the engine thread for at most `wait`.
    pub fn shutdown(
        &self,
        staging: &mut Staging<ServerOut>,
        linger: Duration,
        wait: Duration,
    ) -> bool {
        self.close_with(staging, linger);
        self.thread.join(wait)
    }

    /// Starts reading messages (for a server bound with `start_paused`).
    pub fn start(&self) {
        let _ = self.producer.control(&self.shared, ServerControl::Start);
    }

    /// The host has run its handlers on every event it took: the sends among them may be
    /// acked to their clients.
    pub fn handled(&self) {
        self.outbox.mark_handled();
    }

    /// Host thread only (it records the queue wait of what it takes).
    pub fn take_events(&self) -> Vec<ServerEvent> {
        self.waited(self.outbox.take())
    }

    /// At most `max` events; the host is woken again for the rest. Host thread only.
    pub fn take_events_max(&self, max: usize) -> Vec<ServerEvent> {
        self.waited(self.outbox.take_max(max))
    }

    fn waited(&self, events: Vec<ServerEvent>) -> Vec<ServerEvent> {
        let now = std::time::Instant::now();
        for e in &events {
            if let ServerEvent::Message { arrived, .. } = e {
                self.queue_wait
                    .record_duration(now.saturating_duration_since(*arrived));
            }
        }
        events
    }

    pub fn stats(&self) -> ServerStats {
        let c = &self.counters;
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let host = &self.shared.host;
        let engine = &self.shared.engine;
        ServerStats {
            received: r(&c.received),
            routed: r(&c.routed),
            unrouted: r(&c.unrouted),
            requests: r(&c.requests),
            replies: r(&c.replies),
            pushes: r(&c.pushes),
            unroutable: r(&c.unroutable),
            malformed: r(&c.malformed),
            connects: r(&c.connects),
            disconnects: r(&c.disconnects),
            clients: r(&c.clients),
            refused: r(&host.refused),
            queued: r(&host.pushed).saturating_sub(r(&engine.released)),
            queued_bytes: r(&host.pushed_bytes).saturating_sub(r(&engine.released_bytes)),
            sunk: r(&c.sunk),
            sink_rows: r(&self.sink_counters.rows),
            sink_batches: r(&self.sink_counters.batches),
            sink_errors: r(&self.sink_counters.errors),
            queue_wait: self.queue_wait.summary(),
            service: self.service.summary(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close_with(&mut Staging::default(), Duration::ZERO);
    }
}

fn run(engine: Engine, listener: zeromq::Listener, file: Option<SocketFile>) {
    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        runtime.block_on(engine.main(listener));
    }
    if let Some(file) = file {
        file.remove_file();
    }
}
