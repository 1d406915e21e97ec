use crate::async_rt;
use crate::codec::{FramedIo, Message, ZmqFramedRead};
use crate::fair_queue::QueueInner;
use crate::util::PeerIdentity;
use crate::write_queue::write_message_queue_with;
use crate::{
    MultiPeerBackend, SocketBackend, SocketEvent, SocketOptions, SocketType, ZmqError, ZmqMessage,
    ZmqResult,
};

use async_trait::async_trait;
use crossbeam_queue::SegQueue;
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt};
use parking_lot::Mutex;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sender for notifying reconnection tasks when a peer disconnects.
pub(crate) type DisconnectNotifier = mpsc::Sender<PeerIdentity>;

/// zerowire patch: what waits in one peer's outbound queue (or, for `GenericSocketBackend::
/// queued`, in all of them). Counted in when a message is queued, out when the peer's writer
/// task takes it.
#[derive(Default)]
pub(crate) struct QueueCounters {
    messages: AtomicUsize,
    bytes: AtomicUsize,
}

impl QueueCounters {
    fn add(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, messages: usize, bytes: usize) {
        // Saturating: a count released in bulk when a writer ends may race an undo.
        let _ = self
            .messages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some(m.saturating_sub(messages))
            });
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// Counts a message out as the writer takes it. Plain subtractions: it was counted in
    /// before it entered the queue, and only the writer takes it.
    #[inline]
    pub(crate) fn taken(&self, message: &Message) {
        self.messages.fetch_sub(1, Ordering::Relaxed);
        self.bytes
            .fetch_sub(message_bytes(message), Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> (usize, usize) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

pub(crate) fn message_bytes(message: &Message) -> usize {
    match message {
        Message::Message(m) => m.iter().map(|f| f.len()).sum(),
        _ => 0,
    }
}

/// zerowire patch: why a non-blocking send to one peer did not queue the message.
/// Each variant gives the message back.
#[derive(Debug)]
pub enum TrySendError {
    /// The peer's outbound queue is at its message or byte bound; nothing was queued. The
    /// peer stays connected (see `SocketOptions::drop_full_peer_after`).
    Full(ZmqMessage),
    /// No connected peer has this routing id (it never connected, or it has gone).
    UnknownPeer(ZmqMessage),
    /// The peer's queue had stayed full past the socket's grace: the peer was disconnected
    /// now (a `Disconnected` monitor event follows) and its queued messages dropped.
    PeerDropped(ZmqMessage),
    /// The message has fewer than two frames (ROUTER: routing id, then at least one frame).
    NotRoutable(ZmqMessage),
}

impl TrySendError {
    pub fn into_message(self) -> ZmqMessage {
        match self {
            TrySendError::Full(m)
            | TrySendError::UnknownPeer(m)
            | TrySendError::PeerDropped(m)
            | TrySendError::NotRoutable(m) => m,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            TrySendError::Full(_) => "Peer send queue full",
            TrySendError::UnknownPeer(_) => "Destination client not found by identity",
            TrySendError::PeerDropped(_) => "Peer dropped: its send queue stayed full",
            TrySendError::NotRoutable(_) => {
                "ROUTER send requires at least 2 frames: identity frame + message"
            }
        }
    }
}

impl std::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for TrySendError {}

impl From<TrySendError> for ZmqError {
    fn from(error: TrySendError) -> Self {
        let reason = error.reason();
        ZmqError::ReturnToSender {
            reason,
            message: error.into_message(),
        }
    }
}

/// zerowire patch: a snapshot of what waits in outbound queues, for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuedStats {
    pub messages: usize,
    pub bytes: usize,
}

/// zerowire patch: how many messages may wait in a peer's urgent lane (see
/// `try_send_urgent_to_peer`), apart from its queue's bounds.
pub const URGENT_LANE_MESSAGES: usize = 64;

pub(crate) struct Peer {
    pub(crate) send_queue: mpsc::Sender<Message>,
    /// Written before `send_queue` by the peer's writer task.
    urgent: mpsc::Sender<Message>,
    pub(crate) queue: Arc<QueueCounters>,
    /// Tells this connection from a later one with the same routing id.
    serial: u64,
    /// Since when (ms after the backend's epoch, 0: not full) sends found the queue full.
    full_since: AtomicU64,
    /// Sent to make the writer drop what it has and close the connection at once. Dropped
    /// (a normal disconnect, or the socket closing) the writer drains its queue first.
    kill: Option<oneshot::Sender<()>>,
}

impl Peer {
    #[cfg(any(test, feature = "bench-internals"))]
    pub(crate) fn new(send_queue: mpsc::Sender<Message>) -> Self {
        Self {
            send_queue,
            urgent: mpsc::channel(0).0,
            queue: Arc::default(),
            serial: 0,
            full_since: AtomicU64::new(0),
            kill: None,
        }
    }
}

#[derive(Clone)]
struct SinglePeer {
    peer_id: PeerIdentity,
    send_queue: mpsc::Sender<Message>,
    queue: Arc<QueueCounters>,
}

enum CachedSend {
    Sent,
    Full {
        peer_id: PeerIdentity,
        send_queue: mpsc::Sender<Message>,
        message: Message,
    },
    // zerowire patch: the message is kept (not the channel's error) for `try_send_now`.
    Disconnected {
        peer_id: PeerIdentity,
        message: Message,
    },
    Miss(Message),
}

enum SendResolution {
    Sent,
    Miss(Message),
}

pub(crate) struct GenericSocketBackend {
    // zerowire patch: looked up for every message sent; foldhash as in `fair_queue`.
    // zerowire patch: an entry is only ever held synchronously (never across an `.await`):
    // `peer_disconnected` takes the same locks synchronously, on the same runtime threads.
    pub(crate) peers: scc::HashMap<PeerIdentity, Peer, foldhash::fast::RandomState>,
    fair_queue_inner: Option<Arc<Mutex<QueueInner<ZmqFramedRead, PeerIdentity>>>>,
    pub(crate) round_robin: SegQueue<PeerIdentity>,
    socket_type: SocketType,
    socket_options: Arc<SocketOptions>,
    pub(crate) socket_monitor: Mutex<Option<mpsc::Sender<SocketEvent>>>,
    single_peer: Mutex<Option<SinglePeer>>,
    peer_count: AtomicUsize,
    /// Notifiers for reconnection tasks - keyed by `peer_id`
    disconnect_notifiers: Mutex<HashMap<PeerIdentity, DisconnectNotifier>>,
    // zerowire patch: whether sends are counted against the per-peer bounds (the ROUTER's
    // non-blocking sends); connection serials; the clock of `Peer::full_since`.
    counted: bool,
    next_serial: AtomicU64,
    epoch: Instant,
}

impl GenericSocketBackend {
    pub(crate) fn with_options(
        fair_queue_inner: Option<Arc<Mutex<QueueInner<ZmqFramedRead, PeerIdentity>>>>,
        socket_type: SocketType,
        options: SocketOptions,
    ) -> Self {
        Self {
            peers: scc::HashMap::default(),
            fair_queue_inner,
            round_robin: SegQueue::new(),
            socket_type,
            socket_options: Arc::new(options),
            socket_monitor: Mutex::new(None),
            single_peer: Mutex::new(None),
            peer_count: AtomicUsize::new(0),
            disconnect_notifiers: Mutex::new(HashMap::new()),
            counted: socket_type == SocketType::ROUTER,
            next_serial: AtomicU64::new(1),
            epoch: Instant::now(),
        }
    }

    /// Register a notifier to be called when a peer disconnects.
    ///
    /// Used by reconnection tasks to be notified when they should attempt reconnection.
    #[allow(dead_code)] // Will be used when reconnection is added to more socket types
    pub(crate) fn register_disconnect_notifier(
        &self,
        peer_id: PeerIdentity,
        notifier: DisconnectNotifier,
    ) {
        self.disconnect_notifiers.lock().insert(peer_id, notifier);
    }

    /// Unregister a disconnect notifier for a peer.
    #[allow(dead_code)] // Will be used when reconnection is added to more socket types
    pub(crate) fn unregister_disconnect_notifier(&self, peer_id: &PeerIdentity) {
        self.disconnect_notifiers.lock().remove(peer_id);
    }

    pub(crate) async fn send_round_robin(&self, message: Message) -> ZmqResult<()> {
        let message = match self
            .finish_cached_send(self.try_send_cached_single_peer(message, None))
            .await?
        {
            SendResolution::Sent => return Ok(()),
            SendResolution::Miss(message) => message,
        };

        // In normal scenario this will always be only 1 iteration
        // There can be special case when peer has disconnected and his id is still in
        // RR queue This happens because SegQueue don't have an api to delete
        // items from queue. So in such case we'll just pop item and skip it if
        // we don't have a matching peer in peers map
        loop {
            let next_peer_id = match self.round_robin.pop() {
                Some(peer) => peer,
                None => match message {
                    Message::Greeting(_) => {
                        return Err(ZmqError::Socket("Sending greeting is not supported"))
                    }
                    Message::Command(_) => {
                        return Err(ZmqError::Socket("Sending commands is not supported"))
                    }
                    Message::Message(m) => {
                        return Err(ZmqError::ReturnToSender {
                            reason: "Not connected to peers. Unable to send messages",
                            message: m,
                        })
                    }
                },
            };
            // zerowire patch: the entry is read and let go before waiting on the queue.
            let Some((send_queue, queue)) = self.peers.read_sync(&next_peer_id, |_, peer| {
                (peer.send_queue.clone(), peer.queue.clone())
            }) else {
                continue;
            };
            let send_result = self.send_counted(send_queue, &queue, message).await;
            return match send_result {
                Ok(()) => {
                    self.round_robin.push(next_peer_id);
                    Ok(())
                }
                Err(e) => {
                    self.peer_disconnected(&next_peer_id);
                    Err(e.into())
                }
            };
        }
    }

    /// Queues `message` for `peer_id`, waiting for room in its queue (with no lock held).
    #[allow(dead_code)]
    pub(crate) async fn send_to_peer(
        &self,
        peer_id: &PeerIdentity,
        message: Message,
    ) -> ZmqResult<()> {
        let message = match self
            .finish_cached_send(self.try_send_cached_single_peer(message, Some(peer_id)))
            .await?
        {
            SendResolution::Sent => return Ok(()),
            SendResolution::Miss(message) => message,
        };

        // zerowire patch: the entry is read and let go before waiting on the queue.
        let Some((send_queue, queue)) = self.peers.read_sync(peer_id, |_, peer| {
            (peer.send_queue.clone(), peer.queue.clone())
        }) else {
            return Err(ZmqError::Other("Destination client not found by identity"));
        };
        match self.send_counted(send_queue, &queue, message).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.peer_disconnected(peer_id);
                Err(e.into())
            }
        }
    }

    async fn send_counted(
        &self,
        mut send_queue: mpsc::Sender<Message>,
        queue: &QueueCounters,
        message: Message,
    ) -> Result<(), mpsc::SendError> {
        if !self.counted {
            return send_to_peer_queue(&mut send_queue, message).await;
        }
        let size = message_bytes(&message);
        queue.add(size);
        let result = send_to_peer_queue(&mut send_queue, message).await;
        if result.is_err() {
            queue.sub(1, size);
        }
        result
    }

    /// zerowire patch: queues `message` for `peer_id` if its queue has room (in messages and
    /// in bytes), and returns at once either way. Takes one shard lock of the peer map,
    /// synchronously.
    pub(crate) fn try_send_to_peer(
        &self,
        peer_id: &PeerIdentity,
        message: ZmqMessage,
    ) -> Result<(), TrySendError> {
        let options = &*self.socket_options;
        let size: usize = message.iter().map(|f| f.len()).sum();
        let mut expired = None;
        let mut closed = None;
        let result = match self.peers.get_sync(peer_id) {
            None => Err(TrySendError::UnknownPeer(message)),
            Some(mut entry) => {
                let peer = entry.get_mut();
                let (messages, bytes) = peer.queue.get();
                // A message larger than the byte bound still goes to an empty queue: the
                // message size limit is for that, and it must not stall the peer for good.
                let full = messages >= options.peer_send_hwm_messages
                    || (messages > 0 && bytes.saturating_add(size) > options.peer_send_hwm_bytes);
                if full {
                    if let Some(grace) = options.peer_send_grace {
                        let now = (self.epoch.elapsed().as_millis() as u64).max(1);
                        let since = match peer.full_since.compare_exchange(
                            0,
                            now,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => now,
                            Err(since) => since,
                        };
                        if grace_over(since, now, grace) {
                            expired = Some(peer.serial);
                        }
                    }
                    Err(TrySendError::Full(message))
                } else {
                    peer.full_since.store(0, Ordering::Relaxed);
                    peer.queue.add(size);
                    match peer.send_queue.try_send(Message::Message(message)) {
                        Ok(()) => Ok(()),
                        Err(error) => {
                            peer.queue.sub(1, size);
                            let is_full = error.is_full();
                            let Message::Message(message) = error.into_inner() else {
                                unreachable!("a message was queued")
                            };
                            if is_full {
                                Err(TrySendError::Full(message))
                            } else {
                                // The writer has ended: the connection is gone.
                                closed = Some(peer.serial);
                                Err(TrySendError::UnknownPeer(message))
                            }
                        }
                    }
                }
            }
        };
        if let Some(serial) = closed {
            self.remove_peer(peer_id, Some(serial), false);
        }
        match (expired, result) {
            (Some(serial), Err(TrySendError::Full(message))) => {
                if self.remove_peer(peer_id, Some(serial), true) {
                    Err(TrySendError::PeerDropped(message))
                } else {
                    Err(TrySendError::UnknownPeer(message))
                }
            }
            (_, result) => result,
        }
    }

    /// zerowire patch: queues `message` in `peer_id`'s urgent lane, which its writer empties
    /// before taking anything from its queue: control replies (acks, pongs) then never wait
    /// behind data already queued for that peer. The lane holds `URGENT_LANE_MESSAGES`; the
    /// queue's bounds do not apply to it (what it holds is still counted in `peer_queued`).
    pub(crate) fn try_send_urgent_to_peer(
        &self,
        peer_id: &PeerIdentity,
        message: ZmqMessage,
    ) -> Result<(), TrySendError> {
        let size: usize = message.iter().map(|f| f.len()).sum();
        let mut closed = None;
        let result = match self.peers.get_sync(peer_id) {
            None => Err(TrySendError::UnknownPeer(message)),
            Some(mut entry) => {
                let peer = entry.get_mut();
                peer.queue.add(size);
                match peer.urgent.try_send(Message::Message(message)) {
                    Ok(()) => Ok(()),
                    Err(error) => {
                        peer.queue.sub(1, size);
                        let is_full = error.is_full();
                        let Message::Message(message) = error.into_inner() else {
                            unreachable!("a message was queued")
                        };
                        if is_full {
                            Err(TrySendError::Full(message))
                        } else {
                            closed = Some(peer.serial);
                            Err(TrySendError::UnknownPeer(message))
                        }
                    }
                }
            }
        };
        if let Some(serial) = closed {
            self.remove_peer(peer_id, Some(serial), false);
        }
        result
    }

    /// zerowire patch: what waits in `peer_id`'s outbound queue, if it is connected.
    pub(crate) fn peer_queued(&self, peer_id: &PeerIdentity) -> Option<QueuedStats> {
        self.peers.read_sync(peer_id, |_, peer| {
            let (messages, bytes) = peer.queue.get();
            QueuedStats { messages, bytes }
        })
    }

    /// zerowire patch: what waits in all peers' outbound queues together (O(peers)).
    pub(crate) fn queued(&self) -> QueuedStats {
        // Summed when asked (stats are read rarely) rather than kept on every send.
        let mut total = QueuedStats::default();
        self.peers.iter_sync(|_, peer| {
            let (messages, bytes) = peer.queue.get();
            total.messages += messages;
            total.bytes += bytes;
            true
        });
        total
    }

    pub(crate) fn connected_peers(&self) -> usize {
        self.peers.len()
    }

    /// zerowire patch: disconnects `peer_id` now, dropping what is queued for it.
    pub(crate) fn disconnect_peer(&self, peer_id: &PeerIdentity) -> bool {
        self.remove_peer(peer_id, None, true)
    }

    fn try_send_cached_single_peer(
        &self,
        message: Message,
        expected_peer_id: Option<&PeerIdentity>,
    ) -> CachedSend {
        if self.peer_count.load(Ordering::Acquire) != 1 {
            return CachedSend::Miss(message);
        }

        let mut single_peer = self.single_peer.lock();
        let Some(single_peer) = single_peer.as_mut() else {
            return CachedSend::Miss(message);
        };

        if let Some(expected_peer_id) = expected_peer_id {
            if single_peer.peer_id != *expected_peer_id {
                return CachedSend::Miss(message);
            }
        }

        let size = if self.counted {
            let size = message_bytes(&message);
            single_peer.queue.add(size);
            size
        } else {
            0
        };
        let uncount = |queue: &QueueCounters| {
            if self.counted {
                queue.sub(1, size);
            }
        };
        match single_peer.send_queue.try_send(message) {
            Ok(()) => CachedSend::Sent,
            Err(error) if error.is_full() => {
                // Counted again by `send_counted`.
                uncount(&single_peer.queue);
                CachedSend::Full {
                    peer_id: single_peer.peer_id.clone(),
                    send_queue: single_peer.send_queue.clone(),
                    message: error.into_inner(),
                }
            }
            Err(error) => {
                uncount(&single_peer.queue);
                CachedSend::Disconnected {
                    peer_id: single_peer.peer_id.clone(),
                    message: error.into_inner(),
                }
            }
        }
    }

    /// zerowire patch: the single-peer send of `send_round_robin` without a future. `Err` gives
    /// the message back untouched when it could not be queued at once (no single peer, its
    /// queue full or gone); nothing has changed then, and `send_round_robin` does the rest.
    pub(crate) fn try_send_now(&self, message: Message) -> Result<(), Message> {
        match self.try_send_cached_single_peer(message, None) {
            CachedSend::Sent => Ok(()),
            CachedSend::Full { message, .. }
            | CachedSend::Disconnected { message, .. }
            | CachedSend::Miss(message) => Err(message),
        }
    }

    async fn finish_cached_send(&self, cached_send: CachedSend) -> ZmqResult<SendResolution> {
        match cached_send {
            CachedSend::Sent => Ok(SendResolution::Sent),
            CachedSend::Full {
                peer_id,
                send_queue,
                message,
            } => {
                let queue = self
                    .single_peer
                    .lock()
                    .as_ref()
                    .filter(|p| p.peer_id == peer_id)
                    .map(|p| p.queue.clone());
                let Some(queue) = queue else {
                    return Ok(SendResolution::Miss(message));
                };
                match self.send_counted(send_queue, &queue, message).await {
                    Ok(()) => Ok(SendResolution::Sent),
                    Err(e) => {
                        self.peer_disconnected(&peer_id);
                        Err(e.into())
                    }
                }
            }
            CachedSend::Disconnected { peer_id, .. } => {
                self.peer_disconnected(&peer_id);
                // What `From<mpsc::SendError>` made of the channel's error.
                Err(ZmqError::BufferFull(
                    "Failed to send message. Send queue full/broken",
                ))
            }
            CachedSend::Miss(message) => Ok(SendResolution::Miss(message)),
        }
    }

    fn refresh_single_peer_cache(&self) {
        let peer_count = self.peers.len();
        self.peer_count.store(peer_count, Ordering::Release);

        let mut single_peer = self.single_peer.lock();
        if peer_count == 1 {
            *single_peer = self.peers.begin_sync().map(|peer| SinglePeer {
                peer_id: peer.key().clone(),
                send_queue: peer.send_queue.clone(),
                queue: peer.queue.clone(),
            });
        } else {
            *single_peer = None;
        }
    }

    /// Removes the peer (only the connection `serial`, if given: a writer ending late must
    /// not remove a newer connection with the same id). `kill` also drops what is queued
    /// for it and closes the connection now. True if a peer was removed.
    fn remove_peer(&self, peer_id: &PeerIdentity, serial: Option<u64>, kill: bool) -> bool {
        let removed = match serial {
            Some(serial) => self.peers.remove_if_sync(peer_id, |p| p.serial == serial),
            None => self.peers.remove_sync(peer_id),
        };
        let Some((_, mut peer)) = removed else {
            return false;
        };
        if kill {
            if let Some(kill) = peer.kill.take() {
                let _ = kill.send(());
            }
        }
        drop(peer);
        self.refresh_single_peer_cache();
        if let Some(inner) = &self.fair_queue_inner {
            inner.lock().remove(peer_id);
        }
        send_lifecycle_event(self.monitor(), SocketEvent::Disconnected(peer_id.clone()));
        if let Some(mut notifier) = self.disconnect_notifiers.lock().remove(peer_id) {
            let _ = notifier.try_send(peer_id.clone());
        }
        true
    }
}

