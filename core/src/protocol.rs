//! The wire envelope (docs/PROTOCOL.md is the normative text).
//!
//! ```text
//! DEALER → ROUTER  [corr, body]          corr empty: fire-and-forget; else a request
//! ROUTER → DEALER  [corr, body]          a reply, corr copied from the request
//!                  [corr, body, "E"]     an error reply: body is the error message
//!                  [empty, body]         a push
//! ```
//! Our requests carry a 5-byte corr: a tag byte `0x01` then the request id as u32
//! little-endian. Corr frames starting with `0x00` are reserved for control traffic.

use bytes::Bytes;
use zeromq::SocketOptions;

/// First byte of the corr frames this client puts on requests.
pub const REQUEST_TAG: u8 = 0x01;
/// First byte reserved for control frames (hello/ack and the like).
pub const CONTROL_TAG: u8 = 0x00;
/// Third frame that marks an error reply.
pub const ERROR_STATUS: &[u8] = b"E";
/// Longest corr a peer may use (the protocol says 1..=16 opaque bytes).
pub const MAX_CORR_LEN: usize = 16;

/// Room for the frames around a body (corr, error marker) in the inbound cap; they are a few
/// bytes, so any generous constant will do.
const ENVELOPE_SLACK: usize = 64 << 10;

/// Options for every socket we open. Inbound messages are capped at the largest body this
/// side accepts (`maxMessageBytes`) plus its envelope, as libzmq's `ZMQ_MAXMSGSIZE` does: a
/// peer announcing more is disconnected before anything is reserved for it. Uncapped, the
/// crate reserves whatever a frame header announces, and a failed reservation aborts the
/// process (vendor/zeromq/PATCHES.md).
pub(crate) fn socket_options(max_message_bytes: usize) -> SocketOptions {
    let mut options = SocketOptions::default();
    options.max_message_size(max_message_bytes.saturating_add(ENVELOPE_SLACK));
    options
}

/// Control kind sent first on every connection: body `{"pid":…,"ppid":…,"name":"…"}`; a
/// zerowire server answers with an ack `{"clientId":"…","serverPid":…}`.
pub const CONTROL_HELLO: u8 = b'H';
/// Control kind of a heartbeat: the server answers with an empty reply.
pub const CONTROL_PING: u8 = b'P';
/// Control kind sent last by `close()`: the server answers (any reply) once it has read
/// everything sent before it, and treats the client as gone.
pub const CONTROL_GOODBYE: u8 = b'G';

/// Control kind of a sequence mark: the client restates which session and seq the next
/// fire-and-forget message on this connection carries (body as the hello's `session`, `seq`,
/// `resent`). Sent only where the implicit numbering jumps: replays of another endpoint's
/// session, and back. A zerowire server does not answer it.
pub const CONTROL_SEQ: u8 = b'S';

/// Control kind a server sends unasked: body is a client session (u64 little-endian) and the
/// seq below which every fire-and-forget message of that session has been handled (u64
/// little-endian). It lets the client forget (and count as delivered) what it kept for replay.
pub const CONTROL_ACK: u8 = b'A';

/// Where a connection's implicit numbering of fire-and-forget messages starts: the next one
/// carries `seq` of `session`, each following one the next seq; the first `resent` of them
/// were already written on an earlier connection (replays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub session: u64,
    pub seq: u64,
    pub resent: u64,
}

impl Run {
    fn json_fields(&self, out: &mut String) {
        out.push_str(&format!(
            "\"session\":\"{:016x}\",\"seq\":{},\"resent\":{}",
            self.session, self.seq, self.resent
        ));
    }

    /// The body of a sequence mark.
    pub fn body(&self) -> Bytes {
        let mut s = String::from("{");
        self.json_fields(&mut s);
        s.push('}');
        Bytes::from(s)
    }

    /// Reads the run of a hello or a sequence mark: `None` when it has none (a client that
    /// does not number its sends) or it is malformed.
    pub fn parse(body: &[u8]) -> Option<Run> {
        let session = crate::sniff::Sniffer::new("session", 4096).sniff(body)?;
        if session.len() != 16 {
            return None;
        }
        let session = u64::from_str_radix(std::str::from_utf8(session).ok()?, 16).ok()?;
        Some(Run {
            session,
            seq: json_u64(body, b"\"seq\"")?,
            resent: json_u64(body, b"\"resent\"")?,
        })
    }
}

