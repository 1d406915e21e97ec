//! One endpoint of a client and its connection: connecting with capped exponential backoff
//! (and, for ipc://, at once when the socket file appears), the hello that tells a zerowire
//! server from a plain ROUTER, pings, the goodbye barrier, and what was written and confirmed
//! on the current connection. The engine decides what goes on which link.

use std::ffi::OsString;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use tokio::time::Instant;
use zeromq::{
    DealerRecvHalf, DealerSendHalf, DealerSocket, Socket, SocketEvent, ZmqError, ZmqMessage,
    ZmqResult,
};

use super::options::ClientOptions;
use crate::curve::ClientCurve;
use crate::endpoint::Endpoint;
use crate::peer::ServerUid;
use crate::protocol;
use crate::writer::Writer;

/// Messages the socket layer may hold for one connection beyond what the engine counts
/// against the client's marks (it holds them once they are "written"): a few, so that the
/// marks bound the client's memory, yet enough to keep the connection's writer busy.
const SOCKET_QUEUE_MESSAGES: usize = 64;

/// Shortest time one connection attempt (connect + ZMTP handshake) is given.
const MIN_CONNECT_ATTEMPT: Duration = Duration::from_millis(250);

/// A live connection: the two halves of the DEALER and its event monitor.
pub(super) struct Connection {
    pub writer: Writer<DealerSendHalf>,
    pub recv: DealerRecvHalf,
    pub monitor: mpsc::Receiver<SocketEvent>,
}

pub(super) type Connected = (DealerSocket, mpsc::Receiver<SocketEvent>);
type Connecting = Pin<Box<dyn Future<Output = ZmqResult<Connected>> + Send>>;

fn connect(
    endpoint: String,
    timeout: Duration,
    max_message_bytes: usize,
    curve: Option<ClientCurve>,
    server_uid: ServerUid,
) -> Connecting {
    Box::pin(async move {
        let mut options = protocol::socket_options(max_message_bytes);
        if let Some(curve) = &curve {
            curve.apply(&mut options);
        }
        server_uid.apply(&mut options);
        options.connect_timeout(timeout);
        options.peer_send_high_water_mark(SOCKET_QUEUE_MESSAGES, usize::MAX);
        let mut socket = DealerSocket::with_options(options);
        let monitor = socket.monitor();
        socket.connect(&endpoint).await?;
        Ok((socket, monitor))
    })
}

/// A fire-and-forget message kept until a zerowire server confirms it handled it: the seq it
/// carries in its link's session, and the connection it was last written on.
pub(super) struct Retained {
    pub seq: u64,
    pub body: Bytes,
    pub epoch: u32,
}

/// What the server on a connection has shown itself to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerKind {
    /// Connected, hello not answered yet.
    Unknown,
    /// A zerowire server: it acked our hello, answers pings and confirms what it read.
    Acks,
    /// Any other ZeroMQ ROUTER: it sends no acks. A reply to a request still proves that
    /// everything written before the request was read (a ROUTER reads a connection in order).
    Plain,
    /// A zerowire server from before client sessions: it acks a count of this connection's
    /// sends and recognises no replay, so nothing is kept for it (at most once, as for Plain).
    Counts,
}

impl ServerKind {
    /// Whether sends written to it are kept until acked (it acks per session, or may).
    pub fn keeps(self) -> bool {
        matches!(self, ServerKind::Unknown | ServerKind::Acks)
    }
}

