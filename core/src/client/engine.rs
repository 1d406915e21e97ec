//! The client's engine: the loop on the engine thread that owns the client's links (one per
//! endpoint, see `link`).
//!
//! The zeromq crate's DEALER does not reconnect, has no send limit of ours, no linger and no
//! drain, so this loop owns all of that. It keeps messages in one backlog while no server is
//! connected and spreads them round-robin over the connected links; times requests out and
//! retries the idempotent ones; keeps every send written to a server that acks until it is
//! acked, and writes it again, first, when its connection is lost (`replay`); counts every
//! accepted send as delivered or dropped with a reason; and on close drains for at most the
//! linger time.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::Arc;

use tokio::time::Instant;
use zeromq::{SocketEvent, ZmqError, ZmqMessage};

use super::event::{ClientEvent, DropReason, DropTally};
use super::link::{self, Beat, Connected, Goodbye, Io, Link, Retained, ServerKind, Watch};
use super::options::ClientOptions;
use super::requests::{Pending, Requests};
use super::stats::{ClientCounters, ClientEngineCounters};
use super::{ClientControl, ClientOut};
use crate::counter::bump;
use crate::endpoint::Endpoint;
use crate::host::outbox::Outbox;
use crate::host::queue::{Consumer, QueueShared};
use crate::host::{self, EngineParts, RECV_BATCH};
use crate::protocol::{self, Inbound};
use crate::spin::Spin;
use crate::trim::Trim;

mod backlog;
mod inbound;
mod replay;

use replay::Resend;

/// How often an engine paused at its receive bound looks whether the host caught up.
const RECEIVE_PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(1);
/// Fewest replies handed to the host at once while more are being read (see `wait`).
const REPLY_HANDOFF: usize = 32;

pub(super) struct ClientEngine {
    options: ClientOptions,
    shared: Arc<QueueShared>,
    counters: Arc<ClientCounters>,
    outbox: Arc<Outbox<ClientEvent>>,
    queue: Consumer<ClientOut, ClientControl>,
    links: Vec<Link>,
    /// The link the next message goes to (round-robin over the usable ones).
    next_link: usize,
    /// The link polled first on the next wait, so a busy one cannot starve the others.
    poll_from: usize,
    watch: Option<Watch>,
    /// Taken from the channel, not yet handed to the socket, and the bytes of its sends.
    backlog: VecDeque<ClientOut>,
    backlog_sends: usize,
    backlog_send_bytes: u64,
    requests: Requests,
    events: Vec<ClientEvent>,
    close_deadline: Option<Instant>,
    /// Polling instead of parking, right after request traffic.
    spin: Spin,
    /// Counts connections across links.
    epochs: u32,
    /// Sequence number of control requests (hello, goodbye, ping).
    control_seq: u32,
    drops: DropTally,
    trim: Trim,
}

impl ClientEngine {
    pub(super) fn new(
        endpoints: Vec<Endpoint>,
        options: ClientOptions,
        counters: Arc<ClientCounters>,
        parts: EngineParts<ClientOut, ClientControl, ClientEvent>,
    ) -> Self {
        // One session per endpoint, so each connection's numbering stays contiguous however
        // the round-robin spreads the sends.
        let session = protocol::random_id();
        let links: Vec<Link> = endpoints
            .into_iter()
            .enumerate()
            .map(|(i, e)| Link::new(e, &options, session.wrapping_add(i as u64)))
            .collect();
        ClientEngine {
            options,
            shared: parts.shared,
            counters,
            outbox: parts.outbox,
            queue: parts.queue,
            links,
            next_link: 0,
            poll_from: 0,
            watch: None,
            backlog: VecDeque::new(),
            backlog_sends: 0,
            backlog_send_bytes: 0,
            requests: Requests::default(),
            events: Vec::new(),
            close_deadline: None,
            spin: Spin::default(),
            epochs: 0,
            control_seq: 0,
            drops: DropTally::default(),
            trim: Trim::default(),
        }
    }

    /// Whether what the servers send is read: not past the receive bound.
    fn reading(&self) -> bool {
        self.outbox.bytes() < self.options.receive_high_water_bytes as u64
    }

