//! Webhook delivery state: each endpoint's place in its workspace's event
//! sequence, its retry schedule, the claim that keeps one replica at a time
//! delivering to it, and replays.

use super::{AuditEntry, Result, Store, WriteTx};

/// An endpoint's delivery state, as a claim reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Every event up to this `seq` is delivered (or not wanted).
    pub delivered_seq: i64,
    /// Failed passes since the cursor last moved.
    pub attempts: i64,
    /// Events with `skip_after < seq <= skip_through` were delivered before
    /// a replay moved the cursor back: passed over, not sent again.
    pub skip: (i64, i64),
    /// The last `seq` of the workspace when the claim was taken.
    pub last: i64,
}

impl Cursor {
    /// Whether a replay already delivered the event at `seq`.
    pub fn skips(&self, seq: i64) -> bool {
        self.skip.0 < seq && seq <= self.skip.1
    }
}

/// Why a pass stopped short, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try the event after the cursor again at `at`; `class` is what went
    /// wrong (`HTTP 503`, `timed out`), never the answer's body.
    Retry { at: i64, class: String },
    /// 410 Gone, or the retry schedule ran out: no more deliveries until a
    /// replay.
    Disable { class: String },
}

/// How a claimed pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassEnd {
    /// The new cursor: everything up to it is delivered.
    pub delivered_seq: i64,
    /// Failed passes since the cursor last moved (0 after a clean pass).
    pub attempts: i64,
    /// Whether some delivery of the pass got a 2xx.
    pub succeeded: bool,
    pub failure: Option<Failure>,
}

/// An endpoint's delivery state for status, metrics and `idsync admin
/// webhooks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    pub workspace: String,
    pub webhook: String,
    pub delivered_seq: i64,
    /// Events after the cursor, and when the oldest of them happened.
    pub pending: i64,
    pub oldest_pending_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    pub last_failure: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub disabled_at: Option<i64>,
}

const STATE_COLUMNS: &str = "c.workspace, c.webhook, c.delivered_seq, c.next_attempt_at, \
     c.last_success_at, c.last_failure_at, c.last_failure, c.disabled_at, \
     (SELECT COUNT(*) FROM events e WHERE e.workspace = c.workspace AND e.seq > c.delivered_seq) AS pending, \
     (SELECT MIN(e.at) FROM events e WHERE e.workspace = c.workspace AND e.seq > c.delivered_seq) AS oldest";

fn decode_state(row: &dyn super::columns::Columns) -> Result<DeliveryState> {
    let next = row.int("next_attempt_at")?;
    Ok(DeliveryState {
        workspace: row.text("workspace")?,
        webhook: row.text("webhook")?,
        delivered_seq: row.int("delivered_seq")?,
        pending: row.int("pending")?,
        oldest_pending_at: row.opt_int("oldest")?,
        last_success_at: row.opt_int("last_success_at")?,
        last_failure_at: row.opt_int("last_failure_at")?,
        last_failure: row.opt_text("last_failure")?,
        next_attempt_at: (next > 0).then_some(next),
        disabled_at: row.opt_int("disabled_at")?,
    })
}

impl Store {
    /// Whether endpoint `webhook` of `workspace` may have something to do:
    /// a read, so an idle endpoint costs no write per pass. New endpoints
    /// (no cursor yet) are due, to be started.
    pub async fn webhook_due(&self, workspace: &str, webhook: &str, now: i64) -> Result<bool> {
        let due = self
            .read_optional(
                "SELECT CAST(CASE WHEN c.disabled_at IS NULL AND c.next_attempt_at <= $3 \
                 AND c.claimed_until <= $3 AND COALESCE(s.last, 0) > c.delivered_seq \
                 THEN 1 ELSE 0 END AS BIGINT) AS due FROM webhook_cursors c \
                 LEFT JOIN event_sequences s ON s.workspace = c.workspace \
                 WHERE c.workspace = $1 AND c.webhook = $2",
                &[workspace.into(), webhook.into(), now.into()],
                |row| Ok(row.int("due")? != 0),
            )
            .await?;
        Ok(due.unwrap_or(true))
    }