/// Writes one peer's messages until its queue ends or the connection fails (then the peer
/// is removed), or until told to stop (`kill`): then what is queued is dropped at once.
async fn run_writer<S>(
    backend: Arc<GenericSocketBackend>,
    peer_id: PeerIdentity,
    serial: u64,
    queue: S,
    send_queue: crate::codec::ZmqFramedWrite,
    counters: Option<Arc<QueueCounters>>,
    kill: oneshot::Receiver<()>,
) where
    S: futures::Stream<Item = Message> + Unpin,
{
    let failed = {
        let write = write_message_queue_with(queue, send_queue, counters.as_deref()).fuse();
        // Dropped without a word (the peer removed as usual, or the socket closing), the
        // writer goes on draining its queue; told to, it stops at once.
        let killed = async {
            if kill.await.is_err() {
                futures::future::pending::<()>().await;
            }
        }
        .fuse();
        futures::pin_mut!(write, killed);
        futures::select! {
            result = write => result.err(),
            _ = killed => None,
        }
    };
    if let Some(error) = failed {
        log::debug!("Error sending message to peer {:?}: {:?}", peer_id, error);
        backend.remove_peer(&peer_id, Some(serial), false);
    }
    // What was still queued is dropped with the queue.
    if let Some(counters) = &counters {
        let (messages, bytes) = counters.get();
        counters.sub(messages, bytes);
    }
}

