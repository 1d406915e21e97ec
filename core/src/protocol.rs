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

/// First byte of the corr frames this client puts on requests.
pub const REQUEST_TAG: u8 = 0x01;
/// First byte reserved for control frames (hello/ack and the like).
pub const CONTROL_TAG: u8 = 0x00;
/// Third frame that marks an error reply.
pub const ERROR_STATUS: &[u8] = b"E";
/// Longest corr a peer may use (the protocol says 1..=16 opaque bytes).
pub const MAX_CORR_LEN: usize = 16;

/// Control kind of the close barrier: a request whose reply (any reply) confirms the server has
/// read everything sent before it.
pub const CONTROL_BARRIER: u8 = b'B';

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
