//! Misbehaving peers against a ROUTER, over real loopback TCP and Unix sockets. The peers
//! speak ZMTP by hand (`raw`), so each can stop reading, stall or lie exactly where a test
//! needs it to. Every wait is bounded.

mod raw;

use raw::{RawPeer, PROMPT};
use std::time::Duration;
use zeromq::prelude::*;
use zeromq::util::PeerIdentity;
use zeromq::{RouterSocket, SocketEvent, SocketOptions, TrySendError, ZmqMessage};

const BOUND: Duration = Duration::from_secs(20);

fn routed(identity: &str, body: &[u8]) -> ZmqMessage {
    let mut m = ZmqMessage::from(body.to_vec());
    m.push_front(identity.as_bytes().to_vec().into());
    m
}

async fn bound_router(router: &mut RouterSocket) -> String {
    router
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind")
        .to_string()
}

/// A peer that never reads its replies must not hold up replies to anyone else: the
/// ROUTER's sends to it come back at once (refused) rather than wait for its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_only_hurts_itself() {
    let mut router = RouterSocket::new();
    let endpoint = bound_router(&mut router).await;
    let mut stuck = RawPeer::connect(&endpoint, Some(b"stuck")).await;
    stuck.send(&[b"hi"]).await;
    let mut honest = RawPeer::connect(&endpoint, Some(b"honest")).await;
    honest.send(&[b"hello"]).await;
    for _ in 0..2 {
        tokio::time::timeout(PROMPT, router.recv())
            .await
            .expect("both peers heard")
            .expect("recv");
    }

    let body = vec![7u8; 256];
    let flood = async {
        let mut refused = 0u64;
        for _ in 0..400_000u32 {
            if router.send(routed("stuck", &body)).await.is_err() {
                refused += 1;
            }
        }
        refused
    };
    let refused = tokio::time::timeout(BOUND, flood)
        .await
        .expect("sends to a peer that does not read never wait on it");
    assert!(refused > 0, "the stuck peer's queue is bounded");

    tokio::time::timeout(PROMPT, router.send(routed("honest", b"reply")))
        .await
        .expect("send to the honest peer is not held up")
        .expect("honest peer is reachable");
    let got = honest.recv_message(PROMPT).await.expect("honest reply");
    assert_eq!(got, vec![b"reply".to_vec()]);
}

fn router_with(configure: impl FnOnce(&mut SocketOptions)) -> RouterSocket {
    let mut options = SocketOptions::default();
    configure(&mut options);
    RouterSocket::with_options(options)
}

/// Connects a peer that greets and then reads nothing, and waits until the ROUTER knows it.
async fn stuck_peer(router: &mut RouterSocket, endpoint: &str, id: &[u8]) -> RawPeer {
    let mut peer = RawPeer::connect(endpoint, Some(id)).await;
    peer.send(&[b"hi"]).await;
    let m = tokio::time::timeout(PROMPT, router.recv())
        .await
        .expect("peer heard")
        .expect("recv");
    assert_eq!(m.get(0).unwrap().as_ref(), id);
    peer
}

