//! The server's engine: the loop on the engine thread that owns the ROUTER.
//!
//! Inbound (`inbound`), per message: find (or create) the client by routing identity; answer
//! control traffic (hello → ack, goodbye → reply) itself; sniff the route for everything else
//! and publish one [`ServerEvent::Message`] carrying the route index, so only that route's
//! handler runs in JS. Requests get a reply token; the corr stays here until the host replies
//! with it. Outbound (`outbound`), replies, pushes, broadcasts and acks go to each client's own
//! queue in the socket, never waiting on one; a full one refuses.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
// foldhash instead of SipHash (bench/NOTES.md, "foldhash"). The seeds are random per process,
// so peer-chosen routing identities cannot aim at collisions.
use foldhash::HashMap;
use futures::channel::mpsc;
use futures::StreamExt;
use tokio::time::Instant;
use zeromq::{
    RouterRecvHalf, RouterSendHalf, RouterSocket, Socket, SocketEvent, TrySendError, ZmqMessage,
    ZmqResult,
};

use zeromq::util::PeerIdentity;

use super::event::{DisconnectReason, ServerEvent};
use super::options::ServerOptions;
use super::stats::ServerCounters;
use super::{ServerControl, ServerOut, NO_ROUTE, NO_TOKEN};
use crate::counter::bump;
use crate::curve::ServerCurve;
use crate::host::outbox::Outbox;
use crate::host::queue::{Consumer, QueueShared, Weighed};
use crate::host::{self, EngineParts, RECV_BATCH};
use crate::latency::Histogram;
use crate::peer::{PeerRecords, STALE_RECORD};
use crate::protocol::{self, CONTROL_GOODBYE, CONTROL_HELLO, ERROR_STATUS};
use crate::sink::{Row, Sink};
use crate::sniff::Sniffer;
use crate::spin::Spin;
use crate::trim::Trim;

mod acks;
mod authorize;
mod inbound;
mod outbound;
mod requests;
mod sinks;

use outbound::Outbound;
use sinks::SinkReply;

/// Inbound messages waiting for the host before the engine stops reading the socket.
const MAX_UNDELIVERED: usize = 50_000;
/// How often a paused engine looks again whether the host caught up.
const PAUSE_POLL: Duration = Duration::from_millis(1);
/// At close, how often the engine looks whether the clients' queues are written out.
const CLOSE_POLL: Duration = Duration::from_millis(5);
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

/// Messages a CURVE client may send before the host has authorized it; more and it is
/// disconnected. (All of them together are also held to the receive bound.)
const HELD_MESSAGES: usize = 1024;

/// A CURVE client the host has yet to authorize, and what it sent meanwhile.
struct Awaiting {
    request: u32,
    held: VecDeque<(ZmqMessage, Arrival)>,
    bytes: u64,
}

/// A request the host has yet to answer.
struct PendingReply {
    client: u32,
    /// A copy, a few bytes: a slice would keep the whole receive buffer it came in alive.
    corr: Bytes,
    /// When it was read (its service time runs from there).
    at: std::time::Instant,
}

struct KnownClient {
    identity: Bytes,
    /// Shared with every sink row of this client, so a row costs no allocation for it.
    id: Arc<str>,
    last_heard: Instant,
    /// It said hello, so it speaks the control protocol and pings while alive.
    pings: bool,
    /// The numbering of its next fire-and-forget message (from its hello or last sequence
    /// mark), if it numbers them.
    run: Option<protocol::Run>,
    /// The sessions it announced, most recent last (bounded).
    sessions: Vec<u64>,
    /// Its hello had no session (a client from before them): acks are counts.
    count_acks: bool,
    /// Its requests waiting for the host's answer (their tokens go when it does).
    pending: u32,
}