/// zerowire patch: peer lifecycle events (connected, accepted, disconnected) always reach
/// the monitor: its owner keeps per-peer state on them, and a lost `Disconnected` leaves a
/// ghost peer for good. A fresh clone of a `futures` sender has a slot of its own whatever
/// the channel's fill, so the event is queued even when the monitor's 1 024 are taken.
/// Undelivered events are then bounded by connections made since the owner last read
/// (two each); other events stay best-effort.
pub(crate) fn send_lifecycle_event(
    monitor: &Mutex<Option<mpsc::Sender<SocketEvent>>>,
    event: SocketEvent,
) {
    if let Some(monitor) = monitor.lock().as_ref() {
        let _ = monitor.clone().try_send(event);
    }
}

async fn send_to_peer_queue(
    send_queue: &mut mpsc::Sender<Message>,
    message: Message,
) -> Result<(), mpsc::SendError> {
    // zerowire patch: callers hand a fresh clone of the peer's sender, and a fresh sender has
    // a slot of its own: `try_send` on it always succeeded, so a waiting send put one more
    // message over the bound every time and a peer that did not read grew its queue without
    // end. `send` queues the message and then waits until the channel has room again, so each
    // waiting sender holds at most one message over the bound.
    send_queue.send(message).await
}

impl SocketBackend for GenericSocketBackend {
    fn socket_type(&self) -> SocketType {
        self.socket_type
    }

