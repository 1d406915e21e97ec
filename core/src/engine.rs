//! The engine: one OS thread per client running a current-thread tokio runtime (a multi-thread
//! runtime tripled round-trip latency on the target machines) that owns the DEALER socket.
//!
//! The zeromq crate's DEALER does not reconnect, has no send limit of ours, no linger and no
//! drain, so this loop owns all of that: it connects (and reconnects after a disconnect) with
//! capped exponential backoff, keeps messages in its own backlog while no peer is connected,
//! times requests out, and on close drains for at most the linger time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use zeromq::{
    DealerRecvHalf, DealerSendHalf, DealerSocket, Socket, SocketEvent, SocketOptions, SocketRecv,
    ZmqError, ZmqMessage, ZmqResult,
};

use crate::options::ClientOptions;
use crate::outbox::{Event, Outbox};
use crate::protocol::{self, Inbound};
use crate::queue::{Consumer, Control, Outgoing, QueueShared};
use crate::spin::{SpinSlot, SPIN};
use crate::stats::bump;
use crate::writer::Writer;

/// Shortest time one connection attempt (connect + ZMTP handshake) is given.
const MIN_CONNECT_ATTEMPT: Duration = Duration::from_millis(250);
/// Most inbound messages handled per wake-up before the loop looks at its queue again.
const RECV_BATCH: usize = 256;

/// A live connection: the two halves of the DEALER and its event monitor.
struct Conn {
    writer: Writer<DealerSendHalf>,
    recv: DealerRecvHalf,
    monitor: mpsc::Receiver<SocketEvent>,
}

type Connecting =
    Pin<Box<dyn Future<Output = ZmqResult<(DealerSocket, mpsc::Receiver<SocketEvent>)>> + Send>>;

fn connect(endpoint: String, timeout: Duration) -> Connecting {
    Box::pin(async move {
        let mut options = SocketOptions::default();
        options.connect_timeout(timeout);
        let mut socket = DealerSocket::with_options(options);
        let monitor = socket.monitor();
        socket.connect(&endpoint).await?;
        Ok((socket, monitor))
    })
}

struct Pending {
    deadline: Instant,
    /// The connection (epoch) it was written on; a request that went down with its
    /// connection is rejected at once rather than left to time out.
    written_in: Option<u32>,
}

pub(crate) struct Engine {
    endpoint: String,
    options: ClientOptions,
    shared: Arc<QueueShared>,
    outbox: Arc<Outbox>,
    queue: Consumer,
    /// Taken from the channel, not yet handed to the socket.
    backlog: VecDeque<Outgoing>,
    /// Pending requests by id.
    pending: HashMap<u32, Pending>,
    /// Cancels that overtook their request (the control channel is separate from the queue).
    cancelled_early: HashSet<u32>,
    /// Deadlines in order; entries whose request is gone are skipped lazily.
    deadlines: BinaryHeap<Reverse<(Instant, u32)>>,
    events: Vec<Event>,
    conn: Option<Conn>,
    connecting: Option<Connecting>,
    retry_at: Option<Instant>,
    backoff: Duration,
    close_deadline: Option<Instant>,
    /// Poll instead of parking until then (set by request traffic).
    spin_until: Option<Instant>,
    spin_slot: SpinSlot,
    /// Counts connections; requests remember the one they were written on.
    epoch: u32,
    /// When the server was last heard from on the current connection.
    last_heard: Instant,
    /// When to ping next (only a server that acked our hello answers pings).
    next_ping: Option<Instant>,
    /// Something was written on the current connection since the server last confirmed.
    unconfirmed: bool,
    /// The corr of the close barrier (goodbye) in flight, if any.
    barrier: Option<Bytes>,
    /// The corr of the hello sent on the current connection.
    hello: Option<Bytes>,
    /// The server acked our hello on the current connection (it speaks the control protocol).
    ready: bool,
    /// The goodbye went out (and, once `barrier` is cleared, was answered).
    said_goodbye: bool,
    /// Sequence number of control requests (hello, goodbye).
    control_seq: u32,
}

