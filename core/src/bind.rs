//! Binding a server endpoint ourselves, then handing the listener to the zeromq crate.
//!
//! For `ipc://` this is where the socket file is made safe to use:
//! - a path longer than the OS limit ([`MAX_IPC_PATH`]) is refused up front;
//! - a socket file left by a dead server (connecting is refused) is replaced, while a path
//!   where a live server answers, or a path that is not a socket, is refused (`EADDRINUSE`);
//! - the socket is created owner-only (0600) unless the caller asks for another mode, with no
//!   window in which it is wider: it is bound inside a fresh 0700 directory, chmod-ed there, and
//!   then hard-linked into place (`link` fails if the name was taken meanwhile, so a server that
//!   won a race is never clobbered).
//!
//! `tcp://` binds a std listener the usual way; port 0 picks a free port. Windows has no ipc://
//! (a coded error; named pipes may come later), only tcp://.

use std::io;
use std::net::TcpListener;
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
#[cfg(unix)]
use std::path::Path;
use std::path::PathBuf;

use crate::endpoint::Endpoint;
#[cfg(unix)]
use crate::endpoint::MAX_IPC_PATH;
use crate::error::Error;

pub enum Bound {
    #[cfg(unix)]
    Ipc(IpcBinding),
    Tcp(TcpListener),
}

#[cfg(unix)]
pub struct IpcBinding {
    pub listener: UnixListener,
    pub file: SocketFile,
}

/// The socket file a server created, removed at close only while it is still the same file.
pub struct SocketFile {
    pub path: PathBuf,
    #[cfg(unix)]
    inode: u64,
}

impl Bound {
    /// Splits into what the zeromq crate takes and the file we must clean up ourselves.
    pub fn into_parts(self) -> (zeromq::Listener, Option<SocketFile>) {
        match self {
            #[cfg(unix)]
            Bound::Ipc(b) => (b.listener.into(), Some(b.file)),
            Bound::Tcp(l) => (l.into(), None),
        }
    }
}

impl SocketFile {
    /// Removes the socket file if it is still the one we bound.
    pub fn remove_file(&self) {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.ino() == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Bound {
    /// The endpoint clients should use (with the real port for `tcp://…:0`).
    pub fn endpoint(&self) -> String {
        match self {
            #[cfg(unix)]
            Bound::Ipc(b) => format!("ipc://{}", b.file.path.display()),
            Bound::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("tcp://{a}"),
                Err(_) => "tcp://?".into(),
            },
        }
    }

    /// For a tcp listener on an address other hosts can reach (any but loopback: all
    /// interfaces, a public or private IP), that address. ipc:// sockets are local files.
    pub fn reachable_from_elsewhere(&self) -> Option<String> {
        match self {
            #[cfg(unix)]
            Bound::Ipc(_) => None,
            Bound::Tcp(l) => match l.local_addr() {
                Ok(a) if a.ip().is_loopback() => None,
                Ok(a) => Some(format!("tcp://{a}")),
                Err(_) => Some("tcp://?".into()),
            },
        }
    }
}

fn io_error(what: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::AddrInUse => Error::AddrInUse(format!("{what}: {e}")),
        io::ErrorKind::PermissionDenied => Error::Bind {
            code: "EACCES",
            message: format!("{what}: {e}"),
        },
        _ => Error::Bind {
            code: "EBIND",
            message: format!("{what}: {e}"),
        },
    }
}

pub fn bind(endpoint: &Endpoint, ipc_mode: u32) -> Result<Bound, Error> {
    match endpoint {
        #[cfg(unix)]
        Endpoint::Ipc(path) => bind_ipc(path, ipc_mode).map(Bound::Ipc),
        #[cfg(not(unix))]
        Endpoint::Ipc(_) => {
            let _ = ipc_mode;
            Err(Error::Unsupported(format!(
                "{endpoint}: ipc:// is not available on this platform; use tcp://"
            )))
        }
        Endpoint::Tcp { .. } => {
            let addr = endpoint.tcp_bind_address().unwrap_or_default();
            TcpListener::bind(&addr)
                .map(Bound::Tcp)
                .map_err(|e| io_error(&endpoint.to_string(), e))
        }
    }
}

