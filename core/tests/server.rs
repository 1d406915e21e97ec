//! The server engine against zerowire clients on real ipc sockets.

mod common;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use zerowire_core::server::{
    DisconnectReason, Server, ServerEvent, ServerOptions, NO_ROUTE, NO_TOKEN,
};
use zerowire_core::Queued;
use zerowire_core::Staging;
use zerowire_core::{Client, ClientEvent, ClientOptions, Waker};

struct ChannelWaker(Sender<()>);
impl Waker for ChannelWaker {
    fn wake(&self) {
        let _ = self.0.send(());
    }
}

fn endpoint(name: &str) -> (String, tempfile::TempDir) {
    common::ipc_endpoint(&format!("zw-srv-{name}"))
}

/// Takes events at each wake-up until `n` arrived or 5 s passed.
fn collect<T>(woken: &Receiver<()>, n: usize, take: impl Fn() -> Vec<T>) -> Vec<T> {
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n {
        if woken
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
        got.extend(take());
    }
    got
}

struct S {
    server: Server,
    woken: Receiver<()>,
    staging: RefCell<Staging<zerowire_core::server::ServerOut>>,
}

impl S {
    fn new(ep: &str) -> S {
        let (tx, woken) = crossbeam_channel::unbounded();
        let server =
            Server::bind(ep, ServerOptions::default(), Box::new(ChannelWaker(tx))).unwrap();
        S {
            server,
            woken,
            staging: RefCell::default(),
        }
    }
    fn events(&self, n: usize) -> Vec<ServerEvent> {
        collect(&self.woken, n, || self.server.take_events())
    }
    fn reply(&self, token: u32, body: &str, error: bool) {
        let mut st = self.staging.borrow_mut();
        assert_eq!(
            self.server
                .reply(
                    &mut st,
                    token,
                    Bytes::copy_from_slice(body.as_bytes()),
                    error
                )
                .unwrap(),
            Queued::Yes
        );
        self.server.flush(&mut st);
    }
}

struct C {
    client: Client,
    woken: Receiver<()>,
    staging: RefCell<Staging<zerowire_core::client::ClientOut>>,
}

impl C {
    fn new(ep: &str, name: &str) -> C {
        let (tx, woken) = crossbeam_channel::unbounded();
        let options = ClientOptions {
            name: Some(name.into()),
            ..Default::default()
        };
        let client = Client::connect(ep, options, Box::new(ChannelWaker(tx))).unwrap();
        C {
            client,
            woken,
            staging: RefCell::default(),
        }
    }
    fn send(&self, body: &str) {
        let mut st = self.staging.borrow_mut();
        self.client
            .send(&mut st, Bytes::copy_from_slice(body.as_bytes()))
            .unwrap();
        self.client.flush(&mut st);
    }
    fn request(&self, id: u32, body: &str) {
        let mut st = self.staging.borrow_mut();
        self.client
            .request(&mut st, id, Bytes::copy_from_slice(body.as_bytes()), None)
            .unwrap();
        self.client.flush(&mut st);
    }
    fn events(&self, n: usize) -> Vec<ClientEvent> {
        collect(&self.woken, n, || self.client.take_events())
    }
}

