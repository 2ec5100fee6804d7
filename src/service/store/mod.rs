//! The identity service's store: SQLite (one file, the default) or PostgreSQL
//! (for several replicas), with one set of queries.
//!
//! Every query uses `$N` placeholders, which both SQLite and PostgreSQL accept, so
//! the two backends share all code but the schema migrations. Reads go through
//! one `sqlx::Any` pool, except on SQLite reads an index bounds, which run on
//! the calling thread (`point_reads`). Every write goes through
//! [`Store::begin_write`]: on SQLite that is one rusqlite connection doing group
//! commit (`group_commit`), on PostgreSQL a pool transaction. Statements bind
//! [`args::Arg`]s and decode rows through [`columns::Columns`], so each is
//! written once for both drivers.

/// The SQL condition under which the principal row aliased `$r` may act:
/// not deleted, not deactivated by the IdP, not out of the workspace's
/// access groups. Every credential check joins on it, so the three ways to
/// lose access are spelled once.
macro_rules! admitted {
    ($r:literal) => {
        concat!(
            $r,
            ".deleted_at IS NULL AND ",
            $r,
            ".active <> 0 AND ",
            $r,
            ".access_revoked_at IS NULL"
        )
    };
}

mod api_keys;
mod approvals;
mod args;
mod assertions;
mod audit;
mod certificates;
mod claims;
mod columns;
mod events;
mod group_commit;
mod identity_links;
mod migrations;
mod objects;
mod point_reads;
mod reader;
mod scim;
mod scim_query;
mod signin;
mod tokens;
mod webhooks;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    AnyPool, Executor,
    any::AnyPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

pub use api_keys::{ApiKeyRecord, KeyRefused, LiveApiKey, MAX_LIVE_KEYS};
pub use approvals::{MAX_PENDING_LISTED, PendingRow};
use args::Arg;
pub use assertions::Assertion;
pub use audit::{AuditEntry, AuditFilter, AuditRecord};
pub use certificates::CertificateWarning;
use columns::Columns;
pub use events::{EventRecord, MAX_EVENTS_LISTED};
pub use identity_links::LinkedUser;
pub use objects::{ObjectKind, PutOutcome, StoredObject};
pub use scim::{
    ListQuery, Member, MemberRow, NewMember, NewResource, ResourceWrite, ScimRecord, ScimTx,
    UserRow, is_unique_violation, unique_attribute,
};
pub use signin::{
    SamlSigningKeyRecord, SessionKey, SessionRecord, SignInRequest, SignInStats, UserMatch,
};
pub use tokens::{StoredToken, TokenPut, TokenRegistration, UsageRows};
pub use webhooks::{Cursor, DeliveryState, Failure, PassEnd};

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Store failures. Messages never contain row contents (which may hold secrets).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From SQLite's rusqlite connections (point reads, the writer).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch holding a write failed to commit; the write was not acknowledged.
    #[error("the write was not committed: {0}")]
    NotCommitted(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt stored document for {kind} {workspace}/{name}: {message}")]
    Corrupt {
        kind: &'static str,
        workspace: String,
        name: String,
        message: String,
    },
}