/// One endpoint and its connection, if any.
pub(super) struct Link {
    endpoint: Endpoint,
    /// For ipc://, the socket file's name in its directory (watched for the server's bind).
    file_name: Option<OsString>,
    pub conn: Option<Connection>,
    pub connecting: Option<Connecting>,
    pub retry_at: Option<Instant>,
    backoff: Duration,
    /// Identifies the current connection among all of the engine's; requests remember the
    /// one they were written on.
    pub epoch: u32,
    /// When the server was last heard from on the current connection.
    pub last_heard: Instant,
    /// When to ping next (only a server that acked our hello answers pings).
    pub next_ping: Option<Instant>,
    /// A server that has not answered the hello by then is taken for a plain ROUTER.
    pub hello_deadline: Option<Instant>,
    /// Something was written on the current connection since the server last confirmed.
    pub unconfirmed: bool,
    /// The corr of the close barrier (goodbye) in flight, if any.
    pub barrier: Option<Bytes>,
    /// The corr of the hello sent on the current connection.
    pub hello: Option<Bytes>,
    pub server: ServerKind,
    /// The goodbye went out (and, once `barrier` is cleared, was answered).
    pub said_goodbye: bool,
    /// Fire-and-forget messages written on this connection, and how many of them were
    /// confirmed: what counts them for a server that cannot confirm per session (a plain
    /// ROUTER, by replies and the close barrier; an older zerowire server, by count acks).
    pub written: u64,
    pub acked: u64,
    /// The last attempt failed the CURVE handshake (until one succeeds).
    pub auth_failed: bool,
    /// The last attempt reached an ipc server of a uid `expectServerUid` refuses (until one
    /// succeeds).
    pub uid_refused: bool,
    /// This endpoint's session: new sends written on this link are numbered in it, from
    /// `next_seq` on, and kept in `retained` (oldest first) until acked, whichever
    /// connection carried them.
    pub session: u64,
    pub next_seq: u64,
    pub retained: std::collections::VecDeque<Retained>,
    /// `retained[resend..resend_end]` must be written again (their connection was lost).
    pub resend: usize,
    pub resend_end: usize,
    /// What the server expects of the next fire-and-forget message on the current
    /// connection (the hello's run, advanced per message, or the last sequence mark's).
    pub run: Option<protocol::Run>,
}

impl Link {
    pub fn new(endpoint: Endpoint, options: &ClientOptions, session: u64) -> Self {
        let file_name = endpoint
            .ipc_path()
            .and_then(Path::file_name)
            .map(|n| n.to_owned());
        Link {
            endpoint,
            file_name,
            conn: None,
            connecting: None,
            retry_at: Some(Instant::now()),
            backoff: options.reconnect_interval,
            epoch: 0,
            last_heard: Instant::now(),
            next_ping: None,
            hello_deadline: None,
            unconfirmed: false,
            barrier: None,
            hello: None,
            server: ServerKind::Unknown,
            said_goodbye: false,
            written: 0,
            acked: 0,
            auth_failed: false,
            uid_refused: false,
            session,
            next_seq: 0,
            retained: std::collections::VecDeque::new(),
            resend: 0,
            resend_end: 0,
            run: None,
        }
    }

    /// Whether some of this session's kept messages wait to be written again.
    pub fn resending(&self) -> bool {
        self.resend < self.resend_end
    }

    /// The run a message of `session` with `seq` continues, if it continues the connection's
    /// current one; `resent` says whether it is a replay.
    pub fn continues_run(&self, session: u64, seq: u64, resent: bool) -> bool {
        self.run
            .is_some_and(|r| r.session == session && r.seq == seq && (r.resent > 0) == resent)
    }

    /// A fire-and-forget message went out on the current connection: the run moves on.
    pub fn advance_run(&mut self) {
        if let Some(r) = self.run.as_mut() {
            r.seq += 1;
            r.resent = r.resent.saturating_sub(1);
        }
    }

    /// Writes a sequence mark: the next fire-and-forget message is `run`'s first. `None` when
    /// the writer is busy, `Some(false)` when the connection failed.
    pub fn write_mark(&mut self, run: protocol::Run, control_seq: &mut u32) -> Option<bool> {
        let conn = self.conn.as_mut()?;
        if conn.writer.busy() {
            return None;
        }
        *control_seq = control_seq.wrapping_add(1);
        let mut message = ZmqMessage::from(protocol::encode_control(
            protocol::CONTROL_SEQ,
            *control_seq,
        ));
        message.push_back(run.body());
        self.run = Some(run);
        Some(!matches!(conn.writer.start(message), Some(Err(_))))
    }

    /// Forgets the kept messages of this session up to (not including) `handled`: a zerowire
    /// server handled them. Returns how many, and their bytes.
    pub fn confirm(&mut self, handled: u64) -> (u64, u64) {
        let (mut n, mut bytes) = (0u64, 0u64);
        while self.retained.front().is_some_and(|r| r.seq < handled) {
            let r = self.retained.pop_front().expect("front exists");
            n += 1;
            bytes += r.body.len() as u64;
        }
        let n_usize = n as usize;
        self.resend = self.resend.saturating_sub(n_usize);
        self.resend_end = self.resend_end.saturating_sub(n_usize);
        (n, bytes)
    }

