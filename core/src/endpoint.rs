//! An endpoint, parsed once where it enters (a client's constructor, a server's bind) and
//! passed on as an [`Endpoint`]: nothing else looks at the `ipc://` / `tcp://` prefixes.
//!
//! The zeromq crate panics or aborts on some malformed input, so anything that is not plainly
//! `ipc://<path>` or `tcp://<host>:<port>` is refused before it gets there.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Longest path `sockaddr_un.sun_path` holds without its terminating NUL: 108 bytes on Linux,
/// 104 on macOS and the BSDs.
pub const MAX_IPC_PATH: usize = if cfg!(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)) {
    103
} else {
    107
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix domain socket file.
    Ipc(PathBuf),
    /// `host` as written (a name, an IPv4 address, an IPv6 address without its brackets, or
    /// `*` for all interfaces when binding); `port` 0 lets a server pick a free one.
    Tcp { host: String, port: u16 },
}

impl Endpoint {
    /// An endpoint a client connects to: a real port, a path within the OS limit.
    pub fn for_connect(endpoint: &str) -> Result<Endpoint, Error> {
        let bad = |why: String| Error::InvalidEndpoint(format!("{endpoint:?}: {why}"));
        match Endpoint::parse(endpoint)
            .map_err(|why| bad(why.into()))?
            .supported(endpoint)?
        {
            Endpoint::Ipc(path) if path.as_os_str().len() > MAX_IPC_PATH => Err(bad(format!(
                "ipc path is longer than {MAX_IPC_PATH} bytes (the Unix socket limit)"
            ))),
            Endpoint::Tcp { port: 0, .. } => Err(bad("port must be 1..=65535".into())),
            Endpoint::Tcp { host, .. } if host == "*" => {
                Err(bad("`*` is for binding; connect to a host".into()))
            }
            ok => Ok(ok),
        }
    }

    /// An endpoint a server binds: port 0 picks a free port, `*` means all interfaces. A path
    /// over the OS limit is refused when binding, with its own code (`ENAMETOOLONG`).
    pub fn for_bind(endpoint: &str) -> Result<Endpoint, Error> {
        Endpoint::parse(endpoint)
            .map_err(|why| Error::InvalidEndpoint(format!("{endpoint:?}: {why}")))?
            .supported(endpoint)
    }

    /// Where there are no Unix sockets (Windows), ipc:// is refused with a code of its own.
    fn supported(self, endpoint: &str) -> Result<Endpoint, Error> {
        if cfg!(not(unix)) && matches!(self, Endpoint::Ipc(_)) {
            return Err(Error::Unsupported(format!(
                "{endpoint:?}: ipc:// is not available on this platform; use tcp://"
            )));
        }
        Ok(self)
    }

    fn parse(endpoint: &str) -> Result<Endpoint, &'static str> {
        if let Some(path) = endpoint.strip_prefix("ipc://") {
            if path.is_empty() {
                return Err("ipc:// needs a path");
            }
            if path.contains('\0') {
                return Err("path contains a NUL byte");
            }
            return Ok(Endpoint::Ipc(PathBuf::from(path)));
        }
        let Some(rest) = endpoint.strip_prefix("tcp://") else {
            return Err("only ipc:// and tcp:// endpoints are supported");
        };
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err("tcp:// needs host:port");
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err("tcp:// needs a host");
        }
        let port = port.parse::<u16>().map_err(|_| "port must be 1..=65535")?;
        Ok(Endpoint::Tcp {
            host: host.to_owned(),
            port,
        })
    }

    /// The socket file of an `ipc://` endpoint.
    pub fn ipc_path(&self) -> Option<&Path> {
        match self {
            Endpoint::Ipc(path) => Some(path),
            Endpoint::Tcp { .. } => None,
        }
    }

    /// The address for `std::net::TcpListener::bind` (`*` is all IPv4 interfaces).
    pub(crate) fn tcp_bind_address(&self) -> Option<String> {
        match self {
            Endpoint::Tcp { host, port } if host == "*" => Some(format!("0.0.0.0:{port}")),
            Endpoint::Tcp { host, port } if host.contains(':') => Some(format!("[{host}]:{port}")),
            Endpoint::Tcp { host, port } => Some(format!("{host}:{port}")),
            Endpoint::Ipc(_) => None,
        }
    }
}

/// The ZeroMQ spelling, as the zeromq crate and libzmq take it.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ipc(path) => write!(f, "ipc://{}", path.display()),
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_endpoints() {
        assert!(Endpoint::for_connect("ipc:///tmp/a.sock").is_ok());
        assert_eq!(
            Endpoint::for_connect("tcp://127.0.0.1:5555").unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 5555
            }
        );
        let v6 = Endpoint::for_connect("tcp://[::1]:5555").unwrap();
        assert_eq!(v6.to_string(), "tcp://[::1]:5555");
        assert!(Endpoint::for_connect("inproc://x").is_err());
        assert!(Endpoint::for_connect("tcp://127.0.0.1").is_err());
        assert!(Endpoint::for_connect("tcp://127.0.0.1:0").is_err());
        assert!(Endpoint::for_connect("tcp://127.0.0.1:99999").is_err());
        assert!(Endpoint::for_connect("tcp://:80").is_err());
        assert!(Endpoint::for_connect("tcp://*:80").is_err());
        assert!(Endpoint::for_connect("ipc://").is_err());
        assert!(Endpoint::for_connect("ipc://a\0b").is_err());
        let long = format!("ipc:///tmp/{}", "x".repeat(120));
        let err = Endpoint::for_connect(&long).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARG_VALUE");
        assert!(err.to_string().contains(&MAX_IPC_PATH.to_string()));
    }

    #[test]
    fn bind_endpoints() {
        let any = Endpoint::for_bind("tcp://*:0").unwrap();
        assert_eq!(any.tcp_bind_address().unwrap(), "0.0.0.0:0");
        let v6 = Endpoint::for_bind("tcp://[::1]:0").unwrap();
        assert_eq!(v6.tcp_bind_address().unwrap(), "[::1]:0");
        assert_eq!(
            Endpoint::for_bind("tcp://127.0.0.1:99999")
                .unwrap_err()
                .code(),
            "ERR_INVALID_ARG_VALUE"
        );
        // Long paths are the bind's to refuse (ENAMETOOLONG).
        let long = format!("ipc:///tmp/{}", "x".repeat(120));
        assert!(Endpoint::for_bind(&long).is_ok());
    }
}
