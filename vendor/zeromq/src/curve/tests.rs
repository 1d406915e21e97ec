//! CURVE between real sockets over loopback TCP, with a relay in the middle where a test needs
//! to watch or damage the bytes. `interop.rs` does the same against libzmq (pyzmq).

use super::*;
use crate::prelude::*;
use crate::{DealerSocket, RouterSocket, SocketOptions, ZmqMessage};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use std::time::{Duration, Instant};

/// Bound for anything awaited that should happen; a test that hits it has failed.
const WAIT: Duration = Duration::from_secs(10);
/// How long a test watches for something that must not happen.
const QUIET: Duration = Duration::from_millis(500);

type Seen = Arc<Mutex<Vec<CurvePeer>>>;

struct Server {
    socket: RouterSocket,
    endpoint: String,
    keys: CurveKeyPair,
    stats: Arc<CurveStats>,
    seen: Seen,
}

async fn curve_server(allow: impl Fn(&CurvePublicKey) -> bool + Send + Sync + 'static) -> Server {
    let keys = CurveKeyPair::generate();
    let seen: Seen = Arc::default();
    let mut options = SocketOptions::default();
    let record = seen.clone();
    options
        .curve_server(keys.secret_key.clone())
        .curve_authorizer(move |peer| {
            record.lock().push(peer.clone());
            allow(&peer.public_key)
        });
    let stats = options.curve_stats();
    let mut socket = RouterSocket::with_options(options);
    let endpoint = socket.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    Server {
        socket,
        endpoint,
        keys,
        stats,
        seen,
    }
}

fn client_options(server_key: CurvePublicKey, keys: CurveKeyPair) -> SocketOptions {
    let mut options = SocketOptions::default();
    options.curve_client(server_key, keys).connect_timeout(WAIT);
    options
}

async fn curve_client(
    endpoint: &str,
    server_key: CurvePublicKey,
    keys: CurveKeyPair,
) -> DealerSocket {
    let mut socket = DealerSocket::with_options(client_options(server_key, keys));
    socket.connect(endpoint).await.unwrap();
    socket
}

fn message(frames: &[&[u8]]) -> ZmqMessage {
    ZmqMessage::try_from(
        frames
            .iter()
            .map(|frame| Bytes::copy_from_slice(frame))
            .collect::<Vec<_>>(),
    )
    .unwrap()
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

async fn assert_nothing_received(socket: &mut impl SocketRecv) {
    if let Ok(message) = tokio::time::timeout(QUIET, socket.recv()).await {
        panic!("nothing should have arrived, got {message:?}");
    }
}

/// Receives (a ROUTER reads its peers, and so rejects their bad frames, only while someone
/// receives) until one rejection is counted; any message arriving meanwhile fails the test.
async fn receive_nothing_until_rejected(socket: &mut RouterSocket, stats: &CurveStats) {
    let deadline = Instant::now() + WAIT;
    while stats.rejected_messages() == 0 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the rejection"
        );
        if let Ok(message) = tokio::time::timeout(Duration::from_millis(20), socket.recv()).await {
            panic!("nothing should have arrived, got {message:?}");
        }
    }
    assert_eq!(stats.rejected_messages(), 1);
    assert_nothing_received(socket).await;
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn handshake_then_messages_both_ways() {
    let mut server = curve_server(|_| true).await;
    let client_keys = CurveKeyPair::generate();
    let mut client = curve_client(
        &server.endpoint,
        server.keys.public_key,
        client_keys.clone(),
    )
    .await;

    client.send(message(&[b"hello", b"world"])).await.unwrap();
    let received = recv(&mut server.socket).await;
    let received = frames(&received);
    assert_eq!(received[1..], [b"hello".to_vec(), b"world".to_vec()]);

    // The authorizer saw the client's long-term key and the identity the ROUTER routes by.
    let seen = server.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].public_key, client_keys.public_key);
    assert_eq!(seen[0].identity.to_vec(), received[0]);
    assert_eq!(seen[0].socket_type, SocketType::DEALER);

    // Replies, including an empty frame and one large enough for the long frame header.
    let large = vec![7u8; 100_000];
    server
        .socket
        .send(message(&[&received[0], b"", &large]))
        .await
        .unwrap();
    let reply = recv(&mut client).await;
    assert_eq!(frames(&reply), [b"".to_vec(), large]);

    for i in 0..50u32 {
        client.send(message(&[&i.to_be_bytes()])).await.unwrap();
    }
    for i in 0..50u32 {
        let received = recv(&mut server.socket).await;
        assert_eq!(frames(&received)[1], i.to_be_bytes());
    }
    assert_eq!(server.stats.handshakes(), 1);
    assert_eq!(server.stats.handshake_failures(), 0);
    assert_eq!(server.stats.rejected_messages(), 0);
}

