//! zerowire patch: the CURVE security mechanism (ZeroMQ RFC 26 CurveZMQ, RFC 27 ZMTP-CURVE),
//! byte-compatible with libzmq's. CURVE.md describes the exchange and why each check is there.
//!
//! The primitives are RustCrypto's NaCl-compatible ones: `crypto_box` (X25519 key agreement,
//! XSalsa20Poly1305) for every box, `crypto_secretbox` for the cookie, the OS generator for keys
//! and random nonces. Nothing here computes anything cryptographic itself; it lays out the
//! commands as RFC 26/27 and libzmq lay them out and checks what comes back.

#[cfg(test)]
mod interop;
#[cfg(test)]
mod tests;
pub(crate) mod z85;

use crate::codec::{CodecError, FramedIo, Message, ZmqCommand};
use crate::util::PeerIdentity;
use crate::{SocketType, ZmqError, ZmqResult};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use crypto_box::aead::consts::U24;
use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::rand_core::RngCore;
use crypto_box::aead::{AeadInPlace, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use futures::{SinkExt, StreamExt};
use zeroize::Zeroizing;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// "\x07MESSAGE", the short nonce, the tag and the flags byte.
const MESSAGE_OVERHEAD: usize = 8 + 8 + TAG_LEN + 1;
/// Bits of the MESSAGE flags byte, which are libzmq's `msg_t` flags.
const FLAG_MORE: u8 = 0b01;
const FLAG_COMMAND: u8 = 0b10;

const HELLO_NONCE: &[u8; 16] = b"CurveZMQHELLO---";
const INITIATE_NONCE: &[u8; 16] = b"CurveZMQINITIATE";
const READY_NONCE: &[u8; 16] = b"CurveZMQREADY---";
const CLIENT_MESSAGE_NONCE: &[u8; 16] = b"CurveZMQMESSAGEC";
const SERVER_MESSAGE_NONCE: &[u8; 16] = b"CurveZMQMESSAGES";

/// A CURVE key that is not 32 bytes, or not 40 characters of Z85.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurveKeyError;

impl fmt::Display for CurveKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CURVE key is 32 bytes, written as 40 characters of Z85")
    }
}

impl std::error::Error for CurveKeyError {}

fn key_bytes_from_z85(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, CurveKeyError> {
    if text.len() != 40 {
        return Err(CurveKeyError);
    }
    let bytes = Zeroizing::new(z85::decode(text).ok_or(CurveKeyError)?);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// A long-term (or ephemeral) CURVE public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurvePublicKey([u8; KEY_LEN]);

impl CurvePublicKey {
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Reads the 40-character Z85 form libzmq prints (`zmq_curve_keypair`).
    pub fn from_z85(text: &str) -> Result<Self, CurveKeyError> {
        Ok(Self(*key_bytes_from_z85(text)?))
    }

    pub fn to_z85(&self) -> String {
        z85::encode(&self.0).expect("32 bytes are a multiple of 4")
    }

    fn to_box_key(self) -> PublicKey {
        PublicKey::from(self.0)
    }
}

impl fmt::Display for CurvePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl fmt::Debug for CurvePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurvePublicKey({})", self.to_z85())
    }
}

impl FromStr for CurvePublicKey {
    type Err = CurveKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_z85(text)
    }
}

/// A CURVE secret key. Its memory is wiped when dropped; `Debug` does not show it.
#[derive(Clone)]
pub struct CurveSecretKey(SecretKey);

impl CurveSecretKey {
    /// A new key from the operating system's generator.
    pub fn generate() -> Self {
        Self(SecretKey::generate(&mut OsRng))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(SecretKey::from(bytes))
    }

    pub fn from_z85(text: &str) -> Result<Self, CurveKeyError> {
        Ok(Self::from_bytes(*key_bytes_from_z85(text)?))
    }

    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    pub fn to_z85(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.0.to_bytes());
        Zeroizing::new(z85::encode(&*bytes).expect("32 bytes are a multiple of 4"))
    }

    /// The public key libzmq's `zmq_curve_public` derives from this secret.
    pub fn public_key(&self) -> CurvePublicKey {
        CurvePublicKey(*self.0.public_key().as_bytes())
    }
}