    fn socket_options(&self) -> &Arc<SocketOptions> {
        &self.socket_options
    }

    fn shutdown(&self) {
        self.peers.clear_sync();
        self.single_peer.lock().take();
        self.peer_count.store(0, Ordering::Release);
        // Clear fair_queue streams to ensure TCP connections are closed
        // even when reconnect tasks still hold Arc references to the backend
        if let Some(inner) = &self.fair_queue_inner {
            inner.lock().clear();
        }
    }

    fn monitor(&self) -> &Mutex<Option<mpsc::Sender<SocketEvent>>> {
        &self.socket_monitor
    }
}

#[async_trait]
impl MultiPeerBackend for GenericSocketBackend {
    async fn peer_connected(
        self: Arc<Self>,
        peer_id: &PeerIdentity,
        io: FramedIo,
    ) -> ZmqResult<()> {
        let (recv_queue, send_queue) = io.into_parts();
        let options = &*self.socket_options;
        let (queue_sender, queue_receiver) = mpsc::channel(options.peer_send_hwm_messages);
        // One slot is the sender's own (`futures` channels give each sender one).
        let (urgent_sender, urgent_receiver) = mpsc::channel(URGENT_LANE_MESSAGES - 1);
        let (kill_sender, kill_receiver) = oneshot::channel::<()>();
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(QueueCounters::default());
        let peer = Peer {
            send_queue: queue_sender,
            urgent: urgent_sender,
            queue: queue.clone(),
            serial,
            full_since: AtomicU64::new(0),
            kill: Some(kill_sender),
        };
        if self.socket_type == SocketType::ROUTER {
            // zerowire patch: as libzmq's ROUTER without ZMQ_ROUTER_HANDOVER, a connection
            // announcing a routing id in use does not take it over. libzmq keeps such a
            // connection open and reads nothing from it; we close it (dropping `io`), so it
            // holds no descriptor either. The first peer keeps its id and its messages.
            if self.peers.insert_sync(peer_id.clone(), peer).is_err() {
                return Err(ZmqError::Other(
                    "Routing id already in use by a connected peer",
                ));
            }
        } else {
            self.peers.upsert_sync(peer_id.clone(), peer);
        }
        self.refresh_single_peer_cache();
        if self.counted {
            // The urgent lane first, then the queue.
            let lanes = futures::stream::select_with_strategy(
                urgent_receiver,
                queue_receiver,
                |_: &mut ()| futures::stream::PollNext::Left,
            );
            let counters = Some(queue);
            async_rt::task::spawn(run_writer(
                self.clone(),
                peer_id.clone(),
                serial,
                lanes,
                send_queue,
                counters,
                kill_receiver,
            ));
        } else {
            async_rt::task::spawn(run_writer(
                self.clone(),
                peer_id.clone(),
                serial,
                queue_receiver,
                send_queue,
                None,
                kill_receiver,
            ));
        }
        self.round_robin.push(peer_id.clone());
        match &self.fair_queue_inner {
            None => {}
            Some(inner) => {
                inner.lock().insert(peer_id.clone(), recv_queue);
            }
        };
        Ok(())
    }

