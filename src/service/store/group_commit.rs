//! Group commit for SQLite.
//!
//! SQLite has one writer at a time, and with `synchronous=FULL` every commit is
//! an fsync. A transaction per write caps throughput at one write per fsync,
//! plus the busy handler's sleeps whenever two pool connections want to write.
//! Instead, every write runs on one dedicated connection:
//!
//! - a write takes the connection (a FIFO lock), opens its own `SAVEPOINT` in
//!   the connection's open transaction (the first write of a batch opens it
//!   with `BEGIN IMMEDIATE`), runs, and is released into the batch (its
//!   `RELEASE` is sent with the next write's `SAVEPOINT`, or made by the
//!   `COMMIT`: one round trip less per write). The `SAVEPOINT` itself is sent
//!   with the write's first statement when the write takes it
//!   ([`WriteSlot::take_owed`]), else on its own before the first use. A
//!   write that fails or is abandoned is rolled back to its savepoint: it
//!   takes nothing of the other writes in the batch with it;
//! - a committer task takes the connection after the writes queued before it
//!   and commits once. [`WriteSlot::commit`] returns only when the transaction
//!   holding its write is committed, so one fsync covers every write that was
//!   queued, and a write that was acknowledged survives a kill -9 as before.
//!   If the commit fails, every write of the batch gets the error and none was
//!   acknowledged.
//!
//! Readers use the pool and never wait for the writer (WAL).
//!
//! A write must not begin another write while it holds its slot: the second
//! would wait for the first forever.

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
};

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, watch};

use super::{Result, StoreError};

/// Savepoint names. At most two savepoints are open at once: the last
/// released write's (until the next write's query releases it) and the open
/// write's, and the open write takes the name the released one does not
/// have. So when a write's first query carried its `SAVEPOINT` and failed,
/// rolling back to its name either undoes exactly this write or fails because
/// the savepoint never opened (and the batch is abandoned); it never reaches
/// a released write. Two fixed names keep the query texts few, so the
/// driver's prepared-statement cache keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    A,
    B,
}

impl Name {
    fn other(self) -> Self {
        match self {
            Name::A => Name::B,
            Name::B => Name::A,
        }
    }
    /// `SAVEPOINT` for this name, after releasing `released` if given.
    fn open_after(self, released: Option<Name>) -> &'static str {
        match (released, self) {
            (None, Name::A) => "SAVEPOINT write_a",
            (None, Name::B) => "SAVEPOINT write_b",
            (Some(Name::A), _) => "RELEASE SAVEPOINT write_a; SAVEPOINT write_b",
            (Some(Name::B), _) => "RELEASE SAVEPOINT write_b; SAVEPOINT write_a",
        }
    }
    fn rollback_to(self) -> &'static str {
        match self {
            Name::A => "ROLLBACK TO SAVEPOINT write_a",
            Name::B => "ROLLBACK TO SAVEPOINT write_b",
        }
    }
    fn release(self) -> &'static str {
        match self {
            Name::A => "RELEASE SAVEPOINT write_a",
            Name::B => "RELEASE SAVEPOINT write_b",
        }
    }
}

/// How a batch ended: `None` while it is open, then committed or why not.
type Outcome = Option<std::result::Result<(), String>>;

