//! Errors of the core. Each variant maps to a Node-style `code` so the binding layer can
//! forward them without inventing its own taxonomy.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The endpoint string is not `ipc://path` or `tcp://host:port`.
    InvalidEndpoint(String),
    /// An option is out of range.
    InvalidOption(String),
    /// A payload is larger than `maxMessageBytes`.
    MessageTooLarge { size: usize, max: usize },
    /// The client was closed.
    Closed,
    /// The engine thread could not be started.
    Spawn(String),
    /// A server is already bound there (or the path is taken by something else).
    AddrInUse(String),
    /// An ipc:// path over the OS limit.
    PathTooLong { path: String, max: usize },
    /// Binding failed for another reason; `code` is the errno name.
    Bind { code: &'static str, message: String },
    /// A sink's storage could not be opened (path, permissions, not a database).
    Sink(String),
    /// Not available on this OS (ipc:// on Windows).
    Unsupported(String),
    /// A server on an address other hosts can reach, without CURVE or `insecure: true`.
    Insecure(String),
}

impl Error {
    /// The Node-style error code the binding attaches to the JS error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidEndpoint(_) => "ERR_INVALID_ARG_VALUE",
            Error::InvalidOption(_) => "ERR_OUT_OF_RANGE",
            Error::MessageTooLarge { .. } => "EMSGSIZE",
            Error::Closed => "ECLOSED",
            Error::Spawn(_) => "ERR_ZEROWIRE_SPAWN",
            Error::AddrInUse(_) => "EADDRINUSE",
            Error::PathTooLong { .. } => "ENAMETOOLONG",
            Error::Bind { code, .. } => code,
            Error::Sink(_) => "ERR_ZEROWIRE_SINK",
            // Node's own code for the same situation.
            Error::Unsupported(_) => "ERR_FEATURE_UNAVAILABLE_ON_PLATFORM",
            Error::Insecure(_) => "ERR_ZEROWIRE_INSECURE",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidEndpoint(why) => write!(f, "invalid endpoint: {why}"),
            Error::InvalidOption(why) => write!(f, "invalid option: {why}"),
            Error::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds maxMessageBytes ({max})")
            }
            Error::Closed => write!(f, "closed: close() was called"),
            Error::Spawn(why) => write!(f, "could not start the engine thread: {why}"),
            Error::AddrInUse(why) => write!(f, "address in use: {why}"),
            Error::PathTooLong { path, max } => write!(
                f,
                "ipc path is {} bytes, over the {max}-byte Unix socket limit: {path}",
                path.len()
            ),
            Error::Bind { message, .. } => write!(f, "bind failed: {message}"),
            Error::Sink(why) => write!(f, "could not open the sink: {why}"),
            Error::Unsupported(why) => write!(f, "unsupported: {why}"),
            Error::Insecure(address) => write!(
                f,
                "refusing to serve {address} without encryption: other hosts can reach it. \
                 Give `curve: {{ publicKey, secretKey }}` (see curveKeypair()), bind a loopback \
                 address or ipc://, or pass `insecure: true` if the network is trusted"
            ),
        }
    }
}

impl std::error::Error for Error {}