/// Opens a rusqlite connection on the SQLite file at `path` (the point reads'
/// and the writer's), with `pragmas` applied.
fn open_rusqlite(
    path: &std::path::Path,
    flags: rusqlite::OpenFlags,
    pragmas: &str,
) -> rusqlite::Result<rusqlite::Connection> {
    // NO_MUTEX: a connection is used by one thread at a time (behind a lock).
    let conn = rusqlite::Connection::open_with_flags(
        path,
        flags | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(pragmas)?;
    // Plans must not depend on bound values. Without this, SQLite (built
    // with STAT4) marks any statement whose plan looked at a parameter — a
    // bound `LIMIT`, a `kind` matched against a partial index's WHERE — as
    // expired on every rebind, and re-parses and re-plans it on its next
    // step: prepare_cached kept the statement but not its plan (about a
    // third of a lookup's cost: see benches/README.md). The store's
    // statements are shaped so that one plan serves every value.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // rusqlite keeps 16 statements by default; a connection here sees a few
    // dozen shapes (value inserts by row count, member chunks, filters).
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// What a store failure means for whoever asked; every edge (admin API, SCIM,
/// sign-in) answers from this, so each failure is classified once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Retrying later may succeed (unreachable, busy, out of disk, a batch
    /// that did not commit): 503 with Retry-After.
    Transient,
    /// The write conflicts with what is stored (a unique constraint): 409.
    Conflict,
    /// The service's own fault (a corrupt row, a bad statement): 500, so
    /// that no client retries it forever.
    Internal,
}

impl StoreError {
    pub fn kind(&self) -> FailureKind {
        if self.is_transient() {
            FailureKind::Transient
        } else if is_unique_violation(self) {
            FailureKind::Conflict
        } else {
            FailureKind::Internal
        }
    }

    /// Whether retrying later may succeed: the database is unreachable, busy
    /// or out of disk, or a batch failed to commit. The caller answers 503.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
        match self {
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))
            | StoreError::NotCommitted(_) => true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
                f.code,
                DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `$first, $first+1, …` for `n` bound values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What every SQLite reading connection sets (the pool's and the point
/// reads'): wait out a checkpoint rather than fail, and map the file
/// (`mmap_size`) instead of copying each page with a `pread`: a group's
/// members or a page of users touch thousands of rows.
const SQLITE_READER_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA mmap_size = 1073741824;";

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads, and on PostgreSQL writes.
    pool: AnyPool,
    backend: Backend,
    /// On SQLite, the one connection every write goes through (group commit).
    writer: Option<Arc<group_commit::GroupCommit>>,
    /// On SQLite, reads an index bounds, run on the calling thread.
    point_reads: Option<Arc<point_reads::PointReads>>,
}

/// A write transaction. On PostgreSQL it is a transaction of its own; on SQLite
/// a savepoint in the group commit's shared transaction, and `commit` returns
/// once that transaction is durable (see `group_commit`). Dropped without
/// `commit`, it rolls back. Its statements run through `execute` and `fetch_*`,
/// on sqlx or on the SQLite writer's rusqlite connection.
pub enum WriteTx {
    Own(sqlx::Transaction<'static, sqlx::Any>),
    Grouped(group_commit::WriteSlot),
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        match self {
            WriteTx::Own(tx) => tx.commit().await?,
            WriteTx::Grouped(slot) => slot.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            WriteTx::Own(tx) => tx.rollback().await?,
            WriteTx::Grouped(slot) => slot.rollback(),
        }
        Ok(())
    }

    /// Runs one statement; returns how many rows it changed.
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        match self {
            WriteTx::Own(tx) => Ok(args::bind_sqlx(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                .execute(&mut **tx)
                .await?
                .rows_affected()),
            WriteTx::Grouped(slot) => {
                group_commit::spend_budget().await;
                let mut stmt = slot.conn().prepare_cached(sql)?;
                args::bind_rusqlite(&mut stmt, args)?;
                Ok(stmt.raw_execute()? as u64)
            }
        }
    }

    /// Runs one statement and decodes every row it returns.
    async fn fetch_all<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl FnMut(&dyn Columns) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self {
            WriteTx::Own(tx) => args::fetch_sqlx(&mut **tx, sql, args, decode).await,
            WriteTx::Grouped(slot) => {
                group_commit::spend_budget().await;
                args::fetch_rusqlite(slot.conn(), sql, args, decode)
            }
        }
    }

    /// The first row a statement returns, if any. The statement runs to its
    /// end either way (an `INSERT … RETURNING` inserts every row).
    async fn fetch_optional<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl FnMut(&dyn Columns) -> Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.fetch_all(sql, args, decode).await?.into_iter().next())
    }

    /// The first row a statement returns; an error when there is none.
    async fn fetch_one<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl FnMut(&dyn Columns) -> Result<T>,
    ) -> Result<T> {
        self.fetch_optional(sql, args, decode)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }
}

impl Store {
    /// Connects, creating the SQLite file if needed, and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };

