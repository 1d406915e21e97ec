//! The native server of the Node benchmark (bench/run.js): a ROUTER on the `zeromq` crate, on a
//! tokio current-thread runtime, so that the server is not what limits the clients measured.
//!
//! Usage: bench_router <endpoint>
//!
//! * Frames [identity, empty corr, body] are fire-and-forget: counted (messages and body bytes).
//! * Frames [identity, corr, body] are requests: the same frames go back (an echo).
//!
//! Control is out of band, so the measured socket carries only benchmark traffic. Once bound, it
//! prints `ready` on stdout. Then it reads commands from stdin, one a line, handled in order, and
//! answers each with one JSON line `{"count":N,"bytes":B}` on stdout:
//!
//! * `wait N`  — answers once N messages have been counted in total.
//! * `quiet MS` — answers once no message has been counted for MS milliseconds.
//!
//! End of stdin (the parent went away, even if it was killed) ends the process.

use std::io::{BufRead, Write};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use zeromq::{RouterSocket, Socket, SocketRecv, SocketSend};

#[derive(Default)]
struct Counts {
    count: u64,
    bytes: u64,
    /// A `wait N` in progress: the router notifies once `count` reaches it (0: none).
    wait_for: u64,
}

#[derive(Default)]
struct Shared {
    counts: Mutex<Counts>,
    reached: Condvar,
}

impl Shared {
    fn add(&self, body_bytes: usize) {
        let mut c = self.counts.lock().unwrap();
        c.count += 1;
        c.bytes += body_bytes as u64;
        if c.wait_for != 0 && c.count >= c.wait_for {
            c.wait_for = 0;
            self.reached.notify_all();
        }
    }

    fn snapshot(&self) -> (u64, u64) {
        let c = self.counts.lock().unwrap();
        (c.count, c.bytes)
    }
}

fn reply((count, bytes): (u64, u64)) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{{\"count\":{count},\"bytes\":{bytes}}}");
    let _ = out.flush();
}

/// Handles the commands in order, on a thread of its own: a `wait` may take long.
fn control(shared: Arc<Shared>, commands: mpsc::Receiver<String>) {
    for line in commands {
        let mut words = line.split_whitespace();
        let (Some(cmd), Some(Ok(n))) = (words.next(), words.next().map(str::parse::<u64>)) else {
            eprintln!("bench_router: bad command {line:?}");
            std::process::exit(2);
        };
        match cmd {
            "wait" => {
                let mut c = shared.counts.lock().unwrap();
                c.wait_for = n;
                while c.count < n {
                    c = shared.reached.wait(c).unwrap();
                }
                c.wait_for = 0;
                let got = (c.count, c.bytes);
                drop(c);
                reply(got);
            }
            "quiet" => {
                let mut last = shared.snapshot();
                loop {
                    std::thread::sleep(Duration::from_millis(n));
                    let now = shared.snapshot();
                    if now.0 == last.0 {
                        break;
                    }
                    last = now;
                }
                reply(last);
            }
            _ => {
                eprintln!("bench_router: unknown command {line:?}");
                std::process::exit(2);
            }
        }
    }
}

fn main() {
    let endpoint = std::env::args()
        .nth(1)
        .expect("usage: bench_router <endpoint>");
    let shared = Arc::new(Shared::default());

    let (tx, rx) = mpsc::channel();
    {
        let shared = shared.clone();
        std::thread::spawn(move || control(shared, rx));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut socket = RouterSocket::new();
        if let Err(e) = socket.bind(&endpoint).await {
            eprintln!("bench_router: cannot bind {endpoint}: {e}");
            std::process::exit(1);
        }
        println!("ready");
        let _ = std::io::stdout().flush();

        // Started after `ready`, so the answers always follow it.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
            std::process::exit(0);
        });

        loop {
            let msg = match socket.recv().await {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("bench_router: recv: {e}");
                    std::process::exit(1);
                }
            };
            if msg.len() != 3 {
                eprintln!("bench_router: unexpected message of {} frames", msg.len());
                continue;
            }
            let corr_empty = msg.get(1).is_some_and(|f| f.is_empty());
            if corr_empty {
                shared.add(msg.get(2).map_or(0, |b| b.len()));
            } else if let Err(e) = socket.send(msg).await {
                // The peer may be gone (the client closed); nothing to answer then.
                eprintln!("bench_router: send: {e}");
            }
        }
    });
}