pub(super) struct ServerEngine {
    shared: Arc<QueueShared>,
    counters: Arc<ServerCounters>,
    outbox: Arc<Outbox<ServerEvent>>,
    queue: Consumer<ServerOut, ServerControl>,
    sniffer: Sniffer,
    routes: HashMap<Vec<u8>, Target>,
    sinks: Vec<Sink>,
    /// Per sink, requests to answer once their rows are committed.
    sink_replies: Vec<VecDeque<SinkReply>>,
    /// While reading is held back: when clients are next told the server is alive.
    next_keepalive: Option<Instant>,
    /// Goodbyes (client, corr) to answer once the client's sends are confirmed: handled by the
    /// host, and committed where a sink took them.
    goodbyes: Vec<(u32, Bytes)>,
    peers: HashMap<u32, KnownClient>,
    by_identity: HashMap<Bytes, u32>,
    next_client: u32,
    /// Reply token → (client, corr, when the request was read).
    tokens: HashMap<u32, PendingReply>,
    next_token: u32,
    /// Tokens in the order their requests were read, for expiry (answered ones are skipped).
    token_order: VecDeque<(Instant, u32)>,
    max_pending_requests: usize,
    pending_request_timeout: Duration,
    receive_high_water_bytes: u64,
    /// Ready to hand to the socket (each client's own queue there), in order.
    backlog: VecDeque<Outbound>,
    /// Clients dropped for silence whose connections are still to be closed.
    cut_off: Vec<Bytes>,
    /// Each client's queue in the socket: at most this many messages and bytes.
    client_marks: (usize, usize),
    drop_stuck_client_after: Option<Duration>,
    /// Request read → reply handed to the socket, µs.
    service: Arc<Histogram>,
    events: Vec<ServerEvent>,
    close_deadline: Option<Instant>,
    heartbeat_timeout: Duration,
    next_sweep: Instant,
    trim: Trim,
    /// Polling instead of parking: a request went to the host, its reply is near.
    spin: Spin,
    /// Events published to the outbox so far (the host's `handled` count chases it).
    published: u64,
    /// False until the host says its routes are in place (`start_paused`).
    reading: bool,
    /// Also the inbound cap: a peer sending more is disconnected.
    max_message_bytes: usize,
    /// Client sessions: what was read and handled of each (`acks`).
    sessions: HashMap<u64, acks::Session>,
    /// Bumped per sequence event, to find the session idle longest.
    session_clock: u64,
    /// Sessions with sends not yet acked, and when to ack them.
    unacked: Vec<u64>,
    ack_at: Option<Instant>,
    /// CURVE: the configuration. CURVE or ipc: what the authorizer recorded by routing
    /// identity (keys, credentials). `gated`: a peer's messages wait for its record's
    /// approval (under CURVE, or when the host decides); then the clients whose messages wait
    /// for the host's `authorize` answer (and the requests it was asked, by number), and what
    /// they hold in all.
    curve: Option<ServerCurve>,
    keys: Option<Arc<PeerRecords>>,
    gated: bool,
    host_authorizes: bool,
    awaiting: HashMap<Bytes, Awaiting>,
    auth_requests: HashMap<u32, Bytes>,
    next_auth: u32,
    held_bytes: u64,
    next_key_sweep: Instant,
}

/// The ROUTER socket: its two halves and its event monitor.
struct Router {
    send: RouterSendHalf,
    recv: RouterRecvHalf,
    monitor: mpsc::Receiver<SocketEvent>,
}

impl ServerEngine {
    pub(super) fn new(
        options: &ServerOptions,
        counters: Arc<ServerCounters>,
        service: Arc<Histogram>,
        parts: EngineParts<ServerOut, ServerControl, ServerEvent>,
    ) -> Self {
        ServerEngine {
            shared: parts.shared,
            counters,
            outbox: parts.outbox,
            queue: parts.queue,
            sniffer: Sniffer::new(&options.type_field, options.sniff_bytes),
            routes: HashMap::default(),
            sinks: Vec::new(),
            sink_replies: Vec::new(),
            next_keepalive: None,
            goodbyes: Vec::new(),
            peers: HashMap::default(),
            by_identity: HashMap::default(),
            next_client: 0,
            tokens: HashMap::default(),
            next_token: 0,
            token_order: VecDeque::new(),
            max_pending_requests: options.max_pending_requests,
            pending_request_timeout: options.pending_request_timeout,
            receive_high_water_bytes: options.receive_high_water_bytes as u64,
            backlog: VecDeque::new(),
            cut_off: Vec::new(),
            client_marks: (options.send_high_water_mark, options.send_high_water_bytes),
            drop_stuck_client_after: options.drop_stuck_client_after,
            service,
            events: Vec::new(),
            close_deadline: None,
            heartbeat_timeout: options.heartbeat_timeout,
            next_sweep: Instant::now() + options.heartbeat_timeout / 2,
            trim: Trim::default(),
            spin: Spin::default(),
            published: 0,
            sessions: HashMap::default(),
            session_clock: 0,
            unacked: Vec::new(),
            ack_at: None,
            reading: !options.start_paused,
            max_message_bytes: options.max_message_bytes,
            keys: options.curve.as_ref().map(|_| Arc::default()),
            curve: options.curve.clone(),
            gated: options.curve.is_some() || options.authorize_by_host,
            host_authorizes: options.authorize_by_host,
            awaiting: HashMap::default(),
            auth_requests: HashMap::default(),
            next_auth: 0,
            held_bytes: 0,
            next_key_sweep: Instant::now() + STALE_RECORD,
        }
    }

