//! The SQLite writer of a sink (cargo feature `sqlite`): SQLite is compiled from rusqlite's
//! bundled source, so the database needs nothing installed and nothing downloaded but crates.
//!
//! Table: `id INTEGER PRIMARY KEY, received_at INTEGER (ms since the epoch), client_id TEXT,
//! raw TEXT` (the message bytes as they arrived: TEXT when they are valid UTF-8, a BLOB of the
//! same bytes otherwise). WAL mode, so readers never block the writer
//! and the writer never blocks readers; `synchronous=NORMAL`, so a committed row survives the
//! process crashing (not the machine losing power, which would cost the last batches).
//!
//! A file SQLite can only open read-only is refused at open. The database and -wal files are
//! checked after every commit and while idle: if they were removed or replaced, the batch
//! is written again to a new database created at the path (what the removed files held is
//! gone with them).
//!
//! Exactly once: table `zerowire_sessions(session TEXT PRIMARY KEY, seq INTEGER NOT NULL)`
//! holds, per client session (16 hex digits), the highest seq stored, updated in the same
//! transaction as the rows. It is loaded at open (and at every reopen); a row at or below its
//! session's seq is a replay of one already stored (a client resends what a killed server had
//! not confirmed) and is skipped. Rows of clients that do not number their sends are always
//! stored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode};

use crate::error::Error;
use crate::sink::{Row, Store, WriteBatch};

/// How long a write waits for another connection's lock (a reader checkpointing, say).
const BUSY_TIMEOUT_MS: u64 = 5000;
/// At open, how long the check that we may write waits for a lock: one held elsewhere means
/// the file is writable (the writer waits for it later), so the call need not wait long.
const PROBE_BUSY_TIMEOUT_MS: u64 = 50;

fn valid_table(table: &str) -> bool {
    let mut chars = table.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && table.len() <= 64
}

fn sink_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::Sink(format!("{}: {e}", path.display()))
}

/// Opens (or creates) the database and the table now, on the caller's thread, so a bad path
/// or a file we may not write is an error of this call; the returned writer then runs on the
/// sink's thread.
pub fn open(path: &Path, table: &str) -> Result<WriteBatch, Error> {
    if !valid_table(table) {
        return Err(Error::InvalidOption(format!(
            "table must be 1-64 letters, digits or _ (not starting with a digit), got {table:?}"
        )));
    }
    let conn = connect(path, table)?;
    let stored = load_sessions(&conn).map_err(|e| sink_error(path, e))?;
    let file = identity(path);
    Ok(Box::new(Sqlite {
        path: path.to_owned(),
        table: table.to_owned(),
        insert: format!(
            "INSERT INTO \"{table}\" (received_at, client_id, raw) VALUES (?1, ?2, ?3)"
        ),
        conn: Some(conn),
        file,
        wal: None,
        notice: None,
        stored,
    }))
}

/// Opens the database in WAL mode with the table, and makes sure it can be written: SQLite
/// opens a file it may not write read-only without a word, and every later commit fails.
fn connect(path: &Path, table: &str) -> Result<Connection, Error> {
    let conn = Connection::open(path).map_err(|e| sink_error(path, e))?;
    let mode: String = conn
        .busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .and_then(|()| conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)))
        .map_err(|e| sink_error(path, e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .and_then(|()| {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{table}\" (
                    id INTEGER PRIMARY KEY,
                    received_at INTEGER NOT NULL,
                    client_id TEXT NOT NULL,
                    raw TEXT NOT NULL
                );
                CREATE TABLE IF NOT EXISTS zerowire_sessions (
                    session TEXT PRIMARY KEY,
                    seq INTEGER NOT NULL
                )"
            ))
        })
        .map_err(|e| sink_error(path, e))?;
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
        return Err(Error::Sink(format!(
            "{}: the database can only be opened read-only (file or file system permissions)",
            path.display()
        )));
    }
    if !mode.eq_ignore_ascii_case("wal") {
        // WAL needs the -wal and -shm files next to the database: a directory we may not
        // write leaves the journal mode as it was.
        return Err(Error::Sink(format!(
            "{}: could not switch to WAL mode (journal mode {mode}): is its directory writable?",
            path.display()
        )));
    }
    // Takes the write lock and lets it go: the -wal and -shm files must be ours to write.
    let probe = conn
        .busy_timeout(std::time::Duration::from_millis(PROBE_BUSY_TIMEOUT_MS))
        .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK"));
    match probe {
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {}
        Err(e) => return Err(sink_error(path, e)),
        Ok(()) => {}
    }
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(|e| sink_error(path, e))?;
    Ok(conn)
}