    /// Runs until closed and drained (or the linger time is up).
    pub(super) async fn run(mut self) {
        // Inside the runtime: the watch registers with its reactor.
        self.watch = link::watch_ipc_dirs(&self.links);
        loop {
            let now = Instant::now();
            self.take_control(now);
            self.take_queue();
            // Before the flush: both may queue requests again (retries), or drop a link.
            self.expire(now);
            self.heartbeat(now);
            self.start_connecting(now);
            self.flush();
            if self.queue.take_drain(&self.shared) {
                self.events.push(ClientEvent::Drain);
            }
            let backlog = &self.backlog;
            self.trim.run_if_due(now, || backlog.is_empty());
            self.drops.report(now, false, &mut self.events);
            self.outbox.publish(&mut self.events);
            if let Some(deadline) = self.close_deadline {
                if now >= deadline || self.drained() {
                    break;
                }
            }
            self.wait().await;
        }
        self.finish_close();
        self.drops.report(Instant::now(), true, &mut self.events);
        self.outbox.publish(&mut self.events);
    }

    /// While closing: true once nothing is left to send and every server has confirmed reading
    /// everything we wrote to it. Confirmation matters: a libzmq ROUTER behind its receive HWM
    /// discards what is still in the kernel buffer when an ipc peer closes, so "written" is
    /// not "delivered". The barrier is a control request sent after the last message; the
    /// server reads in order, so any reply to it means everything before it was read.
    fn drained(&mut self) -> bool {
        if !(self.backlog.is_empty() && self.queue.rx.is_empty())
            || self.links.iter().any(Link::resending)
        {
            return false;
        }
        let mut done = true;
        for i in 0..self.links.len() {
            done &= self.link_drained(i);
        }
        done
    }

    fn link_drained(&mut self, i: usize) -> bool {
        match self.links[i].goodbye(&mut self.control_seq) {
            Goodbye::Done => true,
            Goodbye::Waiting => false,
            Goodbye::Failed => {
                self.disconnected(i);
                true
            }
        }
    }

    fn take_control(&mut self, now: Instant) {
        while let Ok(order) = self.queue.ctl.try_recv() {
            match order {
                ClientControl::Cancel(id) => {
                    if let Some(p) = self.requests.cancel(id) {
                        self.give_back_room(&p, true);
                    }
                }
                ClientControl::Close { linger } => {
                    if self.close_deadline.is_none() {
                        self.close_deadline = Some(now + linger);
                    }
                }
            }
        }
    }

    /// Moves everything from the channel to the backlog, registering requests as it goes so
    /// their deadlines run from the moment the host made the call, connected or not.
    fn take_queue(&mut self) {
        while let Ok(batch) = self.queue.rx.try_recv() {
            self.admit(batch);
        }
        self.fail_unauthenticated();
        if self.options.drop_oldest {
            self.trim_backlog();
        }
    }

    fn drop_sends(&mut self, reason: DropReason, count: u64) {
        if count == 0 {
            return;
        }
        let counters = &self.counters.engine;
        let counter = match reason {
            DropReason::Overflow => &counters.dropped_overflow,
            DropReason::Closed => &counters.dropped_closed,
            DropReason::PeerLost => &counters.dropped_peer_lost,
        };
        bump(counter, count);
        self.drops.add(reason, count);
    }

    fn start_connecting(&mut self, now: Instant) {
        for link in &mut self.links {
            link.start_connecting(now, &self.options);
        }
    }

    /// The next link that can take a message now, round-robin.
    fn pick_link(&self) -> Option<usize> {
        let n = self.links.len();
        (0..n)
            .map(|k| (self.next_link + k) % n)
            .find(|&i| self.links[i].usable())
    }