    /// Claims endpoint `webhook` of `workspace` until `until` if it is due
    /// and nobody holds it; answers its state. A new endpoint gets the events
    /// from the moment it was declared (`since`) on.
    pub async fn claim_webhook(
        &self,
        (workspace, webhook, since): (&str, &str, i64),
        now: i64,
        until: i64,
    ) -> Result<Option<Cursor>> {
        let mut tx = self.begin_write().await?;
        start_cursor(&mut tx, workspace, webhook, since).await?;
        let claimed = tx
            .fetch_optional(
                "UPDATE webhook_cursors SET claimed_until = $3 \
                 WHERE workspace = $1 AND webhook = $2 AND disabled_at IS NULL \
                 AND next_attempt_at <= $4 AND claimed_until <= $4 \
                 RETURNING delivered_seq, attempts, skip_after, skip_through",
                &[workspace.into(), webhook.into(), until.into(), now.into()],
                |row| {
                    Ok(Cursor {
                        delivered_seq: row.int("delivered_seq")?,
                        attempts: row.int("attempts")?,
                        skip: (row.int("skip_after")?, row.int("skip_through")?),
                        last: 0,
                    })
                },
            )
            .await?;
        let claimed = match claimed {
            Some(cursor) => Some(Cursor {
                last: tx
                    .fetch_one(
                        "SELECT COALESCE((SELECT last FROM event_sequences WHERE workspace = $1), 0) AS last",
                        &[workspace.into()],
                        |row| row.int("last"),
                    )
                    .await?,
                ..cursor
            }),
            None => None,
        };
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records how a claimed pass ended and lets the claim go.
    pub async fn finish_pass(
        &self,
        (workspace, webhook): (&str, &str),
        end: &PassEnd,
        now: i64,
    ) -> Result<()> {
        let (next, class, disabled) = match &end.failure {
            None => (0, None, None),
            Some(Failure::Retry { at, class }) => (*at, Some(class.as_str()), None),
            Some(Failure::Disable { class }) => (0, Some(class.as_str()), Some(now)),
        };
        let mut tx = self.begin_write().await?;
        tx.execute(
            "UPDATE webhook_cursors SET delivered_seq = $3, attempts = $4, \
             next_attempt_at = $5, claimed_until = 0, \
             last_success_at = CASE WHEN $6 = 1 THEN $7 ELSE last_success_at END, \
             last_failure_at = CASE WHEN $8 = 1 THEN $7 ELSE last_failure_at END, \
             last_failure = COALESCE($9, last_failure), \
             disabled_at = COALESCE($10, disabled_at) \
             WHERE workspace = $1 AND webhook = $2",
            &[
                workspace.into(),
                webhook.into(),
                end.delivered_seq.into(),
                end.attempts.into(),
                next.into(),
                i64::from(end.succeeded).into(),
                now.into(),
                i64::from(class.is_some()).into(),
                class.into(),
                disabled.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Redelivers the events of `workspace` from `from` to `until` (Unix
    /// milliseconds; `None` for up to now) to endpoint `webhook`, and lifts
    /// a disablement. Events after the range it had delivered are not sent
    /// again. Answers how many events the range holds.
    pub async fn replay_webhook(
        &self,
        (workspace, webhook, since): (&str, &str, i64),
        from: i64,
        until: Option<i64>,
        audit_entry: AuditEntry,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        start_cursor(&mut tx, workspace, webhook, since).await?;
        let (first, last) = tx
            .fetch_one(
                "SELECT COALESCE((SELECT MAX(seq) FROM events WHERE workspace = $1 AND at < $2), 0) AS first, \
                 COALESCE((SELECT MAX(seq) FROM events WHERE workspace = $1 AND at <= $3), 0) AS last",
                &[
                    workspace.into(),
                    from.into(),
                    until.unwrap_or(i64::MAX).into(),
                ],
                |row| Ok((row.int("first")?, row.int("last")?)),
            )
            .await?;
        // The cursor only moves back: a replay of what is still pending changes nothing.
        tx.execute(
            "UPDATE webhook_cursors SET \
             skip_after = CASE WHEN delivered_seq > $4 THEN $4 ELSE 0 END, \
             skip_through = CASE WHEN delivered_seq > $4 THEN delivered_seq ELSE 0 END, \
             delivered_seq = CASE WHEN delivered_seq > $3 THEN $3 ELSE delivered_seq END, \
             attempts = 0, next_attempt_at = 0, disabled_at = NULL \
             WHERE workspace = $1 AND webhook = $2",
            &[workspace.into(), webhook.into(), first.into(), last.into()],
        )
        .await?;
        super::audit::insert(&mut tx, &audit_entry, super::now_millis()).await?;
        tx.commit().await?;
        Ok(last - first)
    }

    /// The delivery state of every endpoint (the metrics' scrape).
    pub async fn delivery_states(&self) -> Result<Vec<DeliveryState>> {
        let sql = format!(
            "SELECT {STATE_COLUMNS} FROM webhook_cursors c ORDER BY c.workspace, c.webhook"
        );
        self.read_all(&sql, &[], decode_state).await
    }

    /// The delivery state of endpoint `webhook` of `workspace`, once it has
    /// one (a status read counts that endpoint's backlog only).
    pub async fn delivery_state(
        &self,
        workspace: &str,
        webhook: &str,
    ) -> Result<Option<DeliveryState>> {
        let sql = format!(
            "SELECT {STATE_COLUMNS} FROM webhook_cursors c \
             WHERE c.workspace = $1 AND c.webhook = $2"
        );
        self.read_optional(&sql, &[workspace.into(), webhook.into()], decode_state)
            .await
    }
}

/// Gives a new endpoint its cursor: the events from `since` on are its.
async fn start_cursor(tx: &mut WriteTx, workspace: &str, webhook: &str, since: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO webhook_cursors (workspace, webhook, delivered_seq) VALUES ($1, $2, \
         COALESCE((SELECT MAX(seq) FROM events WHERE workspace = $1 AND at < $3), 0)) \
         ON CONFLICT (workspace, webhook) DO NOTHING",
        &[workspace.into(), webhook.into(), since.into()],
    )
    .await?;
    Ok(())
}