#[tokio::test]
async fn client_trusting_the_wrong_server_key_never_connects() {
    let mut server = curve_server(|_| true).await;
    let wrong = CurveKeyPair::generate().public_key;
    let mut client = DealerSocket::with_options(client_options(wrong, CurveKeyPair::generate()));

    let error = client.connect(&server.endpoint).await.unwrap_err();
    assert!(error.is_mechanism_failure(), "{error:?}");
    wait_until("the server counted the failure", || {
        server.stats.handshake_failures() == 1
    })
    .await;
    assert!(server.seen.lock().is_empty());
    assert!(client.send(message(&[b"secret"])).await.is_err());
    assert_nothing_received(&mut server.socket).await;
}

#[tokio::test]
async fn unauthorized_key_is_refused_and_others_still_served() {
    let allowed = CurveKeyPair::generate();
    let allowed_key = allowed.public_key;
    let mut server = curve_server(move |key| *key == allowed_key).await;

    let mut stranger = DealerSocket::with_options(client_options(
        server.keys.public_key,
        CurveKeyPair::generate(),
    ));
    let error = stranger.connect(&server.endpoint).await.unwrap_err();
    assert!(error.is_mechanism_failure(), "{error:?}");
    wait_until("the refusal is counted", || {
        server.stats.unauthorized() == 1
    })
    .await;
    assert_nothing_received(&mut server.socket).await;

    let mut client = curve_client(&server.endpoint, server.keys.public_key, allowed).await;
    client.send(message(&[b"let in"])).await.unwrap();
    assert_eq!(frames(&recv(&mut server.socket).await)[1], b"let in");
    assert_eq!(server.stats.handshakes(), 1);
    assert_eq!(server.stats.unauthorized(), 1);
}

#[tokio::test]
async fn plaintext_peers_and_curve_peers_do_not_mix() {
    let mut server = curve_server(|_| true).await;
    let mut options = SocketOptions::default();
    options.connect_timeout(WAIT);
    let mut plain = DealerSocket::with_options(options);
    assert!(plain
        .connect(&server.endpoint)
        .await
        .unwrap_err()
        .is_mechanism_failure());
    wait_until("the NULL peer is counted", || {
        server.stats.handshake_failures() == 1
    })
    .await;
    assert_nothing_received(&mut server.socket).await;

    // And a CURVE client never talks to a plaintext server.
    let mut plain_server = RouterSocket::new();
    let endpoint = plain_server
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .to_string();
    let mut client = DealerSocket::with_options(client_options(
        server.keys.public_key,
        CurveKeyPair::generate(),
    ));
    assert!(client
        .connect(&endpoint)
        .await
        .unwrap_err()
        .is_mechanism_failure());
    assert_nothing_received(&mut plain_server).await;
}

/// What the relay does to the client's MESSAGE frames.
#[derive(Clone, Copy, PartialEq)]
enum Mangle {
    Nothing,
    /// Flip one bit in the last byte (ciphertext) of the first MESSAGE.
    FlipFirst,
    /// Send the first MESSAGE twice.
    ReplayFirst,
}

struct Relay {
    endpoint: String,
    /// Every byte that went through, both directions.
    wire: Arc<Mutex<Vec<u8>>>,
}

/// A one-connection TCP relay that parses the client's ZMTP frames so it can damage exactly
/// one MESSAGE.
async fn relay(target: &str, mangle: Mangle) -> Relay {
    let target = target.trim_start_matches("tcp://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let wire: Arc<Mutex<Vec<u8>>> = Arc::default();
    let tap = wire.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(target).await.unwrap();
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let down_tap = tap.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65536];
            while let Ok(n) = server_read.read(&mut buffer).await {
                if n == 0 || client_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
                down_tap.lock().extend_from_slice(&buffer[..n]);
            }
        });
        let mut greeting = [0u8; 64];
        if client_read.read_exact(&mut greeting).await.is_err() {
            return;
        }
        tap.lock().extend_from_slice(&greeting);
        let _ = server_write.write_all(&greeting).await;
        let mut mangled = false;
        loop {
            let mut flags = [0u8; 1];
            if client_read.read_exact(&mut flags).await.is_err() {
                break;
            }
            let mut frame = flags.to_vec();
            let len = if flags[0] & 0b10 != 0 {
                let mut len = [0u8; 8];
                client_read.read_exact(&mut len).await.unwrap();
                frame.extend_from_slice(&len);
                u64::from_be_bytes(len) as usize
            } else {
                let mut len = [0u8; 1];
                client_read.read_exact(&mut len).await.unwrap();
                frame.push(len[0]);
                len[0] as usize
            };
            let header = frame.len();
            frame.resize(header + len, 0);
            if client_read.read_exact(&mut frame[header..]).await.is_err() {
                break;
            }
            tap.lock().extend_from_slice(&frame);
            let is_message = frame[header..].starts_with(b"\x07MESSAGE");
            let mut copies = 1;
            if is_message && !mangled {
                mangled = true;
                match mangle {
                    Mangle::Nothing => {}
                    Mangle::FlipFirst => *frame.last_mut().unwrap() ^= 1,
                    Mangle::ReplayFirst => copies = 2,
                }
            }
            for _ in 0..copies {
                if server_write.write_all(&frame).await.is_err() {
                    return;
                }
            }
        }
    });
    Relay { endpoint, wire }
}