/// Sends to `id` until its queue refuses; returns the refused message.
fn fill(router: &RouterSocket, id: &PeerIdentity, body: &[u8]) -> ZmqMessage {
    for _ in 0..10_000_000u32 {
        match router.try_send_to(id, ZmqMessage::from(body.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => return m,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    panic!("the queue never filled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_bound_in_messages_refuses_at_once_and_gives_the_message_back() {
    let mut router = router_with(|o| {
        o.peer_send_high_water_mark(10, 1 << 30);
    });
    let endpoint = bound_router(&mut router).await;
    let _stuck = stuck_peer(&mut router, &endpoint, b"stuck").await;
    let id: PeerIdentity = "stuck".parse().unwrap();
    let refused = fill(&router, &id, &[9u8; 100]);
    assert_eq!(refused.get(0).unwrap().as_ref(), &[9u8; 100][..]);
    let queued = router.peer_queued(&id).expect("connected");
    assert!(queued.messages <= 10, "{queued:?}");
    assert!(router.queued().messages <= 10);
    // Refused again while it stays full, and the message still comes back.
    match router.try_send_to(&id, ZmqMessage::from(b"again".to_vec())) {
        Err(TrySendError::Full(m)) => assert_eq!(m.get(0).unwrap().as_ref(), b"again"),
        other => panic!("expected Full, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_bound_in_bytes_refuses_before_the_message_bound() {
    const BYTES: usize = 64 * 1024;
    let mut router = router_with(|o| {
        o.peer_send_high_water_mark(1_000_000, BYTES);
    });
    let endpoint = bound_router(&mut router).await;
    let _stuck = stuck_peer(&mut router, &endpoint, b"stuck").await;
    let id: PeerIdentity = "stuck".parse().unwrap();
    fill(&router, &id, &[1u8; 16 * 1024]);
    let queued = router.peer_queued(&id).expect("connected");
    assert!(queued.bytes <= BYTES, "{queued:?}");
    assert!(queued.messages <= BYTES / (16 * 1024), "{queued:?}");
    assert!(router.queued().bytes <= BYTES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_an_unknown_peer_comes_back_at_once() {
    let mut router = RouterSocket::new();
    let _ = bound_router(&mut router).await;
    let id: PeerIdentity = "nobody".parse().unwrap();
    match router.try_send_to(&id, ZmqMessage::from(b"x".to_vec())) {
        Err(TrySendError::UnknownPeer(m)) => assert_eq!(m.get(0).unwrap().as_ref(), b"x"),
        other => panic!("expected UnknownPeer, got {other:?}"),
    }
    match router.try_send(routed("nobody", b"y")) {
        Err(TrySendError::UnknownPeer(_)) => {}
        other => panic!("expected UnknownPeer, got {other:?}"),
    }
    match router.try_send(ZmqMessage::from(b"no id".to_vec())) {
        Err(TrySendError::NotRoutable(_)) => {}
        other => panic!("expected NotRoutable, got {other:?}"),
    }
    assert!(router.peer_queued(&id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_full_past_the_grace_is_dropped_and_its_queue_released() {
    let mut router = router_with(|o| {
        o.peer_send_high_water_mark(100, 1 << 30);
        o.drop_full_peer_after(Duration::from_millis(200));
    });
    let mut monitor = router.monitor();
    let endpoint = bound_router(&mut router).await;
    let stuck = stuck_peer(&mut router, &endpoint, b"stuck").await;
    let mut honest = stuck_peer(&mut router, &endpoint, b"honest").await;
    let id: PeerIdentity = "stuck".parse().unwrap();
    // The grace runs from the first refused send, which `fill` makes, so the clock that
    // checks it starts before.
    let started = std::time::Instant::now();
    fill(&router, &id, &[5u8; 64 * 1024]);
    assert_eq!(router.peer_count(), 2);
    // Keep offering it messages, as a server would; the kernel's buffers take some more
    // before the queue stays full for the whole grace.
    let dropped = loop {
        assert!(started.elapsed() < BOUND, "the full peer was never dropped");
        match router.try_send_to(&id, ZmqMessage::from(vec![6u8; 64 * 1024])) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(TrySendError::PeerDropped(m)) => break m,
            Err(e) => panic!("unexpected {e}"),
        }
    };
    assert_eq!(dropped.get(0).unwrap().len(), 64 * 1024);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "not dropped before the grace"
    );
    assert_eq!(router.peer_count(), 1);
    assert!(router.peer_queued(&id).is_none());
    // Its connection is closed (after whatever was already in the kernel's buffers).
    assert!(
        stuck.read_to_end(BOUND).await.is_some(),
        "stuck peer closed"
    );
    let gone = async {
        loop {
            if let Some(SocketEvent::Disconnected(p)) = monitor.next().await {
                return p;
            }
        }
    };
    assert_eq!(tokio::time::timeout(PROMPT, gone).await.unwrap(), id);
    let released = async {
        while router.queued().messages != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PROMPT, released)
        .await
        .expect("the dropped peer's queue is released");
    // The other peer is untouched.
    router
        .try_send(routed("honest", b"fine"))
        .expect("honest send");
    assert_eq!(
        honest.recv_message(PROMPT).await.unwrap(),
        vec![b"fine".to_vec()]
    );
}

/// A control reply (an ack, a pong) sent through the urgent lane goes out before the data
/// already queued for the same peer, and is accepted while that queue is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_reply_overtakes_data_queued_for_the_same_peer() {
    const BODY: usize = 16 * 1024;
    let mut router = router_with(|o| {
        o.peer_send_high_water_mark(10, 1 << 30);
    });
    let endpoint = bound_router(&mut router).await;
    let mut slow = stuck_peer(&mut router, &endpoint, b"slow").await;
    let id: PeerIdentity = "slow".parse().unwrap();
    // Fill the kernel's buffers and the queue, until the queue stays full: the peer's
    // writer is then parked on the socket.
    let mut sent = 0u64;
    let mut unchanged_since = std::time::Instant::now();
    let mut last = None;
    while unchanged_since.elapsed() < Duration::from_millis(300) {
        let mut body = vec![0u8; BODY];
        body[..8].copy_from_slice(&sent.to_be_bytes());
        match router.try_send_to(&id, ZmqMessage::from(body)) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("unexpected {e}"),
        }
        let now = (sent, router.peer_queued(&id).unwrap().messages);
        if last != Some(now) {
            last = Some(now);
            unchanged_since = std::time::Instant::now();
        }
    }
    let waiting = router.peer_queued(&id).unwrap().messages as u64;
    assert_eq!(waiting, 10, "the queue is full");
    assert!(matches!(
        router.try_send_to(&id, ZmqMessage::from(b"data".to_vec())),
        Err(TrySendError::Full(_))
    ));
    router
        .try_send_urgent(routed("slow", b"pong"))
        .expect("the urgent lane takes it while the queue is full");
    // Now the peer reads: the pong comes before every message that was still queued.
    let first_queued = sent - waiting;
    let mut seen = 0u64;
    loop {
        let m = slow.recv_message(BOUND).await.expect("a message");
        if m[0] == b"pong" {
            break;
        }
        let seq = u64::from_be_bytes(m[0][..8].try_into().unwrap());
        assert!(seq < first_queued, "data {seq} went before the pong");
        seen += 1;
    }
    assert_eq!(
        seen, first_queued,
        "everything before was delivered in order"
    );
    for seq in first_queued..sent {
        let m = slow.recv_message(BOUND).await.expect("queued data follows");
        assert_eq!(u64::from_be_bytes(m[0][..8].try_into().unwrap()), seq);
    }
}

/// The ROUTER's engine runs on one thread here. Before, a send waiting on the stuck peer's
/// full queue held the peer map's entry (and its shard), and the disconnect of any peer in
/// that shard then took the lock synchronously on the same thread: the runtime never ran
/// again, for any peer.
#[test]
fn peers_leaving_while_a_stuck_peer_is_flooded_do_not_wedge_the_socket() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut router = RouterSocket::new();
            let endpoint = bound_router(&mut router).await;
            let addr = endpoint.trim_start_matches("tcp://").to_string();
            // The peers live on their own thread so that they can act while this runtime
            // is busy (or wedged).
            let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let stuck = raw::blocking_peer(&addr, b"stuck");
                let leavers: Vec<_> = (0..8)
                    .map(|i| raw::blocking_peer(&addr, format!("leaver-{i}").as_bytes()))
                    .collect();
                ready_tx.send(()).unwrap();
                let _ = leave_rx.recv();
                drop(leavers);
                let _ = leave_rx.recv();
                drop(stuck);
            });
            ready_rx.await.unwrap();
            for _ in 0..9 {
                tokio::time::timeout(PROMPT, router.recv())
                    .await
                    .expect("peer heard")
                    .expect("recv");
            }
            let (mut send, mut recv) = router.split();
            let body = vec![1u8; 256];
            let flood = tokio::spawn(async move {
                for _ in 0..400_000u32 {
                    let _ = send.send(routed("stuck", &body)).await;
                }
                send
            });
            // Let the flood fill the stuck peer's queue, then have the others go.
            tokio::time::sleep(Duration::from_millis(500)).await;
            leave_tx.send(()).unwrap();
            let mut honest = RawPeer::connect(&endpoint, Some(b"honest")).await;
            honest.send(&[b"ping"]).await;
            let read = async {
                loop {
                    let m = recv.recv().await.expect("recv");
                    if m.get(0).unwrap().as_ref() == b"honest" {
                        return m;
                    }
                }
            };
            let m = tokio::time::timeout(BOUND, read)
                .await
                .expect("the honest peer is read");
            assert_eq!(m.get(1).unwrap().as_ref(), b"ping");
            let mut send = tokio::time::timeout(BOUND, flood)
                .await
                .expect("the flood ends")
                .unwrap();
            send.send(routed("honest", b"pong")).await.expect("reply");
            let got = honest.recv_message(PROMPT).await.expect("pong");
            assert_eq!(got, vec![b"pong".to_vec()]);
            let _ = leave_tx.send(());
        });
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(BOUND * 2)
        .expect("the socket's runtime kept running");
}

/// libzmq's ROUTER (ZMQ_ROUTER_HANDOVER off) ignores a second connection that announces
/// a routing id already in use: the first peer keeps its id and all its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_a_taken_routing_id_is_refused() {
    let mut router = RouterSocket::new();
    let endpoint = bound_router(&mut router).await;
    let mut victim = RawPeer::connect(&endpoint, Some(b"dup")).await;
    victim.send(&[b"victim"]).await;
    let m = tokio::time::timeout(PROMPT, router.recv())
        .await
        .expect("victim heard")
        .expect("recv");
    assert_eq!(m.get(0).unwrap().as_ref(), b"dup");

    let mut thief = RawPeer::connect(&endpoint, Some(b"dup")).await;
    thief.send_nowait(&[b"thief"]).await;
    // Whatever becomes of the thief, everything addressed to "dup" goes to the victim.
    let thief_end = thief.read_to_end(PROMPT);
    for i in 0..10u8 {
        router.send(routed("dup", &[i])).await.expect("send");
    }
    for i in 0..10u8 {
        let got = victim
            .recv_message(PROMPT)
            .await
            .expect("victim keeps its messages");
        assert_eq!(got, vec![vec![i]]);
    }
    let thief_got = thief_end.await;
    assert_eq!(
        thief_got,
        Some(0),
        "the thief's connection is closed without a message"
    );
    victim.send(&[b"still here"]).await;
    let m = tokio::time::timeout(PROMPT, router.recv())
        .await
        .expect("victim still heard")
        .expect("recv");
    assert_eq!(m.get(1).unwrap().as_ref(), b"still here");
}

/// The same with libzmq's own DEALERs (pyzmq): the thief keeps retrying (libzmq
/// reconnects), and the victim still gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libzmq_dealer_with_a_taken_routing_id_gets_nothing() {
    use tokio::io::AsyncBufReadExt;
    let mut router = RouterSocket::new();
    let endpoint = bound_router(&mut router).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../__test__/peers/pyzmq_same_routing_id.py");
    let mut child =
        tokio::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(&script)
            .arg(&endpoint)
            .arg("dup")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with pyzmq (python3 -m pip install pyzmq==27.3.0)");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let m = tokio::time::timeout(PROMPT, router.recv())
        .await
        .expect("victim heard")
        .expect("recv");
    assert_eq!(m.get(0).unwrap().as_ref(), b"dup");
    assert_eq!(m.get(1).unwrap().as_ref(), b"victim");
    router.send(routed("dup", b"go")).await.expect("send");
    let thief = tokio::time::timeout(BOUND, lines.next_line())
        .await
        .expect("thief connected")
        .unwrap();
    assert_eq!(thief.as_deref(), Some("THIEF"));
    for i in 0..20u8 {
        router.send(routed("dup", &[b'm', i])).await.expect("send");
    }
    router.send(routed("dup", b"end")).await.expect("send");
    let counts = tokio::time::timeout(BOUND, lines.next_line())
        .await
        .expect("counts")
        .unwrap()
        .expect("a line of counts");
    assert_eq!(counts, r#"{"victim": 20, "thief": 0}"#);
    // Nothing the thief sent was taken as the victim's.
    if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), router.recv()).await {
        assert_ne!(m.get(1).unwrap().as_ref(), b"thief");
    }
    let _ = child.wait().await;
}