    /// Forgets the kept messages written on connection `epoch` (a plain ROUTER cannot
    /// confirm them, or a goodbye confirmed them). Returns how many, and their bytes.
    pub fn release_written_on(&mut self, epoch: u32) -> (u64, u64) {
        let (mut n, mut bytes) = (0u64, 0u64);
        let (start, end) = (self.resend, self.resend_end);
        let (mut resend, mut resend_end) = (start, end);
        let mut at = 0usize;
        self.retained.retain(|r| {
            let keep = r.epoch != epoch;
            if !keep {
                n += 1;
                bytes += r.body.len() as u64;
                if at < start {
                    resend -= 1;
                }
                if at < end {
                    resend_end -= 1;
                }
            }
            at += 1;
            keep
        });
        self.resend = resend;
        self.resend_end = resend_end.max(resend);
        (n, bytes)
    }

    /// Connection `epoch` was lost: if it carried some of this session's kept messages, all
    /// of them are written again, in order (a duplicate is recognised by the server that has
    /// read it, and marked by any other).
    pub fn lost_connection(&mut self, epoch: u32) {
        if self.retained.iter().any(|r| r.epoch == epoch) {
            self.resend = 0;
            self.resend_end = self.retained.len();
        }
    }

    /// Forgets every kept message (nobody left who could confirm them). How many, and bytes.
    pub fn drop_retained(&mut self) -> (u64, u64) {
        let n = self.retained.len() as u64;
        let bytes = self.retained.iter().map(|r| r.body.len() as u64).sum();
        self.retained.clear();
        self.resend = 0;
        self.resend_end = 0;
        (n, bytes)
    }