    /// Hands the backlog to the sockets, oldest first, until no socket can take more. Replays
    /// of kept messages go first, before anything newer.
    fn flush(&mut self) {
        let (mut released, mut released_bytes, mut written) = (0u64, 0u64, 0u64);
        let mut expired = 0u64;
        let mut peer_lost = 0u64;
        let mut lost_link = None;
        let n = self.links.len();
        let now = std::time::Instant::now();
        loop {
            if let Some(j) = self.links.iter().position(Link::resending) {
                match self.resend_one(j) {
                    Resend::Wrote => {
                        written += 1;
                        continue;
                    }
                    Resend::Blocked => break,
                    Resend::Lost(i) => {
                        lost_link = Some(i);
                        break;
                    }
                }
            }
            if self.backlog.is_empty() {
                break;
            }
            let Some(i) = self.pick_link() else {
                break;
            };
            let is_send = self.backlog.front().is_some_and(|o| o.request.is_none());
            let link = &mut self.links[i];
            let keeps = link.server.keeps();
            if is_send && keeps && !link.continues_run(link.session, link.next_seq, false) {
                // The server's numbering of this connection must be restated first.
                let run = protocol::Run {
                    session: link.session,
                    seq: link.next_seq,
                    resent: 0,
                };
                if link.write_mark(run, &mut self.control_seq) == Some(false) {
                    lost_link = Some(i);
                    break;
                }
                continue;
            }
            let out = self.backlog.pop_front().expect("not empty");
            let len = out.body.len() as u64;
            let counted = out.counted;
            let corr = match &out.request {
                Some(r) => match self.requests.get_mut(r.id) {
                    // Settled before it left: sending it would only earn a late reply. Its
                    // room went back when it settled, unless it was never pending.
                    None => {
                        if self.requests.holds_room(r.id, counted) {
                            released += 1;
                            released_bytes += len;
                            expired += 1;
                        }
                        continue;
                    }
                    Some(p) => {
                        p.written_in = Some(self.links[i].epoch);
                        p.confirms = self.links[i].written;
                        // Its room goes back with the write (put back below if the socket
                        // gives it back).
                        if counted {
                            p.room = None;
                        }
                        self.spin.after_traffic(Instant::from_std(now));
                        protocol::encode_corr(r.id)
                    }
                },
                None => {
                    self.backlog_sends -= 1;
                    self.backlog_send_bytes -= len;
                    protocol::empty_corr()
                }
            };
            if let Some(t) = out.queued_at {
                let wait = now.saturating_duration_since(t);
                self.counters.engine.queue_wait.record_duration(wait);
            }
            let link = &mut self.links[i];
            let conn = link.conn.as_mut().expect("usable link");
            // A send to a server that may confirm it is kept (it counts against the marks
            // until then), so a lost connection loses nothing: the engine owns the body
            // already, keeping it costs a reference count.
            let kept = (is_send && keeps).then(|| out.body.clone());
            // Room for the body: `from` has room for one frame, and a push reallocates.
            let mut message = ZmqMessage::with_capacity(corr, 2);
            message.push_back(out.body);
            let result = conn.writer.start(message);
            let handed_over = !matches!(result, Some(Err(ZmqError::ReturnToSender { .. })));
            if handed_over {
                written += 1;
                link.unconfirmed = true;
                if is_send {
                    link.written += 1;
                    if let Some(body) = kept {
                        link.retained.push_back(Retained {
                            seq: link.next_seq,
                            body,
                            epoch: link.epoch,
                        });
                    } else {
                        released += 1;
                        released_bytes += len;
                    }
                    link.next_seq += 1;
                    link.advance_run();
                } else if counted {
                    // A request's first copy; its retries never held room.
                    released += 1;
                    released_bytes += len;
                }
            }
            match result {
                // Handed over (done, or suspended on a full queue): the socket owns it now.
                None | Some(Ok(())) => self.next_link = (i + 1) % n,
                Some(Err(ZmqError::ReturnToSender { message, .. })) => {
                    // No peer after all: the crate gave it back; it waits for the next one.
                    if let Some(body) = message.into_vec().pop() {
                        if is_send {
                            self.backlog_sends += 1;
                            self.backlog_send_bytes += len;
                        }
                        if let (Some(r), true) = (&out.request, counted) {
                            if let Some(p) = self.requests.get_mut(r.id) {
                                p.room = Some(len);
                            }
                        }
                        self.backlog.push_front(ClientOut {
                            request: out.request,
                            body,
                            queued_at: None,
                            counted,
                        });
                    }
                    lost_link = Some(i);
                    break;
                }
                Some(Err(_)) => {
                    // Handed over and lost with the connection: kept ones are replayed.
                    if is_send && !keeps {
                        peer_lost += 1;
                    }
                    lost_link = Some(i);
                    break;
                }
            }
        }
        let counters = &self.counters.engine;
        bump(&counters.written, written);
        bump(&counters.expired_unsent, expired);
        self.shared.release(released, released_bytes);
        self.trim.released(released_bytes, Instant::from_std(now));
        self.drop_sends(DropReason::PeerLost, peer_lost);
        if let Some(i) = lost_link {
            self.disconnected(i);
        }
    }

