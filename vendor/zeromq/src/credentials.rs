//! zerowire patch: who is at the other end of an ipc connection, as the kernel tells it
//! (`SO_PEERCRED` on Linux, `getpeereid` and `LOCAL_PEERPID` on macOS and the BSDs: tokio's
//! `UnixStream::peer_cred`). Read once, on the connected or accepted stream, before anything
//! is written on it, so it is the credential of the process that called `connect` (or
//! `listen`), whatever is said in the handshake afterwards.

use crate::util::PeerIdentity;
use crate::SocketType;

use std::sync::Arc;

/// The credentials of an ipc peer's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    pub uid: u32,
    pub gid: u32,
    /// `None` where the platform does not tell.
    pub pid: Option<u32>,
}

/// A NULL-mechanism peer that completed its handshake, as the socket's `peer_authorizer`
/// sees it.
#[derive(Debug, Clone)]
pub struct JoiningPeer {
    /// The identity the socket will route this peer by.
    pub identity: PeerIdentity,
    /// The peer's socket type, from its READY.
    pub socket_type: SocketType,
    /// For an ipc connection, its peer's credentials; `None` for tcp, or where the platform
    /// has none (Windows).
    pub credentials: Option<PeerCredentials>,
}

/// Decides whether a NULL-mechanism peer may join; see `SocketOptions::peer_authorizer`.
pub type PeerAuthorizer = dyn Fn(&JoiningPeer) -> bool + Send + Sync;

/// Decides whether an ipc server this socket connected to may be talked to; see
/// `SocketOptions::ipc_peer_check`.
pub type IpcPeerCheck = dyn Fn(&PeerCredentials) -> bool + Send + Sync;

#[derive(Default, Clone)]
pub(crate) struct CredentialOptions {
    pub(crate) authorizer: Option<Arc<PeerAuthorizer>>,
    pub(crate) ipc_check: Option<Arc<IpcPeerCheck>>,
}

#[cfg(all(feature = "tokio-runtime", target_family = "unix"))]
pub(crate) fn of(stream: &tokio::net::UnixStream) -> std::io::Result<PeerCredentials> {
    let cred = stream.peer_cred()?;
    Ok(PeerCredentials {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
    })
}

/// The other runtimes' Unix streams do not expose the credentials.
#[cfg(all(not(feature = "tokio-runtime"), target_family = "unix"))]
pub(crate) fn of<S>(_stream: &S) -> std::io::Result<PeerCredentials> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "peer credentials need the tokio runtime",
    ))
}

impl CredentialOptions {
    /// On a connection this socket made: refuses a peer `ipc_check` does not accept, or whose
    /// credentials could not be read when a check is set.
    pub(crate) fn check_connected(
        &self,
        credentials: &std::io::Result<PeerCredentials>,
    ) -> crate::ZmqResult<()> {
        let Some(check) = &self.ipc_check else {
            return Ok(());
        };
        match credentials {
            Ok(c) if check(c) => Ok(()),
            Ok(c) => Err(crate::ZmqError::PeerCredentials(Some(*c))),
            Err(_) => Err(crate::ZmqError::PeerCredentials(None)),
        }
    }

    pub(crate) fn admit(&self, peer: &JoiningPeer) -> crate::ZmqResult<()> {
        match &self.authorizer {
            Some(authorizer) if !authorizer(peer) => Err(crate::ZmqError::Other(
                "peer refused by the socket's authorizer",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(all(test, feature = "tokio-runtime", target_family = "unix"))]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{DealerSocket, RouterSocket, SocketOptions, ZmqError, ZmqMessage};

    use parking_lot::Mutex;
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    const WAIT: Duration = Duration::from_secs(10);

    /// A fresh directory for a socket file; our euid is its owner's.
    fn socket_dir(name: &str) -> (std::path::PathBuf, u32) {
        let dir = std::env::temp_dir().join(format!("zmq-cred-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let uid = std::fs::metadata(&dir).unwrap().uid();
        (dir, uid)
    }

    #[tokio::test]
    async fn the_authorizer_gets_the_ipc_peers_credentials_and_may_refuse() {
        let (dir, uid) = socket_dir("authorizer");
        let endpoint = format!("ipc://{}", dir.join("s").display());
        let seen: Arc<Mutex<Vec<JoiningPeer>>> = Arc::default();
        let record = seen.clone();
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing = refuse.clone();
        let mut options = SocketOptions::default();
        options.peer_authorizer(move |peer| {
            record.lock().push(peer.clone());
            !refusing.load(std::sync::atomic::Ordering::Relaxed)
        });
        let mut router = RouterSocket::with_options(options);
        router.bind(&endpoint).await.unwrap();

        let mut dealer = DealerSocket::new();
        dealer.connect(&endpoint).await.unwrap();
        dealer.send(ZmqMessage::from("one")).await.unwrap();
        let got = tokio::time::timeout(WAIT, router.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.get(1).unwrap().as_ref(), b"one");
        {
            let seen = seen.lock();
            assert_eq!(seen.len(), 1);
            let credentials = seen[0].credentials.expect("ipc credentials");
            assert_eq!(credentials.uid, uid);
            assert_eq!(credentials.pid, Some(std::process::id()));
            assert_eq!(seen[0].socket_type, crate::SocketType::DEALER);
            assert_eq!(&seen[0].identity[..], &got.get(0).unwrap()[..]);
        }

        // Refused: its messages never come out of the ROUTER.
        refuse.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut refused = DealerSocket::new();
        let _ = refused.connect(&endpoint).await;
        let _ = refused.send(ZmqMessage::from("two")).await;
        let quiet = tokio::time::timeout(Duration::from_millis(500), router.recv()).await;
        assert!(quiet.is_err(), "a refused peer's message was delivered");
        let asked = tokio::time::timeout(WAIT, async {
            while seen.lock().len() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        asked
            .await
            .expect("the authorizer was asked about the second peer");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_connect_refused_by_the_ipc_check_writes_nothing() {
        let (dir, uid) = socket_dir("check");
        let path = dir.join("s");
        // A bare listener: whatever the socket writes on the connection, it reads.
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let endpoint = format!("ipc://{}", path.display());
        let listening = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut got)).await;
            got
        });
        let mut options = SocketOptions::default();
        options
            .ipc_peer_check(move |c| c.uid == uid.wrapping_add(1))
            .connect_timeout(WAIT);
        let mut dealer = DealerSocket::with_options(options);
        match dealer.connect(&endpoint).await {
            Err(ZmqError::PeerCredentials(Some(c))) => assert_eq!(c.uid, uid),
            other => panic!("expected a credentials refusal, got {other:?}"),
        }
        let written = tokio::time::timeout(WAIT, listening)
            .await
            .unwrap()
            .unwrap();
        assert!(written.is_empty(), "{} bytes were written", written.len());

        // The same check accepting the owner lets the connection through.
        let mut router = RouterSocket::new();
        let accepted = format!("ipc://{}", dir.join("t").display());
        router.bind(&accepted).await.unwrap();
        let mut options = SocketOptions::default();
        options.ipc_peer_check(move |c| c.uid == uid);
        let mut dealer = DealerSocket::with_options(options);
        dealer.connect(&accepted).await.unwrap();
        dealer.send(ZmqMessage::from("ok")).await.unwrap();
        let got = tokio::time::timeout(WAIT, router.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.get(1).unwrap().as_ref(), b"ok");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
