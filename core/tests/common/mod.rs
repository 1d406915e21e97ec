//! What the integration tests share.

/// An ipc:// endpoint in a fresh directory named after `prefix`; the directory is removed when
/// the guard drops, however the test ends.
pub fn ipc_endpoint(prefix: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir()
        .expect("a temporary directory");
    (format!("ipc://{}/s.sock", dir.path().display()), dir)
}
