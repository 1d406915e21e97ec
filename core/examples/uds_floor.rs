//! The floor of the Node benchmark (bench/run.js): what two native processes get from a plain
//! Unix-domain stream socket, with no messaging library, no runtime and no JS. Standard library
//! only; blocking reads and writes, so every hop pays the kernel's wake-up like the real stacks.
//!
//! Usage: uds_floor [sizes...]        (default: 100 1024 10240 1048576)
//!
//! It spawns itself as the peer (`uds_floor --peer <path>`) on a socket in a fresh temp dir, and
//! prints one JSON line:
//!
//! * `rtt`: for 100 B and 1 KiB, ping-pong round trips one at a time — p50 / p99 / p99.9 / max µs.
//! * `stream`: for each size, N length-prefixed frames written back to back (buffered, as any
//!   stream sender would), timed until the peer reports it has read them all — msg/s.
//!
//! Frames are `[u32 LE body length][u8 kind][body]`, the same shape as the `net` baseline of the
//! benchmark (bench/framing.js): kind 0 is counted, 1 is echoed, 2 asks for the count so far.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::Instant;

const COUNT: u8 = 0;
const ECHO: u8 = 1;
const REPORT: u8 = 2;
const RTT_WARMUP: usize = 1_000;
const RTT_SAMPLES: usize = 10_000;
/// Enough bytes per stream size that one figure takes tens of ms, not µs.
const STREAM_BYTES: usize = 64 << 20;
const STREAM_MAX_MESSAGES: usize = 300_000;

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + body.len());
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.push(kind);
    f.extend_from_slice(body);
    f
}

/// Reads one frame into `body`; returns its kind, or None at end of stream.
fn read_frame(r: &mut impl Read, body: &mut Vec<u8>) -> Option<u8> {
    let mut header = [0u8; 5];
    r.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    body.resize(len, 0);
    r.read_exact(body).ok()?;
    Some(header[4])
}

/// The other process: counts, echoes and reports until the socket closes.
fn peer(path: &str) {
    let stream = UnixStream::connect(path).expect("uds_floor peer: connect");
    let mut out = stream.try_clone().unwrap();
    let mut input = BufReader::with_capacity(256 << 10, stream);
    let mut body = Vec::new();
    let mut count = 0u64;
    while let Some(kind) = read_frame(&mut input, &mut body) {
        match kind {
            COUNT => count += 1,
            ECHO => {
                // Header and body in one write, as the client sent them.
                out.write_all(&frame(ECHO, &body)).unwrap();
            }
            _ => out.write_all(&frame(REPORT, &count.to_le_bytes())).unwrap(),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round_trips(stream: &mut UnixStream, size: usize) -> String {
    let request = frame(ECHO, &vec![b'x'; size]);
    let mut reader = stream.try_clone().unwrap();
    let mut body = Vec::new();
    let mut samples = Vec::with_capacity(RTT_SAMPLES);
    for i in 0..RTT_WARMUP + RTT_SAMPLES {
        let t0 = Instant::now();
        stream.write_all(&request).unwrap();
        let kind = read_frame(&mut reader, &mut body).expect("uds_floor: peer went away");
        let us = t0.elapsed().as_secs_f64() * 1e6;
        assert!(kind == ECHO && body.len() == size, "uds_floor: bad echo");
        if i >= RTT_WARMUP {
            samples.push(us);
        }
    }
    samples.sort_by(f64::total_cmp);
    format!(
        "\"{size}\":{{\"p50\":{:.2},\"p99\":{:.2},\"p999\":{:.2},\"max\":{:.2}}}",
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        percentile(&samples, 99.9),
        samples[samples.len() - 1],
    )
}

fn stream_rate(stream: &mut UnixStream, size: usize, counted: &mut u64) -> String {
    let messages = (STREAM_BYTES / size).clamp(64, STREAM_MAX_MESSAGES);
    let one = frame(COUNT, &vec![b'x'; size]);
    let mut reader = stream.try_clone().unwrap();
    let mut body = Vec::new();
    let t0 = Instant::now();
    {
        let mut w = BufWriter::with_capacity(256 << 10, &mut *stream);
        for _ in 0..messages {
            w.write_all(&one).unwrap();
        }
        w.write_all(&frame(REPORT, &[])).unwrap();
        w.flush().unwrap();
    }
    read_frame(&mut reader, &mut body).expect("uds_floor: peer went away");
    let seconds = t0.elapsed().as_secs_f64();
    let total = u64::from_le_bytes(body[..8].try_into().unwrap());
    *counted += messages as u64;
    assert_eq!(
        total, *counted,
        "uds_floor: peer counted a different number"
    );
    format!(
        "\"{size}\":{{\"messages\":{messages},\"rate\":{:.1}}}",
        messages as f64 / seconds
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--peer") {
        peer(&args[1]);
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![100, 1024, 10 << 10, 1 << 20]
    } else {
        args.iter()
            .map(|a| a.parse().expect("sizes are byte counts"))
            .collect()
    };

    let dir = std::env::temp_dir().join(format!("uds-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("floor.sock");
    let listener = UnixListener::bind(&path).expect("uds_floor: bind");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--peer")
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .expect("uds_floor: spawn peer");
    let (mut stream, _) = listener.accept().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let rtt: Vec<String> = sizes
        .iter()
        .filter(|&&s| s <= 1024)
        .map(|&s| round_trips(&mut stream, s))
        .collect();
    let mut counted = 0;
    let rates: Vec<String> = sizes
        .iter()
        .map(|&s| stream_rate(&mut stream, s, &mut counted))
        .collect();
    drop(stream);
    let _ = child.wait();
    println!(
        "{{\"rtt\":{{{}}},\"stream\":{{{}}}}}",
        rtt.join(","),
        rates.join(",")
    );
}