#[tokio::test]
async fn tampered_message_closes_only_that_connection() {
    let mut server = curve_server(|_| true).await;
    let relay = relay(&server.endpoint, Mangle::FlipFirst).await;
    let mut monitor = server.socket.monitor();
    let mut client = curve_client(
        &relay.endpoint,
        server.keys.public_key,
        CurveKeyPair::generate(),
    )
    .await;
    client.send(message(&[b"tampered"])).await.unwrap();

    receive_nothing_until_rejected(&mut server.socket, &server.stats).await;
    let disconnected = async {
        while let Some(event) = futures::StreamExt::next(&mut monitor).await {
            if let crate::SocketEvent::Disconnected(_) = event {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, disconnected)
        .await
        .expect("the tampered connection is dropped");

    // The socket goes on serving others.
    let mut other = curve_client(
        &server.endpoint,
        server.keys.public_key,
        CurveKeyPair::generate(),
    )
    .await;
    other.send(message(&[b"fine"])).await.unwrap();
    assert_eq!(frames(&recv(&mut server.socket).await)[1], b"fine");
}

#[tokio::test]
async fn replayed_message_is_refused() {
    let mut server = curve_server(|_| true).await;
    let relay = relay(&server.endpoint, Mangle::ReplayFirst).await;
    let mut client = curve_client(
        &relay.endpoint,
        server.keys.public_key,
        CurveKeyPair::generate(),
    )
    .await;
    client.send(message(&[b"once"])).await.unwrap();

    // The original arrives; its copy is refused and ends the connection.
    assert_eq!(frames(&recv(&mut server.socket).await)[1], b"once");
    receive_nothing_until_rejected(&mut server.socket, &server.stats).await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

async fn relayed_round_trip(curve: bool) -> Vec<u8> {
    let request = b"request-body-that-must-stay-secret";
    let reply = b"reply-body-that-must-stay-secret";
    let (mut server, client_options) = if curve {
        let server = curve_server(|_| true).await;
        let options = client_options(server.keys.public_key, CurveKeyPair::generate());
        (server.socket, options)
    } else {
        let mut socket = RouterSocket::new();
        socket.bind("tcp://127.0.0.1:0").await.unwrap();
        (socket, SocketOptions::default())
    };
    let endpoint = server.binds().keys().next().unwrap().to_string();
    let relay = relay(&endpoint, Mangle::Nothing).await;
    let mut client = DealerSocket::with_options(client_options);
    client.connect(&relay.endpoint).await.unwrap();
    client.send(message(&[request])).await.unwrap();
    let received = recv(&mut server).await;
    assert_eq!(frames(&received)[1], request);
    server
        .send(message(&[&received.get(0).unwrap()[..], reply]))
        .await
        .unwrap();
    assert_eq!(frames(&recv(&mut client).await)[0], reply);
    let wire = relay.wire.lock().clone();
    wire
}

#[tokio::test]
async fn no_plaintext_body_crosses_the_wire() {
    // Without CURVE the relay does see the bodies, so the search below can find them.
    let plain = relayed_round_trip(false).await;
    assert!(contains(&plain, b"request-body-that-must-stay-secret"));
    assert!(contains(&plain, b"reply-body-that-must-stay-secret"));

    let wire = relayed_round_trip(true).await;
    assert!(contains(&wire, b"\x07MESSAGE"));
    assert!(!contains(&wire, b"must-stay-secret"));
    assert!(!contains(&wire, b"Socket-Type"));
}

#[test]
fn keys_read_and_write_z85() {
    let pair = CurveKeyPair::generate();
    let public = pair.public_key.to_z85();
    assert_eq!(public.len(), 40);
    assert_eq!(CurvePublicKey::from_z85(&public).unwrap(), pair.public_key);
    let secret = pair.secret_key.to_z85();
    let again = CurveSecretKey::from_z85(&secret).unwrap();
    assert_eq!(again.public_key(), pair.public_key);
    assert_eq!(format!("{:?}", pair.secret_key), "CurveSecretKey(..)");

    assert!(CurvePublicKey::from_z85(&public[..35]).is_err());
    assert!(CurvePublicKey::from_z85(&format!("{public}12345")).is_err());
    assert!(CurvePublicKey::from_z85(&public.replace(&public[..1], "\"")).is_err());
}

/// Opens a TCP connection that greets as a CURVE client and then does what a test says.
async fn raw_curve_peer(endpoint: &str) -> TcpStream {
    let mut stream = TcpStream::connect(endpoint.trim_start_matches("tcp://"))
        .await
        .unwrap();
    let greeting = crate::codec::ZmqGreeting {
        mechanism: crate::codec::mechanism::ZmqMechanism::CURVE,
        ..Default::default()
    };
    stream.write_all(&BytesMut::from(greeting)).await.unwrap();
    let mut theirs = [0u8; 64];
    stream.read_exact(&mut theirs).await.unwrap();
    assert_eq!(&theirs[12..17], b"CURVE");
    assert_eq!(theirs[32], 1, "the server side sets as-server");
    stream
}

async fn assert_closed_by_peer(stream: &mut TcpStream) {
    let mut sink = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept a misbehaving connection open"),
        }
    }
}

fn command_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend_from_slice(body);
    frame
}