/// Which file a path names now (device, inode); `None` if nothing is there.
#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// The writer's state: the connection (none after its file was removed and the reopen
/// failed), and the files it has open, to notice them removed or replaced.
struct Sqlite {
    path: PathBuf,
    table: String,
    insert: String,
    conn: Option<Connection>,
    file: Option<(u64, u64)>,
    wal: Option<(u64, u64)>,
    /// Something to report though no row was lost (the -wal removed, its rows saved).
    notice: Option<String>,
    /// Mirrors `zerowire_sessions` of the open database; changed only once a transaction
    /// has committed.
    stored: HashMap<u64, u64>,
}

impl Sqlite {
    /// Whether the database or its -wal is no longer the file we have open. A commit to a
    /// removed file succeeds and is lost with it, hence the look after every commit.
    fn moved(&mut self) -> Option<&'static str> {
        if identity(&self.path) != self.file {
            return Some("the database file was removed or replaced");
        }
        let wal = identity(&wal_path(&self.path));
        match (self.wal, wal) {
            (None, found) => self.wal = found,
            (Some(had), Some(now)) if had == now => {}
            _ => return Some("its -wal file was removed or replaced"),
        }
        None
    }

    /// After the files were removed: saves what the open -wal holds into the database file
    /// if that is still in place (then `.1` is true: every committed row is in it), and
    /// opens the database at the path anew (created if it is gone).
    fn reopen(&mut self, what: &str) -> (String, bool) {
        let mut saved = false;
        if let Some(conn) = self.conn.take() {
            if identity(&self.path) == self.file {
                // (busy, frames in the -wal, frames copied): all copied is all saved.
                saved = conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    })
                    .is_ok_and(|(busy, log, copied)| busy == 0 && log == copied);
            }
        }
        self.wal = None;
        let why = format!("{}: {what} while open", self.path.display());
        let opened = connect(&self.path, &self.table).and_then(|conn| {
            // A new database has stored nothing yet: its replays must not be skipped.
            let stored = load_sessions(&conn).map_err(|e| sink_error(&self.path, e))?;
            Ok((conn, stored))
        });
        match opened {
            Ok((conn, stored)) => {
                self.conn = Some(conn);
                self.stored = stored;
                self.file = identity(&self.path);
                if saved {
                    (
                        format!("{why}; its rows were saved into the database"),
                        true,
                    )
                } else {
                    (
                        format!("{why}; writing to a new database at the path"),
                        false,
                    )
                }
            }
            Err(e) => (format!("{why}; could not open a new one: {e}"), false),
        }
    }
}

impl Store for Sqlite {
    fn write(&mut self, rows: &[Row]) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.reopen("the database file was removed").0);
        };
        write(conn, &self.insert, &mut self.stored, rows)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        match self.moved() {
            Some(what) => match self.reopen(what) {
                // The batch is in the database file: reported by the next check.
                (why, true) => {
                    self.notice = Some(why);
                    Ok(())
                }
                // Committed to a file that is gone: the batch is written again to the new one.
                (why, false) => Err(why),
            },
            None => Ok(()),
        }
    }

    fn check(&mut self) -> Result<(), String> {
        if let Some(notice) = self.notice.take() {
            return Err(notice);
        }
        if self.conn.is_none() {
            return Err(self.reopen("the database file was removed").0);
        }
        match self.moved() {
            Some(what) => Err(self.reopen(what).0),
            None => Ok(()),
        }
    }
}

/// The highest seq stored per client session, as the database holds it.
fn load_sessions(conn: &Connection) -> rusqlite::Result<HashMap<u64, u64>> {
    let mut stmt = conn.prepare("SELECT session, seq FROM zerowire_sessions")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut stored = HashMap::new();
    for row in rows {
        let (session, seq) = row?;
        // A row not written by us is left alone, not trusted.
        if let Ok(session) = u64::from_str_radix(&session, 16) {
            stored.insert(session, seq as u64);
        }
    }
    Ok(stored)
}