    fn peer_disconnected(&self, peer_id: &PeerIdentity) {
        // The connection is broken: what is queued for it cannot be delivered.
        self.remove_peer(peer_id, None, true);
    }
}

/// Whether a peer full since `since` (milliseconds on the backend's clock) has been so for
/// `grace` at `now`. Both readings are truncated to the millisecond, so their difference can
/// overstate the time between them by almost one: a difference of the grace itself is not yet
/// the grace.
fn grace_over(since: u64, now: u64, grace: Duration) -> bool {
    now.saturating_sub(since) > grace.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ZmqMessage;

    use bytes::Bytes;
    use futures::StreamExt;

    #[test]
    fn a_full_peer_is_not_dropped_before_its_grace() {
        let grace = Duration::from_millis(200);
        // 10 and 210 may be 10.999 and 210.001: 199.002 ms apart.
        assert!(!grace_over(10, 210, grace));
        assert!(grace_over(10, 211, grace));
        assert!(!grace_over(10, 10, grace));
    }

    fn message_with_frame(frame: &'static [u8]) -> Message {
        Message::Message(ZmqMessage::from(Bytes::from_static(frame)))
    }

    fn first_frame(message: Message) -> Bytes {
        let Message::Message(message) = message else {
            panic!("unexpected queued message type");
        };
        message.get(0).expect("message frame").clone()
    }

    async fn insert_peer(
        backend: &GenericSocketBackend,
        peer_id: PeerIdentity,
    ) -> (PeerIdentity, mpsc::Receiver<Message>) {
        let (send_queue, recv_queue) = mpsc::channel(8);
        backend
            .peers
            .upsert_async(peer_id.clone(), Peer::new(send_queue))
            .await;
        backend.refresh_single_peer_cache();
        backend.round_robin.push(peer_id.clone());
        (peer_id, recv_queue)
    }

    #[crate::async_rt::test]
    async fn test_send_round_robin_uses_single_peer_cache() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let (_peer_id, mut recv_queue) =
            insert_peer(&backend, "peer-a".parse().expect("peer id")).await;

        assert_eq!(1, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.single_peer.lock().is_some());

        backend
            .send_round_robin(message_with_frame(b"payload"))
            .await
            .expect("send through single peer cache");

        let queued = recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"payload"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_to_peer_uses_single_peer_cache_for_matching_identity() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (peer_id, mut recv_queue) =
            insert_peer(&backend, "router-peer".parse().expect("peer id")).await;

        assert_eq!(
            Some(peer_id.clone()),
            backend
                .single_peer
                .lock()
                .as_ref()
                .map(|peer| peer.peer_id.clone())
        );

        backend
            .send_to_peer(&peer_id, message_with_frame(b"routed"))
            .await
            .expect("send to cached peer");

        let queued = recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"routed"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_to_peer_routes_by_identity_with_multiple_peers() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (_first_peer_id, mut first_recv_queue) =
            insert_peer(&backend, "router-peer-a".parse().expect("peer id")).await;
        let (second_peer_id, mut second_recv_queue) =
            insert_peer(&backend, "router-peer-b".parse().expect("peer id")).await;

        assert_eq!(2, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.single_peer.lock().is_none());

        backend
            .send_to_peer(&second_peer_id, message_with_frame(b"routed-b"))
            .await
            .expect("send to selected peer");

        assert!(first_recv_queue.try_recv().is_err());
        let queued = second_recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"routed-b"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_round_robin_waits_when_cached_sender_is_full() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let peer_id: PeerIdentity = "full-peer".parse().expect("peer id");
        let (mut send_queue, mut recv_queue) = mpsc::channel(1);
        send_queue
            .try_send(message_with_frame(b"prefilled"))
            .expect("prefill peer queue");
        backend
            .peers
            .upsert_async(peer_id.clone(), Peer::new(send_queue))
            .await;
        backend.refresh_single_peer_cache();
        backend.round_robin.push(peer_id.clone());

        let send_future = backend.send_round_robin(message_with_frame(b"after-full"));
        let recv_future = async {
            let first = recv_queue.next().await.expect("prefilled message");
            let second = recv_queue
                .next()
                .await
                .expect("message sent after capacity frees");
            (first, second)
        };

        let (send_result, (first, second)) = futures::join!(send_future, recv_future);

        send_result.expect("send waits for cached sender capacity");
        assert_eq!(Bytes::from_static(b"prefilled"), first_frame(first));
        assert_eq!(Bytes::from_static(b"after-full"), first_frame(second));
    }

    #[crate::async_rt::test]
    async fn test_single_peer_cache_is_cleared_when_cached_sender_is_disconnected() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let peer_id: PeerIdentity = "closed-peer".parse().expect("peer id");
        let (send_queue, recv_queue) = mpsc::channel(1);
        drop(recv_queue);
        backend
            .peers
            .upsert_async(peer_id.clone(), Peer::new(send_queue))
            .await;
        backend.refresh_single_peer_cache();
        backend.round_robin.push(peer_id.clone());

        let error = backend
            .send_round_robin(message_with_frame(b"lost"))
            .await
            .expect_err("closed cached sender should fail");

        assert!(matches!(error, ZmqError::BufferFull(_)));
        assert_eq!(0, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.single_peer.lock().is_none());
        assert!(backend.peers.get_async(&peer_id).await.is_none());
    }

    #[crate::async_rt::test]
    async fn test_peer_disconnected_emits_one_monitor_event() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (monitor_sender, mut monitor_receiver) = mpsc::channel(8);
        backend.socket_monitor.lock().replace(monitor_sender);
        let (peer_id, _recv_queue) =
            insert_peer(&backend, "monitor-peer".parse().expect("peer id")).await;

        backend.peer_disconnected(&peer_id);

        let event = monitor_receiver.next().await.expect("disconnect event");
        assert!(matches!(
            event,
            SocketEvent::Disconnected(disconnected_peer) if disconnected_peer == peer_id
        ));

        backend.peer_disconnected(&peer_id);
        assert!(monitor_receiver.try_recv().is_err());
    }
}
