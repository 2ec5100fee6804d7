//! Group commit for SQLite.
//!
//! SQLite has one writer at a time, and with `synchronous=FULL` every commit is
//! an fsync. A transaction per write caps throughput at one write per fsync,
//! plus the busy handler's sleeps whenever two pool connections want to write.
//! Instead, every write runs on one dedicated connection:
//!
//! - a write takes the connection (a FIFO lock), opens its own `SAVEPOINT` in
//!   the connection's open transaction (the first write of a batch opens it
//!   with `BEGIN IMMEDIATE`), runs, and is released into the batch. A write
//!   that fails or is abandoned is rolled back to its savepoint: it takes
//!   nothing of the other writes in the batch with it;
//! - a committer task takes the connection after the writes queued before it
//!   and commits once. [`WriteSlot::commit`] returns only when the transaction
//!   holding its write is committed, so one fsync covers every write that was
//!   queued, and a write that was acknowledged survives a kill -9 as before.
//!   If the commit fails, every write of the batch gets the error and none was
//!   acknowledged.
//!
//! The connection is rusqlite's, and a write's statements run on the thread
//! of the task holding it, as point reads do: through sqlx, each statement
//! was a round trip to the connection's worker thread, and perf put a third
//! of that thread's time in futex waits and context switches, more than in
//! SQLite itself. The writer is the one thing every write waits for, so
//! that hand-off capped the whole store. Statements are small (the store
//! chunks bulk inserts at 500 rows); `COMMIT`, whose fsync and checkpoints
//! can take milliseconds, runs on the blocking pool.
//!
//! Readers (the pool, point reads) never wait for the writer (WAL).
//!
//! A write must not begin another write while it holds its slot: the second
//! would wait for the first forever.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, watch};

use super::{Result, StoreError};

/// How a batch ended: `None` while it is open, then committed or why not.
type Outcome = Option<std::result::Result<(), String>>;

/// The SQLite writer and its committer task.
pub(super) struct GroupCommit {
    writer: Arc<Mutex<Writer>>,
    batches: Arc<AtomicU64>,
    /// Wakes the committer; capacity 1, so wake-ups coalesce.
    wake: mpsc::Sender<()>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

struct Writer {
    conn: Connection,
    closed: bool,
    /// A transaction (the current batch) is open on `conn`.
    in_tx: bool,
    /// A write holds the connection, or failed or was abandoned and is still
    /// to be rolled back; its savepoint is open.
    open_op: bool,
    /// Writes released into the open transaction, waiting for its commit.
    released: usize,
    /// Where the open batch's outcome is published.
    outcome: watch::Sender<Outcome>,
    /// Batches committed so far.
    batches: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Opens the writer connection on the database file at `path`, which the
    /// pool has created and migrated, and starts its committer.
    pub(super) fn open(path: &Path) -> Result<Self> {
        // temp_store=MEMORY keeps each write's savepoint journal (the pages
        // a write changed, to roll it back alone) in memory instead of a
        // temporary file: it never needs to outlive the process, since the
        // transaction it belongs to rolls back with it. perf put 17 % of a
        // create burst under that file's writes.
        let conn = super::open_rusqlite(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE,
            "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY;",
        )?;
        let batches = Arc::new(AtomicU64::new(0));
        let writer = Arc::new(Mutex::new(Writer {
            batches: batches.clone(),
            conn,
            closed: false,
            in_tx: false,
            open_op: false,
            released: 0,
            outcome: watch::channel(None).0,
        }));
        let (wake, woken) = mpsc::channel(1);
        tokio::spawn(committer(writer.clone(), woken));
        Ok(Self {
            writer,
            batches,
            wake,
        })
    }

    /// How many batches were committed.
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Waits for the writer and opens a savepoint for one write.
    pub(super) async fn begin(&self) -> Result<WriteSlot> {
        let mut slot = WriteSlot {
            writer: self.writer.clone().lock_owned().await,
            wake: self.wake.clone(),
        };
        // On an error the slot is dropped, and the committer finishes the batch.
        slot.writer.start_op()?;
        Ok(slot)
    }

