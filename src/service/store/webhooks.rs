//! Webhook delivery state: each endpoint's place in its workspace's event
//! sequence, its retry schedule and the claim that keeps one replica at a
//! time delivering to it.

use super::{Result, Store};

/// An endpoint's delivery state, as a claim reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub delivered_seq: i64,
    pub attempts: i64,
    pub disabled_at: Option<i64>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx for the event at this `seq` (or it was not one the endpoint
    /// wants): the cursor moves past it.
    Delivered(i64),
    /// Try the same event again at `retry_at`; `failure` is the class of what
    /// went wrong (never the answer's body).
    Failed { retry_at: i64, failure: String },
    /// 410 Gone, or the retry schedule ran out: no more deliveries.
    Disabled { failure: String },
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
                 THEN 1 ELSE 0 END AS BIGINT) AS due FROM webhook_cursors c LEFT JOIN event_sequences s ON s.workspace = c.workspace \
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
        tx.execute(
            "INSERT INTO webhook_cursors (workspace, webhook, delivered_seq) VALUES ($1, $2, \
             COALESCE((SELECT MAX(seq) FROM events WHERE workspace = $1 AND at < $3), 0)) \
             ON CONFLICT (workspace, webhook) DO NOTHING",
            &[workspace.into(), webhook.into(), since.into()],
        )
        .await?;
        let claimed = tx
            .fetch_optional(
                "UPDATE webhook_cursors SET claimed_until = $3 \
                 WHERE workspace = $1 AND webhook = $2 AND disabled_at IS NULL \
                 AND next_attempt_at <= $4 AND claimed_until <= $4 \
                 RETURNING delivered_seq, attempts, disabled_at",
                &[workspace.into(), webhook.into(), until.into(), now.into()],
                |row| {
                    Ok(Cursor {
                        delivered_seq: row.int("delivered_seq")?,
                        attempts: row.int("attempts")?,
                        disabled_at: row.opt_int("disabled_at")?,
                    })
                },
            )
            .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records an attempt and lets the claim go.
    pub async fn record_attempt(
        &self,
        workspace: &str,
        webhook: &str,
        attempt: &Attempt,
        now: i64,
    ) -> Result<()> {
        let (ws, hook, at) = (workspace.into(), webhook.into(), now.into());
        let (sql, args): (&str, Vec<super::args::Arg<'_>>) = match attempt {
            Attempt::Delivered(seq) => (
                "UPDATE webhook_cursors SET delivered_seq = $4, attempts = 0, \
                 next_attempt_at = 0, claimed_until = 0, last_success_at = $3 \
                 WHERE workspace = $1 AND webhook = $2",
                vec![ws, hook, at, (*seq).into()],
            ),
            Attempt::Failed { retry_at, failure } => (
                "UPDATE webhook_cursors SET attempts = attempts + 1, next_attempt_at = $4, \
                 claimed_until = 0, last_failure_at = $3, last_failure = $5 \
                 WHERE workspace = $1 AND webhook = $2",
                vec![ws, hook, at, (*retry_at).into(), failure.as_str().into()],
            ),
            Attempt::Disabled { failure } => (
                "UPDATE webhook_cursors SET disabled_at = $3, claimed_until = 0, \
                 last_failure_at = $3, last_failure = $4 \
                 WHERE workspace = $1 AND webhook = $2",
                vec![ws, hook, at, failure.as_str().into()],
            ),
        };
        let mut tx = self.begin_write().await?;
        tx.execute(sql, &args).await?;
        tx.commit().await?;
        Ok(())
    }
}