    pub fn usable(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.writer.busy())
    }

    /// Sends go out unconfirmed until an ack (or the server turns out to be plain).
    pub fn unacked(&self) -> u64 {
        self.written - self.acked
    }

    /// Starts an attempt if none is under way and the backoff allows it.
    pub fn start_connecting(&mut self, now: Instant, options: &ClientOptions) {
        // Closing does not stop us: what is queued still deserves its linger time.
        if self.conn.is_some() || self.connecting.is_some() {
            return;
        }
        if self.retry_at.is_none_or(|at| at > now) {
            return;
        }
        self.retry_at = None;
        // The crate retries refused connections inside one attempt (50 ms, then doubling), so
        // a server that binds meanwhile is found. The attempt's bound also covers the
        // handshake, which a loaded machine can slow to tens of ms: never give it less than
        // MIN_CONNECT_ATTEMPT.
        let bound = self.backoff.max(MIN_CONNECT_ATTEMPT);
        self.connecting = Some(connect(
            self.endpoint.to_string(),
            bound,
            options.max_message_bytes,
            options.curve.clone(),
            options.expect_server_uid,
        ));
    }

    /// A connection is up: the hello goes first on it, ahead of the backlog. Returns false if
    /// writing the hello failed (the connection is already gone).
    pub fn connected(
        &mut self,
        (socket, monitor): Connected,
        epoch: u32,
        hello_seq: u32,
        options: &ClientOptions,
    ) -> bool {
        let (send, recv) = socket.split();
        let mut writer = Writer::new(send);
        let corr = protocol::encode_control(protocol::CONTROL_HELLO, hello_seq);
        let mut hello = ZmqMessage::from(corr.clone());
        // The hello numbers what follows: this session's replays first, if any are due.
        let run = match self.retained.get(self.resend) {
            Some(r) if self.resending() => protocol::Run {
                session: self.session,
                seq: r.seq,
                resent: (self.resend_end - self.resend) as u64,
            },
            _ => protocol::Run {
                session: self.session,
                seq: self.next_seq,
                resent: 0,
            },
        };
        self.run = Some(run);
        hello.push_back(protocol::hello_body(
            std::process::id(),
            parent_pid(),
            options.name.as_deref(),
            &run,
        ));
        let failed = matches!(writer.start(hello), Some(Err(_)));
        let now = Instant::now();
        self.auth_failed = false;
        self.uid_refused = false;
        self.epoch = epoch;
        self.last_heard = now;
        self.hello = Some(corr);
        // A zerowire server answers at once; one heartbeat interval is generous.
        self.hello_deadline = Some(now + options.heartbeat_interval);
        self.conn = Some(Connection {
            writer,
            recv,
            monitor,
        });
        self.backoff = options.reconnect_interval;
        !failed
    }

    /// Why nobody was reached, when the file system can tell without connecting: an ipc://
    /// path that is not there (ENOENT: mistyped, or its server is down and removed it). The
    /// crate retries that inside an attempt, so the attempt itself ends only in a timeout.
    pub fn why_unreachable(&self) -> Option<std::io::Error> {
        std::fs::metadata(self.endpoint.ipc_path()?).err()
    }

    /// An attempt failed: when to try again. Returns the delay until then.
    pub fn connect_failed(&mut self, e: &ZmqError, max_interval: Duration) -> Duration {
        // A timeout means nobody was there for a whole interval: try again at once with a
        // longer one. A hard error waits out the interval first.
        let delay = if matches!(e, ZmqError::ConnectTimeout(_)) {
            Duration::ZERO
        } else {
            self.backoff
        };
        self.retry_at = Some(Instant::now() + delay);
        self.backoff = (self.backoff * 2).min(max_interval);
        delay
    }

    /// Forgets the connection (if any) and everything known about its server; the next
    /// attempt waits one interval. Returns whether there was a connection, and how many of
    /// the sends written on it the server never confirmed.
    pub fn reset(&mut self, now: Instant, reconnect_interval: Duration) -> (bool, u64) {
        let was_connected = self.conn.take().is_some();
        // What a zerowire server (or one that may be) did not confirm is kept for replay;
        // only a plain ROUTER's unconfirmed sends are beyond recovery.
        let lost = if !self.server.keeps() {
            self.unacked()
        } else {
            0
        };
        self.run = None;
        self.written = 0;
        self.acked = 0;
        self.unconfirmed = false;
        self.barrier = None;
        self.hello = None;
        self.server = ServerKind::Unknown;
        self.said_goodbye = false;
        self.next_ping = None;
        self.hello_deadline = None;
        self.retry_at = Some(now + reconnect_interval);
        self.backoff = reconnect_interval;
        (was_connected, lost)
    }

    /// The watched directory got entry `name`: if it is this link's socket file and it is
    /// down, a server just bound it; connect now instead of at the next backoff step.
    pub fn server_bound(&mut self, name: &OsString, now: Instant, interval: Duration) {
        if self.conn.is_none() && self.file_name.as_ref() == Some(name) {
            // An attempt in flight is only sleeping between the crate's retries; nothing was
            // written on it, so it can go.
            self.connecting = None;
            self.retry_at = Some(now);
            self.backoff = interval;
        }
    }

    /// Writes a control message (ping or goodbye) with an empty body. `None` when the writer
    /// is busy and it was not written; `Some(false)` when the connection failed.
    pub fn write_control(&mut self, corr: Bytes) -> Option<bool> {
        let conn = self.conn.as_mut()?;
        if conn.writer.busy() {
            return None;
        }
        let mut message = ZmqMessage::from(corr);
        message.push_back(Bytes::new());
        Some(!matches!(conn.writer.start(message), Some(Err(_))))
    }
}

/// What a link's goodbye (the close barrier) has come to.
pub(super) enum Goodbye {
    /// Nothing left to confirm on this link.
    Done,
    /// Written or waiting for the writer; the server's answer confirms what came before.
    Waiting,
    /// The connection failed while writing it.
    Failed,
}

/// What a link's heartbeat found.
pub(super) enum Beat {
    Quiet,
    /// The server never answered the hello: a plain ROUTER.
    NoHello,
    /// A zerowire server fell silent past the heartbeat timeout.
    Silent,
    /// The connection failed while writing a ping.
    Failed,
}

impl Link {
    /// While closing: says goodbye once the writer is free. A zerowire server (it acked our
    /// hello) always gets a goodbye, so it reports the disconnect as one; a plain ROUTER only
    /// when something awaits confirmation. The server reads in order, so any reply to the
    /// goodbye means everything before it was read.
    pub fn goodbye(&mut self, control_seq: &mut u32) -> Goodbye {
        let Some(conn) = self.conn.as_ref() else {
            // Nothing in flight on a connection.
            return Goodbye::Done;
        };
        if conn.writer.busy() {
            return Goodbye::Waiting;
        }
        let ready = matches!(self.server, ServerKind::Acks | ServerKind::Counts);
        // Said is not enough: only the server's answer proves it read everything before it.
        let answered = self.said_goodbye && self.barrier.is_none();
        if !self.unconfirmed && (!ready || answered) {
            return Goodbye::Done;
        }
        if self.barrier.is_none() {
            *control_seq = control_seq.wrapping_add(1);
            let corr = protocol::encode_control(protocol::CONTROL_GOODBYE, *control_seq);
            self.barrier = Some(corr.clone());
            self.said_goodbye = true;
            if self.write_control(corr) == Some(false) {
                return Goodbye::Failed;
            }
        }
        Goodbye::Waiting
    }