    /// Commits what was released and refuses writes from now on.
    pub(super) async fn close(&self) {
        let writer = self.writer.clone().lock_owned().await;
        if let Some(mut writer) = finish_off_thread(writer).await {
            writer.closed = true;
        }
    }
}

/// Finishes batches: after the writes queued before it (the lock is FIFO),
/// commits what they released.
async fn committer(writer: Arc<Mutex<Writer>>, mut woken: mpsc::Receiver<()>) {
    while woken.recv().await.is_some() {
        let guard = writer.clone().lock_owned().await;
        finish_off_thread(guard).await;
    }
}

/// Runs [`Writer::finish`] on the blocking pool (a commit waits for an
/// fsync, and sometimes a checkpoint) and hands the writer back; `None` when
/// the runtime shut down first (the lock is then freed, the batch unfinished
/// and unacknowledged).
async fn finish_off_thread(mut writer: OwnedMutexGuard<Writer>) -> Option<OwnedMutexGuard<Writer>> {
    let done = tokio::task::spawn_blocking(move || {
        writer.finish();
        writer
    })
    .await;
    match done {
        Ok(writer) => Some(writer),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

impl Writer {
    fn start_op(&mut self) -> Result<()> {
        if self.closed {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        self.discard_open_op();
        if !self.in_tx {
            // IMMEDIATE: take the write lock now rather than fail to upgrade a
            // read lock later.
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_tx = true;
        }
        self.conn.execute_batch("SAVEPOINT write")?;
        self.open_op = true;
        Ok(())
    }

    /// Rolls back a write that did not release its savepoint.
    fn discard_open_op(&mut self) {
        if !self.open_op {
            return;
        }
        self.open_op = false;
        if let Err(e) = self
            .conn
            .execute_batch("ROLLBACK TO SAVEPOINT write; RELEASE SAVEPOINT write")
        {
            // SQLite rolls a whole transaction back on some errors (a full disk,
            // an I/O error): the writes released into it are gone, unacknowledged.
            tracing::error!(error = %e, "a failed write could not be rolled back alone; abandoning its batch");
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::debug!(error = %e, "no transaction left to roll back");
            }
            self.end_batch(Err(format!("the batch was rolled back: {e}")));
        }
    }

    /// Commits the released writes (or, with none, rolls back to free the
    /// database's write lock) and publishes the outcome to their writers.
    fn finish(&mut self) {
        self.discard_open_op();
        if !self.in_tx {
            return;
        }
        if self.released == 0 {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "rolling back an empty batch failed");
            }
            self.in_tx = false;
            return;
        }
        let committed = match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.batches.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                    tracing::debug!(error = %e, "no transaction left to roll back");
                }
                Err(e.to_string())
            }
        };
        self.end_batch(committed);
    }

    fn end_batch(&mut self, outcome: std::result::Result<(), String>) {
        self.in_tx = false;
        self.released = 0;
        self.outcome.send_replace(Some(outcome));
        self.outcome = watch::channel(None).0;
    }
}

/// To call before each statement a write runs. Statements run on the
/// caller's runtime thread, so each spends a unit of the task's cooperative
/// budget: a write of thousands of statements (a large group's membership
/// and its members' roles) yields now and then instead of holding its
/// thread until it ends; a create (five statements) does not.
pub(super) async fn spend_budget() {
    tokio::task::coop::consume_budget().await;
}

/// One write's hold on the writer connection, inside its own savepoint.
/// Dropped without [`commit`](Self::commit), the write is rolled back.
pub struct WriteSlot {
    writer: OwnedMutexGuard<Writer>,
    wake: mpsc::Sender<()>,
}

impl WriteSlot {
    /// The connection, to run this write's statements on (see
    /// [`spend_budget`]).
    pub(super) fn conn(&self) -> &Connection {
        &self.writer.conn
    }