impl fmt::Debug for CurveSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurveSecretKey(..)")
    }
}

/// A long-term key pair, as `zmq_curve_keypair` makes one.
#[derive(Clone, Debug)]
pub struct CurveKeyPair {
    pub public_key: CurvePublicKey,
    pub secret_key: CurveSecretKey,
}

impl CurveKeyPair {
    pub fn generate() -> Self {
        Self::from_secret_key(CurveSecretKey::generate())
    }

    pub fn from_secret_key(secret_key: CurveSecretKey) -> Self {
        Self {
            public_key: secret_key.public_key(),
            secret_key,
        }
    }
}

/// Who completed a CURVE handshake with a server socket, as its authorizer sees them.
#[derive(Debug, Clone)]
pub struct CurvePeer {
    /// The client's long-term public key, proven by the vouch in its INITIATE.
    pub public_key: CurvePublicKey,
    /// The identity the socket will route this peer by (the one in its metadata, or a new
    /// random one), the same value later messages from this peer carry on a ROUTER.
    pub identity: PeerIdentity,
    /// The client's socket type, from its metadata.
    pub socket_type: SocketType,
    /// zerowire patch: for an ipc connection, its peer's credentials (`None` for tcp).
    pub credentials: Option<crate::PeerCredentials>,
}

/// Decides whether a client that proved its key may connect. Called once per handshake, on the
/// connection's task, after the client's INITIATE was verified and before the peer joins the
/// socket: keep it quick and non-blocking.
pub type CurveAuthorizer = dyn Fn(&CurvePeer) -> bool + Send + Sync;

/// What the CURVE side of a socket has seen, for the socket's owner to read at any time.
#[derive(Debug, Default)]
pub struct CurveStats {
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    unauthorized: AtomicU64,
    rejected_messages: AtomicU64,
}

impl CurveStats {
    /// Connections that completed the handshake.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Connections closed during the handshake: wrong keys, bad boxes, malformed or unexpected
    /// commands, a peer of another mechanism (NULL), a peer that hung up, an ERROR received.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }

    /// Clients that proved their key but were refused by the authorizer.
    pub fn unauthorized(&self) -> u64 {
        self.unauthorized.load(Ordering::Relaxed)
    }

    /// Connections closed after the handshake because a MESSAGE failed: a box that does not
    /// open (tampered or forged), a replayed or reordered nonce, a malformed command.
    pub fn rejected_messages(&self) -> u64 {
        self.rejected_messages.load(Ordering::Relaxed)
    }
}

pub(crate) enum CurveRole {
    Server,
    Client { server_key: CurvePublicKey },
}

pub(crate) struct CurveKeys {
    role: CurveRole,
    secret: CurveSecretKey,
}

/// The CURVE part of `SocketOptions`. `keys` is `None` for a NULL-mechanism socket.
#[derive(Default)]
pub(crate) struct CurveOptions {
    pub(crate) keys: Option<CurveKeys>,
    pub(crate) authorizer: Option<Arc<CurveAuthorizer>>,
    pub(crate) stats: Arc<CurveStats>,
}

impl CurveOptions {
    pub(crate) fn set_server(&mut self, secret: CurveSecretKey) {
        self.keys = Some(CurveKeys {
            role: CurveRole::Server,
            secret,
        });
    }

    pub(crate) fn set_client(&mut self, server_key: CurvePublicKey, keys: CurveKeyPair) {
        self.keys = Some(CurveKeys {
            role: CurveRole::Client { server_key },
            secret: keys.secret_key,
        });
    }

    pub(crate) fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    pub(crate) fn is_server(&self) -> bool {
        matches!(
            self.keys,
            Some(CurveKeys {
                role: CurveRole::Server,
                ..
            })
        )
    }

