//! Noticing that a server bound an ipc endpoint, so a client connects at once instead of at its
//! next backoff step (which may be seconds away). Without a watch, backoff alone applies.
//!
//! Linux: inotify on the endpoints' directories, registered with the engine's own reactor (no
//! extra thread; the kernel reports the bind as it happens). Other Unix systems: the socket
//! files are looked at every [`POLL_INTERVAL`] on the engine's timer, and a file that appeared
//! or was replaced (another inode or change time) is reported. The `notify` crate would cover kqueue and FSEvents
//! too, but it runs a thread of its own per watcher (one more per client), FSEvents delivers
//! with a latency of its own, and neither backend can be run on the Linux machines that test
//! this code; the poll is a few `stat`s, and its tests run here like the rest.
//! Windows has no ipc:// (see `bind`), so nothing is watched there.

use std::ffi::OsString;
use std::path::Path;
use std::task::{Context, Poll};

/// How often the polling watch looks at the socket files.
#[cfg(unix)]
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Watches the socket files of a client's ipc endpoints.
pub(crate) struct Watch(Imp);

#[cfg(target_os = "linux")]
type Imp = inotify_watch::Inotify;
#[cfg(all(unix, not(target_os = "linux")))]
type Imp = poll_watch::Poll;
#[cfg(not(unix))]
type Imp = std::convert::Infallible;

impl Watch {
    /// Watches for these socket paths (an ipc endpoint without its `ipc://`). `None` when
    /// there is nothing to watch or the OS refused (then backoff alone applies). Must be
    /// called inside the engine's runtime: the watch registers with its reactor and timer.
    pub(crate) fn new<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Option<Watch> {
        #[cfg(unix)]
        return Imp::new(paths).map(Watch);
        #[cfg(not(unix))]
        {
            let _ = paths;
            None
        }
    }

    /// The file name of the next socket file to appear in a watched directory; `None` once the
    /// watch has failed (drop it). Dropping the pending call loses nothing.
    pub(crate) async fn next(&mut self) -> Option<OsString> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<OsString>> {
        #[cfg(unix)]
        return self.0.poll_next(cx);
        #[cfg(not(unix))]
        {
            let _ = cx;
            match self.0 {}
        }
    }
}

#[cfg(target_os = "linux")]
mod inotify_watch {
    use std::collections::HashSet;
    use std::ffi::OsString;
    use std::path::Path;
    use std::task::{Context, Poll};

    use futures::StreamExt;

    pub(super) struct Inotify(inotify::EventStream<[u8; 1024]>);

    impl Inotify {
        pub(super) fn new<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Option<Self> {
            let dirs: HashSet<&Path> = paths.into_iter().map(super::dir_of).collect();
            if dirs.is_empty() {
                return None;
            }
            let inotify = inotify::Inotify::init().ok()?;
            let mut added = false;
            for dir in dirs {
                // A server binds by creating the file or by moving/linking it into place.
                let mask = inotify::WatchMask::CREATE | inotify::WatchMask::MOVED_TO;
                added |= inotify.watches().add(dir, mask).is_ok();
            }
            if !added {
                return None;
            }
            inotify.into_event_stream([0u8; 1024]).ok().map(Inotify)
        }

        pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<OsString>> {
            loop {
                match self.0.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(event))) => match event.name {
                        Some(name) => return Poll::Ready(Some(name)),
                        // About the directory itself: nothing was bound.
                        None => continue,
                    },
                    Poll::Ready(_) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
    }
}

// Compiled on Linux too, so that its tests run where the project is tested.
#[cfg(unix)]
#[cfg_attr(target_os = "linux", allow(dead_code))]
mod poll_watch {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::task::{Context, Poll as TaskPoll};

    use tokio::time::{Interval, MissedTickBehavior};

    struct File {
        path: PathBuf,
        name: OsString,
        /// The file's identity when last looked at; a change means a server bound it anew.
        seen: Option<Identity>,
    }

    pub(super) struct Poll {
        files: Vec<File>,
        interval: Interval,
        ready: VecDeque<OsString>,
    }

    /// Device, inode and change time: a socket file bound after another was removed often
    /// gets the freed inode number back, but not its change time.
    type Identity = (u64, u64, i64, i64);

    fn identity(path: &Path) -> Option<Identity> {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
    }

