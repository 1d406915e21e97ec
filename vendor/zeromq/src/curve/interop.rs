//! CURVE against libzmq, through pyzmq (whose wheels bundle libzmq with libsodium): each test
//! runs a small Python script as the other peer. Skipped, saying so, where python3 has no
//! pyzmq with CURVE (`python3 -m pip install pyzmq==27.3.0`).

use super::*;
use crate::prelude::*;
use crate::{DealerSocket, RouterSocket, SocketOptions, ZmqMessage};

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn pyzmq_with_curve() -> bool {
    let found = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zmq; sys.exit(0 if zmq.has('curve') else 1)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!(
            "SKIPPED: libzmq interop needs python3 with pyzmq built with CURVE \
             (python3 -m pip install pyzmq==27.3.0)"
        );
    }
    found
}

struct Python {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Python {
    fn start(script: &str, args: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("the script answers within the wait")
            .unwrap()
            .expect("the script printed a line")
    }

    /// Lets the script finish and checks it exited cleanly.
    async fn finish(mut self) {
        let mut stdin = self.child.stdin.take().unwrap();
        // A script that does not wait for this line may be gone already.
        let _ = stdin.write_all(b"done\n").await;
        drop(stdin);
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the script exits")
            .unwrap();
        assert!(status.success(), "python exited with {status}");
    }
}

fn message(frames: Vec<Vec<u8>>) -> ZmqMessage {
    ZmqMessage::try_from(frames.into_iter().map(Bytes::from).collect::<Vec<_>>()).unwrap()
}

fn frames(message: &ZmqMessage) -> Vec<Vec<u8>> {
    message.iter().map(|frame| frame.to_vec()).collect()
}

async fn recv(socket: &mut impl SocketRecv) -> ZmqMessage {
    tokio::time::timeout(WAIT, socket.recv())
        .await
        .expect("a message within the wait")
        .unwrap()
}

/// A libzmq CURVE ROUTER. Its ZAP handler lets every key in and names the user by the key
/// libzmq verified, so the ROUTER can tell which client key it saw.
const LIBZMQ_ROUTER: &str = r#"
import os, sys, threading, zmq, zmq.utils.z85 as z85
ctx = zmq.Context()
zap = ctx.socket(zmq.REP)
zap.bind("inproc://zeromq.zap.01")
def serve_zap():
    while True:
        request = zap.recv_multipart()
        version, request_id, domain, address, identity, mechanism, key = request[:7]
        assert mechanism == b"CURVE"
        zap.send_multipart([b"1.0", request_id, b"200", b"OK", z85.encode(key), b""])
threading.Thread(target=serve_zap, daemon=True).start()
public, secret = zmq.curve_keypair()
router = ctx.socket(zmq.ROUTER)
router.curve_server = True
router.curve_secretkey = secret
router.zap_domain = b"interop"
router.rcvtimeo = 15000
port = router.bind_to_random_port("tcp://127.0.0.1")
print(port, public.decode(), flush=True)
identity, *parts = router.recv_multipart(copy=False)
user = parts[0].get("User-Id")
router.send_multipart([identity.bytes, b"seen by libzmq", user.encode()] + [p.bytes for p in parts])
sys.stdin.readline()
os._exit(0)
"#;

#[tokio::test]
async fn our_client_against_a_libzmq_curve_router() {
    if !pyzmq_with_curve() {
        return;
    }
    let mut python = Python::start(LIBZMQ_ROUTER, &[]);
    let line = python.line().await;
    let (port, server_key) = line.split_once(' ').unwrap();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let server_key = CurvePublicKey::from_z85(server_key).unwrap();

    let mut options = SocketOptions::default();
    options
        .curve_client(
            CurveKeyPair::generate().public_key,
            CurveKeyPair::generate(),
        )
        .connect_timeout(WAIT);
    let mut wrong = DealerSocket::with_options(options);
    assert!(
        wrong.connect(&endpoint).await.is_err(),
        "libzmq must not complete a handshake with a client that trusts another key"
    );

    let keys = CurveKeyPair::generate();
    let mut options = SocketOptions::default();
    options
        .curve_client(server_key, keys.clone())
        .connect_timeout(WAIT);
    let mut client = DealerSocket::with_options(options);
    client.connect(&endpoint).await.unwrap();
    let large = vec![b'x'; 100_000];
    client
        .send(message(vec![b"hello libzmq".to_vec(), large.clone()]))
        .await
        .unwrap();
    let reply = frames(&recv(&mut client).await);
    assert_eq!(
        reply,
        [
            b"seen by libzmq".to_vec(),
            keys.public_key.to_z85().into_bytes(),
            b"hello libzmq".to_vec(),
            large
        ]
    );
    python.finish().await;
}

/// A libzmq CURVE DEALER with a key pair libzmq made; prints its public key, sends, prints the
/// reply.
const LIBZMQ_DEALER: &str = r#"
import os, sys, zmq
endpoint, server_key = sys.argv[1], sys.argv[2]
ctx = zmq.Context()
public, secret = zmq.curve_keypair()
dealer = ctx.socket(zmq.DEALER)
dealer.curve_serverkey = server_key.encode()
dealer.curve_publickey = public
dealer.curve_secretkey = secret
dealer.rcvtimeo = 15000
dealer.connect(endpoint)
print(public.decode(), flush=True)
dealer.send_multipart([b"hello from libzmq", b"y" * 100000])
reply = dealer.recv_multipart()
print(reply[0].decode(), len(reply[1]), flush=True)
sys.stdin.readline()
os._exit(0)
"#;

/// A libzmq DEALER that sends one message and reports whether any reply came.
const LIBZMQ_SENDER: &str = r#"
import os, sys, zmq
endpoint, server_key = sys.argv[1], sys.argv[2]
ctx = zmq.Context()
dealer = ctx.socket(zmq.DEALER)
if server_key != "null":
    public, secret = zmq.curve_keypair()
    dealer.curve_serverkey = server_key.encode()
    dealer.curve_publickey = public
    dealer.curve_secretkey = secret
dealer.rcvtimeo = 1000
dealer.sndtimeo = 0
dealer.connect(endpoint)
try:
    dealer.send(b"must not arrive")
except zmq.Again:
    pass
try:
    dealer.recv()
    print("answered", flush=True)
except zmq.Again:
    print("no answer", flush=True)
sys.stdin.readline()
os._exit(0)
"#;

#[tokio::test]
async fn libzmq_dealer_against_our_curve_router() {
    if !pyzmq_with_curve() {
        return;
    }
    let server_keys = CurveKeyPair::generate();
    let seen: Arc<Mutex<Vec<CurvePeer>>> = Arc::default();
    let record = seen.clone();
    let mut options = SocketOptions::default();
    options
        .curve_server(server_keys.secret_key.clone())
        .curve_authorizer(move |peer| {
            let mut seen = record.lock();
            seen.push(peer.clone());
            // The first client is let in; the later one is refused.
            seen.len() == 1
        });
    let stats = options.curve_stats();
    let mut router = RouterSocket::with_options(options);
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let server_key = server_keys.public_key.to_z85();

    let mut python = Python::start(LIBZMQ_DEALER, &[&endpoint, &server_key]);
    let client_key = CurvePublicKey::from_z85(&python.line().await).unwrap();
    let request = frames(&recv(&mut router).await);
    assert_eq!(request[1], b"hello from libzmq");
    assert_eq!(request[2], vec![b'y'; 100_000]);
    {
        let seen = seen.lock();
        assert_eq!(seen[0].public_key, client_key);
        assert_eq!(seen[0].identity.to_vec(), request[0]);
        assert_eq!(seen[0].socket_type, SocketType::DEALER);
    }
    router
        .send(message(vec![
            request[0].clone(),
            b"answer".to_vec(),
            vec![b'z'; 70_000],
        ]))
        .await
        .unwrap();
    assert_eq!(python.line().await, "answer 70000");
    python.finish().await;
    assert_eq!(stats.handshakes(), 1);

    // A second libzmq client with a key the authorizer refuses, and a plaintext one.
    let mut refused = Python::start(LIBZMQ_SENDER, &[&endpoint, &server_key]);
    let mut plaintext = Python::start(LIBZMQ_SENDER, &[&endpoint, "null"]);
    let deadline = std::time::Instant::now() + WAIT;
    while stats.unauthorized() == 0 || stats.handshake_failures() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "both refusals are counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(refused.line().await, "no answer");
    assert_eq!(plaintext.line().await, "no answer");
    if let Ok(message) = tokio::time::timeout(Duration::from_millis(500), router.recv()).await {
        panic!("nothing from a refused peer may arrive, got {message:?}");
    }
    refused.finish().await;
    plaintext.finish().await;
    assert_eq!(stats.handshakes(), 1);
}

const LIBZMQ_KEYS: &str = r#"
import sys, zmq
print(zmq.curve_public(sys.argv[1].encode()).decode())
public, secret = zmq.curve_keypair()
print(public.decode(), secret.decode(), flush=True)
"#;

#[tokio::test]
async fn keys_agree_with_libzmq() {
    if !pyzmq_with_curve() {
        return;
    }
    // libzmq derives our public key from our secret.
    let ours = CurveKeyPair::generate();
    let mut python = Python::start(LIBZMQ_KEYS, &[&ours.secret_key.to_z85()]);
    assert_eq!(python.line().await, ours.public_key.to_z85());

    // We derive libzmq's, and a server on libzmq's key pair serves our client.
    let line = python.line().await;
    let (public, secret) = line.split_once(' ').unwrap();
    let secret = CurveSecretKey::from_z85(secret).unwrap();
    let public = CurvePublicKey::from_z85(public).unwrap();
    assert_eq!(secret.public_key(), public);
    python.finish().await;

    let mut options = SocketOptions::default();
    options.curve_server(secret);
    let mut router = RouterSocket::with_options(options);
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let mut options = SocketOptions::default();
    options
        .curve_client(public, CurveKeyPair::generate())
        .connect_timeout(WAIT);
    let mut client = DealerSocket::with_options(options);
    client.connect(&endpoint).await.unwrap();
    client.send(message(vec![b"ping".to_vec()])).await.unwrap();
    assert_eq!(frames(&recv(&mut router).await)[1], b"ping");
}
