use crate::backend::GenericSocketBackend;
use crate::codec::*;
use crate::endpoint::Endpoint;
use crate::error::{ZmqError, ZmqResult};
use crate::fair_queue::FairQueue;
use crate::message::*;
use crate::transport::AcceptStopHandle;
use crate::util::PeerIdentity;
use crate::{MultiPeerBackend, SocketEvent, SocketOptions, SocketRecv, SocketSend, SocketType};
use crate::{QueuedStats, TrySendError};
use crate::{Socket, SocketBackend};

use async_trait::async_trait;
use futures::channel::mpsc;
use futures::StreamExt;

use std::collections::HashMap;
use std::convert::TryFrom;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

pub struct RouterSocket {
    backend: Arc<GenericSocketBackend>,
    binds: HashMap<Endpoint, AcceptStopHandle>,
    fair_queue: FairQueue<ZmqFramedRead, PeerIdentity>,
}

impl Drop for RouterSocket {
    fn drop(&mut self) {
        self.backend.shutdown();
    }
}

#[async_trait]
impl Socket for RouterSocket {
    fn with_options(options: SocketOptions) -> Self {
        let mut fair_queue = FairQueue::new(true);
        let backend = Arc::new(GenericSocketBackend::with_options(
            Some(fair_queue.inner()),
            SocketType::ROUTER,
            options,
        ));

        let backend_weak = Arc::downgrade(&backend);
        fair_queue.set_on_disconnect(move |peer_id: PeerIdentity| {
            if let Some(backend) = backend_weak.upgrade() {
                backend.peer_disconnected(&peer_id);
            }
        });

        Self {
            backend,
            binds: HashMap::new(),
            fair_queue,
        }
    }

    fn backend(&self) -> Arc<dyn MultiPeerBackend> {
        self.backend.clone()
    }

    fn binds(&mut self) -> &mut HashMap<Endpoint, AcceptStopHandle> {
        &mut self.binds
    }

    fn monitor(&mut self) -> mpsc::Receiver<SocketEvent> {
        let (sender, receiver) = mpsc::channel(1024);
        self.backend.socket_monitor.lock().replace(sender);
        receiver
    }
}

#[async_trait]
impl SocketRecv for RouterSocket {
    async fn recv(&mut self) -> ZmqResult<ZmqMessage> {
        loop {
            match self.fair_queue.next().await {
                Some((peer_id, Ok(Message::Message(mut message)))) => {
                    message.push_front(peer_id.into());
                    return Ok(message);
                }
                Some((_peer_id, Ok(_msg))) => {
                    // todo: Log or handle other message types if needed
                    // We could take an approach of using `tracing` and have that be an optional feature
                    // tracing::warn!("Received unimplemented message type: {:?}", msg);
                }
                Some((peer_id, Err(_e))) => {
                    self.backend.peer_disconnected(&peer_id);
                    // We could take an approach of using `tracing` and have that be an optional feature
                    // tracing::error!("Error receiving message from peer {}: {:?}", peer_id, e);
                }
                None => {
                    // The fair queue is empty, which shouldn't happen in normal operation
                    return Err(ZmqError::NoMessage);
                }
            };
        }
    }
}

#[async_trait]
impl SocketSend for RouterSocket {
    /// zerowire patch: never waits on the peer. A message for a peer whose queue is full
    /// (or an unknown peer) comes back at once in `ZmqError::ReturnToSender`, as libzmq's
    /// ROUTER drops it at the high water mark (or fails with `EAGAIN` under
    /// `ZMQ_ROUTER_MANDATORY`). See [`RouterSocket::try_send`].
    async fn send(&mut self, message: ZmqMessage) -> ZmqResult<()> {
        check_routable(&message)?;
        try_send(&self.backend, message).map_err(Into::into)
    }
}

fn check_routable(message: &ZmqMessage) -> ZmqResult<()> {
    if message.len() <= 1 {
        return Err(ZmqError::Socket(
            "ROUTER send requires at least 2 frames: identity frame + message",
        ));
    }
    Ok(())
}

fn try_send(backend: &GenericSocketBackend, message: ZmqMessage) -> Result<(), TrySendError> {
    let (peer_id, message) = split_routing_id(message)?;
    backend.try_send_to_peer(&peer_id, message)
}

/// The routing id (first frame) and the rest; the whole message back if it cannot be routed.
fn split_routing_id(mut message: ZmqMessage) -> Result<(PeerIdentity, ZmqMessage), TrySendError> {
    if message.len() <= 1 {
        return Err(TrySendError::NotRoutable(message));
    }
    let id = message.pop_front().expect("two frames or more");
    // An empty id would stand for a fresh random one: no peer has it.
    if id.is_empty() || id.len() > PeerIdentity::MAX_LENGTH {
        message.push_front(id);
        return Err(TrySendError::UnknownPeer(message));
    }
    let peer_id = PeerIdentity::try_from(id).expect("length checked");
    Ok((peer_id, message))
}