    /// Takes a silent server for a plain ROUTER, pings a zerowire server, and finds one that
    /// has been silent too long (hung or unreachable: the socket itself may stay open).
    pub fn heartbeat(
        &mut self,
        now: Instant,
        options: &ClientOptions,
        control_seq: &mut u32,
    ) -> Beat {
        if self.server == ServerKind::Unknown && self.hello_deadline.is_some_and(|t| now >= t) {
            return Beat::NoHello;
        }
        let Some(next) = self.next_ping else {
            return Beat::Quiet;
        };
        if now.saturating_duration_since(self.last_heard) > options.heartbeat_timeout {
            return Beat::Silent;
        }
        if now < next {
            return Beat::Quiet;
        }
        // Traffic flowing out (a busy writer) leaves the ping for later.
        let seq = control_seq.wrapping_add(1);
        match self.write_control(protocol::encode_control(protocol::CONTROL_PING, seq)) {
            None => Beat::Quiet,
            Some(ok) => {
                *control_seq = seq;
                self.next_ping = Some(now + options.heartbeat_interval);
                if ok {
                    Beat::Quiet
                } else {
                    Beat::Failed
                }
            }
        }
    }
}

/// The parent's pid, announced in the hello; 0 where std cannot tell (Windows).
fn parent_pid() -> u32 {
    #[cfg(unix)]
    return std::os::unix::process::parent_id();
    #[cfg(not(unix))]
    0
}

/// What woke the engine from one of its links or the directory watch.
pub(super) enum Io {
    Message(usize, ZmqResult<ZmqMessage>),
    Monitor(usize, Option<SocketEvent>),
    Connected(usize, ZmqResult<Connected>),
    Written(usize, ZmqResult<()>),
    Bound(Option<OsString>),
    WatchFailed,
}

/// Polls the links from `from` on (so a busy one cannot starve the others), then the watch.
/// Without `reading`, what the servers send stays in the sockets (the receive bound).
pub(super) fn poll(
    links: &mut [Link],
    watch: &mut Option<Watch>,
    from: usize,
    reading: bool,
    cx: &mut Context<'_>,
) -> Poll<Io> {
    let n = links.len();
    for k in 0..n {
        let i = (from + k) % n;
        let link = &mut links[i];
        if let Some(c) = link.connecting.as_mut() {
            if let Poll::Ready(r) = c.as_mut().poll(cx) {
                return Poll::Ready(Io::Connected(i, r));
            }
        }
        let Some(conn) = link.conn.as_mut() else {
            continue;
        };
        if conn.writer.busy() {
            if let Poll::Ready(r) = conn.writer.poll_finish(cx) {
                return Poll::Ready(Io::Written(i, r));
            }
        }
        if reading {
            if let Poll::Ready(m) = conn.recv.poll_recv(cx) {
                return Poll::Ready(Io::Message(i, m));
            }
        }
        if let Poll::Ready(e) = conn.monitor.poll_next_unpin(cx) {
            return Poll::Ready(Io::Monitor(i, e));
        }
    }
    if let Some(w) = watch.as_mut() {
        if let Poll::Ready(name) = std::pin::pin!(w.next()).poll(cx) {
            return Poll::Ready(name.map_or(Io::WatchFailed, |n| Io::Bound(Some(n))));
        }
    }
    Poll::Pending
}

pub(super) use crate::watch::Watch;

/// Watches the ipc endpoints' socket files so a server's bind is noticed at once, not at the
/// next backoff step. Without it (nothing to watch, the OS refused) backoff alone applies.
pub(super) fn watch_ipc_dirs(links: &[Link]) -> Option<Watch> {
    Watch::new(links.iter().filter_map(|l| l.endpoint.ipc_path()))
}