    fn peer_for(&mut self, identity: &Bytes, hello: Option<&Bytes>) -> u32 {
        if let Some(&index) = self.by_identity.get(identity) {
            return index;
        }
        self.next_client = self.next_client.wrapping_add(1).max(1);
        let index = self.next_client;
        let id: Arc<str> = client_id().into();
        let record = self.keys.as_ref().and_then(|k| k.get(identity));
        let (public_key, credentials) =
            record.map_or((None, None), |r| (r.public_key, r.credentials));
        self.events.push(ServerEvent::Connect {
            client: index,
            id: id.to_string(),
            info: hello.cloned().unwrap_or_default(),
            public_key,
            credentials,
        });
        self.peers.insert(
            index,
            KnownClient {
                identity: identity.clone(),
                id,
                last_heard: Instant::now(),
                pings: hello.is_some(),
                run: None,
                sessions: Vec::new(),
                count_acks: false,
                pending: 0,
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
            self.sessions_left(index, &peer.sessions);
            if peer.pending > 0 {
                // Nobody is left to answer: the tokens (and what they hold) go now.
                self.tokens.retain(|_, r| r.client != index);
            }
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

    /// Room for an error flag after the body, so no frame pushed reallocates; `corr` is moved
    /// in, not cloned (a clone of a copied corr would allocate its shared count).
    fn reply_frames(identity: &Bytes, corr: Bytes, body: Bytes) -> ZmqMessage {
        let mut m = ZmqMessage::with_capacity(identity.clone(), 4);
        m.push_back(corr);
        m.push_back(body);
        m
    }

    fn take_control(&mut self, now: Instant) {
        while let Ok(order) = self.queue.ctl.try_recv() {
            match order {
                ServerControl::Route { name, index } => {
                    self.routes.insert(name, Target::Host(index));
                }
                ServerControl::Sink { name, sink } => self.add_sink(name, sink),
                ServerControl::Close { linger } => {
                    self.close_deadline.get_or_insert(now + linger);
                }
                ServerControl::Start => self.reading = true,
                ServerControl::Authorize { request, allow } => self.authorized(request, allow),
            }
        }
    }

    /// Whether reading stops for now: the host has not taken what it was given (in events or
    /// bytes), or a sink cannot keep up. The kernel and the sockets then push back on the
    /// clients instead of our memory growing.
    fn read_paused(&self) -> bool {
        self.outbox.len() >= MAX_UNDELIVERED
            || self.outbox.bytes() >= self.receive_high_water_bytes
            || self.sinks.iter().any(Sink::backed_up)
    }

    /// Drops clients that ping but fell silent (hung or unreachable: the socket may stay open).
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.heartbeat_timeout / 2;
        if self.read_paused() {
            // Not reading: their pings wait in the sockets, unseen. Silence is ours, not theirs.
            for peer in self.peers.values_mut() {
                peer.last_heard = now;
            }
            return;
        }
        let silent: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.pings && now.saturating_duration_since(p.last_heard) > self.heartbeat_timeout
            })
            .map(|(i, _)| *i)
            .collect();
        for index in silent {
            if let Some(identity) = self.peers.get(&index).map(|p| p.identity.clone()) {
                // A half-open connection would otherwise keep its routing id (and its queue).
                self.cut_off.push(identity);
            }
            self.forget(index, DisconnectReason::Timeout);
        }
    }
}

fn is_ipc(listener: &zeromq::Listener) -> bool {
    #[cfg(unix)]
    return matches!(listener, zeromq::Listener::Ipc(_));
    #[cfg(not(unix))]
    {
        let _ = listener;
        false
    }
}

fn client_id() -> String {
    format!("{:012x}", protocol::random_id() & 0xffff_ffff_ffff)
}