#[cfg(unix)]
fn bind_ipc(path: &Path, mode: u32) -> Result<IpcBinding, Error> {
    let shown = path.display().to_string();
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidEndpoint("ipc:// needs a path".into()));
    }
    if path.as_os_str().len() > MAX_IPC_PATH {
        return Err(Error::PathTooLong {
            path: shown,
            max: MAX_IPC_PATH,
        });
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let private_parent = check_directories(&parent, &shown)?;
    clear_stale(path)?;

    // A private directory next to the target; 0700 so nobody else can reach the socket in it.
    let private = parent.join(format!(".zw{:x}{:x}", std::process::id(), nonce()));
    let staged = private.join("s");
    let listener = if staged.as_os_str().len() <= MAX_IPC_PATH {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(|e| io_error(&shown, e))?;
        let result = (|| {
            let listener = UnixListener::bind(&staged)?;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
            std::fs::hard_link(&staged, path)?;
            Ok(listener)
        })();
        let _ = std::fs::remove_file(&staged);
        let _ = std::fs::remove_dir(&private);
        result.map_err(|e: io::Error| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::AddrInUse(format!("{shown}: another server bound it meanwhile"))
            } else {
                io_error(&shown, e)
            }
        })?
    } else if private_parent {
        // The private directory's name would push the staged path over the limit: bind in
        // place. Nobody else can reach this directory, so the moment the file has the process
        // umask's mode, before it is narrowed, exposes nothing.
        let listener = UnixListener::bind(path).map_err(|e| io_error(&shown, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_error(&shown, e))?;
        listener
    } else {
        // In a directory others can reach, binding in place would leave the socket with the
        // umask's mode (all of 0777 under umask 000) until narrowed: never wider, even for an
        // instant.
        return Err(unsafe_path(format!(
            "{shown}: too long to bind owner-only in a directory other users can reach \
             (at most {} bytes there, or any length in a directory only you can enter)",
            MAX_IPC_PATH - STAGING_EXTRA
        )));
    };
    let inode = std::fs::symlink_metadata(path)
        .map_err(|e| io_error(&shown, e))?
        .ino();
    Ok(IpcBinding {
        listener,
        file: SocketFile {
            path: path.to_path_buf(),
            inode,
        },
    })
}

/// What the private staging directory adds to a path at most: "/.zw", the pid and a nonce in
/// up to 8 hex digits each, "/s".
#[cfg(unix)]
const STAGING_EXTRA: usize = 22;

#[cfg(unix)]
fn unsafe_path(message: String) -> Error {
    Error::Bind {
        code: "ERR_ZEROWIRE_UNSAFE_PATH",
        message,
    }
}