#[test]
fn hello_ack_routing_replies_and_goodbye() {
    let (ep, _dir) = endpoint("basic");
    let s = S::new(&ep);
    s.server.route("log", 1).unwrap();
    s.server.route("time_request", 2).unwrap();
    let c = C::new(&ep, "web-1");

    // The hello makes the client known, with its pid and name, and the client ready.
    let ev = s.events(1);
    let (client, id) = match &ev[0] {
        ServerEvent::Connect {
            client, id, info, ..
        } => {
            let info = std::str::from_utf8(info).unwrap();
            assert!(
                info.contains(&format!("\"pid\":{}", std::process::id())),
                "{info}"
            );
            assert!(info.contains("\"name\":\"web-1\""), "{info}");
            (*client, id.clone())
        }
        other => panic!("{other:?}"),
    };
    match &c.events(1)[..] {
        [ClientEvent::Ready {
            link: 0,
            client_id,
            server_pid,
        }] => {
            assert_eq!(client_id, &id);
            assert_eq!(*server_pid, std::process::id());
        }
        other => panic!("{other:?}"),
    }

    c.send(r#"{"type":"log","msg":"asked for time_request"}"#);
    c.send(r#"{"msg":"\"type\":\"time_request\""}"#);
    c.request(7, r#"{ "type" : "time_request" }"#);
    let ev = s.events(3);
    assert_eq!(ev.len(), 3, "{ev:?}");
    let routes: Vec<(u32, u32)> = ev
        .iter()
        .map(|e| match e {
            ServerEvent::Message {
                route,
                token,
                client: from,
                ..
            } => {
                assert_eq!(*from, client);
                (*route, *token)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(routes[0], (1, NO_TOKEN));
    assert_eq!(
        routes[1],
        (NO_ROUTE, NO_TOKEN),
        "misroute bait must fall back"
    );
    assert_eq!(routes[2].0, 2);
    s.reply(routes[2].1, "12:00", false);
    assert_eq!(
        c.events(1),
        vec![ClientEvent::Reply {
            id: 7,
            body: Bytes::from_static(b"12:00")
        }]
    );

    // An error reply.
    c.request(8, r#"{"type":"time_request"}"#);
    let ev = s.events(1);
    let ServerEvent::Message { token, .. } = ev[0] else {
        panic!()
    };
    s.reply(token, "boom", true);
    assert_eq!(
        c.events(1),
        vec![ClientEvent::ErrorReply {
            id: 8,
            message: Bytes::from_static(b"boom")
        }]
    );

    // A push, then goodbye on close.
    {
        let mut st = s.staging.borrow_mut();
        s.server
            .send_to(&mut st, client, Bytes::from_static(b"hi"))
            .unwrap();
        s.server.flush(&mut st);
    }
    assert_eq!(
        c.events(1),
        vec![ClientEvent::Push {
            body: Bytes::from_static(b"hi")
        }]
    );
    // The goodbye is answered once the host has handled what came before it.
    s.server.handled();
    c.client.close(&mut c.staging.borrow_mut());
    assert_eq!(
        s.events(1),
        vec![ServerEvent::Disconnect {
            client,
            reason: DisconnectReason::Goodbye
        }]
    );
    assert!(c.events(1).contains(&ClientEvent::Closed));
    let st = s.server.stats();
    assert_eq!(
        (st.routed, st.unrouted, st.requests, st.replies, st.clients),
        (3, 1, 2, 2, 0)
    );
}

#[test]
fn broadcast_reaches_every_client_and_close_removes_the_file() {
    let (ep, _dir) = endpoint("bcast");
    let s = S::new(&ep);
    let clients: Vec<C> = (0..3).map(|i| C::new(&ep, &format!("c{i}"))).collect();
    assert_eq!(s.events(3).len(), 3);
    for c in &clients {
        assert!(matches!(c.events(1)[..], [ClientEvent::Ready { .. }]));
    }
    {
        let mut st = s.staging.borrow_mut();
        s.server
            .broadcast(&mut st, Bytes::from_static(b"all"))
            .unwrap();
        s.server.flush(&mut st);
    }
    for c in &clients {
        assert_eq!(
            c.events(1),
            vec![ClientEvent::Push {
                body: Bytes::from_static(b"all")
            }]
        );
    }
    let path = ep.trim_start_matches("ipc://").to_owned();
    assert!(std::path::Path::new(&path).exists());
    assert!(s.server.shutdown(
        &mut s.staging.borrow_mut(),
        Duration::from_millis(100),
        Duration::from_secs(5)
    ));
    assert!(!std::path::Path::new(&path).exists());
    // A closed server's clients see the connection go.
    assert!(clients[0]
        .events(1)
        .contains(&ClientEvent::Disconnected { link: 0 }));
}

/// Waits until `f` holds for the client's stats (at most 5 s).
fn stats_until(
    c: &C,
    f: impl Fn(&zerowire_core::ClientStats) -> bool,
) -> zerowire_core::ClientStats {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let s = c.client.stats();
        if f(&s) || Instant::now() > end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn acks_confirm_only_what_the_host_handled_and_the_rest_is_replayed() {
    let (ep, _dir) = endpoint("acks");
    let s = S::new(&ep);
    let c = C::new(&ep, "acks");
    assert!(matches!(&c.events(1)[..], [ClientEvent::Ready { .. }]));
    for i in 0..100 {
        c.send(&format!("{{\"type\":\"log\",\"n\":{i}}}"));
    }
    // Connect + 100 messages, taken but not yet handled.
    let got = s.events(101);
    assert_eq!(got.len(), 101, "{got:?}");
    std::thread::sleep(Duration::from_millis(50));
    let st = c.client.stats();
    assert_eq!((st.sent, st.delivered, st.in_flight), (100, 0, 100));
    s.server.handled();
    let st = stats_until(&c, |s| s.delivered == 100);
    assert_eq!((st.delivered, st.in_flight, st.dropped), (100, 0, 0));

    // 50 more reach the server's host, which dies before handling them.
    for _ in 0..50 {
        c.send("{\"type\":\"log\"}");
    }
    assert_eq!(s.events(50).len(), 50);
    let mut st = s.staging.borrow_mut();
    s.server.close_with(&mut st, Duration::ZERO);
    let ev = c.events(1);
    assert!(
        ev.contains(&ClientEvent::Disconnected { link: 0 }),
        "{ev:?}"
    );
    // Gone for good (its socket file too) before the next one binds the same path.
    assert!(s
        .server
        .shutdown(&mut st, Duration::ZERO, Duration::from_secs(5)));
    drop(st);
    drop(s);
    // Nothing unconfirmed is dropped: the 50 wait in the client, counted against its marks.
    let st = c.client.stats();
    assert_eq!(
        (st.delivered, st.dropped_peer_lost, st.in_flight),
        (100, 0, 50)
    );
    // The next server gets them first, marked redelivered (the dead one may have handled
    // them), numbered as before: seqs 100..150 of the client's session.
    let s = S::new(&ep);
    let got = s.events(51);
    let seqs: Vec<_> = got
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Message { seq, .. } => *seq,
            _ => None,
        })
        .collect();
    assert_eq!(seqs.len(), 50, "{got:?}");
    for (k, seq) in seqs.iter().enumerate() {
        assert_eq!(seq.seq, 100 + k as u64);
        assert!(seq.redelivered);
        assert_eq!(seq.session, seqs[0].session);
    }
    s.server.handled();
    let st = stats_until(&c, |s| s.delivered == 150);
    assert_eq!(
        (
            st.delivered,
            st.dropped_peer_lost,
            st.in_flight,
            st.replayed
        ),
        (150, 0, 0, 50)
    );
    assert_eq!(st.sent, st.delivered + st.refused + st.dropped);
    // New sends after the replays are not marked.
    c.send("{\"type\":\"log\"}");
    let got = s.events(1);
    assert!(
        matches!(&got[..], [ServerEvent::Message { seq: Some(q), .. }] if q.seq == 150 && !q.redelivered),
        "{got:?}"
    );
}

#[test]
fn latency_histograms_count_what_went_through_the_host() {
    let (ep, _dir) = endpoint("latency");
    let s = S::new(&ep);
    s.server.route("time_request", 1).unwrap();
    let c = C::new(&ep, "lat");
    assert_eq!(s.events(1).len(), 1);
    for id in 1..=3 {
        c.request(id, r#"{"type":"time_request"}"#);
        let ev = s.events(1);
        let ServerEvent::Message { token, .. } = ev[0] else {
            panic!("{ev:?}")
        };
        s.reply(token, "now", false);
        assert!(matches!(
            c.events(2)[..],
            [ClientEvent::Ready { .. }, ClientEvent::Reply { .. }] | [ClientEvent::Reply { .. }]
        ));
    }
    let stats = s.server.stats();
    assert_eq!(stats.queue_wait.count, 3);
    assert_eq!(stats.service.count, 3);
    assert!(stats.service.p50 <= stats.service.p99 && stats.service.p99 <= stats.service.max);
}

#[cfg(feature = "sqlite")]
#[test]
fn a_sqlite_sink_route_stores_each_message_once_and_never_reaches_the_host() {
    use zerowire_core::sink::Sink;

    let (ep, _dir) = endpoint("sink");
    let db = std::path::PathBuf::from(ep.trim_start_matches("ipc://")).with_file_name("log.db");
    let s = S::new(&ep);
    let writer = zerowire_core::sqlite::open(&db, "logs").unwrap();
    let sink = Sink::spawn("log", s.server.sink_counters(), writer).unwrap();
    s.server.route_to_sink("log", sink).unwrap();
    s.server.route("other", 1).unwrap();
    let c = C::new(&ep, "sinker");
    let ev = s.events(1);
    let ServerEvent::Connect { id, .. } = &ev[0] else {
        panic!("{ev:?}")
    };
    for i in 0..1000 {
        c.send(&format!(r#"{{"type":"log","i":{i}}}"#));
    }
    c.send(r#"{"type":"other"}"#);
    // A request to a sink is answered with an empty reply once its row is committed; being on
    // the same connection, it also proves every earlier message was read.
    c.request(1, r#"{"type":"log","i":1000}"#);
    let replies: Vec<ClientEvent> = c
        .events(2)
        .into_iter()
        .filter(|e| !matches!(e, ClientEvent::Ready { .. }))
        .collect();
    assert_eq!(
        replies,
        vec![ClientEvent::Reply {
            id: 1,
            body: Bytes::new()
        }]
    );
    let ev = s.events(1);
    assert_eq!(
        ev.len(),
        1,
        "only the 'other' message reaches the host: {ev:?}"
    );
    assert!(s.server.shutdown(
        &mut s.staging.borrow_mut(),
        Duration::from_millis(100),
        Duration::from_secs(10)
    ));
    let stats = s.server.stats();
    assert_eq!(
        (
            stats.sunk,
            stats.sink_rows,
            stats.sink_errors,
            stats.sink_lost
        ),
        (1001, 1001, 0, 0)
    );
    assert!(stats.sink_batches >= 1 && stats.sink_batches <= 1001);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let (n, distinct, clients): (i64, i64, String) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT raw), group_concat(DISTINCT client_id) FROM logs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((n, distinct), (1001, 1001));
    assert_eq!(&clients, id);
}

/// ZMTP 3.0 greeting (NULL mechanism) and READY for a DEALER, as a raw peer sends them.
fn dealer_handshake() -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    bytes[0] = 0xff;
    bytes[9] = 0x7f;
    bytes[10] = 3;
    bytes[12..16].copy_from_slice(b"NULL");
    let mut ready = vec![5u8];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&6u32.to_be_bytes());
    ready.extend_from_slice(b"DEALER");
    bytes.extend_from_slice(&[0x04, ready.len() as u8]);
    bytes.extend_from_slice(&ready);
    bytes
}

#[test]
fn a_peer_announcing_a_huge_frame_is_dropped_and_the_server_keeps_serving() {
    use std::io::{Read, Write};
    let (ep, _dir) = endpoint("huge");
    let s = S::new(&ep);
    let mut raw = std::os::unix::net::UnixStream::connect(ep.trim_start_matches("ipc://")).unwrap();
    raw.write_all(&dealer_handshake()).unwrap();
    // A long frame announcing 2^40 bytes: the uncapped crate reserved it and aborted.
    let mut header = [0x02u8; 9];
    header[1..].copy_from_slice(&(1u64 << 40).to_be_bytes());
    raw.write_all(&header).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server's greeting and READY come first; then end of stream: dropped.
    let mut buf = [0u8; 4096];
    loop {
        match raw.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("the connection was not dropped: {e}"),
        }
    }
    let c = C::new(&ep, "after");
    assert!(matches!(c.events(1)[..], [ClientEvent::Ready { .. }]));
    drop(s);
}

#[cfg(unix)]
/// The uid of this process's files: what the kernel reports for our own connections.
fn own_uid(ep: &str) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let path = ep.trim_start_matches("ipc://");
    std::fs::metadata(path).unwrap().uid()
}

#[cfg(unix)]
#[test]
fn an_ipc_client_connects_with_the_kernels_uid_and_pid() {
    let (ep, _dir) = endpoint("cred");
    let s = S::new(&ep);
    let _c = C::new(&ep, "cred");
    match &s.events(1)[..] {
        [ServerEvent::Connect {
            credentials: Some(c),
            public_key: None,
            ..
        }] => {
            assert_eq!(c.uid, own_uid(&ep));
            assert_eq!(c.pid, Some(std::process::id()));
        }
        other => panic!("{other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn the_host_decides_about_each_ipc_peer_and_a_refused_one_reaches_nothing() {
    let (ep, _dir) = endpoint("authorize");
    let (tx, woken) = crossbeam_channel::unbounded();
    let options = ServerOptions {
        authorize_by_host: true,
        ..Default::default()
    };
    let s = S {
        server: Server::bind(&ep, options, Box::new(ChannelWaker(tx))).unwrap(),
        woken,
        staging: RefCell::default(),
    };
    s.server.route("x", 1).unwrap();
    let c = C::new(&ep, "asking");
    c.send(r#"{"type":"x"}"#);
    let asked = |events: Vec<ServerEvent>| -> u32 {
        let mut request = None;
        for e in events {
            match e {
                ServerEvent::Authorize {
                    request: r,
                    public_key: None,
                    socket_type: "DEALER",
                    credentials: Some(cred),
                } => {
                    assert_eq!(cred.pid, Some(std::process::id()));
                    request = Some(r);
                }
                other => panic!("before the host's answer: {other:?}"),
            }
        }
        request.expect("an authorize event")
    };
    let first = asked(s.events(1));
    s.server.authorize(first, false);
    // The client reconnects by itself: asked again, and nothing of the refused connection
    // (its hello, its message) came through meanwhile.
    let again = asked(s.events(1));
    assert_ne!(again, first);
    assert_eq!(s.server.stats().unauthorized, 1);
    s.server.authorize(again, true);
    c.send(r#"{"type":"x"}"#);
    let ev = s.events(2);
    assert!(
        matches!(&ev[0], ServerEvent::Connect { credentials: Some(cred), .. } if cred.uid == own_uid(&ep)),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, ServerEvent::Message { route: 1, .. })),
        "{ev:?}"
    );
}

/// Polls `what` for up to 30 s.
fn wait_until(mut what: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !what() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sink_rows_are_acked_and_answered_only_once_committed_and_a_failure_is_told_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use zerowire_core::sink::{Row, Sink};

    let (ep, _dir) = endpoint("sinkfail");
    let s = S::new(&ep);
    let failing = Arc::new(AtomicBool::new(true));
    let stored = Arc::new(std::sync::Mutex::new(0usize));
    let (f, st) = (failing.clone(), stored.clone());
    let store = Box::new(move |rows: &[Row]| {
        if f.load(Ordering::SeqCst) {
            return Err("disk full".to_string());
        }
        *st.lock().unwrap() += rows.len();
        Ok(())
    });
    let sink = Sink::spawn("log", s.server.sink_counters(), store).unwrap();
    s.server.route_to_sink("log", sink).unwrap();
    let c = C::new(&ep, "sinker");
    let ready = c.events(1);
    assert!(matches!(ready[0], ClientEvent::Ready { .. }), "{ready:?}");
    for i in 0..100 {
        c.send(&format!(r#"{{"type":"log","i":{i}}}"#));
    }
    c.request(1, r#"{"type":"log","i":100}"#);

    let mut told = Vec::new();
    wait_until(|| {
        told.extend(s.server.take_events());
        s.server.handled();
        s.server.stats().sink_errors >= 3
    });
    let errors: Vec<_> = told
        .iter()
        .filter(|e| matches!(e, ServerEvent::SinkError { .. }))
        .collect();
    assert_eq!(
        errors,
        vec![&ServerEvent::SinkError {
            route: "log".into(),
            message: "disk full".into()
        }],
        "once per episode, not per attempt"
    );
    assert_eq!(s.server.stats().sink_failing, 1);
    assert_eq!(c.client.stats().delivered, 0, "nothing acked before commit");
    assert!(
        !c.client
            .take_events()
            .iter()
            .any(|e| matches!(e, ClientEvent::Reply { .. })),
        "no reply before commit"
    );

    failing.store(false, Ordering::SeqCst);
    let answered = c.events(1);
    assert!(
        matches!(&answered[..], [ClientEvent::Reply { id: 1, body }] if body.is_empty()),
        "the request answered '' once stored: {answered:?}"
    );
    wait_until(|| {
        // Acks wait for the host too (everything published before a row): it handles all.
        told.extend(s.server.take_events());
        s.server.handled();
        c.client.stats().delivered == 100
    });
    wait_until(|| {
        told.extend(s.server.take_events());
        told.iter().any(|e| {
            *e == ServerEvent::SinkRecovered {
                route: "log".into(),
            }
        })
    });
    let stats = s.server.stats();
    assert_eq!(*stored.lock().unwrap(), 101);
    assert_eq!(
        (stats.sink_rows, stats.sink_lost, stats.sink_failing),
        (101, 0, 0)
    );
}
