//! A DEALER written out by hand: the greeting, READY and message frames of ZMTP 3.0 (RFC 23)
//! with the NULL mechanism, and nothing else, so a test controls every byte and every read.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a test waits for something that should happen at once.
pub const PROMPT: Duration = Duration::from_secs(5);

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[12..16].copy_from_slice(b"NULL");
    g
}

pub fn ready(identity: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![5u8];
    body.extend_from_slice(b"READY");
    let mut prop = |name: &[u8], value: &[u8]| {
        body.push(name.len() as u8);
        body.extend_from_slice(name);
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(value);
    };
    prop(b"Socket-Type", b"DEALER");
    if let Some(identity) = identity {
        prop(b"Identity", identity);
    }
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend_from_slice(&body);
    frame
}

pub fn message(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let more = if i + 1 < frames.len() { 0x01 } else { 0 };
        if f.len() <= 255 {
            out.push(more);
            out.push(f.len() as u8);
        } else {
            out.push(more | 0x02);
            out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        }
        out.extend_from_slice(f);
    }
    out
}

pub struct RawPeer {
    io: Box<dyn Stream>,
}

impl RawPeer {
    pub async fn open(endpoint: &str) -> Box<dyn Stream> {
        if let Some(addr) = endpoint.strip_prefix("tcp://") {
            Box::new(tokio::net::TcpStream::connect(addr).await.expect("connect"))
        } else if let Some(path) = endpoint.strip_prefix("ipc://") {
            Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .expect("connect"),
            )
        } else {
            panic!("endpoint {endpoint}")
        }
    }

    /// Connects and completes the handshake as a DEALER.
    pub async fn connect(endpoint: &str, identity: Option<&[u8]>) -> RawPeer {
        let mut io = Self::open(endpoint).await;
        let handshake = async {
            io.write_all(&greeting()).await?;
            let mut theirs = [0u8; 64];
            io.read_exact(&mut theirs).await?;
            io.write_all(&ready(identity)).await?;
            let mut peer = RawPeer { io };
            let (flags, _) = peer.read_frame().await?;
            assert!(flags & 0x04 != 0, "READY comes first");
            std::io::Result::Ok(peer)
        };
        tokio::time::timeout(PROMPT, handshake)
            .await
            .expect("handshake in time")
            .expect("handshake")
    }

    pub async fn send(&mut self, frames: &[&[u8]]) {
        self.io.write_all(&message(frames)).await.expect("send");
    }

    /// As `send`, for a peer the other side may already have closed.
    pub async fn send_nowait(&mut self, frames: &[&[u8]]) {
        let _ = self.io.write_all(&message(frames)).await;
    }

    async fn read_frame(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let flags = self.io.read_u8().await?;
        let len = if flags & 0x02 != 0 {
            self.io.read_u64().await? as usize
        } else {
            self.io.read_u8().await? as usize
        };
        let mut body = vec![0u8; len];
        self.io.read_exact(&mut body).await?;
        Ok((flags, body))
    }

    /// The next message's frames, or `None` if none came in `within`.
    pub async fn recv_message(&mut self, within: Duration) -> Option<Vec<Vec<u8>>> {
        let read = async {
            let mut frames = Vec::new();
            loop {
                let (flags, body) = self.read_frame().await?;
                if flags & 0x04 != 0 {
                    continue;
                }
                frames.push(body);
                if flags & 0x01 == 0 {
                    return std::io::Result::Ok(frames);
                }
            }
        };
        match tokio::time::timeout(within, read).await {
            Ok(Ok(frames)) => Some(frames),
            _ => None,
        }
    }

    /// Reads until the other side closes (or resets) the connection: the bytes read, or
    /// `None` if it was still open after `within`.
    pub async fn read_to_end(mut self, within: Duration) -> Option<usize> {
        let read = async {
            let mut total = 0;
            let mut buf = [0u8; 4096];
            loop {
                match self.io.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        };
        tokio::time::timeout(within, read).await.ok()
    }

    pub async fn close(mut self) {
        let _ = self.io.shutdown().await;
    }

    pub fn into_inner(self) -> Box<dyn Stream> {
        self.io
    }
}

/// A DEALER on a plain blocking socket that greets, sends "hi" and then reads nothing.
pub fn blocking_peer(addr: &str, identity: &[u8]) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PROMPT)).unwrap();
    s.write_all(&greeting()).unwrap();
    let mut theirs = [0u8; 64];
    s.read_exact(&mut theirs).unwrap();
    s.write_all(&ready(Some(identity))).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x04);
    let mut body = vec![0u8; head[1] as usize];
    s.read_exact(&mut body).unwrap();
    s.write_all(&message(&[b"hi"])).unwrap();
    s
}
