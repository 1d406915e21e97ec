//! The SQLite writer of a sink (cargo feature `sqlite`): SQLite is compiled from rusqlite's
//! bundled source, so the database needs nothing installed and nothing downloaded but crates.
//!
//! Table: `id INTEGER PRIMARY KEY, received_at INTEGER (ms since the epoch), client_id TEXT,
//! raw TEXT` (the message bytes as they arrived: TEXT when they are valid UTF-8, a BLOB of the
//! same bytes otherwise). WAL mode, so readers never block the writer
//! and the writer never blocks readers; `synchronous=NORMAL`, so a committed row survives the
//! process crashing (not the machine losing power, which would cost the last batches).

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
                )"
            ))
        })
        .map_err(|e| sink_error(path, e))?;
    let insert =
        format!("INSERT INTO \"{table}\" (received_at, client_id, raw) VALUES (?1, ?2, ?3)");
    let mut conn = conn;
    Ok(Box::new(move |rows: &[Row]| {
        write(&mut conn, &insert, rows).map_err(|e| e.to_string())
    }))
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
        let path = temp_db("names");
        for bad in ["", "1logs", "logs; DROP TABLE x", "a\"b"] {
            assert!(
                matches!(open(&path, bad), Err(Error::InvalidOption(_))),
                "{bad}"
            );
        }
    }
}
