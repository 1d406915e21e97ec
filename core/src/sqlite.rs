//! The SQLite writer of a sink (cargo feature `sqlite`): SQLite is compiled from rusqlite's
//! bundled source, so the database needs nothing installed and nothing downloaded but crates.
//!
//! Table: `id INTEGER PRIMARY KEY, received_at INTEGER (ms since the epoch), client_id TEXT,
//! raw TEXT` (the message bytes as they arrived: TEXT when they are valid UTF-8, a BLOB of the
//! same bytes otherwise). WAL mode, so readers never block the writer
//! and the writer never blocks readers; `synchronous=NORMAL`, so a committed row survives the
//! process crashing (not the machine losing power, which would cost the last batches).
//!
//! Exactly once: table `zerowire_sessions(session TEXT PRIMARY KEY, seq INTEGER NOT NULL)`
//! holds, per client session (16 hex digits), the highest seq stored, updated in the same
//! transaction as the rows. It is loaded at open; a row at or below its session's seq is a
//! replay of one already stored (a client resends what a killed server had not confirmed)
//! and is skipped. Rows of clients that do not number their sends are always stored.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use crate::error::Error;
use crate::sink::{Row, WriteBatch};

/// How long a write waits for another connection's lock (a reader checkpointing, say).
const BUSY_TIMEOUT_MS: u64 = 5000;

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
/// or a read-only file is an error of this call; the returned writer then runs on the sink's
/// thread.
pub fn open(path: &Path, table: &str) -> Result<WriteBatch, Error> {
    if !valid_table(table) {
        return Err(Error::InvalidOption(format!(
            "table must be 1-64 letters, digits or _ (not starting with a digit), got {table:?}"
        )));
    }
    let conn = Connection::open(path).map_err(|e| sink_error(path, e))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
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
    let stored = load_sessions(&conn).map_err(|e| sink_error(path, e))?;
    let insert =
        format!("INSERT INTO \"{table}\" (received_at, client_id, raw) VALUES (?1, ?2, ?3)");
    let mut writer = Writer {
        conn,
        insert,
        stored,
    };
    Ok(Box::new(move |rows: &[Row]| {
        writer.write(rows).map_err(|e| e.to_string())
    }))
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

struct Writer {
    conn: Connection,
    insert: String,
    /// Mirrors `zerowire_sessions`; changed only once a transaction has committed.
    stored: HashMap<u64, u64>,
}

impl Writer {
    fn write(&mut self, rows: &[Row]) -> rusqlite::Result<()> {
        // What this batch stores per session, applied to `stored` only after the commit.
        let mut batch: HashMap<u64, u64> = HashMap::new();
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&self.insert)?;
            for row in rows {
                if let Some((session, seq)) = row.seq {
                    let done = batch.get(&session).or_else(|| self.stored.get(&session));
                    if done.is_some_and(|&d| seq <= d) {
                        continue;
                    }
                    batch.insert(session, seq);
                }
                insert_row(&mut stmt, row)?;
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
        self.stored.extend(batch);
        Ok(())
    }
}

fn insert_row(stmt: &mut rusqlite::CachedStatement<'_>, row: &Row) -> rusqlite::Result<()> {
    // The bytes exactly as received: as TEXT when they are UTF-8 (JSON is), else as a BLOB,
    // since readers decode TEXT as UTF-8 and one bad row failed a whole SELECT.
    let raw = if std::str::from_utf8(&row.raw).is_ok() {
        ValueRef::Text(&row.raw)
    } else {
        ValueRef::Blob(&row.raw)
    };
    stmt.execute((row.received_at_ms, &*row.client, ToSqlOutput::Borrowed(raw)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Sink, SinkCounters};
    use bytes::Bytes;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    use std::time::Duration;

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

    fn numbered(session: u64, seq: u64) -> Row {
        Row {
            received_at_ms: seq as i64,
            client: Arc::from("c"),
            raw: Bytes::from(format!("{{\"s\":{session},\"n\":{seq}}}")),
            seq: Some((session, seq)),
        }
    }

    fn count(path: &Path) -> (i64, i64) {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*), count(DISTINCT raw) FROM logs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
    }

    #[test]
    fn replays_of_stored_rows_are_skipped_across_reopens() {
        let path = temp_db("replays");
        let (a, b) = (0xfeed_0000_0000_0001_u64, 7u64);
        let mut write = open(&path, "logs").unwrap();
        write(&(0..100).map(|n| numbered(a, n)).collect::<Vec<_>>()).unwrap();
        // Within one batch and the next, at or below what is stored: skipped.
        write(&(90..150).map(|n| numbered(a, n)).collect::<Vec<_>>()).unwrap();
        write(&[numbered(b, 0), numbered(b, 1)]).unwrap();
        assert_eq!(count(&path), (152, 152));
        drop(write);
        // A new process (a restarted server) opens it: the sessions' seqs come back with it,
        // so a client replaying what the dead one had not acked stores nothing twice.
        let mut write = open(&path, "logs").unwrap();
        write(&(120..200).map(|n| numbered(a, n)).collect::<Vec<_>>()).unwrap();
        write(&[numbered(b, 1), numbered(b, 2)]).unwrap();
        // Rows of clients that do not number their sends are always stored.
        let mut plain = numbered(b, 0);
        plain.seq = None;
        write(&[plain.clone(), plain]).unwrap();
        assert_eq!(count(&path), (205, 203));
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
    fn a_failed_batch_leaves_its_seqs_to_the_replay() {
        let path = temp_db("failed");
        let mut write = open(&path, "logs").unwrap();
        write(&(0..10).map(|n| numbered(1, n)).collect::<Vec<_>>()).unwrap();
        // Another connection holds the write lock past the busy timeout: the batch fails and
        // nothing of it counts as stored.
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let started = std::time::Instant::now();
        let failed = write(&(10..20).map(|n| numbered(1, n)).collect::<Vec<_>>());
        assert!(failed.is_err());
        assert!(started.elapsed() >= Duration::from_millis(BUSY_TIMEOUT_MS));
        other.execute_batch("ROLLBACK").unwrap();
        write(&(10..20).map(|n| numbered(1, n)).collect::<Vec<_>>()).unwrap();
        assert_eq!(count(&path), (20, 20));
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
}