    /// Counts the outcome of a handshake of a CURVE socket.
    pub(crate) fn count<T>(&self, result: &ZmqResult<T>) {
        if !self.enabled() {
            return;
        }
        let counter = match result {
            Ok(_) => &self.stats.handshakes,
            Err(ZmqError::Codec(CodecError::Mechanism(UNAUTHORIZED))) => &self.stats.unauthorized,
            Err(_) => &self.stats.handshake_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

const UNAUTHORIZED: &str = "CURVE: client key not authorized";

impl ZmqError {
    /// Whether this is the security handshake refusing the peer or being refused by it: a
    /// peer of another mechanism, a key that does not match, a failed box, a refusal by the
    /// authorizer. Retrying with the same keys will not help.
    pub fn is_mechanism_failure(&self) -> bool {
        matches!(self, ZmqError::Codec(CodecError::Mechanism(_)))
    }
}

fn fail(reason: &'static str) -> ZmqError {
    ZmqError::Codec(CodecError::Mechanism(reason))
}

fn nonce24(prefix: &[u8], tail: &[u8]) -> crypto_box::Nonce {
    let mut nonce = crypto_box::Nonce::default();
    nonce[..prefix.len()].copy_from_slice(prefix);
    nonce[prefix.len()..].copy_from_slice(tail);
    nonce
}

fn short_nonce(prefix: &[u8; 16], counter: u64) -> crypto_box::Nonce {
    nonce24(prefix, &counter.to_be_bytes())
}

fn random_16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Appends `tag || box(plaintext)` to `out`, the layout of NaCl's `crypto_box` without its
/// zero padding, which is what travels in every CURVE command.
fn seal_into(
    cipher: &impl AeadInPlace<NonceSize = U24>,
    nonce: &crypto_box::Nonce,
    plaintext: &[u8],
    out: &mut BytesMut,
) -> ZmqResult<()> {
    let tag_at = out.len();
    out.put_bytes(0, TAG_LEN);
    let text_at = out.len();
    out.put_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(nonce, b"", &mut out[text_at..])
        .map_err(|_| fail("CURVE: encryption failed"))?;
    out[tag_at..text_at].copy_from_slice(&tag);
    Ok(())
}

/// Opens `tag || box` into a new buffer, wiped when dropped.
fn open(
    cipher: &impl AeadInPlace<NonceSize = U24>,
    nonce: &crypto_box::Nonce,
    sealed: &[u8],
    reason: &'static str,
) -> ZmqResult<Zeroizing<Vec<u8>>> {
    if sealed.len() < TAG_LEN {
        return Err(fail(reason));
    }
    let (tag, text) = sealed.split_at(TAG_LEN);
    let mut plaintext = Zeroizing::new(text.to_vec());
    cipher
        .decrypt_in_place_detached(nonce, b"", &mut plaintext, GenericArray::from_slice(tag))
        .map_err(|_| fail(reason))?;
    Ok(plaintext)
}

/// Encrypts what this side sends once the handshake is done (the writer half).
pub(crate) struct CurveSender {
    cipher: SalsaBox,
    prefix: &'static [u8; 16],
    next_nonce: u64,
}

impl CurveSender {
    /// Appends one MESSAGE frame carrying `data`. libzmq sends MESSAGE as an ordinary frame
    /// (no MORE, no COMMAND bit): the real flags travel inside the box.
    pub(crate) fn seal_frame(
        &mut self,
        flags: u8,
        data: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let nonce = self.next_nonce;
        self.next_nonce = nonce
            .checked_add(1)
            .ok_or(CodecError::Mechanism("CURVE: nonces exhausted"))?;
        let body_len = MESSAGE_OVERHEAD + data.len();
        dst.reserve(9 + body_len);
        if body_len > 255 {
            dst.put_u8(0b10);
            dst.put_u64(body_len as u64);
        } else {
            dst.put_u8(0);
            dst.put_u8(body_len as u8);
        }
        dst.put_slice(b"\x07MESSAGE");
        dst.put_u64(nonce);
        let tag_at = dst.len();
        dst.put_bytes(0, TAG_LEN);
        let text_at = dst.len();
        dst.put_u8(flags);
        dst.put_slice(data);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&short_nonce(self.prefix, nonce), b"", &mut dst[text_at..])
            .map_err(|_| CodecError::Mechanism("CURVE: encryption failed"))?;
        dst[tag_at..text_at].copy_from_slice(&tag);
        Ok(())
    }

    pub(crate) fn seal_message(
        &mut self,
        message: Message,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        match message {
            Message::Message(message) => {
                let last = message.len() - 1;
                for (i, frame) in message.iter().enumerate() {
                    let flags = if i == last { 0 } else { FLAG_MORE };
                    self.seal_frame(flags, frame, dst)?;
                }
                Ok(())
            }
            Message::Command(command) => {
                let frame = BytesMut::from(command);
                let header = if frame[0] & 0b10 != 0 { 9 } else { 2 };
                self.seal_frame(FLAG_COMMAND, &frame[header..], dst)
            }
            Message::Greeting(_) => Err(CodecError::Mechanism(
                "CURVE: a greeting cannot follow the handshake",
            )),
        }
    }
}

/// Decrypts what the peer sends once the handshake is done (the reader half).
pub(crate) struct CurveReceiver {
    cipher: SalsaBox,
    prefix: &'static [u8; 16],
    last_nonce: u64,
    stats: Arc<CurveStats>,
}

impl fmt::Debug for CurveReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveReceiver")
            .field("last_nonce", &self.last_nonce)
            .finish_non_exhaustive()
    }
}