/// One transaction: the rows not stored before, and their sessions' new highest seq.
fn write(
    conn: &mut Connection,
    insert: &str,
    stored: &mut HashMap<u64, u64>,
    rows: &[Row],
) -> rusqlite::Result<()> {
    // What this batch stores per session, applied to `stored` only after the commit.
    let mut batch: HashMap<u64, u64> = HashMap::new();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(insert)?;
        for row in rows {
            if let Some((session, seq)) = row.seq {
                let done = batch.get(&session).or_else(|| stored.get(&session));
                if done.is_some_and(|&d| seq <= d) {
                    continue;
                }
                batch.insert(session, seq);
            }
            // The bytes exactly as received: as TEXT when they are UTF-8 (JSON is), else as a
            // BLOB, since readers decode TEXT as UTF-8 and one bad row failed a whole SELECT.
            let raw = if std::str::from_utf8(&row.raw).is_ok() {
                ValueRef::Text(&row.raw)
            } else {
                ValueRef::Blob(&row.raw)
            };
            stmt.execute((row.received_at_ms, &*row.client, ToSqlOutput::Borrowed(raw)))?;
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO zerowire_sessions (session, seq) VALUES (?1, ?2)
             ON CONFLICT(session) DO UPDATE SET seq = excluded.seq",
        )?;
        for (session, seq) in &batch {
            upsert.execute((format!("{session:016x}"), *seq as i64))?;
        }
    }
    tx.commit()?;
    stored.extend(batch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Sink, SinkCounters};
    use bytes::Bytes;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    fn temp_db(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        crate::testing::scratch(&format!("zw-sqlite-{name}"), "log.db")
    }

    #[test]
    fn rows_land_once_each_with_their_fields() {
        let (_dir, path) = temp_db("rows");
        let counters = Arc::new(SinkCounters::default());
        let mut sink = Sink::spawn("t", counters.clone(), open(&path, "logs").unwrap()).unwrap();
        let client: Arc<str> = Arc::from("abc123");
        for i in 0..10_000 {
            sink.push(Row {
                received_at_ms: 1_700_000_000_000 + i,
                client: client.clone(),
                raw: Bytes::from(format!("{{\"type\":\"log\",\"i\":{i}}}")),
                seq: None,
            });
        }
        drop(sink);
        assert_eq!(counters.rows.load(Relaxed), 10_000);
        let conn = Connection::open(&path).unwrap();
        let (n, distinct, first): (i64, i64, String) = conn
            .query_row(
                "SELECT count(*), count(DISTINCT raw), min(client_id) FROM logs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((n, distinct, first.as_str()), (10_000, 10_000, "abc123"));
        let raw: String = conn
            .query_row(
                "SELECT raw FROM logs WHERE received_at = 1700000000000",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(raw, r#"{"type":"log","i":0}"#);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn bad_paths_and_table_names_fail_at_open() {
        assert!(matches!(
            open(Path::new("/nonexistent-dir/x/log.db"), "logs"),
            Err(Error::Sink(_))
        ));
        let (_dir, path) = temp_db("names");
        for bad in ["", "1logs", "logs; DROP TABLE x", "a\"b"] {
            assert!(
                matches!(open(&path, bad), Err(Error::InvalidOption(_))),
                "{bad}"
            );
        }
    }

    fn rows(from: i64, n: i64) -> Vec<Row> {
        (from..from + n)
            .map(|i| Row {
                received_at_ms: i,
                client: Arc::from("c"),
                raw: Bytes::from(format!("{{\"i\":{i}}}")),
                seq: None,
            })
            .collect()
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM logs", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_committed_to_removed_files_is_refused_and_lands_in_a_new_database() {
        let (_dir, path) = temp_db("removed");
        let mut store = open(&path, "logs").unwrap();
        store.write(&rows(0, 10)).unwrap();
        assert_eq!(count(&path), 10);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::remove_file(&p).unwrap();
        }
        let err = store.write(&rows(10, 5)).unwrap_err();
        assert!(err.contains("removed"), "{err}");
        assert!(path.exists(), "a new database at the path");
        // The sink writes the refused batch again: it goes to the new file.
        store.write(&rows(10, 5)).unwrap();
        assert_eq!(count(&path), 5);
        store.check().unwrap();
    }

    #[test]
    fn an_idle_check_notices_the_file_removed_and_reopens() {
        let (_dir, path) = temp_db("idle");
        let mut store = open(&path, "logs").unwrap();
        store.write(&rows(0, 3)).unwrap();
        store.check().unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = store.check().unwrap_err();
        assert!(err.contains("was removed"), "{err}");
        store.check().unwrap();
        store.write(&rows(3, 2)).unwrap();
        assert_eq!(count(&path), 2);
    }

    #[test]
    fn only_the_wal_removed_keeps_every_row_committed() {
        let (_dir, path) = temp_db("wal");
        let mut store = open(&path, "logs").unwrap();
        store.write(&rows(0, 10)).unwrap();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::remove_file(&wal).unwrap();
        // The open -wal is saved into the database before it is let go: every row is there
        // once, and the removal is reported all the same.
        store.write(&rows(10, 5)).unwrap();
        let err = store.check().unwrap_err();
        assert!(err.contains("-wal") && err.contains("saved"), "{err}");
        store.check().unwrap();
        assert_eq!(count(&path), 15);
    }

    fn numbered(session: u64, seq: u64) -> Row {
        Row {
            received_at_ms: seq as i64,
            client: Arc::from("c"),
            raw: Bytes::from(format!("{{\"s\":{session},\"n\":{seq}}}")),
            seq: Some((session, seq)),
        }
    }

    fn count_distinct(path: &Path) -> (i64, i64) {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*), count(DISTINCT raw) FROM logs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
    }

    #[test]
    fn replays_of_stored_rows_are_skipped_across_reopens() {
        let (_dir, path) = temp_db("replays");
        let (a, b) = (0xfeed_0000_0000_0001_u64, 7u64);
        let mut store = open(&path, "logs").unwrap();
        store
            .write(&(0..100).map(|n| numbered(a, n)).collect::<Vec<_>>())
            .unwrap();
        // Within one batch and the next, at or below what is stored: skipped.
        store
            .write(&(90..150).map(|n| numbered(a, n)).collect::<Vec<_>>())
            .unwrap();
        store.write(&[numbered(b, 0), numbered(b, 1)]).unwrap();
        assert_eq!(count_distinct(&path), (152, 152));
        drop(store);
        // A new process (a restarted server) opens it: the sessions' seqs come back with it,
        // so a client replaying what the dead one had not acked stores nothing twice.
        let mut store = open(&path, "logs").unwrap();
        store
            .write(&(120..200).map(|n| numbered(a, n)).collect::<Vec<_>>())
            .unwrap();
        store.write(&[numbered(b, 1), numbered(b, 2)]).unwrap();
        // Rows of clients that do not number their sends are always stored.
        let mut plain = numbered(b, 0);
        plain.seq = None;
        store.write(&[plain.clone(), plain]).unwrap();
        assert_eq!(count_distinct(&path), (205, 203));
        let conn = Connection::open(&path).unwrap();
        let seq: i64 = conn
            .query_row(
                "SELECT seq FROM zerowire_sessions WHERE session = ?1",
                [format!("{a:016x}")],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(seq, 199);
    }

    #[test]
    fn a_failed_batch_leaves_its_seqs_to_the_retry() {
        let (_dir, path) = temp_db("failed");
        let mut store = open(&path, "logs").unwrap();
        store
            .write(&(0..10).map(|n| numbered(1, n)).collect::<Vec<_>>())
            .unwrap();
        // Another connection holds the write lock past the busy timeout: the batch fails and
        // nothing of it counts as stored.
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let batch = (10..20).map(|n| numbered(1, n)).collect::<Vec<_>>();
        assert!(store.write(&batch).is_err());
        other.execute_batch("ROLLBACK").unwrap();
        store.write(&batch).unwrap();
        assert_eq!(count_distinct(&path), (20, 20));
    }

    #[test]
    fn a_new_database_after_a_removal_stores_replays_again() {
        let (_dir, path) = temp_db("removed-seqs");
        let mut store = open(&path, "logs").unwrap();
        store
            .write(&(0..10).map(|n| numbered(3, n)).collect::<Vec<_>>())
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::remove_file(&p).unwrap();
        }
        store.check().unwrap_err();
        // The new file knows no session: what is written again is stored, not skipped.
        store
            .write(&(5..15).map(|n| numbered(3, n)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(count_distinct(&path), (10, 10));
    }
}
