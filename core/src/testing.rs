//! What the unit tests share.

use std::path::PathBuf;

/// `file` in a fresh directory named after `prefix`; the directory is removed when the guard
/// drops, however the test ends.
pub(crate) fn scratch(prefix: &str, file: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir()
        .expect("a temporary directory");
    let path = dir.path().join(file);
    (dir, path)
}
