//! zerowire patch: the framed writer, without copying large frames.
//!
//! Upstream used `asynchronous_codec::FramedWrite`, which encodes every frame into one buffer:
//! a 1 MiB message was copied in full before the kernel copied it again. Here frames of at least
//! [`ZERO_COPY_MIN`] bytes are queued as the `Bytes` they arrived in (a reference count, no
//! copy) and written with vectored writes between the headers and small frames, which are
//! still gathered into one buffer as before. The bytes on the wire are the same.

use super::error::CodecError;
use super::framed::FrameableWrite;
use super::{Message, ZmqCodec};
use crate::curve::CurveSender;

use asynchronous_codec::Encoder;
use bytes::{Buf, Bytes, BytesMut};
use futures::{ready, AsyncWrite, Sink};

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Frames this large are written from their own memory. Below it, copying into the shared
/// buffer is cheaper than another slice in the write (libzmq's encoder uses 8 KiB too).
const ZERO_COPY_MIN: usize = 8 * 1024;
/// `poll_ready` flushes first once this much is waiting, as `FramedWrite` did.
const BACKPRESSURE_BOUNDARY: usize = 128 * 1024;
/// Slices handed to one vectored write (IOV_MAX is 1024 on Linux).
const MAX_SLICES: usize = 64;

pub struct ZmqFramedWrite {
    inner: Box<dyn FrameableWrite>,
    codec: ZmqCodec,
    /// Waiting to be written, in order; `open` follows them.
    ready: VecDeque<Bytes>,
    ready_bytes: usize,
    /// Headers and small frames gathered since the last large frame.
    open: BytesMut,
    /// zerowire patch: once a CURVE handshake is done, every frame goes out as a MESSAGE (its
    /// box is new memory, so nothing is written from the caller's frames).
    curve: Option<CurveSender>,
}

impl ZmqFramedWrite {
    pub(crate) fn new(inner: Box<dyn FrameableWrite>, codec: ZmqCodec) -> Self {
        Self {
            inner,
            codec,
            ready: VecDeque::new(),
            ready_bytes: 0,
            open: BytesMut::new(),
            curve: None,
        }
    }

    pub(crate) fn set_curve(&mut self, curve: CurveSender) {
        self.curve = Some(curve);
    }

    fn buffered(&self) -> usize {
        self.ready_bytes + self.open.len()
    }

    fn encode(&mut self, item: Message) -> Result<(), CodecError> {
        if let Some(curve) = &mut self.curve {
            return curve.seal_message(item, &mut self.open);
        }
        let message = match item {
            Message::Message(message) => message,
            other => return self.codec.encode(other, &mut self.open),
        };
        let last = message.len() - 1;
        for (i, frame) in message.iter().enumerate() {
            let more = i != last;
            let len = frame.len();
            let flags = u8::from(more) | if len > 255 { 0b10 } else { 0 };
            self.open.reserve(9);
            self.open.extend_from_slice(&[flags]);
            if len > 255 {
                self.open.extend_from_slice(&(len as u64).to_be_bytes());
            } else {
                self.open.extend_from_slice(&[len as u8]);
            }
            if len >= ZERO_COPY_MIN {
                let head = self.open.split().freeze();
                self.ready_bytes += head.len() + len;
                self.ready.push_back(head);
                self.ready.push_back(frame.clone());
            } else {
                self.open.extend_from_slice(frame);
            }
        }
        Ok(())
    }

    /// Drops the first `n` written bytes from `ready`, then from `open`.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.ready.front_mut() else {
                self.open.advance(n);
                return;
            };
            let step = n.min(front.len());
            front.advance(step);
            self.ready_bytes -= step;
            n -= step;
            if front.is_empty() {
                self.ready.pop_front();
            }
        }
    }

    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.buffered() > 0 {
            let written = if self.ready.is_empty() {
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.open))?
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for chunk in self.ready.iter().take(MAX_SLICES) {
                    slices[count] = IoSlice::new(chunk);
                    count += 1;
                }
                if count < MAX_SLICES && !self.open.is_empty() {
                    slices[count] = IoSlice::new(&self.open);
                    count += 1;
                }
                ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices[..count]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write frame to transport",
                )));
            }
            self.advance(written);
        }
        Poll::Ready(Ok(()))
    }
}

impl Sink<Message> for ZmqFramedWrite {
    type Error = CodecError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if this.buffered() >= BACKPRESSURE_BOUNDARY {
            ready!(this.poll_write_all(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.get_mut().encode(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_all(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_all(cx))?;
        ready!(Pin::new(&mut this.inner).poll_close(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ZmqMessage;
    use futures::SinkExt;
    use std::sync::{Arc, Mutex};

    /// Accepts at most `step` bytes per call, so frames are split across writes.
    struct Chunky {
        out: Arc<Mutex<Vec<u8>>>,
        step: usize,
    }

    impl AsyncWrite for Chunky {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.lock().unwrap().extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.step;
            let mut out = self.out.lock().unwrap();
            for b in bufs {
                let n = b.len().min(left);
                out.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(self.step - left))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn message(frames: &[Vec<u8>]) -> ZmqMessage {
        let mut m = ZmqMessage::from(Bytes::from(frames[0].clone()));
        for f in &frames[1..] {
            m.push_back(Bytes::from(f.clone()));
        }
        m
    }

    #[test]
    fn the_same_bytes_as_the_copying_encoder_whatever_the_write_sizes() {
        let frames: Vec<Vec<u8>> = [0usize, 5, 255, 256, 8191, 8192, 70_000, 3, 1 << 20]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let messages = [
            message(&frames[..3]),
            message(&frames[3..6]),
            message(&frames[6..]),
            message(&frames[1..2]),
        ];
        let mut expected = BytesMut::new();
        for m in &messages {
            ZmqCodec::new()
                .encode(Message::Message(m.clone()), &mut expected)
                .unwrap();
        }
        for step in [1, 7, 4096, 65_536, usize::MAX / 2] {
            let out = Arc::new(Mutex::new(Vec::new()));
            let writer = Chunky {
                out: out.clone(),
                step,
            };
            let mut sink = ZmqFramedWrite::new(Box::new(writer), ZmqCodec::new());
            futures::executor::block_on(async {
                for m in &messages {
                    sink.feed(Message::Message(m.clone())).await.unwrap();
                }
                sink.flush().await.unwrap();
            });
            assert_eq!(sink.buffered(), 0);
            assert!(out.lock().unwrap()[..] == expected[..], "step {step}");
        }
    }
}
