//! Point reads on SQLite, run on the calling thread through rusqlite.
//!
//! sqlx's SQLite driver runs every statement on a worker thread of its
//! connection and hands the rows back over a channel: two thread wake-ups per
//! statement, each costing more than the index probe it carries. Every SCIM
//! request reads its token and workspace, and IdPs look a user up by
//! `userName` or `externalId` before every create; those reads come here
//! (benches/README.md has what that saved).
//!
//! Only reads an index bounds come here (through `Store::read_all`): a scan
//! can take milliseconds, and it would hold up a runtime thread that other
//! requests are waiting for. Scans stay on the pool, as does PostgreSQL.
//! Writes run the same way on the group commit's one rusqlite connection.

use std::{path::PathBuf, sync::Mutex};

use rusqlite::{Connection, OpenFlags};

use super::Result;

/// Idle connections kept for reuse; more are opened when more threads read
/// at once, and dropped after.
const IDLE_CONNECTIONS: usize = 8;

pub(super) struct PointReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for PointReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointReads")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PointReads {
    /// For the database file at `path`, which the pool has created and
    /// migrated. `None` when this connection cannot see that database (an
    /// in-memory one): its reads then stay on the pool.
    pub(super) fn new(path: PathBuf) -> Option<Self> {
        let reads = Self {
            path,
            idle: Mutex::new(Vec::new()),
        };
        let probe = reads.open().and_then(|conn| {
            conn.query_row("SELECT COUNT(*) FROM _sqlx_migrations", [], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok(conn)
        });
        match probe {
            Ok(conn) => {
                reads
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn);
                Some(reads)
            }
            Err(e) => {
                tracing::info!(error = %e, "SQLite point reads stay on the pool");
                None
            }
        }
    }

    /// Runs `read` on a read-only connection. Statements should be prepared
    /// with `prepare_cached`: connections live on, and so do their statements.
    pub(super) fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        // The lock guards a Vec push or pop, never a query; a poisoned lock
        // only means another thread panicked in between, and the Vec is intact.
        let reused = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match reused {
            Some(conn) => conn,
            None => self.open()?,
        };
        let answer = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
        answer
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        super::open_rusqlite(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY,
            super::SQLITE_READER_PRAGMAS,
        )
    }
}