/// The unsigned integer value of the first `key` (a quoted name) followed by `:` (JSON
/// whitespace allowed around it), if there is one.
fn json_u64(body: &[u8], key: &[u8]) -> Option<u64> {
    fn skip_ws(b: &[u8]) -> &[u8] {
        let n = b
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        &b[n..]
    }
    for at in memchr::memmem::find_iter(body, key) {
        let Some(value) = skip_ws(&body[at + key.len()..]).strip_prefix(b":") else {
            continue;
        };
        let value = skip_ws(value);
        let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
        return std::str::from_utf8(&value[..digits]).ok()?.parse().ok();
    }
    None
}

/// An ack: corr `0x00 'A' 0 0 0 0`, body the session and the seq below which all is handled.
pub fn encode_ack(session: u64, handled: u64) -> (Bytes, Bytes) {
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(&session.to_le_bytes());
    body[8..].copy_from_slice(&handled.to_le_bytes());
    (
        encode_control(CONTROL_ACK, 0),
        Bytes::copy_from_slice(&body),
    )
}

/// An ack to a client from before sessions: the count of its connection's fire-and-forget
/// messages handled (u64 little-endian).
pub fn encode_ack_count(handled: u64) -> (Bytes, Bytes) {
    (
        encode_control(CONTROL_ACK, 0),
        Bytes::copy_from_slice(&handled.to_le_bytes()),
    )
}

/// The session and handled seq of an ack body, if it is one.
pub fn parse_ack_seq(body: &[u8]) -> Option<(u64, u64)> {
    let body: &[u8; 16] = body.try_into().ok()?;
    let session = u64::from_le_bytes(body[..8].try_into().ok()?);
    let handled = u64::from_le_bytes(body[8..].try_into().ok()?);
    Some((session, handled))
}

/// The hello body a client sends.
pub fn hello_body(pid: u32, ppid: u32, name: Option<&str>, run: &Run) -> Bytes {
    let mut s = format!("{{\"pid\":{pid},\"ppid\":{ppid}");
    if let Some(name) = name {
        s.push_str(",\"name\":");
        json_string(&mut s, name);
    }
    s.push(',');
    run.json_fields(&mut s);
    s.push('}');
    Bytes::from(s)
}

/// The ack body a server sends back. `"acks":"session"`: it acks per client session and
/// recognises replays (a server without it acks per-connection counts, 8-byte bodies).
pub fn ack_body(client_id: &str, server_pid: u32) -> Bytes {
    let mut s = String::from("{\"clientId\":");
    json_string(&mut s, client_id);
    s.push_str(&format!(
        ",\"serverPid\":{server_pid},\"acks\":\"session\"}}"
    ));
    Bytes::from(s)
}

/// Reads an ack: the client id, the server's pid, and whether it acks per client session.
/// `None` if the body is not one (a plain ROUTER may echo the hello instead).
pub fn parse_ack(body: &[u8]) -> Option<(String, u32, bool)> {
    let id = crate::sniff::Sniffer::new("clientId", 256).sniff(body)?;
    let id = std::str::from_utf8(id).ok()?.to_owned();
    let pid = u32::try_from(json_u64(body, b"\"serverPid\"")?).ok()?;
    let sessions = memchr::memmem::find(body, b"\"acks\":\"session\"").is_some();
    Some((id, pid, sessions))
}

/// The count of an ack body from a server that predates client sessions (8 bytes: how many
/// of this connection's fire-and-forget messages it handled).
pub fn parse_ack_count(body: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(body.try_into().ok()?))
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// 64 random bits, different per call and per process: client ids and client sessions (a
/// restarted process never continues an old one's numbering).
pub(crate) fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The kind byte of a control corr, if it is one.
pub fn control_kind(corr: &[u8]) -> Option<u8> {
    match corr {
        [CONTROL_TAG, kind, ..] => Some(*kind),
        _ => None,
    }
}

/// A control corr: `0x00`, the kind, then a u32 little-endian sequence number.
pub fn encode_control(kind: u8, seq: u32) -> Bytes {
    let mut corr = [0u8; 6];
    corr[0] = CONTROL_TAG;
    corr[1] = kind;
    corr[2..].copy_from_slice(&seq.to_le_bytes());
    Bytes::copy_from_slice(&corr)
}

pub fn encode_corr(id: u32) -> Bytes {
    let mut corr = [0u8; 5];
    corr[0] = REQUEST_TAG;
    corr[1..].copy_from_slice(&id.to_le_bytes());
    Bytes::copy_from_slice(&corr)
}

/// The empty corr of a fire-and-forget message.
pub fn empty_corr() -> Bytes {
    Bytes::new()
}

/// What a message received by the DEALER is.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    Reply {
        id: u32,
        body: Bytes,
    },
    ErrorReply {
        id: u32,
        message: Bytes,
    },
    Push {
        body: Bytes,
    },
    Control {
        frame: Bytes,
        body: Bytes,
    },
    /// Anything else: counted and dropped, never fatal.
    Malformed,
}