    /// Per link: takes a silent peer for a plain ROUTER, pings a zerowire server and drops the
    /// connection when it has been silent too long (hung or unreachable: the socket itself may
    /// stay open).
    fn heartbeat(&mut self, now: Instant) {
        let reading = self.reading();
        for i in 0..self.links.len() {
            if !reading {
                // Past the receive bound the pongs wait in the sockets, unseen: the silence is
                // ours, not the servers'.
                self.links[i].last_heard = now;
            }
            match self.links[i].heartbeat(now, &self.options, &mut self.control_seq) {
                Beat::Quiet => {}
                Beat::NoHello => self.became_plain(i),
                Beat::Silent => {
                    bump(&self.counters.engine.heartbeat_timeouts, 1);
                    self.disconnected(i);
                }
                Beat::Failed => self.disconnected(i),
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(id) = self.requests.next_expired(now) {
            if !self.send_again(id, now) {
                if let Some(p) = self.requests.remove(id) {
                    self.give_back_room(&p, true);
                }
                bump(&self.counters.engine.timeouts, 1);
                self.events.push(ClientEvent::Timeout { id });
            }
        }
    }

    /// Queues a retryable request's next attempt ahead of everything else; false when it has
    /// none left.
    fn send_again(&mut self, id: u32, now: Instant) -> bool {
        let Some(copy) = self.requests.again(id, now) else {
            return false;
        };
        if let Some(out) = copy {
            self.backlog.push_front(out);
            bump(&self.counters.engine.retries, 1);
        }
        true
    }

    fn next_timer(&self) -> Option<Instant> {
        let mut next = self.requests.next_deadline();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.close_deadline);
        consider(self.trim.deadline());
        consider(self.drops.due());
        for link in &self.links {
            consider(link.retry_at);
            consider(link.next_ping);
            consider(link.hello_deadline);
            consider(
                link.next_ping
                    .map(|_| link.last_heard + self.options.heartbeat_timeout),
            );
        }
        next
    }

    fn disconnected(&mut self, i: usize) {
        let now = Instant::now();
        let link = &mut self.links[i];
        // Sends the server did not confirm are beyond confirming now.
        let (was_connected, lost) = link.reset(now, self.options.reconnect_interval);
        let epoch = link.epoch;
        self.drop_sends(DropReason::PeerLost, lost);
        // What that connection carried and nobody confirmed goes again, on the next server
        // that acks (this endpoint's once it is back, or another one's).
        for link in &mut self.links {
            link.lost_connection(epoch);
        }
        if !was_connected {
            return;
        }
        bump(&self.counters.engine.disconnects, 1);
        self.events
            .push(ClientEvent::Disconnected { link: i as u32 });
        // Requests written on that connection will get no reply: retry or say so now.
        for id in self.requests.written_on(epoch) {
            if !self.send_again(id, now) {
                if let Some(p) = self.requests.remove(id) {
                    self.give_back_room(&p, false);
                }
                bump(&self.counters.engine.resets, 1);
                self.events.push(ClientEvent::Reset { id });
            }
        }
    }

    fn connected(&mut self, i: usize, connected: Connected) {
        self.control_seq = self.control_seq.wrapping_add(1);
        self.epochs = self.epochs.wrapping_add(1);
        let ok = self.links[i].connected(connected, self.epochs, self.control_seq, &self.options);
        bump(&self.counters.engine.connects, 1);
        if !ok {
            self.disconnected(i);
        }
    }

    fn connect_failed(&mut self, i: usize, e: ZmqError) {
        bump(&self.counters.engine.connect_failures, 1);
        if e.is_mechanism_failure() {
            bump(&self.counters.engine.auth_failures, 1);
            self.links[i].auth_failed = true;
        }
        let uid_refused = matches!(e, ZmqError::PeerCredentials(_));
        if uid_refused {
            self.links[i].uid_refused = true;
        }
        let delay = self.links[i].connect_failed(&e, self.options.reconnect_max_interval);
        // The host hears why: a mistyped ipc path is ENOENT here, not a request timeout later.
        let os_error =
            |io: &std::io::Error| (io.raw_os_error().unwrap_or(0).max(0) as u32, io.to_string());
        let (errno, message) = match &e {
            ZmqError::Network(io) => os_error(io),
            ZmqError::ConnectTimeout(_) => match self.links[i].why_unreachable() {
                Some(io) => os_error(&io),
                None => (0, e.to_string()),
            },
            ZmqError::PeerCredentials(Some(c)) => (
                0,
                format!(
                    "the ipc server runs as uid {}, which expectServerUid does not allow; nothing was written to it",
                    c.uid
                ),
            ),
            ZmqError::PeerCredentials(None) => (
                0,
                "the ipc server's credentials could not be read, so expectServerUid cannot hold; nothing was written to it".into(),
            ),
            other => (0, other.to_string()),
        };
        self.events.push(ClientEvent::ConnectFailed {
            link: i as u32,
            errno,
            timed_out: errno == 0 && matches!(e, ZmqError::ConnectTimeout(_)),
            auth: e.is_mechanism_failure(),
            peer_uid: uid_refused,
            retry_ms: u32::try_from(delay.as_millis()).unwrap_or(u32::MAX),
            message,
        });
        self.fail_unauthenticated();
    }

    /// When every endpoint failed the CURVE handshake or runs as a uid `expectServerUid`
    /// refuses, the requests waiting for one fail now (EAUTH, ERR_ZEROWIRE_PEER_UID) rather
    /// than at their timeout: retrying will not help. The links keep trying (a server may come
    /// back with the right key or as the right user); sends stay queued.
    fn fail_unauthenticated(&mut self) {
        if !self.links.iter().all(|l| l.auth_failed || l.uid_refused) {
            return;
        }
        let uid = self.links.iter().any(|l| l.uid_refused);
        for id in self.requests.ids() {
            if let Some(p) = self.requests.remove(id) {
                self.give_back_room(&p, false);
            }
            self.events.push(if uid {
                ClientEvent::ServerUidRefused { id }
            } else {
                ClientEvent::AuthFailed { id }
            });
        }
        let (mut released, mut released_bytes) = (0u64, 0u64);
        let requests = &mut self.requests;
        self.backlog.retain(|o| {
            let Some(r) = &o.request else {
                return true;
            };
            if requests.holds_room(r.id, o.counted) {
                released += 1;
                released_bytes += o.body.len() as u64;
            }
            false
        });
        self.shared.release(released, released_bytes);
    }

    /// The watched directory got a new entry: perhaps a server just bound a link's socket.
    fn bound(&mut self, name: Option<OsString>) {
        let Some(name) = name else {
            return;
        };
        let now = Instant::now();
        for link in &mut self.links {
            link.server_bound(&name, now, self.options.reconnect_interval);
        }
    }

    /// Sleeps until a message arrives, the host pushes something, a connection attempt ends,
    /// a socket reports an event, a watched socket file appears or a timer is due.
    async fn wait(&mut self) {
        let shared = self.shared.clone();
        // Right after request traffic, poll instead of parking: a reply (or the host's next
        // request) usually comes sooner than a cross-core wake-up (`spin`). Only while a slot is free: engines beyond the spare cores must not spin,
        // or they starve the JS threads they wait for.
        let any_conn = self.links.iter().any(|l| l.conn.is_some());
        let want = any_conn && self.spin.wanted();
        let Some(waiting) = host::prepare_wait(&shared, &self.queue, &mut self.spin, want, || {
            !self.outbox.is_empty()
        }) else {
            return;
        };
        // Past the receive bound, leave what servers send in the sockets until the host has
        // taken enough (the kernel then pushes back on them); look again shortly.
        let reading = self.reading();
        let mut timer = self.next_timer();
        if !reading {
            let poll = Instant::now() + RECEIVE_PAUSE_POLL;
            timer = Some(timer.map_or(poll, |t| t.min(poll)));
        }
        let sleep = async {
            match timer {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let n = self.links.len();
        let from = self.poll_from;
        self.poll_from = (from + 1) % n;
        let links = &mut self.links;
        let watch = &mut self.watch;
        let io = std::future::poll_fn(|cx| link::poll(links, watch, from, reading, cx));
        let spin = crate::spin::turn(waiting.spinning);
        let woke = tokio::select! {
            _ = shared.notify.notified() => None,
            _ = sleep => None,
            _ = spin => None,
            io = io => Some(io),
        };
        host::woke(&shared, &mut self.spin, waiting);
        match woke {
            None | Some(Io::Written(_, Ok(()))) => {}
            Some(Io::Written(i, Err(_))) => {
                // The suspended message was written and went down with the connection; it is
                // among the link's unconfirmed ones.
                self.disconnected(i);
            }
            Some(Io::Message(i, Ok(m))) => {
                // Replies go to the host in halves of what is in flight (at least
                // REPLY_HANDOFF): it resolves the first half, and the caller writes new
                // requests, while this engine reads the second. One batch of every reply
                // would have the two threads take turns, each idle while the other works.
                let in_flight = self.requests.len();
                let handoff = REPLY_HANDOFF.max(in_flight / 2);
                self.handle_inbound(i, m);
                // Take what else is already there without sleeping again.
                for _ in 1..RECV_BATCH {
                    if in_flight.saturating_sub(self.requests.len()) >= handoff {
                        break;
                    }
                    let Some(conn) = self.links[i].conn.as_mut() else {
                        break;
                    };
                    match host::ready(&mut conn.recv) {
                        Some(Ok(m)) => self.handle_inbound(i, m),
                        _ => break,
                    }
                }
            }
            Some(Io::Message(i, Err(_))) => self.disconnected(i),
            Some(Io::Monitor(i, Some(SocketEvent::Disconnected(_))))
            | Some(Io::Monitor(i, None)) => self.disconnected(i),
            Some(Io::Monitor(_, Some(_))) => {}
            Some(Io::Connected(i, result)) => {
                self.links[i].connecting = None;
                match result {
                    Ok(connected) => self.connected(i, connected),
                    Err(e) => self.connect_failed(i, e),
                }
            }
            Some(Io::Bound(name)) => self.bound(name),
            Some(Io::WatchFailed) => self.watch = None,
        }
    }

    /// After the drain: drop what could not be sent (counted) and close the sockets.
    fn finish_close(&mut self) {
        let (mut left, mut left_bytes) = (0u64, 0u64);
        for o in std::mem::take(&mut self.backlog) {
            // A request's retry holds no room; its first copy does unless it settled unsent.
            let holds = match &o.request {
                None => true,
                Some(r) => self.requests.holds_room(r.id, o.counted),
            };
            if holds {
                left += 1;
                left_bytes += o.body.len() as u64;
            }
        }
        let mut sends = self.backlog_sends as u64;
        // Nothing new can arrive after close, but what raced with it is dropped the same way.
        while let Ok(batch) = self.queue.rx.try_recv() {
            left += batch.len() as u64;
            left_bytes += batch.iter().map(|o| o.body.len() as u64).sum::<u64>();
            sends += batch.iter().filter(|o| o.request.is_none()).count() as u64;
        }
        self.shared.release(left, left_bytes);
        // Written but unconfirmed when the linger time ran out: maybe read, maybe not.
        for link in &mut self.links {
            if !link.server.keeps() {
                sends += link.unacked();
            }
            let (n, bytes) = link.drop_retained();
            self.shared.release(n, bytes);
            sends += n;
            link.acked = link.written;
            link.connecting = None;
            // Closing the socket here is safe: either the server confirmed everything or the
            // linger time is up.
            link.conn = None;
        }
        self.drop_sends(DropReason::Closed, sends);
    }
}