impl CurveReceiver {
    /// Opens one MESSAGE frame in place: on success `body` holds the plaintext and the flags
    /// byte is returned. Any failure is final for the connection (the caller drops it).
    pub(crate) fn open_frame(&mut self, body: &mut BytesMut) -> Result<u8, CodecError> {
        let result = self.open_in_place(body);
        if result.is_err() {
            self.stats.rejected_messages.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn open_in_place(&mut self, body: &mut BytesMut) -> Result<u8, CodecError> {
        if body.len() < MESSAGE_OVERHEAD || &body[..8] != b"\x07MESSAGE" {
            return Err(CodecError::Mechanism("CURVE: malformed MESSAGE"));
        }
        let nonce = u64::from_be_bytes(body[8..16].try_into().expect("8 bytes"));
        // Short nonces only grow: a replayed or reordered MESSAGE is refused before its box
        // is even opened.
        if nonce <= self.last_nonce {
            return Err(CodecError::Mechanism("CURVE: MESSAGE nonce replayed"));
        }
        let (head, text) = body.split_at_mut(16 + TAG_LEN);
        let tag = GenericArray::clone_from_slice(&head[16..]);
        self.cipher
            .decrypt_in_place_detached(&short_nonce(self.prefix, nonce), b"", text, &tag)
            .map_err(|_| CodecError::Mechanism("CURVE: MESSAGE box does not open"))?;
        self.last_nonce = nonce;
        let flags = body[16 + TAG_LEN];
        body.advance(MESSAGE_OVERHEAD);
        Ok(flags)
    }
}

/// Whether the opened MESSAGE continues (`more`) and whether it carries a command.
pub(crate) fn frame_flags(flags: u8) -> (bool, bool) {
    (flags & FLAG_MORE != 0, flags & FLAG_COMMAND != 0)
}

async fn send_command(io: &mut FramedIo, body: BytesMut) -> ZmqResult<()> {
    io.write_half
        .send(Message::Command(ZmqCommand::mechanism(body.freeze())))
        .await?;
    Ok(())
}

/// The next handshake command, whole (name included). An ERROR from the peer ends the
/// handshake here.
async fn recv_command(io: &mut FramedIo, expected: &'static [u8]) -> ZmqResult<Bytes> {
    let body = match io.read_half.next().await {
        Some(Ok(Message::Command(command))) => command.body,
        Some(Ok(_)) => return Err(fail("CURVE: expected a handshake command")),
        Some(Err(error)) => return Err(error.into()),
        None => {
            return Err(fail(
                "CURVE: peer closed the connection during the handshake",
            ))
        }
    };
    if body.starts_with(b"\x05ERROR") {
        return Err(fail("CURVE: peer refused the handshake (ERROR)"));
    }
    if !body.starts_with(expected) {
        return Err(fail("CURVE: unexpected handshake command"));
    }
    Ok(body)
}

/// Runs the CURVE handshake on a connection whose greetings said CURVE, and switches the
/// connection to MESSAGE encryption. Returns the peer's identity, as the NULL READY exchange
/// does.
pub(crate) async fn handshake(
    io: &mut FramedIo,
    options: &CurveOptions,
    socket_type: SocketType,
    metadata: HashMap<String, Bytes>,
) -> ZmqResult<PeerIdentity> {
    let keys = options
        .keys
        .as_ref()
        .ok_or(fail("CURVE: no keys configured"))?;
    io.read_half.set_mechanism_commands(true);
    let result = match &keys.role {
        CurveRole::Client { server_key } => {
            client(io, keys, server_key, options, socket_type, metadata).await
        }
        CurveRole::Server => server(io, keys, options, socket_type, metadata).await,
    };
    io.read_half.set_mechanism_commands(false);
    result
}

fn metadata_bytes(socket_type: SocketType, mut metadata: HashMap<String, Bytes>) -> BytesMut {
    metadata.insert("Socket-Type".into(), socket_type.as_str().into());
    let mut out = BytesMut::new();
    crate::codec::put_properties(&metadata, &mut out);
    out
}

/// The peer's identity and socket type, once its socket type is known to fit ours.
fn peer_from_metadata(
    socket_type: SocketType,
    metadata: &[u8],
) -> ZmqResult<(PeerIdentity, SocketType)> {
    let properties = crate::codec::parse_properties(Bytes::copy_from_slice(metadata))?;
    let identity = crate::util::peer_from_properties(socket_type, &properties)?;
    let peer_type = SocketType::try_from(&properties["Socket-Type"][..])?;
    Ok((identity, peer_type))
}

async fn client(
    io: &mut FramedIo,
    keys: &CurveKeys,
    server_key: &CurvePublicKey,
    options: &CurveOptions,
    socket_type: SocketType,
    metadata: HashMap<String, Bytes>,
) -> ZmqResult<PeerIdentity> {
    let server_long = server_key.to_box_key();
    let short_secret = SecretKey::generate(&mut OsRng);
    let short_public = short_secret.public_key();
    let mut nonce: u64 = 1;

    // HELLO: our short-term key, and a box of zeros that only the server's long-term key opens.
    // The 72 zero bytes keep HELLO as long as WELCOME, so the server never amplifies.
    let to_server_long = SalsaBox::new(&server_long, &short_secret);
    let mut hello = BytesMut::with_capacity(200);
    hello.put_slice(b"\x05HELLO\x01\x00");
    hello.put_bytes(0, 72);
    hello.put_slice(short_public.as_bytes());
    hello.put_u64(nonce);
    seal_into(
        &to_server_long,
        &short_nonce(HELLO_NONCE, nonce),
        &[0u8; 64],
        &mut hello,
    )?;
    send_command(io, hello).await?;
    nonce += 1;

    // WELCOME: the server's short-term key and its cookie, boxed by its long-term key. A server
    // without the secret we were told to trust cannot make a box that opens.
    let welcome = recv_command(io, b"\x07WELCOME").await?;
    if welcome.len() != 168 {
        return Err(fail("CURVE: malformed WELCOME"));
    }
    let plaintext = open(
        &to_server_long,
        &nonce24(b"WELCOME-", &welcome[8..24]),
        &welcome[24..],
        "CURVE: WELCOME box does not open (wrong server key?)",
    )?;
    let server_short = PublicKey::from_slice(&plaintext[..KEY_LEN])
        .map_err(|_| fail("CURVE: malformed WELCOME"))?;
    let cookie = &plaintext[KEY_LEN..];
    let session = SalsaBox::new(&server_short, &short_secret);

    // INITIATE: the cookie back, our long-term key and the vouch (our short-term key and the
    // server's long-term key, boxed from our long-term key to its short-term one), metadata.
    let vouch_nonce = random_16();
    let mut vouch_plain = Zeroizing::new([0u8; 64]);
    vouch_plain[..KEY_LEN].copy_from_slice(short_public.as_bytes());
    vouch_plain[KEY_LEN..].copy_from_slice(server_long.as_bytes());
    let mut initiate_plain = BytesMut::new();
    initiate_plain.put_slice(keys.secret.public_key().as_bytes());
    initiate_plain.put_slice(&vouch_nonce);
    seal_into(
        &SalsaBox::new(&server_short, &keys.secret.0),
        &nonce24(b"VOUCH---", &vouch_nonce),
        &*vouch_plain,
        &mut initiate_plain,
    )?;
    initiate_plain.extend_from_slice(&metadata_bytes(socket_type, metadata));
    let mut initiate = BytesMut::with_capacity(113 + TAG_LEN + initiate_plain.len());
    initiate.put_slice(b"\x08INITIATE");
    initiate.put_slice(cookie);
    initiate.put_u64(nonce);
    seal_into(
        &session,
        &short_nonce(INITIATE_NONCE, nonce),
        &initiate_plain,
        &mut initiate,
    )?;
    send_command(io, initiate).await?;
    nonce += 1;

    // READY: the server's metadata, in the session box.
    let ready = recv_command(io, b"\x05READY").await?;
    if ready.len() < 6 + 8 + TAG_LEN {
        return Err(fail("CURVE: malformed READY"));
    }
    let ready_nonce = u64::from_be_bytes(ready[6..14].try_into().expect("8 bytes"));
    let metadata = open(
        &session,
        &short_nonce(READY_NONCE, ready_nonce),
        &ready[14..],
        "CURVE: READY box does not open",
    )?;
    let (peer_id, _) = peer_from_metadata(socket_type, &metadata)?;

    // The box is not `Clone`: each half gets its own, from the same keys.
    io.write_half.set_curve(CurveSender {
        cipher: SalsaBox::new(&server_short, &short_secret),
        prefix: CLIENT_MESSAGE_NONCE,
        next_nonce: nonce,
    });
    io.read_half.set_curve(CurveReceiver {
        cipher: session,
        prefix: SERVER_MESSAGE_NONCE,
        last_nonce: ready_nonce,
        stats: options.stats.clone(),
    });
    Ok(peer_id)
}

async fn server(
    io: &mut FramedIo,
    keys: &CurveKeys,
    options: &CurveOptions,
    socket_type: SocketType,
    metadata: HashMap<String, Bytes>,
) -> ZmqResult<PeerIdentity> {
    let server_public = keys.secret.public_key();

    // HELLO
    let hello = recv_command(io, b"\x05HELLO").await?;
    if hello.len() != 200 {
        return Err(fail("CURVE: malformed HELLO"));
    }
    if hello[6..8] != [1, 0] {
        return Err(fail("CURVE: unsupported CurveZMQ version"));
    }
    let client_short = PublicKey::from_slice(&hello[80..112]).expect("32 bytes");
    let hello_nonce = u64::from_be_bytes(hello[112..120].try_into().expect("8 bytes"));
    let from_client_short = SalsaBox::new(&client_short, &keys.secret.0);
    open(
        &from_client_short,
        &short_nonce(HELLO_NONCE, hello_nonce),
        &hello[120..],
        "CURVE: HELLO box does not open (client has the wrong server key?)",
    )?;

    // WELCOME: a fresh short-term key pair, and the cookie (the client's short-term key and our
    // short-term secret) sealed with a key made for this connection alone.
    let short_secret = SecretKey::generate(&mut OsRng);
    let short_public = short_secret.public_key();
    let mut cookie_key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *cookie_key);
    let cookie_cipher = XSalsa20Poly1305::new(GenericArray::from_slice(&*cookie_key));
    let cookie_nonce = random_16();
    let mut cookie_plain = Zeroizing::new([0u8; 64]);
    cookie_plain[..KEY_LEN].copy_from_slice(client_short.as_bytes());
    cookie_plain[KEY_LEN..].copy_from_slice(&short_secret.to_bytes());
    let mut welcome_plain = BytesMut::with_capacity(128);
    welcome_plain.put_slice(short_public.as_bytes());
    welcome_plain.put_slice(&cookie_nonce);
    seal_into(
        &cookie_cipher,
        &nonce24(b"COOKIE--", &cookie_nonce),
        &*cookie_plain,
        &mut welcome_plain,
    )?;
    let welcome_nonce = random_16();
    let mut welcome = BytesMut::with_capacity(168);
    welcome.put_slice(b"\x07WELCOME");
    welcome.put_slice(&welcome_nonce);
    seal_into(
        &from_client_short,
        &nonce24(b"WELCOME-", &welcome_nonce),
        &welcome_plain,
        &mut welcome,
    )?;
    send_command(io, welcome).await?;

    // INITIATE
    let initiate = recv_command(io, b"\x08INITIATE").await?;
    if initiate.len() < 9 + 96 + 8 + TAG_LEN + 128 {
        return Err(fail("CURVE: malformed INITIATE"));
    }
    let cookie = open(
        &cookie_cipher,
        &nonce24(b"COOKIE--", &initiate[9..25]),
        &initiate[25..105],
        "CURVE: INITIATE cookie does not open",
    )?;
    if cookie[..] != cookie_plain[..] {
        return Err(fail("CURVE: INITIATE cookie is not this connection's"));
    }
    let initiate_nonce = u64::from_be_bytes(initiate[105..113].try_into().expect("8 bytes"));
    if initiate_nonce <= hello_nonce {
        return Err(fail("CURVE: INITIATE nonce replayed"));
    }
    let session = SalsaBox::new(&client_short, &short_secret);
    let plaintext = open(
        &session,
        &short_nonce(INITIATE_NONCE, initiate_nonce),
        &initiate[113..],
        "CURVE: INITIATE box does not open",
    )?;
    let client_long = CurvePublicKey(plaintext[..KEY_LEN].try_into().expect("32 bytes"));
    let vouch = open(
        &SalsaBox::new(&client_long.to_box_key(), &short_secret),
        &nonce24(b"VOUCH---", &plaintext[32..48]),
        &plaintext[48..128],
        "CURVE: vouch box does not open",
    )?;
    // The vouch ties the client's long-term key to this connection's short-term key and to
    // us; a vouch lifted from another connection names another short-term key.
    if vouch[..KEY_LEN] != client_short.as_bytes()[..]
        || vouch[KEY_LEN..] != server_public.as_bytes()[..]
    {
        return Err(fail("CURVE: vouch does not match this connection"));
    }
    let (identity, peer_type) = peer_from_metadata(socket_type, &plaintext[128..])?;
    if let Some(authorizer) = &options.authorizer {
        let peer = CurvePeer {
            public_key: client_long,
            identity: identity.clone(),
            socket_type: peer_type,
            credentials: io.credentials,
        };
        if !authorizer(&peer) {
            // As libzmq does when ZAP refuses: an ERROR with status 400, then the close.
            let mut error = BytesMut::with_capacity(10);
            error.put_slice(b"\x05ERROR\x03400");
            let _ = send_command(io, error).await;
            return Err(fail(UNAUTHORIZED));
        }
    }

    // READY: our metadata in the session box, short nonce 1; MESSAGE nonces follow from 2.
    let mut nonce = 1;
    let mut ready = BytesMut::new();
    ready.put_slice(b"\x05READY");
    ready.put_u64(nonce);
    seal_into(
        &session,
        &short_nonce(READY_NONCE, nonce),
        &metadata_bytes(socket_type, metadata),
        &mut ready,
    )?;
    send_command(io, ready).await?;
    nonce += 1;

    io.write_half.set_curve(CurveSender {
        cipher: SalsaBox::new(&client_short, &short_secret),
        prefix: SERVER_MESSAGE_NONCE,
        next_nonce: nonce,
    });
    io.read_half.set_curve(CurveReceiver {
        cipher: session,
        prefix: CLIENT_MESSAGE_NONCE,
        last_nonce: initiate_nonce,
        stats: options.stats.clone(),
    });
    Ok(identity)
}