/// Refuses a socket directory another user could take the endpoint over through: every
/// directory from it up to `/` must belong to us or to root and must not be writable by others
/// unless sticky (as /tmp is: there nobody may rename or remove what is not theirs), and a
/// symbolic link on the way must belong to us or to root (a planted one leads elsewhere).
/// Returns whether the directory is private (ours, and no one else may enter it).
#[cfg(unix)]
fn check_directories(dir: &Path, shown: &str) -> Result<bool, Error> {
    let me = rustix::process::geteuid().as_raw();
    let trusted = |uid: u32| uid == me || uid == 0;
    let absolute = std::env::current_dir()
        .map(|cwd| cwd.join(dir))
        .map_err(|e| io_error(shown, e))?;
    // The links as written, then the directories they lead to.
    for a in absolute.ancestors() {
        match std::fs::symlink_metadata(a) {
            Ok(m) if m.file_type().is_symlink() && !trusted(m.uid()) => {
                return Err(unsafe_path(format!(
                    "{shown}: {} is a symbolic link of uid {}, another user",
                    a.display(),
                    m.uid()
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(io_error(shown, e)),
        }
    }
    let real = std::fs::canonicalize(&absolute).map_err(|e| io_error(shown, e))?;
    for a in real.ancestors() {
        let m = std::fs::metadata(a).map_err(|e| io_error(shown, e))?;
        let mode = m.permissions().mode();
        if !trusted(m.uid()) {
            return Err(unsafe_path(format!(
                "{shown}: {} belongs to uid {}, another user",
                a.display(),
                m.uid()
            )));
        }
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(unsafe_path(format!(
                "{shown}: other users may write to {} ({:o}) and replace the socket",
                a.display(),
                mode & 0o7777
            )));
        }
    }
    let m = std::fs::metadata(&real).map_err(|e| io_error(shown, e))?;
    Ok(m.uid() == me && m.permissions().mode() & 0o077 == 0)
}

/// Removes a socket file no server listens on; refuses a live one or a non-socket.
#[cfg(unix)]
fn clear_stale(path: &Path) -> Result<(), Error> {
    let shown = path.display().to_string();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(&shown, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::AddrInUse(format!(
            "{shown} exists and is not a socket; not replacing it"
        )));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(Error::AddrInUse(format!(
            "{shown}: a server is listening there"
        ))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Nobody listens: a dead server's leftover.
            std::fs::remove_file(path).map_err(|e| io_error(&shown, e))
        }
        Err(e) => Err(io_error(&shown, e)),
    }
}

#[cfg(unix)]
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() & 0xffff_ffff
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
        crate::testing::scratch(&format!("zw-bind-{name}"), "s.sock")
    }

    #[test]
    fn owner_only_by_default_and_usable_after_link() {
        let (_dir, path) = tmp("mode");
        let Bound::Ipc(b) = bind(&Endpoint::Ipc(path.clone()), 0o600).unwrap() else {
            panic!("ipc")
        };
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // The listener answers on the linked name.
        UnixStream::connect(&path).unwrap();
        assert!(b.listener.accept().is_ok());
        // No private directory is left behind.
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("s.sock")]);
        b.file.remove_file();
        assert!(!path.exists());
    }

    #[test]
    fn live_refused_stale_replaced_non_socket_kept() {
        let (_dir, path) = tmp("stale");
        let ep = Endpoint::Ipc(path.clone());
        let first = bind(&ep, 0o600).unwrap();
        let err = bind(&ep, 0o600).err().unwrap();
        assert_eq!(err.code(), "EADDRINUSE");
        // Drop the listener but leave its file: a dead server's leftover.
        drop(first);
        assert!(path.exists());
        let Bound::Ipc(second) = bind(&ep, 0o640).unwrap() else {
            panic!("ipc")
        };
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        second.file.remove_file();
        std::fs::write(&path, b"precious").unwrap();
        assert_eq!(bind(&ep, 0o600).err().unwrap().code(), "EADDRINUSE");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn long_paths_are_refused() {
        let ep = Endpoint::for_bind(&format!("ipc:///tmp/{}", "x".repeat(120))).unwrap();
        let err = bind(&ep, 0o600).err().unwrap();
        assert_eq!(err.code(), "ENAMETOOLONG");
        assert!(err.to_string().contains(&MAX_IPC_PATH.to_string()));
    }

    #[test]
    fn tcp_port_zero_and_in_use() {
        let b = bind(&Endpoint::for_bind("tcp://127.0.0.1:0").unwrap(), 0).unwrap();
        let ep = b.endpoint();
        assert!(ep.starts_with("tcp://127.0.0.1:") && !ep.ends_with(":0"));
        let again = Endpoint::for_bind(&ep).unwrap();
        assert_eq!(bind(&again, 0).err().unwrap().code(), "EADDRINUSE");
    }
}