fn hello(version: [u8; 2], len: usize) -> Vec<u8> {
    let mut body = b"\x05HELLO".to_vec();
    body.extend_from_slice(&version);
    body.resize(len, 0);
    command_frame(&body)
}

#[tokio::test]
async fn malformed_handshakes_close_only_their_connection() {
    let mut server = curve_server(|_| true).await;
    let mut welcome = b"\x07WELCOME".to_vec();
    welcome.resize(168, 0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a message frame before HELLO",
            vec![0x00, 5, b'h', b'e', b'l', b'l', b'o'],
        ),
        ("an empty command", vec![0x04, 0]),
        (
            "a command name longer than its frame",
            vec![0x04, 2, 9, b'H'],
        ),
        ("WELCOME sent to a server", command_frame(&welcome)),
        ("a HELLO one byte short", hello([1, 0], 199)),
        ("a HELLO of CurveZMQ 2.0", hello([2, 0], 200)),
        ("a HELLO whose box does not open", hello([1, 0], 200)),
    ];
    for (i, (case, bytes)) in cases.iter().enumerate() {
        let mut stream = raw_curve_peer(&server.endpoint).await;
        stream.write_all(bytes).await.unwrap();
        assert_closed_by_peer(&mut stream).await;
        let failures = i as u64 + 1;
        wait_until(case, || server.stats.handshake_failures() == failures).await;
    }

    let mut client = curve_client(
        &server.endpoint,
        server.keys.public_key,
        CurveKeyPair::generate(),
    )
    .await;
    client.send(message(&[b"still served"])).await.unwrap();
    assert_eq!(frames(&recv(&mut server.socket).await)[1], b"still served");
    assert!(server.seen.lock().len() == 1);
}

#[tokio::test]
async fn a_subscriber_reconnects_through_the_curve_handshake() {
    let keys = CurveKeyPair::generate();
    let publisher = |keys: &CurveKeyPair| {
        let mut options = SocketOptions::default();
        options.curve_server(keys.secret_key.clone());
        let stats = options.curve_stats();
        (crate::PubSocket::with_options(options), stats)
    };
    let (mut first, _) = publisher(&keys);
    let endpoint = first.bind("tcp://127.0.0.1:0").await.unwrap().to_string();

    let mut subscriber =
        crate::SubSocket::with_options(client_options(keys.public_key, CurveKeyPair::generate()));
    subscriber.connect(&endpoint).await.unwrap();
    subscriber.subscribe("").await.unwrap();

    // A PUB drops what it sends before the subscription reaches it: publish until heard.
    async fn publish_until_heard(
        publisher: &mut crate::PubSocket,
        subscriber: &mut crate::SubSocket,
        body: &[u8],
    ) {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "the subscriber never heard");
            publisher.send(message(&[body])).await.unwrap();
            if let Ok(heard) =
                tokio::time::timeout(Duration::from_millis(50), subscriber.recv()).await
            {
                assert_eq!(frames(&heard.unwrap())[0], body);
                return;
            }
        }
    }
    publish_until_heard(&mut first, &mut subscriber, b"before").await;

    // The publisher goes away and a new one takes its port, with the same key.
    first.close().await;
    let (mut second, stats) = publisher(&keys);
    let deadline = Instant::now() + WAIT;
    while let Err(error) = second.bind(&endpoint).await {
        assert!(Instant::now() < deadline, "port not free again: {error}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publish_until_heard(&mut second, &mut subscriber, b"after").await;
    assert!(stats.handshakes() >= 1);
    assert_eq!(stats.handshake_failures(), 0);
}