impl ServerEngine {
    /// Serves until closed; what is still queued gets at most the linger time.
    pub(super) async fn run(mut self, listener: zeromq::Listener) {
        let mut options = protocol::socket_options(self.max_message_bytes);
        // The marks bound each client's queue as well as the host's: a client that does not
        // read holds at most that much, and is refused beyond it.
        options.peer_send_high_water_mark(self.client_marks.0, self.client_marks.1);
        if let Some(grace) = self.drop_stuck_client_after {
            options.drop_full_peer_after(grace);
        }
        if let (Some(curve), Some(keys)) = (&self.curve, &self.keys) {
            curve.apply(&mut options, keys);
            let _ = self.counters.curve.set(options.curve_stats());
        } else if is_ipc(&listener) {
            let records = Arc::new(PeerRecords::default());
            records.record_ipc_peers(&mut options, self.host_authorizes);
            self.keys = Some(records);
        }
        let mut socket = RouterSocket::with_options(options);
        let monitor = socket.monitor();
        if socket.bind_listener(listener).await.is_err() {
            return;
        }
        let (send, recv) = socket.split();
        let mut router = Router {
            send,
            recv,
            monitor,
        };
        loop {
            let now = Instant::now();
            self.take_control(now);
            self.take_queue();
            self.sink_news();
            self.keep_alive(now);
            // Before the flush, so the acks go out now rather than at the next wake-up: the
            // clients keep (and count against their marks) every send until it is acked.
            // Goodbyes held for unconfirmed sends follow their acks.
            self.send_acks(now);
            self.answer_goodbyes();
            self.flush(&mut router);
            if self.queue.take_drain(&self.shared) {
                self.events.push(ServerEvent::Drain);
            }
            self.sweep(now);
            self.sweep_keys(now, &router);
            self.expire_requests(now);
            let (backlog, outbox) = (&self.backlog, &self.outbox);
            self.trim
                .run_if_due(now, || backlog.is_empty() && outbox.is_empty());
            self.published += self.events.len() as u64;
            self.outbox.publish(&mut self.events);
            if let Some(deadline) = self.close_deadline {
                // Rows still being committed are acked (and their requests answered) once they
                // are, if that happens within the linger time.
                let idle = self.backlog.is_empty()
                    && self.queue.rx.is_empty()
                    && self.sinks_settled()
                    && self.goodbyes.is_empty();
                if idle && self.ack_at.is_some() && now < deadline {
                    // Confirm what the host handled before going, rather than leave it to
                    // the clients to count as lost.
                    self.ack_at = Some(now);
                    self.send_acks(now);
                    self.flush(&mut router);
                }
                // What the clients' queues still hold goes with the runtime: give their
                // writer tasks the linger time to hand it to the kernel.
                let idle = idle && self.backlog.is_empty() && router.send.queued().messages == 0;
                if idle || now >= deadline {
                    break;
                }
            }
            self.wait(&mut router).await;
        }
        // What could not be written in the linger time is dropped with the socket.
        let left = self.backlog.iter().filter(|o| o.release.is_some()).count() as u64;
        let left_bytes = self.backlog.iter().filter_map(|o| o.release).sum();
        self.shared.release(left, left_bytes);
    }

    async fn wait(&mut self, router: &mut Router) {
        let shared = self.shared.clone();
        let want = self.spin.wanted();
        let Some(waiting) = host::prepare_wait(&shared, &self.queue, &mut self.spin, want, || {
            !self.outbox.is_empty()
        }) else {
            return;
        };
        // Stop reading while the host has not taken what we already gave it: the kernel and
        // the crate's buffers then push back on the clients instead of our memory growing.
        for sink in &mut self.sinks {
            sink.retry();
        }
        let paused = self.read_paused();
        let mut timer = Some(
            [
                self.close_deadline,
                self.ack_at,
                self.trim.deadline(),
                self.token_order
                    .front()
                    .map(|(read, _)| *read + self.pending_request_timeout),
            ]
            .into_iter()
            .flatten()
            .fold(self.next_sweep, Instant::min),
        );
        if paused || self.sink_replies_waiting() {
            let poll = Instant::now() + PAUSE_POLL;
            timer = Some(timer.map_or(poll, |t| t.min(poll)));
        }
        if self.close_deadline.is_some() {
            let poll = Instant::now() + CLOSE_POLL;
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
                std::future::poll_fn(|cx| router.recv.poll_recv(cx)).await
            }
        };
        let spin = crate::spin::turn(waiting.spinning);
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
            e = router.monitor.next() => Woke::Monitor(e),
        };
        host::woke(&shared, &mut self.spin, waiting);
        match woke {
            Woke::Other | Woke::Message(Err(_)) | Woke::Monitor(None) => {}
            Woke::Message(Ok(m)) => {
                let arrival = Arrival::now();
                self.inbound(m, arrival);
                for _ in 1..RECV_BATCH {
                    match host::ready(&mut router.recv) {
                        Some(Ok(m)) => self.inbound(m, arrival),
                        _ => break,
                    }
                }
            }
            Woke::Monitor(Some(SocketEvent::Disconnected(peer))) => {
                let identity: Bytes = peer.into();
                if let Some(&index) = self.by_identity.get(&identity) {
                    self.forget(index, DisconnectReason::Closed);
                }
                self.curve_peer_left(&identity);
            }
            Woke::Monitor(Some(_)) => {}
        }
    }
}
