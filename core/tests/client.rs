//! The client engine against a real ROUTER (the zeromq crate's) on real ipc sockets.

mod common;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use zeromq::{RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};
use zerowire_core::client::DropReason;
use zerowire_core::Queued;
use zerowire_core::Staging;
use zerowire_core::{Client, ClientEvent, ClientOptions, Error, Waker};

struct ChannelWaker(Sender<()>);
impl Waker for ChannelWaker {
    fn wake(&self) {
        let _ = self.0.send(());
    }
}

struct Harness {
    client: Arc<Client>,
    woken: Receiver<()>,
    staging: RefCell<Staging<zerowire_core::client::ClientOut>>,
}

impl Harness {
    fn new(endpoint: &str, options: ClientOptions) -> Harness {
        let (tx, woken) = crossbeam_channel::unbounded();
        let client = Client::connect(endpoint, options, Box::new(ChannelWaker(tx))).unwrap();
        Harness {
            client: Arc::new(client),
            woken,
            staging: RefCell::new(Staging::default()),
        }
    }

    /// Stages a message without handing it over (as within one JS tick).
    fn stage(&self, body: Bytes) -> Result<Queued, Error> {
        self.client.send(&mut self.staging.borrow_mut(), body)
    }

    fn flush(&self) {
        self.client.flush(&mut self.staging.borrow_mut());
    }

    fn send(&self, body: Bytes) -> Result<Queued, Error> {
        let r = self.stage(body);
        self.flush();
        r
    }

    fn request(&self, id: u32, body: Bytes, timeout: Option<Duration>) -> Result<Queued, Error> {
        let r = self
            .client
            .request(&mut self.staging.borrow_mut(), id, body, timeout);
        self.flush();
        r
    }

    fn cancel(&self, id: u32) {
        self.client.cancel(&mut self.staging.borrow_mut(), id);
    }

    fn close(&self) -> bool {
        self.client.close(&mut self.staging.borrow_mut())
    }

    fn shutdown(&self, linger: Duration, wait: Duration) -> bool {
        self.client
            .shutdown(&mut self.staging.borrow_mut(), linger, wait)
    }

    /// Collects events until `n` have arrived or `within` passes.
    fn events(&self, n: usize, within: Duration) -> Vec<ClientEvent> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            if self.woken.recv_timeout(left).is_err() {
                break;
            }
            got.extend(self.client.take_events());
        }
        got
    }
}

fn tmp_endpoint(name: &str) -> (String, tempfile::TempDir) {
    common::ipc_endpoint(&format!("zw-core-{name}"))
}

/// A ROUTER on its own thread and runtime. It records fire-and-forget bodies and answers each
/// request with `reply(body)`; `None` means "do not answer".
struct Router {
    received: Receiver<Vec<Bytes>>,
    stop: Sender<()>,
}

fn router(endpoint: &str, delay_replies: Duration) -> Router {
    router_paused(endpoint, delay_replies, Duration::ZERO)
}

/// Like `router`, but it reads nothing for `pause` after binding, so the client's queues fill.
fn router_paused(endpoint: &str, delay_replies: Duration, pause: Duration) -> Router {
    let (rec_tx, received) = crossbeam_channel::unbounded();
    let (stop, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let endpoint = endpoint.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut socket = RouterSocket::new();
            socket.bind(&endpoint).await.unwrap();
            ready_tx.send(()).unwrap();
            tokio::time::sleep(pause).await;
            let mut delayed: Vec<ZmqMessage> = Vec::new();
            // Replies to "hold" go out 300 ms later.
            let mut held: Vec<(Instant, ZmqMessage)> = Vec::new();
            loop {
                if stop_rx.try_recv().is_ok() {
                    break;
                }
                let msg = tokio::select! {
                    m = socket.recv() => m,
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {
                        for m in delayed.drain(..).rev() { socket.send(m).await.unwrap(); }
                        let now = Instant::now();
                        while let Some(i) = held.iter().position(|(due, _)| *due <= now) {
                            socket.send(held.remove(i).1).await.unwrap();
                        }
                        continue;
                    }
                };
                let Ok(msg) = msg else { break };
                let frames = msg.into_vec();
                // Control requests (hello, goodbye) are answered like any request, as a plain
                // ROUTER would, but not recorded: the tests look at application traffic.
                let control = frames.get(1).is_some_and(|c| c.first() == Some(&0));
                if !control {
                    rec_tx.send(frames.clone()).unwrap();
                }
                let (id, corr, body) = (&frames[0], &frames[1], &frames[2]);
                if corr.is_empty() || body.as_ref() == b"no-answer" {
                    continue;
                }
                let mut reply = ZmqMessage::from(id.clone());
                reply.push_back(corr.clone());
                let mut answer = b"re:".to_vec();
                answer.extend_from_slice(body);
                reply.push_back(Bytes::from(answer));
                if body.as_ref() == b"fail" {
                    reply.push_back(Bytes::from_static(b"E"));
                }
                if body.as_ref() == b"hold" {
                    held.push((Instant::now() + Duration::from_millis(300), reply));
                } else if delay_replies.is_zero() {
                    socket.send(reply).await.unwrap();
                } else {
                    // Held back and released in reverse order: replies come out of order.
                    delayed.push(reply);
                }
            }
        });
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    Router { received, stop }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