pub fn classify(mut frames: Vec<Bytes>) -> Inbound {
    let status_error = match frames.len() {
        2 => false,
        3 if frames[2].as_ref() == ERROR_STATUS => true,
        _ => return Inbound::Malformed,
    };
    frames.truncate(2);
    let body = frames.pop().expect("two frames");
    let corr = frames.pop().expect("two frames");
    if corr.is_empty() {
        return if status_error {
            Inbound::Malformed
        } else {
            Inbound::Push { body }
        };
    }
    match corr[0] {
        CONTROL_TAG => Inbound::Control { frame: corr, body },
        REQUEST_TAG if corr.len() == 5 => {
            let id = u32::from_le_bytes([corr[1], corr[2], corr[3], corr[4]]);
            if status_error {
                Inbound::ErrorReply { id, message: body }
            } else {
                Inbound::Reply { id, body }
            }
        }
        _ => Inbound::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn corr_round_trip() {
        let corr = encode_corr(0xdead_beef);
        assert_eq!(corr.len(), 5);
        assert_eq!(corr[0], REQUEST_TAG);
        assert_eq!(
            classify(vec![corr, b(b"hi")]),
            Inbound::Reply {
                id: 0xdead_beef,
                body: b(b"hi")
            }
        );
    }

    #[test]
    fn hello_and_ack_round_trip() {
        let run = Run {
            session: 0x00ab_cdef_0123_4567,
            seq: 41,
            resent: 3,
        };
        let hello = hello_body(12, 1, Some("web \"1\"\n"), &run);
        assert_eq!(
            &hello[..],
            br#"{"pid":12,"ppid":1,"name":"web \"1\"\u000a","session":"00abcdef01234567","seq":41,"resent":3}"#
        );
        assert_eq!(Run::parse(&hello), Some(run));
        assert_eq!(Run::parse(&run.body()), Some(run));
        assert_eq!(Run::parse(br#"{"pid":12,"ppid":1}"#), None);
        // Any JSON whitespace, as another implementation may write it.
        assert_eq!(
            Run::parse(b"{\"session\": \"00abcdef01234567\", \"seq\" : 41,\n \"resent\":\t3}"),
            Some(run)
        );
        assert_eq!(Run::parse(br#"{"session":"abc","seq":1,"resent":0}"#), None);
        assert_eq!(
            Run::parse(br#"{"session":"00abcdef01234567","seq":"1","resent":0}"#),
            None
        );
        let ack = ack_body("a1b2c3", 4321);
        assert_eq!(parse_ack(&ack), Some(("a1b2c3".into(), 4321, true)));
        assert_eq!(
            parse_ack(br#"{"clientId":"a1b2c3","serverPid":4321}"#),
            Some(("a1b2c3".into(), 4321, false))
        );
        assert_eq!(parse_ack_count(&7u64.to_le_bytes()), Some(7));
        assert_eq!(parse_ack(b"echo:{\"pid\":1}"), None);
        assert_eq!(parse_ack(br#"{"clientId":"x"}"#), None);
        assert_eq!(control_kind(&encode_control(CONTROL_HELLO, 3)), Some(b'H'));
        assert_eq!(control_kind(&encode_corr(3)), None);
        let (corr, body) = encode_ack(u64::MAX - 1, 1 << 40);
        assert_eq!(control_kind(&corr), Some(CONTROL_ACK));
        assert_eq!(parse_ack_seq(&body), Some((u64::MAX - 1, 1 << 40)));
        assert_eq!(parse_ack_seq(b"short"), None);
    }

    #[test]
    fn push_error_control_and_junk() {
        assert_eq!(
            classify(vec![Bytes::new(), b(b"p")]),
            Inbound::Push { body: b(b"p") }
        );
        assert_eq!(
            classify(vec![encode_corr(7), b(b"boom"), b(b"E")]),
            Inbound::ErrorReply {
                id: 7,
                message: b(b"boom")
            }
        );
        assert!(matches!(
            classify(vec![b(b"\0ack"), b(b"{}")]),
            Inbound::Control { .. }
        ));
        assert_eq!(classify(vec![b(b"x")]), Inbound::Malformed);
        assert_eq!(classify(vec![b(b"\x01ab"), b(b"x")]), Inbound::Malformed);
        assert_eq!(classify(vec![b(b"zz"), b(b"x")]), Inbound::Malformed);
        assert_eq!(
            classify(vec![encode_corr(1), b(b"x"), b(b"?")]),
            Inbound::Malformed
        );
        assert_eq!(
            classify(vec![Bytes::new(), b(b"x"), b(b"E")]),
            Inbound::Malformed
        );
    }
}