    impl Poll {
        pub(super) fn new<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Option<Self> {
            let files: Vec<File> = paths
                .into_iter()
                .filter_map(|p| {
                    Some(File {
                        path: p.to_path_buf(),
                        name: p.file_name()?.to_os_string(),
                        // What is there now is what the first connect attempt finds.
                        seen: identity(p),
                    })
                })
                .collect();
            if files.is_empty() {
                return None;
            }
            let start = tokio::time::Instant::now() + super::POLL_INTERVAL;
            let mut interval = tokio::time::interval_at(start, super::POLL_INTERVAL);
            // An engine busy for a while looks once when it is back, not once per missed tick.
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Some(Poll {
                files,
                interval,
                ready: VecDeque::new(),
            })
        }

        pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> TaskPoll<Option<OsString>> {
            loop {
                if let Some(name) = self.ready.pop_front() {
                    return TaskPoll::Ready(Some(name));
                }
                if self.interval.poll_tick(cx).is_pending() {
                    return TaskPoll::Pending;
                }
                for f in &mut self.files {
                    let now = identity(&f.path);
                    if now.is_some() && now != f.seen {
                        self.ready.push_back(f.name.clone());
                    }
                    f.seen = now;
                }
            }
        }
    }
}

/// The directory a socket path lives in (`.` for a bare name).
#[cfg(target_os = "linux")]
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::time::Duration;

    fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
        crate::testing::scratch(&format!("zw-watch-{name}"), "s.sock")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    async fn expect_bind<F>(watch: &mut F, path: &Path)
    where
        F: FnMut(&mut Context<'_>) -> Poll<Option<OsString>>,
    {
        let got =
            tokio::time::timeout(Duration::from_secs(5), std::future::poll_fn(|cx| watch(cx)))
                .await
                .expect("a bind is reported within 5 s");
        assert_eq!(got.as_deref(), path.file_name());
    }

    async fn expect_quiet<F>(watch: &mut F)
    where
        F: FnMut(&mut Context<'_>) -> Poll<Option<OsString>>,
    {
        let got = tokio::time::timeout(
            Duration::from_millis(300),
            std::future::poll_fn(|cx| watch(cx)),
        )
        .await;
        assert!(
            got.is_err(),
            "nothing was bound, yet the watch reported {got:?}"
        );
    }

    /// Nothing is reported until a server binds, then its socket file's name; a rebind (a new
    /// file under the same name) is reported again.
    async fn bind_twice<F>(mut watch: F, path: &Path)
    where
        F: FnMut(&mut Context<'_>) -> Poll<Option<OsString>>,
    {
        expect_quiet(&mut watch).await;
        let first = UnixListener::bind(path).unwrap();
        expect_bind(&mut watch, path).await;
        // The server goes and another binds the same name.
        drop(first);
        std::fs::remove_file(path).unwrap();
        // As long as a server takes to start again at least: change times are kept in clock
        // ticks (a few ms on Linux), and a rebind within one tick may look like the same file.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _second = UnixListener::bind(path).unwrap();
        expect_bind(&mut watch, path).await;
    }

    #[test]
    fn platform_watch_reports_each_bind() {
        let (_dir, path) = tmp("platform");
        runtime().block_on(async {
            let mut w = Watch::new([path.as_path()]).expect("a watch");
            bind_twice(|cx| w.poll_next(cx), &path).await;
            // The async form sees the same events.
            std::fs::remove_file(&path).unwrap();
            let _third = UnixListener::bind(&path).unwrap();
            let name = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
            assert_eq!(name.unwrap().as_deref(), path.file_name());
        });
    }

    #[test]
    fn polling_watch_reports_each_bind() {
        let (_dir, path) = tmp("poll");
        runtime().block_on(async {
            let mut w = poll_watch::Poll::new([path.as_path()]).expect("a watch");
            bind_twice(|cx| w.poll_next(cx), &path).await;
        });
    }

    #[test]
    fn polling_watch_ignores_a_file_already_there() {
        let (_dir, path) = tmp("there");
        let _server = UnixListener::bind(&path).unwrap();
        runtime().block_on(async {
            let mut w = poll_watch::Poll::new([path.as_path()]).expect("a watch");
            expect_quiet(&mut |cx: &mut Context<'_>| w.poll_next(cx)).await;
        });
    }

    #[test]
    fn nothing_to_watch() {
        runtime().block_on(async {
            assert!(Watch::new(std::iter::empty()).is_none());
        });
    }
}