fn body(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn fire_and_forget_keeps_order() {
    let (ep, _dir) = tmp_endpoint("order");
    let r = router(&ep, Duration::ZERO);
    let h = Harness::new(&ep, ClientOptions::default());
    for i in 0..5000 {
        assert_eq!(h.stage(body(&i.to_string())).unwrap(), Queued::Yes);
    }
    h.flush();
    for i in 0..5000 {
        let frames = r.received.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(frames.len(), 3);
        assert!(frames[1].is_empty(), "fire-and-forget has an empty corr");
        assert_eq!(frames[2], body(&i.to_string()));
    }
    assert_eq!(h.client.stats().sent, 5000);
}

#[test]
fn requests_are_correlated_out_of_order_and_errors_flagged() {
    let (ep, _dir) = tmp_endpoint("req");
    let _r = router(&ep, Duration::from_millis(1));
    let h = Harness::new(&ep, ClientOptions::default());
    for id in 1..=200u32 {
        let text = if id == 7 {
            "fail".to_string()
        } else {
            format!("q{id}")
        };
        h.request(id, body(&text), None).unwrap();
    }
    let events = h.events(200, Duration::from_secs(10));
    assert_eq!(events.len(), 200);
    let mut seen = std::collections::HashSet::new();
    let mut in_order = true;
    let mut last = 0;
    for e in events {
        match e {
            ClientEvent::Reply { id, body: b } => {
                assert_eq!(b, body(&format!("re:q{id}")));
                in_order &= id > last;
                last = id;
                assert!(seen.insert(id));
            }
            ClientEvent::ErrorReply { id, message } => {
                assert_eq!(id, 7);
                assert_eq!(message, body("re:fail"));
                assert!(seen.insert(id));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        !in_order,
        "the router answered out of order, so must the events be"
    );
    assert_eq!(h.client.stats().replies, 199);
    assert_eq!(h.client.stats().error_replies, 1);
}

#[test]
fn timeout_then_late_reply_is_counted() {
    let (ep, _dir) = tmp_endpoint("late");
    let r = router(&ep, Duration::ZERO);
    let h = Harness::new(&ep, ClientOptions::default());
    // Unanswered: times out. The clock starts before the request: the engine may take it
    // (and start its timeout) before this thread runs again.
    let t0 = Instant::now();
    h.request(1, body("no-answer"), Some(Duration::from_millis(50)))
        .unwrap();
    let ev = h.events(1, Duration::from_secs(5));
    assert_eq!(ev, vec![ClientEvent::Timeout { id: 1 }]);
    assert!(t0.elapsed() >= Duration::from_millis(45));
    assert_eq!(h.client.stats().timeouts, 1);
    // A reply that arrives after its request timed out: the router holds it for 300 ms, and
    // the request gives up after 100.
    h.request(2, body("hold"), Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(
        h.events(1, Duration::from_secs(5)),
        vec![ClientEvent::Timeout { id: 2 }]
    );
    let end = Instant::now() + Duration::from_secs(5);
    while h.client.stats().late_replies == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(r);
    let s = h.client.stats();
    assert_eq!((s.timeouts, s.late_replies, s.replies), (2, 1, 0));
}

#[test]
fn queues_until_the_server_appears() {
    let (ep, _dir) = tmp_endpoint("later");
    let h = Harness::new(&ep, ClientOptions::default());
    for i in 0..100 {
        h.send(body(&format!("m{i}"))).unwrap();
    }
    h.request(9, body("late-server"), None).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(h.client.stats().queued, 101);
    let r = router(&ep, Duration::ZERO);
    for i in 0..100 {
        let f = r.received.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(f[2], body(&format!("m{i}")));
    }
    let ev = h.events(1, Duration::from_secs(5));
    assert_eq!(
        ev,
        vec![ClientEvent::Reply {
            id: 9,
            body: body("re:late-server")
        }]
    );
    assert_eq!(h.client.stats().queued, 0);
}

#[test]
fn high_water_marks_refuse_and_count() {
    let (ep, _dir) = tmp_endpoint("hwm");
    let options = ClientOptions {
        send_high_water_mark: 10,
        send_high_water_bytes: 1000,
        ..Default::default()
    };
    let h = Harness::new(&ep, options);
    let mut refused = 0;
    for _ in 0..25 {
        if h.send(body("0123456789")).unwrap() == Queued::Refused {
            refused += 1;
        }
    }
    assert_eq!(refused, 15);
    let s = h.client.stats();
    // Every call counts as sent; the refused ones end there.
    assert_eq!((s.sent, s.refused, s.queued), (25, 15, 10));
    let big = Bytes::from(vec![b'x'; 2000]);
    let (ep2, _dir2) = tmp_endpoint("hwb");
    let h2 = Harness::new(
        &ep2,
        ClientOptions {
            send_high_water_bytes: 1000,
            ..Default::default()
        },
    );
    assert_eq!(h2.send(big.clone()).unwrap(), Queued::Yes);
    assert_eq!(h2.send(body("x")).unwrap(), Queued::Refused);
    let too_big = Bytes::from(vec![b'x'; (16 << 20) + 1]);
    assert_eq!(h2.send(too_big).unwrap_err().code(), "EMSGSIZE");
}

#[test]
fn close_drains_then_reports_closed() {
    let (ep, _dir) = tmp_endpoint("drain");
    let r = router(&ep, Duration::ZERO);
    // Long enough for a debug-built router on a loaded machine to confirm all 20 000.
    let h = Harness::new(
        &ep,
        ClientOptions {
            linger: Duration::from_secs(30),
            ..Default::default()
        },
    );
    for i in 0..20_000 {
        h.stage(body(&format!("{i:08}"))).unwrap();
    }
    h.client
        .request(&mut h.staging.borrow_mut(), 1, body("no-answer"), None)
        .unwrap();
    // close() hands over what is still staged before it starts draining.
    assert!(h.close());
    assert_eq!(h.send(body("after")).unwrap_err().code(), "ECLOSED");
    let ev = h.events(1, Duration::from_secs(35));
    assert_eq!(ev, vec![ClientEvent::Closed]);
    for i in 0..20_000 {
        let f = r
            .received
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("message {i} never arrived"));
        assert_eq!(f[2], body(&format!("{i:08}")));
    }
    let s = h.client.stats();
    assert_eq!((s.written, s.dropped, s.queued), (20_001, 0, 0));
    assert_eq!((s.delivered, s.in_flight), (20_000, 0));
}

#[test]
fn close_without_server_ends_within_linger_and_counts_drops() {
    let (ep, _dir) = tmp_endpoint("noserver");
    let h = Harness::new(
        &ep,
        ClientOptions {
            linger: Duration::from_millis(200),
            ..Default::default()
        },
    );
    for _ in 0..50 {
        h.send(body("lost")).unwrap();
    }
    let t0 = Instant::now();
    h.close();
    let ev = h.events(2, Duration::from_secs(5));
    assert_eq!(
        ev,
        vec![
            ClientEvent::Dropped {
                reason: DropReason::Closed,
                count: 50
            },
            ClientEvent::Closed
        ]
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let s = h.client.stats();
    assert_eq!(
        (s.dropped, s.dropped_closed, s.queued, s.written),
        (50, 50, 0, 0)
    );
    assert_eq!(s.sent, s.delivered + s.refused + s.dropped);
    assert!(h.shutdown(Duration::ZERO, Duration::from_secs(1)));
}

#[test]
fn cancelled_request_reply_is_late() {
    let (ep, _dir) = tmp_endpoint("cancel");
    let r = router(&ep, Duration::from_millis(1));
    let h = Harness::new(&ep, ClientOptions::default());
    h.request(5, body("q"), None).unwrap();
    h.cancel(5);
    // Either it was cancelled before it left (dropped) or it went and its reply is late.
    let _ = r.received.recv_timeout(Duration::from_millis(500));
    let end = Instant::now() + Duration::from_secs(5);
    while h.client.stats().late_replies + h.client.stats().expired_unsent == 0
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = h.client.stats();
    assert_eq!(s.replies, 0);
    assert_eq!(s.late_replies + s.expired_unsent, 1);
    assert!(h.client.take_events().is_empty());
}

#[test]
fn backpressure_never_duplicates_or_reorders() {
    // The crate queues 100 k messages per peer; a stalled reader makes sends wait on it. Every
    // message must still arrive exactly once and in order.
    let (ep, _dir) = tmp_endpoint("dup");
    let r = router_paused(&ep, Duration::ZERO, Duration::from_millis(400));
    let h = Harness::new(
        &ep,
        ClientOptions {
            send_high_water_mark: 400_000,
            ..Default::default()
        },
    );
    let n = 250_000u32;
    for i in 0..n {
        assert_eq!(
            h.stage(Bytes::copy_from_slice(&i.to_le_bytes())).unwrap(),
            Queued::Yes
        );
    }
    h.flush();
    for i in 0..n {
        let f = r.received.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(f[2].as_ref(), &i.to_le_bytes(), "message {i}");
    }
    assert!(
        r.received.recv_timeout(Duration::from_millis(300)).is_err(),
        "a duplicate arrived"
    );
    let s = h.client.stats();
    assert_eq!((s.written, s.dropped_peer_lost, s.queued), (n as u64, 0, 0));
}

#[cfg(unix)]
#[test]
fn a_server_of_an_unexpected_uid_gets_nothing_and_requests_fail_with_the_uid_error() {
    use std::os::unix::fs::MetadataExt;
    use zerowire_core::peer::ServerUid;
    let (ep, dir) = tmp_endpoint("server-uid");
    let r = router(&ep, Duration::ZERO);
    let ours = std::fs::metadata(dir.path()).unwrap().uid();
    let h = Harness::new(
        &ep,
        ClientOptions {
            expect_server_uid: ServerUid::Only(ours.wrapping_add(1)),
            ..Default::default()
        },
    );
    h.send(body("for the right server only")).unwrap();
    h.request(1, body("ask"), Some(Duration::from_secs(10)))
        .unwrap();
    let events = h.events(2, Duration::from_secs(5));
    assert!(
        events.iter().any(|e| matches!(
            e,
            ClientEvent::ConnectFailed { peer_uid: true, message, .. } if message.contains(&format!("uid {ours}"))
        )),
        "{events:?}"
    );
    assert!(
        events.contains(&ClientEvent::ServerUidRefused { id: 1 }),
        "{events:?}"
    );
    assert!(
        r.received.recv_timeout(Duration::from_millis(300)).is_err(),
        "the server got a message"
    );

    // The same server, expected: delivered.
    let ok = Harness::new(
        &ep,
        ClientOptions {
            expect_server_uid: ServerUid::Only(ours),
            ..Default::default()
        },
    );
    ok.send(body("hello")).unwrap();
    let got = r.received.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got[2].as_ref(), b"hello");
}

#[test]
fn a_retry_waiting_at_close_gives_back_no_room() {
    // A retry is a second copy of a request the host queued once; its room under the marks
    // went back with the first write. (Debug builds assert that nothing is released twice.)
    let (ep, _dir) = tmp_endpoint("retry-close");
    let r = router(&ep, Duration::ZERO);
    let h = Harness::new(
        &ep,
        ClientOptions {
            linger: Duration::ZERO,
            ..Default::default()
        },
    );
    let timeout = Some(Duration::from_secs(30));
    h.client
        .request_retrying(
            &mut h.staging.borrow_mut(),
            1,
            body("no-answer"),
            timeout,
            1,
        )
        .unwrap();
    h.flush();
    let got = r.received.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got[2], body("no-answer"));
    // The server goes and the connection with it: the retry waits for the next server.
    drop(r);
    let end = Instant::now() + Duration::from_secs(10);
    while h.client.stats().retries == 0 {
        assert!(Instant::now() < end, "no retry: {:?}", h.client.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(h.close());
    let ev = h.events(2, Duration::from_secs(10));
    assert!(ev.contains(&ClientEvent::Closed), "{ev:?}");
    let s = h.client.stats();
    assert_eq!((s.requests, s.written, s.retries, s.queued), (1, 1, 1, 0));
}
