//! The send half of a socket and the one send that may be suspended on it.
//!
//! A send future must never be dropped once polled: for a single peer the zeromq crate
//! enqueues the message on a fresh clone of the channel sender and only then reports `Pending`
//! (waiting for the flush), so dropping and retrying would deliver the message twice. The
//! future lives in a reusable box and the engine's select loop polls it to completion.

use std::task::{Context, Poll};

use tokio_util::sync::ReusableBoxFuture;
use zeromq::{SocketSend, ZmqMessage, ZmqResult};

type Written<H> = (H, ZmqResult<()>);

async fn write<H: SocketSend>(mut half: H, message: ZmqMessage) -> Written<H> {
    let result = half.send(message).await;
    (half, result)
}

pub(crate) struct Writer<H: 'static> {
    idle: Option<H>,
    slot: Option<ReusableBoxFuture<'static, Written<H>>>,
}

/// A send half that can queue a message without a future when its peer's queue takes it at
/// once: the crate's `SocketSend::send` is an `async_trait` method, which boxes its future on
/// every call (an allocation per message).
pub(crate) trait SendNow: SocketSend {
    /// `Err` gives the message back untouched; `send` then does the rest.
    fn try_send_now(&mut self, message: ZmqMessage) -> Result<(), ZmqMessage>;
}

impl SendNow for zeromq::DealerSendHalf {
    fn try_send_now(&mut self, message: ZmqMessage) -> Result<(), ZmqMessage> {
        zeromq::DealerSendHalf::try_send_now(self, message)
    }
}

impl<H: SendNow + Send + 'static> Writer<H> {
    pub(crate) fn new(half: H) -> Self {
        Writer {
            idle: Some(half),
            slot: None,
        }
    }

    pub(crate) fn busy(&self) -> bool {
        self.idle.is_none()
    }

    /// Starts sending `message`; returns the result if it finished without waiting, `None` if
    /// it is suspended (the socket owns the message either way; [`Writer::finish`] ends it).
    pub(crate) fn start(&mut self, message: ZmqMessage) -> Option<ZmqResult<()>> {
        let idle = self.idle.as_mut().expect("start() on a busy writer");
        // The usual case, queued at once without a future; what that cannot queue takes the
        // future below, which tries the same first and then waits or fails as `send` does.
        let message = match idle.try_send_now(message) {
            Ok(()) => return Some(Ok(())),
            Err(message) => message,
        };
        let half = self.idle.take().expect("idle above");
        let future = write(half, message);
        let slot = match &mut self.slot {
            Some(slot) => {
                slot.set(future);
                slot
            }
            None => self.slot.insert(ReusableBoxFuture::new(future)),
        };
        // A no-op waker is fine: if this is Pending, the select loop polls again with its own.
        let waker = futures::task::noop_waker();
        match slot.poll(&mut Context::from_waker(&waker)) {
            Poll::Ready((half, result)) => {
                self.idle = Some(half);
                Some(result)
            }
            Poll::Pending => None,
        }
    }

    /// Polls the suspended send; the future stays in its box until it is ready.
    pub(crate) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<ZmqResult<()>> {
        let slot = self.slot.as_mut().expect("poll_finish() without a send");
        let (half, result) = std::task::ready!(slot.poll(cx));
        self.idle = Some(half);
        Poll::Ready(result)
    }
}
