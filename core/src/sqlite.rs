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
        match connect(&self.path, &self.table) {
            Ok(conn) => {
                self.conn = Some(conn);
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
        write(conn, &self.insert, rows).map_err(|e| format!("{}: {e}", self.path.display()))?;
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

fn write(conn: &mut Connection, insert: &str, rows: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(insert)?;
        for row in rows {
            // The bytes exactly as received: as TEXT when they are UTF-8 (JSON is), else as a
            // BLOB, since readers decode TEXT as UTF-8 and one bad row failed a whole SELECT.
            let raw = if std::str::from_utf8(&row.raw).is_ok() {
                ValueRef::Text(&row.raw)
            } else {
                ValueRef::Blob(&row.raw)
            };
            stmt.execute((row.received_at_ms, &*row.client, ToSqlOutput::Borrowed(raw)))?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Sink, SinkCounters};
    use bytes::Bytes;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("zw-sqlite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("log.db")
    }

    #[test]
    fn rows_land_once_each_with_their_fields() {
        let path = temp_db("rows");
        let counters = Arc::new(SinkCounters::default());
        let mut sink = Sink::spawn("t", counters.clone(), open(&path, "logs").unwrap()).unwrap();
        let client: Arc<str> = Arc::from("abc123");
        for i in 0..10_000 {
            sink.push(Row {
                received_at_ms: 1_700_000_000_000 + i,
                client: client.clone(),
                raw: Bytes::from(format!("{{\"type\":\"log\",\"i\":{i}}}")),
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
        let path = temp_db("names");
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
        let path = temp_db("removed");
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
        let path = temp_db("idle");
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
        let path = temp_db("wal");
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
}