/// zerowire patch: the non-blocking sends and the per-peer queue figures, on the socket and
/// on its send half alike.
macro_rules! router_send_api {
    ($ty:ty, $self:ident => $backend:expr) => {
        impl $ty {
            /// Queues `message` for the peer named by its first frame (the routing id, as
            /// `send`), and returns at once: `Err(TrySendError::Full(message))` if that
            /// peer's queue is at its message or byte bound
            /// ([`SocketOptions::peer_send_high_water_mark`]), `UnknownPeer` if no
            /// connected peer has that id, `PeerDropped` if the peer's queue had stayed
            /// full past [`SocketOptions::drop_full_peer_after`] and the peer was dropped
            /// now. The message comes back in every error. Never waits, never takes a lock
            /// that is held across an `.await`; callable from any thread.
            pub fn try_send(&$self, message: ZmqMessage) -> Result<(), TrySendError> {
                try_send(&$backend, message)
            }

            /// As [`Self::try_send`], with the routing id given apart: `message` holds only
            /// the frames the peer receives.
            pub fn try_send_to(
                &$self,
                peer_id: &PeerIdentity,
                message: ZmqMessage,
            ) -> Result<(), TrySendError> {
                $backend.try_send_to_peer(peer_id, message)
            }

            /// As [`Self::try_send_to`], through the peer's urgent lane: its writer sends
            /// what is there before anything from its queue, so a control reply (an ack, a
            /// pong) never waits behind data queued for that peer. The lane holds
            /// [`crate::URGENT_LANE_MESSAGES`] (then `Full`); the queue's bounds do not
            /// apply to it. Messages in the lane may overtake earlier ones in the queue.
            pub fn try_send_urgent_to(
                &$self,
                peer_id: &PeerIdentity,
                message: ZmqMessage,
            ) -> Result<(), TrySendError> {
                $backend.try_send_urgent_to_peer(peer_id, message)
            }

            /// As [`Self::try_send`] (routing id first), through the peer's urgent lane.
            pub fn try_send_urgent(&$self, message: ZmqMessage) -> Result<(), TrySendError> {
                let (peer_id, message) = split_routing_id(message)?;
                $backend.try_send_urgent_to_peer(&peer_id, message)
            }

            /// What waits in the peer's outbound queue (not yet taken by its writer), or
            /// `None` if no connected peer has that id.
            pub fn peer_queued(&$self, peer_id: &PeerIdentity) -> Option<QueuedStats> {
                $backend.peer_queued(peer_id)
            }

            /// What waits in all peers' outbound queues together.
            pub fn queued(&$self) -> QueuedStats {
                $backend.queued()
            }

            /// Connected peers (handshake done, not yet seen to leave).
            pub fn peer_count(&$self) -> usize {
                $backend.connected_peers()
            }

            /// Closes the peer's connection now, dropping what is queued for it; a
            /// `Disconnected` event follows. False if no connected peer has that id.
            pub fn disconnect_peer(&$self, peer_id: &PeerIdentity) -> bool {
                $backend.disconnect_peer(peer_id)
            }
        }
    };
}

router_send_api!(RouterSocket, self => self.backend);
router_send_api!(RouterSendHalf, self => self.inner.backend);

impl RouterSocket {
    /// Splits the socket into separate send and recv halves, allowing concurrent
    /// sending and receiving from independent async tasks.
    ///
    /// The underlying socket stays alive until both halves are dropped.
    pub fn split(mut self) -> (RouterSendHalf, RouterRecvHalf) {
        let backend = std::mem::replace(
            &mut self.backend,
            Arc::new(GenericSocketBackend::with_options(
                None,
                SocketType::ROUTER,
                SocketOptions::default(),
            )),
        );
        let fair_queue = std::mem::replace(&mut self.fair_queue, FairQueue::new(true));
        let binds = std::mem::take(&mut self.binds);

        let inner = Arc::new(RouterSocketInner {
            backend,
            _binds: binds,
        });

        (
            RouterSendHalf {
                inner: inner.clone(),
            },
            RouterRecvHalf { inner, fair_queue },
        )
    }
}

struct RouterSocketInner {
    backend: Arc<GenericSocketBackend>,
    _binds: HashMap<Endpoint, AcceptStopHandle>,
}

impl Drop for RouterSocketInner {
    fn drop(&mut self) {
        self.backend.shutdown();
    }
}

/// The send half of a [`RouterSocket`] produced by [`RouterSocket::split`].
///
/// This half can be cloned to send from multiple async tasks concurrently.
#[derive(Clone)]
pub struct RouterSendHalf {
    inner: Arc<RouterSocketInner>,
}

/// The recv half of a [`RouterSocket`] produced by [`RouterSocket::split`].
pub struct RouterRecvHalf {
    inner: Arc<RouterSocketInner>,
    fair_queue: FairQueue<ZmqFramedRead, PeerIdentity>,
}

#[async_trait]
impl SocketSend for RouterSendHalf {
    /// zerowire patch: never waits on the peer, as `RouterSocket`'s.
    async fn send(&mut self, message: ZmqMessage) -> ZmqResult<()> {
        check_routable(&message)?;
        try_send(&self.inner.backend, message).map_err(Into::into)
    }
}

impl RouterRecvHalf {
    /// zerowire patch: `recv` without a future. `SocketRecv::recv` is an `async_trait` method,
    /// so each call boxes its future: an allocation per message read.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<ZmqResult<ZmqMessage>> {
        loop {
            match ready!(self.fair_queue.poll_next_unpin(cx)) {
                Some((peer_id, Ok(Message::Message(mut message)))) => {
                    message.push_front(peer_id.into());
                    return Poll::Ready(Ok(message));
                }
                Some((_peer_id, Ok(_))) => {}
                Some((peer_id, Err(_e))) => {
                    self.inner.backend.peer_disconnected(&peer_id);
                }
                None => {
                    return Poll::Ready(Err(ZmqError::NoMessage));
                }
            };
        }
    }
}

#[async_trait]
impl SocketRecv for RouterRecvHalf {
    async fn recv(&mut self) -> ZmqResult<ZmqMessage> {
        futures::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}