/// The SQLite writer and its committer task.
pub(super) struct GroupCommit {
    writer: Arc<Mutex<Writer>>,
    batches: Arc<std::sync::atomic::AtomicU64>,
    /// Wakes the committer; capacity 1, so wake-ups coalesce.
    wake: mpsc::Sender<()>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

struct Writer {
    conn: AnyConnection,
    closed: bool,
    /// A transaction (the current batch) is open on `conn`.
    in_tx: bool,
    /// A write holds the connection, or failed or was abandoned and is still
    /// to be rolled back; its savepoint is open, or still owed (`owed`).
    open_op: bool,
    /// Writes released into the open transaction, waiting for its commit.
    released: usize,
    /// The last released write, whose savepoint is still open: its `RELEASE`
    /// goes with the next write's `SAVEPOINT`, or `COMMIT` releases it (every
    /// statement is a round trip to sqlx's worker thread, and a write that
    /// succeeded has nothing to undo).
    release_pending: Option<Name>,
    /// The open write's savepoint.
    current: Name,
    /// SQL the open write still owes before its own statements (its
    /// `SAVEPOINT`, after the previous write's `RELEASE`), with the release
    /// it took over, to hand back if the SQL is never sent.
    owed: Option<(&'static str, Option<Name>)>,
    /// Where the open batch's outcome is published.
    outcome: watch::Sender<Outcome>,
    /// Batches committed so far.
    batches: Arc<std::sync::atomic::AtomicU64>,
}

impl GroupCommit {
    /// Opens the writer connection on `url` and starts its committer.
    pub(super) async fn open(url: &str) -> Result<Self> {
        let mut conn = AnyConnection::connect(url).await?;
        // temp_store=MEMORY keeps each write's savepoint journal (the pages
        // a write changed, to roll it back alone) in memory instead of a
        // temporary file: it never needs to outlive the process, since the
        // transaction it belongs to rolls back with it.
        conn.execute(
            "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY;",
        )
        .await?;
        let batches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer = Arc::new(Mutex::new(Writer {
            batches: batches.clone(),
            conn,
            closed: false,
            in_tx: false,
            open_op: false,
            released: 0,
            release_pending: None,
            current: Name::A,
            owed: None,
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
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for the writer and opens a savepoint for one write.
    pub(super) async fn begin(&self) -> Result<WriteSlot> {
        let mut slot = self.begin_deferred().await?;
        slot.settle().await?;
        Ok(slot)
    }

    /// Waits for the writer; the write's savepoint is owed until it is taken
    /// ([`WriteSlot::take_owed`]) or settled ([`WriteSlot::settle`]).
    pub(super) async fn begin_deferred(&self) -> Result<WriteSlot> {
        let mut slot = WriteSlot {
            writer: self.writer.clone().lock_owned().await,
            wake: self.wake.clone(),
        };
        // On an error the slot is dropped, and the committer finishes the batch.
        slot.writer.start_op().await?;
        Ok(slot)
    }

    /// Commits what was released and refuses writes from now on.
    pub(super) async fn close(&self) {
        let mut w = self.writer.lock().await;
        w.finish().await;
        w.closed = true;
    }
}

/// Finishes batches: after the writes queued before it (the lock is FIFO),
/// commits what they released.
async fn committer(writer: Arc<Mutex<Writer>>, mut woken: mpsc::Receiver<()>) {
    while woken.recv().await.is_some() {
        writer.lock().await.finish().await;
    }
}

impl Writer {
    async fn start_op(&mut self) -> Result<()> {
        if self.closed {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        self.discard_open_op().await;
        if !self.in_tx {
            // IMMEDIATE: take the write lock now rather than fail to upgrade a
            // read lock later.
            self.conn.execute("BEGIN IMMEDIATE").await?;
            self.in_tx = true;
        }
        // The pending release is taken over by the owed SQL: once that is sent
        // (even if it fails), no savepoint of a released write is left for a
        // later RELEASE to trip on (COMMIT ends any that is).
        let released = self.release_pending.take();
        self.current = released.map_or(Name::A, Name::other);
        let sql = self.current.open_after(released);
        self.owed = Some((sql, released));
        self.open_op = true;
        Ok(())
    }

    /// Withdraws what the open write owes, if it never sent it: the release it
    /// took over is pending again. Whether there was anything to withdraw.
    fn withdraw_owed(&mut self) -> bool {
        match self.owed.take() {
            Some((_, released)) => {
                self.release_pending = released;
                true
            }
            None => false,
        }
    }

    /// Rolls back a write that did not release its savepoint.
    async fn discard_open_op(&mut self) {
        if !self.open_op {
            return;
        }
        self.open_op = false;
        if self.withdraw_owed() {
            return; // nothing of this write was sent: nothing to undo
        }
        let name = self.current;
        let undone = match self.conn.execute(name.rollback_to()).await {
            Ok(_) => self.conn.execute(name.release()).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = undone {
            // SQLite rolls a whole transaction back on some errors (a full disk,
            // an I/O error): the writes released into it are gone, unacknowledged.
            tracing::error!(error = %e, "a failed write could not be rolled back alone; abandoning its batch");
            if let Err(e) = self.conn.execute("ROLLBACK").await {
                tracing::debug!(error = %e, "no transaction left to roll back");
            }
            self.end_batch(Err(format!("the batch was rolled back: {e}")));
        }
    }

    /// Commits the released writes (or, with none, rolls back to free the
    /// database's write lock) and publishes the outcome to their writers.
    async fn finish(&mut self) {
        self.discard_open_op().await;
        if !self.in_tx {
            return;
        }
        if self.released == 0 {
            if let Err(e) = self.conn.execute("ROLLBACK").await {
                tracing::warn!(error = %e, "rolling back an empty batch failed");
            }
            self.in_tx = false;
            return;
        }
        let committed = match self.conn.execute("COMMIT").await {
            Ok(_) => {
                self.batches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if let Err(e) = self.conn.execute("ROLLBACK").await {
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
        // COMMIT and ROLLBACK end every savepoint.
        self.release_pending = None;
        self.owed = None;
        self.outcome.send_replace(Some(outcome));
        self.outcome = watch::channel(None).0;
    }
}

/// One write's hold on the writer connection, inside its own savepoint.
/// Dropped without [`commit`](Self::commit), the write is rolled back.
pub struct WriteSlot {
    writer: OwnedMutexGuard<Writer>,
    wake: mpsc::Sender<()>,
}

impl WriteSlot {
    /// Releases the write into the batch, lets the next write in, and returns
    /// once the batch is committed (durable) or failed.
    pub(super) async fn commit(mut self) -> Result<()> {
        // A write that never used the connection owes nothing and releases
        // nothing; else its savepoint is released by the next write or the
        // batch's COMMIT.
        self.writer.open_op = false;
        if !self.writer.withdraw_owed() {
            self.writer.release_pending = Some(self.writer.current);
        }
        self.writer.released += 1;
        let mut outcome = self.writer.outcome.subscribe();
        if self.wake.is_closed() {
            // No committer (its runtime is gone): commit here.
            self.writer.finish().await;
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

    /// The SQL this write owes before its first statement, for the caller
    /// to send at the head of that statement's query (SQLite runs the
    /// statements of one query in order, in one round trip). Taking it counts
    /// as sending it: if the query fails, the write is rolled back to its
    /// savepoint, or the batch is abandoned when the savepoint never opened.
    pub(super) fn take_owed(&mut self) -> Option<&'static str> {
        self.writer.owed.take().map(|(sql, _)| sql)
    }

    /// Sends what the write still owes, if anything.
    pub(super) async fn settle(&mut self) -> Result<()> {
        if let Some(sql) = self.take_owed() {
            self.writer.conn.execute(sql).await?;
        }
        Ok(())
    }

    /// Rolls the write back now.
    pub(super) async fn rollback(mut self) -> Result<()> {
        self.writer.discard_open_op().await;
        Ok(())
    }
}

impl Drop for WriteSlot {
    fn drop(&mut self) {
        // Full means a wake-up is already pending; closed means no committer,
        // and the next write finishes the batch.
        let _ = self.wake.try_send(());
    }
}

impl Deref for WriteSlot {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.writer.conn
    }
}

impl DerefMut for WriteSlot {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.writer.conn
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
        sqlx::query(
            "INSERT INTO sessions (id, workspace, user_id, created_at, expires_at) \
             VALUES ($1, 'ws', 'u', 0, 0)",
        )
        .bind(id)
        .execute(&mut **tx)
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

    /// A write whose savepoint leads its first query (a SCIM create): the
    /// same isolation, whether the query fails, the write is abandoned before
    /// or after sending anything, or it commits without a statement.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deferred_savepoints_keep_writes_apart() {
        let (_dir, store) = store().await;
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.begin_write_deferred().await?;
                let id = match i {
                    13 => "s00".to_string(), // duplicate key: fails this write only
                    14 => return Ok(false),  // abandoned before sending anything
                    15 => {
                        tx.commit().await?; // committed without a statement
                        return Ok(false);
                    }
                    16 => "abandoned".to_string(),
                    _ => format!("s{i:02}"),
                };
                let owed = tx.take_owed().map(|o| format!("{o}; ")).unwrap_or_default();
                let sql = format!(
                    "{owed}INSERT INTO sessions (id, workspace, user_id, created_at, expires_at) \
                     VALUES ($1, 'ws', 'u', 0, 0)"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id.clone())
                    .fetch_all(&mut *tx)
                    .await?;
                if i == 16 {
                    return Ok(false); // abandoned after writing: rolled back
                }
                // A second statement goes through `settled`, inside the savepoint.
                sqlx::query("UPDATE sessions SET user_id = 'v' WHERE id = $1")
                    .bind(id)
                    .execute(tx.settled().await?)
                    .await?;
                tx.commit().await?;
                Ok::<_, super::StoreError>(true)
            }));
        }
        let (committed, failed) = tally(tasks).await;
        assert_eq!((committed, failed), (60, 1));
        let ids = sessions(&store).await;
        assert_eq!(ids.len(), 60, "{ids:?}");
        assert!(!ids.iter().any(|i| i == "abandoned"));
        let unchanged: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE user_id <> 'v'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(unchanged, 0);
        // The writer still works, eagerly too.
        let mut tx = store.begin_write().await.unwrap();
        insert_session(&mut tx, "after").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(sessions(&store).await.len(), 61);
    }

    /// A write whose first query fails before its savepoint opened (here a
    /// statement ahead of it that does not parse; in life an I/O error on the
    /// RELEASE ahead of it) must not roll back to the previous write's
    /// savepoint: what was acknowledged is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unopened_savepoint_never_undoes_an_acknowledged_write() {
        for round in 0..20 {
            let (_dir, store) = store().await;
            let mut first = store.begin_write().await.unwrap();
            insert_session(&mut first, "acknowledged").await.unwrap();
            // The second write queues for the writer before the first commits,
            // so both land in one batch.
            let second = tokio::spawn({
                let store = store.clone();
                async move {
                    let mut tx = store.begin_write_deferred().await.unwrap();
                    let owed = tx.take_owed().unwrap();
                    let sql = format!(
                        "SELEC 1; {owed}; INSERT INTO sessions (id, workspace, user_id, created_at, expires_at) VALUES ('second', 'ws', 'u', 0, 0)"
                    );
                    assert!(
                        sqlx::query(sqlx::AssertSqlSafe(sql))
                            .fetch_all(&mut *tx)
                            .await
                            .is_err()
                    );
                }
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
            let acknowledged = first.commit().await.is_ok();
            second.await.unwrap();
            let ids = sessions(&store).await;
            assert!(
                !ids.contains(&"second".to_string()),
                "round {round}: {ids:?}"
            );
            if acknowledged {
                assert_eq!(
                    ids,
                    ["acknowledged"],
                    "round {round}: an acknowledged write was lost"
                );
            }
        }
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