    /// Releases the write into the batch, lets the next write in, and returns
    /// once the batch is committed (durable) or failed.
    pub(super) async fn commit(mut self) -> Result<()> {
        if let Err(e) = self.writer.conn.execute_batch("RELEASE SAVEPOINT write") {
            // Dropping the slot rolls the write back (the committer does).
            return Err(e.into());
        }
        self.writer.open_op = false;
        self.writer.released += 1;
        let mut outcome = self.writer.outcome.subscribe();
        if self.wake.is_closed() {
            // No committer (its runtime is gone): commit here.
            self.writer.finish();
        }
        drop(self); // unlocks the writer and wakes the committer
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone(),
            Err(_) => None,
        };
        match result {
            Some(Ok(())) => Ok(()),
            Some(Err(message)) => Err(StoreError::NotCommitted(message)),
            None => Err(StoreError::NotCommitted(
                "the writer stopped before committing".into(),
            )),
        }
    }

    /// Rolls the write back now.
    pub(super) fn rollback(mut self) {
        self.writer.discard_open_op();
    }
}

impl Drop for WriteSlot {
    fn drop(&mut self) {
        // Full means a wake-up is already pending; closed means no committer,
        // and the next write finishes the batch.
        let _ = self.wake.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Store;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        (dir, store)
    }

    async fn insert_session(tx: &mut super::super::WriteTx, id: &str) -> super::Result<()> {
        tx.execute(
            "INSERT INTO sessions (id, workspace, user_id, created_at, expires_at) \
             VALUES ($1, 'ws', 'u', 0, 0)",
            &[id.into()],
        )
        .await?;
        Ok(())
    }

    async fn sessions(store: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT id FROM sessions ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    /// (committed, failed) of writes that answer Ok(true) when committed and
    /// Ok(false) when they chose not to.
    async fn tally(tasks: Vec<tokio::task::JoinHandle<super::Result<bool>>>) -> (usize, usize) {
        let mut committed = 0;
        let mut failed = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(true) => committed += 1,
                Ok(false) => {}
                Err(_) => failed += 1,
            }
        }
        (committed, failed)
    }

    fn batches(store: &Store) -> u64 {
        store.writer.as_ref().unwrap().batches()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_fail_alone() {
        let (_dir, store) = store().await;
        let before = batches(&store);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.begin_write().await?;
                match i {
                    // A duplicate key fails this write only.
                    13 => insert_session(&mut tx, "s00").await?,
                    // Abandoned after writing: rolled back.
                    14 => {
                        insert_session(&mut tx, "abandoned").await?;
                        return Ok(false);
                    }
                    // Rolled back on purpose.
                    15 => {
                        insert_session(&mut tx, "rolled-back").await?;
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    _ => insert_session(&mut tx, &format!("s{i:02}")).await?,
                }
                tx.commit().await?;
                Ok::<_, super::StoreError>(true)
            }));
        }
        let (committed, failed) = tally(tasks).await;
        assert_eq!((committed, failed), (61, 1));
        let ids = sessions(&store).await;
        assert_eq!(ids.len(), 61, "{ids:?}");
        assert!(!ids.iter().any(|i| i == "abandoned" || i == "rolled-back"));
        let commits = batches(&store) - before;
        assert!(
            commits < 61,
            "61 writes took {commits} commits: no grouping"
        );
    }

    #[tokio::test]
    async fn a_failed_write_does_not_keep_the_database_locked() {
        let (_dir, store) = store().await;
        {
            let mut tx = store.begin_write().await.unwrap();
            insert_session(&mut tx, "gone").await.unwrap();
        } // dropped: rolled back, and the transaction ends
        // Another connection can write without waiting out the busy timeout.
        let other = sqlx::query(
            "INSERT INTO sessions (id, workspace, user_id, created_at, expires_at) \
             VALUES ('direct', 'ws', 'u', 0, 0)",
        )
        .execute(&store.pool);
        tokio::time::timeout(Duration::from_secs(5), other)
            .await
            .expect("the writer let go of the database")
            .unwrap();
        assert_eq!(sessions(&store).await, vec!["direct".to_string()]);
        // And the writer still works.
        let mut tx = store.begin_write().await.unwrap();
        insert_session(&mut tx, "after").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(sessions(&store).await.len(), 2);
    }

    #[tokio::test]
    async fn closed_store_refuses_writes_after_committing() {
        let (_dir, store) = store().await;
        let mut tx = store.begin_write().await.unwrap();
        insert_session(&mut tx, "kept").await.unwrap();
        tx.commit().await.unwrap();
        store.writer.as_ref().unwrap().close().await;
        assert!(store.begin_write().await.is_err());
        assert_eq!(sessions(&store).await, vec!["kept".to_string()]);
    }
}