impl Engine {
    pub(crate) fn new(
        endpoint: String,
        options: ClientOptions,
        shared: Arc<QueueShared>,
        outbox: Arc<Outbox>,
        queue: Consumer,
    ) -> Self {
        let backoff = options.reconnect_interval;
        Engine {
            endpoint,
            options,
            shared,
            outbox,
            queue,
            backlog: VecDeque::new(),
            pending: HashMap::new(),
            cancelled_early: HashSet::new(),
            deadlines: BinaryHeap::new(),
            events: Vec::new(),
            conn: None,
            connecting: None,
            retry_at: Some(Instant::now()),
            backoff,
            close_deadline: None,
            spin_until: None,
            spin_slot: SpinSlot::default(),
            epoch: 0,
            last_heard: Instant::now(),
            next_ping: None,
            unconfirmed: false,
            barrier: None,
            hello: None,
            ready: false,
            said_goodbye: false,
            control_seq: 0,
        }
    }

    /// Runs the engine to completion on the calling thread.
    pub(crate) fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(_) => {
                // Without a runtime nothing can be sent; report closed so nothing waits forever.
                self.outbox.publish(&mut vec![Event::Closed]);
                return;
            }
        };
        let outbox = self.outbox.clone();
        runtime.block_on(self.main());
        // The socket writer tasks were given their chance in `main`; whatever is left goes.
        drop(runtime);
        outbox.publish(&mut vec![Event::Closed]);
    }

    async fn main(mut self) {
        loop {
            let now = Instant::now();
            self.take_control(now);
            self.take_queue();
            self.start_connecting(now);
            self.flush();
            self.heartbeat(now);
            self.expire(now);
            self.outbox.publish(&mut self.events);
            if let Some(deadline) = self.close_deadline {
                if now >= deadline || self.drained() {
                    break;
                }
            }
            self.wait().await;
        }
        self.finish_close();
    }

    /// While closing: true once nothing is left to send and the server has confirmed reading
    /// everything we wrote. Confirmation matters: a libzmq ROUTER behind its receive HWM
    /// discards what is still in the kernel buffer when an ipc peer closes, so "written" is
    /// not "delivered". The barrier is a control request sent after the last message; the
    /// server reads in order, so any reply to it means everything before it was read.
    fn drained(&mut self) -> bool {
        if !(self.backlog.is_empty() && self.queue.rx.is_empty()) {
            return false;
        }
        let Some(conn) = self.conn.as_mut() else {
            // Nothing in flight on a connection: what is left is the empty backlog.
            return true;
        };
        if conn.writer.busy() {
            return false;
        }
        // A zerowire server (it acked our hello) always gets a goodbye, so it reports the
        // disconnect as one; a plain ROUTER only when something awaits confirmation.
        if !self.unconfirmed && (!self.ready || self.said_goodbye) {
            return true;
        }
        if self.barrier.is_none() {
            self.control_seq = self.control_seq.wrapping_add(1);
            let corr = protocol::encode_control(protocol::CONTROL_GOODBYE, self.control_seq);
            let mut message = ZmqMessage::from(corr.clone());
            message.push_back(Bytes::new());
            self.barrier = Some(corr);
            self.said_goodbye = true;
            if let Some(Err(_)) = conn.writer.start(message) {
                self.disconnected();
                return true;
            }
        }
        false
    }

    fn take_control(&mut self, now: Instant) {
        while let Ok(order) = self.queue.ctl.try_recv() {
            match order {
                Control::Cancel(id) => {
                    if self.pending.remove(&id).is_none() {
                        self.cancelled_early.insert(id);
                    }
                }
                Control::Close { linger } => {
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
    }

    fn admit(&mut self, batch: Vec<Outgoing>) {
        // The host stamps no time: deadlines run from here. Batches leave the host at the end
        // of its tick and are taken on every wake-up, so the error is that delay (micro-seconds).
        let now = Instant::now();
        for out in batch {
            if let Some((id, timeout)) = out.request {
                if self.cancelled_early.remove(&id) {
                    // Left in the backlog unregistered: `flush` drops it as expired.
                    self.backlog.push_back(out);
                    continue;
                }
                let deadline = now + timeout;
                self.pending.insert(
                    id,
                    Pending {
                        deadline,
                        written_in: None,
                    },
                );
                self.deadlines.push(Reverse((deadline, id)));
            }
            self.backlog.push_back(out);
        }
    }

    fn start_connecting(&mut self, now: Instant) {
        // Closing does not stop us: what is queued still deserves its linger time.
        if self.conn.is_some() || self.connecting.is_some() {
            return;
        }
        match self.retry_at {
            Some(at) if at <= now => {
                self.retry_at = None;
                // The crate retries refused connections inside one attempt (50 ms, then
                // doubling), so a server that binds meanwhile is found. The attempt's bound also
                // covers the handshake, which a loaded machine can slow to tens of ms: never
                // give it less than MIN_CONNECT_ATTEMPT.
                let bound = self.backoff.max(MIN_CONNECT_ATTEMPT);
                self.connecting = Some(connect(self.endpoint.clone(), bound));
            }
            _ => {}
        }
    }

    /// Hands the backlog to the socket, oldest first, until the socket makes us wait.
    fn flush(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let counters = &self.shared.engine;
        let (mut released, mut released_bytes, mut written, mut dropped) = (0u64, 0u64, 0u64, 0u64);
        let mut lost = false;
        while !conn.writer.busy() {
            let Some(out) = self.backlog.pop_front() else {
                break;
            };
            let len = out.body.len() as u64;
            let corr = match out.request {
                Some((id, _)) if !self.pending.contains_key(&id) => {
                    // Timed out or cancelled before it left: sending it would only earn a late reply.
                    released += 1;
                    released_bytes += len;
                    dropped += 1;
                    continue;
                }
                Some((id, _)) => {
                    if let Some(p) = self.pending.get_mut(&id) {
                        p.written_in = Some(self.epoch);
                    }
                    self.spin_until = Some(Instant::now() + SPIN);
                    protocol::encode_corr(id)
                }
                None => protocol::empty_corr(),
            };
            let request = out.request;
            let mut message = ZmqMessage::from(corr);
            message.push_back(out.body);
            match conn.writer.start(message) {
                // Handed over (done, or suspended on a full queue): the socket owns it now.
                None | Some(Ok(())) => {
                    released += 1;
                    released_bytes += len;
                    written += 1;
                }
                Some(Err(ZmqError::ReturnToSender { message, .. })) => {
                    // No peer after all: the crate gave it back; it waits for the next one.
                    if let Some(body) = message.into_vec().pop() {
                        self.backlog.push_front(Outgoing { request, body });
                    }
                    lost = true;
                    break;
                }
                Some(Err(_)) => {
                    // Handed over and lost with the connection: written, and counted as lost.
                    released += 1;
                    released_bytes += len;
                    written += 1;
                    bump(&counters.lost, 1);
                    lost = true;
                    break;
                }
            }
        }
        self.unconfirmed |= written > 0;
        bump(&counters.written, written);
        bump(&counters.dropped, dropped);
        bump(&counters.released_bytes, released_bytes);
        // Release count last: the host reads it with Acquire and must then see the bytes too.
        counters.released.store(
            counters.released.load(Ordering::Relaxed) + released,
            Ordering::Release,
        );
        if lost {
            self.disconnected();
        }
    }

    /// Pings a zerowire server on the current connection and drops the connection when it has
    /// been silent too long (a hung or unreachable server: the socket itself may stay open).
    fn heartbeat(&mut self, now: Instant) {
        let Some(next) = self.next_ping else {
            return;
        };
        if now.saturating_duration_since(self.last_heard) > self.options.heartbeat_timeout {
            bump(&self.shared.engine.heartbeat_timeouts, 1);
            self.disconnected();
            return;
        }
        if now < next {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.writer.busy() {
            // Traffic is flowing out; the ping can wait for the writer.
            return;
        }
        self.control_seq = self.control_seq.wrapping_add(1);
        let mut ping = ZmqMessage::from(protocol::encode_control(
            protocol::CONTROL_PING,
            self.control_seq,
        ));
        ping.push_back(Bytes::new());
        self.next_ping = Some(now + self.options.heartbeat_interval);
        if let Some(Err(_)) = conn.writer.start(ping) {
            self.disconnected();
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((deadline, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if self
                .pending
                .get(&id)
                .is_some_and(|p| p.deadline == deadline)
            {
                self.pending.remove(&id);
                bump(&self.shared.engine.timeouts, 1);
                self.events.push(Event::Timeout { id });
            }
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let mut next = self.deadlines.peek().map(|Reverse((t, _))| *t);
        let silence_limit = self
            .next_ping
            .map(|_| self.last_heard + self.options.heartbeat_timeout);
        for t in [
            self.retry_at,
            self.close_deadline,
            self.next_ping,
            silence_limit,
        ]
        .into_iter()
        .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next
    }

    fn disconnected(&mut self) {
        // Whatever was in flight on that connection is beyond confirming now.
        self.unconfirmed = false;
        self.barrier = None;
        self.hello = None;
        self.ready = false;
        self.said_goodbye = false;
        self.next_ping = None;
        if self.conn.take().is_some() {
            bump(&self.shared.engine.disconnects, 1);
            self.events.push(Event::Disconnected);
            // Requests written on that connection will get no reply: say so now.
            let epoch = self.epoch;
            let lost: Vec<u32> = self
                .pending
                .iter()
                .filter(|(_, p)| p.written_in == Some(epoch))
                .map(|(id, _)| *id)
                .collect();
            for id in lost {
                self.pending.remove(&id);
                bump(&self.shared.engine.resets, 1);
                self.events.push(Event::Reset { id });
            }
        }
        self.epoch = self.epoch.wrapping_add(1);
        self.retry_at = Some(Instant::now() + self.options.reconnect_interval);
        self.backoff = self.options.reconnect_interval;
    }

    fn handle_inbound(&mut self, message: ZmqMessage) {
        self.last_heard = Instant::now();
        let counters = &self.shared.engine;
        match protocol::classify(message.into_vec()) {
            Inbound::Reply { id, body } => {
                if self.pending.remove(&id).is_some() {
                    // The host often answers a reply with its next request.
                    self.spin_until = Some(Instant::now() + SPIN);
                    bump(&counters.replies, 1);
                    self.events.push(Event::Reply { id, body });
                } else {
                    bump(&counters.late_replies, 1);
                }
            }
            Inbound::ErrorReply { id, message } => {
                if self.pending.remove(&id).is_some() {
                    bump(&counters.error_replies, 1);
                    self.events.push(Event::ErrorReply { id, message });
                } else {
                    bump(&counters.late_replies, 1);
                }
            }
            Inbound::Push { body } => {
                bump(&counters.pushes, 1);
                self.events.push(Event::Push { body });
            }
            Inbound::Control { frame, body } => {
                if self.barrier.as_ref() == Some(&frame) {
                    self.barrier = None;
                    self.unconfirmed = false;
                } else if self.hello.as_ref() == Some(&frame) {
                    // A plain ROUTER may echo the hello back: only a real ack makes us ready.
                    if let Some((client_id, server_pid)) = protocol::parse_ack(&body) {
                        self.ready = true;
                        self.next_ping = Some(Instant::now() + self.options.heartbeat_interval);
                        self.events.push(Event::Ready {
                            client_id,
                            server_pid,
                        });
                    }
                }
            }
            Inbound::Malformed => bump(&counters.malformed, 1),
        }
    }

    /// Sleeps until a message arrives, the host pushes something, a connection attempt ends,
    /// the socket reports an event or a timer is due.
    async fn wait(&mut self) {
        let shared = self.shared.clone();
        // Right after request traffic, poll instead of parking: on the target VMs a wake-up
        // across cores costs ≈ 45 µs, and a reply (or the host's next request) usually comes
        // sooner. Only while a slot is free: engines beyond the spare cores must not spin,
        // or they starve the JS threads they wait for.
        let want = self
            .spin_until
            .is_some_and(|t| t > Instant::now() && self.conn.is_some());
        let spinning = want && self.spin_slot.acquire();
        if !spinning {
            self.spin_until = None;
            self.spin_slot.release();
            shared.sleeping.store(true, Ordering::Relaxed);
            // Pairs with the fence in `QueueShared::wake_engine`.
            fence(Ordering::SeqCst);
        }
        if !self.queue.rx.is_empty() || !self.queue.ctl.is_empty() {
            shared.sleeping.store(false, Ordering::Relaxed);
            return;
        }
        let timer = self.next_timer();
        let sleep = async {
            match timer {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let (recv, monitor, writer) = match self.conn.as_mut() {
            Some(c) => (
                Some(&mut c.recv),
                Some(&mut c.monitor),
                Some(&mut c.writer).filter(|w| w.busy()),
            ),
            None => (None, None, None),
        };
        let written = async {
            match writer {
                Some(w) => w.finish().await,
                None => std::future::pending().await,
            }
        };
        let recv = async {
            match recv {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        let monitor = async {
            match monitor {
                Some(m) => m.next().await,
                None => std::future::pending().await,
            }
        };
        let connecting = async {
            match self.connecting.as_mut() {
                Some(c) => c.await,
                None => std::future::pending().await,
            }
        };
        enum Woke {
            Host,
            Timer,
            Message(ZmqResult<ZmqMessage>),
            Monitor(Option<SocketEvent>),
            Connected(ZmqResult<(DealerSocket, mpsc::Receiver<SocketEvent>)>),
            Written(ZmqResult<()>),
        }
        let spin = crate::spin::turn(spinning);
        let woke = tokio::select! {
            _ = shared.notify.notified() => Woke::Host,
            _ = sleep => Woke::Timer,
            _ = spin => Woke::Timer,
            m = recv => Woke::Message(m),
            e = monitor => Woke::Monitor(e),
            c = connecting => Woke::Connected(c),
            w = written => Woke::Written(w),
        };
        shared.sleeping.store(false, Ordering::Relaxed);
        match woke {
            Woke::Host | Woke::Timer | Woke::Written(Ok(())) => {}
            Woke::Written(Err(_)) => {
                // The suspended message was counted as written; the connection took it down.
                bump(&self.shared.engine.lost, 1);
                self.disconnected();
            }
            Woke::Message(Ok(m)) => {
                self.handle_inbound(m);
                // Take what else is already there without sleeping again.
                for _ in 1..RECV_BATCH {
                    let Some(conn) = self.conn.as_mut() else {
                        break;
                    };
                    match conn.recv.recv().now_or_never() {
                        Some(Ok(m)) => self.handle_inbound(m),
                        _ => break,
                    }
                }
            }
            Woke::Message(Err(_)) => self.disconnected(),
            Woke::Monitor(Some(SocketEvent::Disconnected(_))) | Woke::Monitor(None) => {
                self.disconnected()
            }
            Woke::Monitor(Some(_)) => {}
            Woke::Connected(result) => {
                self.connecting = None;
                match result {
                    Ok((socket, monitor)) => {
                        let (send, recv) = socket.split();
                        let mut writer = Writer::new(send);
                        self.last_heard = Instant::now();
                        // The hello goes first on every connection, ahead of the backlog.
                        self.control_seq = self.control_seq.wrapping_add(1);
                        let corr =
                            protocol::encode_control(protocol::CONTROL_HELLO, self.control_seq);
                        let mut hello = ZmqMessage::from(corr.clone());
                        hello.push_back(protocol::hello_body(
                            std::process::id(),
                            std::os::unix::process::parent_id(),
                            self.options.name.as_deref(),
                        ));
                        self.hello = Some(corr);
                        let failed = matches!(writer.start(hello), Some(Err(_)));
                        self.conn = Some(Conn {
                            writer,
                            recv,
                            monitor,
                        });
                        if failed {
                            self.disconnected();
                        }
                        self.backoff = self.options.reconnect_interval;
                        bump(&self.shared.engine.connects, 1);
                    }
                    Err(e) => {
                        bump(&self.shared.engine.connect_failures, 1);
                        // A timeout means nobody was there for a whole interval: try again at
                        // once with a longer one. A hard error waits out the interval first.
                        let delay = if matches!(e, ZmqError::ConnectTimeout(_)) {
                            Duration::ZERO
                        } else {
                            self.backoff
                        };
                        self.retry_at = Some(Instant::now() + delay);
                        self.backoff = (self.backoff * 2).min(self.options.reconnect_max_interval);
                    }
                }
            }
        }
    }

    /// After the drain: drop what could not be sent (counted) and close the socket.
    fn finish_close(&mut self) {
        let counters = &self.shared.engine;
        let mut left = self.backlog.len() as u64;
        let mut left_bytes: u64 = self.backlog.iter().map(|o| o.body.len() as u64).sum();
        self.backlog.clear();
        // Nothing new can arrive after close, but what raced with it is dropped the same way.
        while let Ok(batch) = self.queue.rx.try_recv() {
            left += batch.len() as u64;
            left_bytes += batch.iter().map(|o| o.body.len() as u64).sum::<u64>();
        }
        bump(&counters.dropped, left);
        bump(&counters.released_bytes, left_bytes);
        counters.released.store(
            counters.released.load(Ordering::Relaxed) + left,
            Ordering::Release,
        );
        self.connecting = None;
        // Closing the socket here is safe: either the server confirmed everything or the
        // linger time is up.
        self.conn = None;
    }
}