        let pool = match backend {
            Backend::Sqlite => {
                // Create the file and switch it to WAL once, through the SQLite driver,
                // before the Any pool opens it. WAL lets readers run beside the writer;
                // synchronous=FULL makes every acknowledged commit survive a power cut
                // or kill -9. The pool reads (and migrates); writes go through the
                // group-commit writer opened below.
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full);
                let bootstrap = sqlx::SqlitePool::connect_with(options).await?;
                bootstrap.close().await;
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    // No ping before each use: a SQLite connection is a file
                    // handle that cannot drop, and the ping was a round trip
                    // to the connection's worker thread before every query.
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
                                .await?;
                            conn.execute(SQLITE_READER_PRAGMAS).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?
            }
        };

        migrations::migrator(backend).run(&pool).await?;
        let file = match backend {
            Backend::Sqlite => Some(
                SqliteConnectOptions::from_str(url)?
                    .get_filename()
                    .to_path_buf(),
            ),
            Backend::Postgres => None,
        };
        let writer = match &file {
            Some(path) => Some(Arc::new(group_commit::GroupCommit::open(path)?)),
            None => None,
        };
        let point_reads = file.and_then(point_reads::PointReads::new).map(Arc::new);
        Ok(Self {
            pool,
            backend,
            writer,
            point_reads,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers and every migration this binary knows is applied.
    pub async fn ready(&self) -> Result<bool> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = $1")
                .bind(true)
                .fetch_one(&self.pool)
                .await?;
        Ok(applied as usize >= migrations::COUNT)
    }

    /// Begins a write transaction: every write of the store goes through here.
    /// On SQLite it waits for the group-commit writer; a caller holding one must
    /// not begin another.
    async fn begin_write(&self) -> Result<WriteTx> {
        Ok(match &self.writer {
            Some(writer) => WriteTx::Grouped(writer.begin().await?),
            None => WriteTx::Own(self.pool.begin().await?),
        })
    }

    /// Rows of a read an index bounds (a primary-key or unique-key probe,
    /// an equality on an indexed column): on SQLite a point read on this
    /// thread, else through the pool.
    async fn read_all<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl FnMut(&dyn Columns) -> Result<T>,
    ) -> Result<Vec<T>> {
        match &self.point_reads {
            Some(reads) => reads.read(|conn| args::fetch_rusqlite(conn, sql, args, decode)),
            None => args::fetch_sqlx(&self.pool, sql, args, decode).await,
        }
    }

    /// The first row of a read an index bounds (see `read_all`).
    async fn read_optional<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl FnMut(&dyn Columns) -> Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.read_all(sql, args, decode).await?.into_iter().next())
    }

    /// On SQLite, how many group commits the writer has made (each covers
    /// every write queued before it); `None` on PostgreSQL.
    pub fn committed_batches(&self) -> Option<u64> {
        self.writer.as_ref().map(|w| w.batches())
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        self.pool.close().await;
    }
}

/// A database URL with any password removed, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Formats store time as RFC 3339 for API answers.
pub fn format_millis(ms: i64) -> String {
    timestamp(ms).to_string()
}

/// The moment `ms` milliseconds after the epoch, held to what RFC 3339 can
/// write (a session "expiring" at `i64::MAX` shows as the year 9999).
pub fn timestamp(ms: i64) -> jiff::Timestamp {
    let (min, max) = (jiff::Timestamp::MIN, jiff::Timestamp::MAX);
    let ms = ms.clamp(min.as_millisecond(), max.as_millisecond());
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sqlite_file_gets_point_reads() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        assert!(
            store.point_reads.is_some(),
            "point reads fell back to the pool"
        );
    }

    /// A database another writer holds is worth retrying (503); a broken
    /// constraint is not. Both errors are SQLite's own.
    #[test]
    fn busy_sqlite_is_transient_and_a_constraint_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let open = || rusqlite::Connection::open(&path).unwrap();
        let (holder, other) = (open(), open());
        // Fail at once instead of waiting out rusqlite's 5 s default.
        other.busy_timeout(Duration::ZERO).unwrap();
        holder
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT UNIQUE);")
            .unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let busy = StoreError::from(other.execute_batch("BEGIN IMMEDIATE").unwrap_err());
        assert!(busy.is_transient(), "{busy}");
        holder
            .execute_batch("INSERT INTO t VALUES ('a'); COMMIT")
            .unwrap();
        let duplicate = StoreError::from(
            other
                .execute_batch("INSERT INTO t VALUES ('a')")
                .unwrap_err(),
        );
        assert!(!duplicate.is_transient(), "{duplicate}");
        assert!(scim::is_unique_violation(&duplicate), "{duplicate}");
    }

    #[test]
    fn redacts_passwords_from_urls() {
        assert_eq!(
            redact_url("postgres://idsync:s3cret@db:5432/idsync"),
            "postgres://idsync:***@db:5432/idsync"
        );
        assert_eq!(redact_url("sqlite://idsync.db"), "sqlite://idsync.db");
    }
}