/// Thousands of peers that connect, send one message and leave: the owner sees every one
/// of them go, even when it reads its monitor late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_disconnect_reaches_the_monitor() {
    const PEERS: usize = 3_000;
    let dir = tempdir();
    let path = dir.path().join("ghosts.sock");
    let endpoint = format!("ipc://{}", path.display());
    let mut router = RouterSocket::new();
    let mut monitor = router.monitor();
    router.bind(&endpoint).await.expect("bind");
    let clients = tokio::spawn({
        let endpoint = endpoint.clone();
        async move {
            for i in 0..PEERS {
                let id = format!("ghost-{i}");
                let mut peer = RawPeer::connect(&endpoint, Some(id.as_bytes())).await;
                peer.send(&[b"boo"]).await;
                peer.close().await;
            }
        }
    });
    let mut seen = std::collections::HashSet::new();
    let read = async {
        while seen.len() < PEERS {
            let m = router.recv().await.expect("recv");
            seen.insert(m.get(0).unwrap().clone());
        }
    };
    tokio::time::timeout(BOUND * 3, read)
        .await
        .expect("every ghost's message");
    clients.await.unwrap();
    // Keep reading (the socket notices closed connections as it reads) without looking at
    // the monitor for a while, as a busy owner would.
    let (_send, mut recv) = router.split();
    let reader = tokio::spawn(async move {
        loop {
            if recv.recv().await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut gone = std::collections::HashSet::new();
    let drain = async {
        while gone.len() < PEERS {
            match monitor.next().await {
                Some(SocketEvent::Disconnected(id)) => {
                    gone.insert(id);
                }
                Some(_) => {}
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(BOUND, drain).await;
    reader.abort();
    assert_eq!(gone.len(), PEERS, "disconnects seen by the owner");
}

/// libzmq's ZMQ_HANDSHAKE_IVL: a connection that sends part of a greeting and stalls is
/// closed once the handshake timeout passes; meanwhile other peers connect as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_after_the_timeout() {
    let dir = tempdir();
    let ipc = format!("ipc://{}", dir.path().join("stall.sock").display());
    let mut router = router_with(|o| {
        o.handshake_timeout(Duration::from_millis(300));
    });
    let tcp = bound_router(&mut router).await;
    router.bind(&ipc).await.expect("bind ipc");
    let mut stalled = Vec::new();
    for endpoint in [&tcp, &ipc] {
        for _ in 0..10 {
            let mut io = RawPeer::open(endpoint).await;
            io.write_all(&raw::greeting()[..10]).await.unwrap();
            stalled.push(io);
        }
    }
    // The accept loop is not held by them.
    for (endpoint, id) in [(&tcp, b"prompt-tcp"), (&ipc, b"prompt-ipc")] {
        let mut peer = RawPeer::connect(endpoint, Some(id)).await;
        peer.send(&[b"here"]).await;
        let m = tokio::time::timeout(PROMPT, router.recv())
            .await
            .expect("a full peer is heard while others stall")
            .expect("recv");
        assert_eq!(m.get(1).unwrap().as_ref(), b"here");
        peer.close().await;
    }
    for mut io in stalled {
        let closed = async {
            let mut buf = [0u8; 128];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(BOUND, closed)
            .await
            .expect("the stalled connection is closed");
    }
}

const EMFILE_CHILD: &str = "ZEROMQ_TEST_EMFILE_CHILD";

/// At the descriptor limit accept fails (EMFILE) while the listener stays readable: the
/// accept loop must pause rather than retry at once (it spun a core at 100 %), and accept
/// again once descriptors are freed. The ROUTER runs in a child process (this test binary
/// again) whose RLIMIT_NOFILE is lowered; this process holds connections open to it.
#[test]
fn accept_errors_back_off_and_recover_when_descriptors_free_up() {
    use std::io::BufRead;
    if std::env::var_os(EMFILE_CHILD).is_some() {
        return emfile_child();
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "accept_errors_back_off_and_recover_when_descriptors_free_up",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EMFILE_CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect_line = |prefix: &str| -> String {
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                // The harness may print its "test … " on the same line first.
                Ok(line) if line.contains(prefix) => {
                    return line[line.find(prefix).unwrap()..].to_string()
                }
                Ok(_) => {}
                Err(_) => panic!("child never printed {prefix}"),
            }
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let port = expect_line("PORT ");
        let addr = format!("127.0.0.1:{}", port.trim_start_matches("PORT "));
        // More connections than the child has descriptors left; they send nothing, so
        // those accepted sit in their handshake.
        let held: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
            .collect();
        let window = expect_line("WINDOW ");
        let fields: Vec<u64> = window
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect();
        let (errors, cpu_ms, window_ms) = (fields[0], fields[1], fields[2]);
        eprintln!("at the descriptor limit: {window} (failed accepts, CPU ms, window ms)");
        assert!(errors > 0, "the child reached its descriptor limit");
        // Paused accepts fail a few times a second; spinning, they failed many thousand times.
        assert!(
            errors < 50,
            "{errors} failed accepts in {window_ms} ms: the accept loop does not back off"
        );
        assert!(
            cpu_ms * 4 < window_ms,
            "{cpu_ms} ms of CPU in {window_ms} ms at the descriptor limit"
        );
        drop(held);
        let _back = raw::blocking_peer(&addr, b"back");
        expect_line("RECOVERED");
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn emfile_child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut router = RouterSocket::new();
        let mut monitor = router.monitor();
        let endpoint = bound_router(&mut router).await;
        // Room for a handful of connections from here on.
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let limit = libc::rlimit {
            rlim_cur: open + 8,
            rlim_max: open + 8,
        };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        println!("PORT {}", endpoint.rsplit(':').next().unwrap());
        let failed = async {
            loop {
                if let Some(SocketEvent::AcceptFailed(_)) = monitor.next().await {
                    return;
                }
            }
        };
        tokio::time::timeout(BOUND, failed)
            .await
            .expect("accept failed at the limit");
        let window = Duration::from_millis(1500);
        let cpu_before = cpu_time();
        let started = std::time::Instant::now();
        let mut errors = 0u64;
        let count = async {
            loop {
                if let Some(SocketEvent::AcceptFailed(_)) = monitor.next().await {
                    errors += 1;
                }
            }
        };
        let _ = tokio::time::timeout(window, count).await;
        let elapsed = started.elapsed().as_millis();
        let cpu = cpu_time() - cpu_before;
        println!("WINDOW {errors} {} {elapsed}", cpu.as_millis());
        let back = async {
            loop {
                let m = router.recv().await.expect("recv");
                if m.get(0).unwrap().as_ref() == b"back" {
                    return;
                }
            }
        };
        tokio::time::timeout(BOUND, back)
            .await
            .expect("accepting again once descriptors are free");
        println!("RECOVERED");
    });
}

fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) },
        0
    );
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A directory of its own, removed when the guard drops.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("zeromq-hostile-")
        .tempdir()
        .unwrap()
}

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
