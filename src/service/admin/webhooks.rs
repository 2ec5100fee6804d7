//! Where a webhook endpoint's deliveries stand, and replays of a time range
//! (`idsync admin webhooks status|replay`, the Webhook resource's status and
//! its replay annotation).

use super::{Actor, AdminError, AdminService, Result, parse};
use crate::admin::{DeliveryView, ObjectKind, ReplayRequest, ReplayView};
use crate::service::store::{AuditEntry, StoredObject, timestamp};

impl AdminService {
    async fn webhook(&self, workspace: &str, name: &str) -> Result<StoredObject> {
        self.require_workspace(workspace).await?;
        self.store
            .get_object(ObjectKind::Webhook, workspace, name)
            .await?
            .ok_or_else(|| {
                AdminError::NotFound(format!("no webhook {name} in workspace {workspace}"))
            })
    }

    /// Endpoint `name` of `workspace`: what is delivered and what waits.
    pub async fn webhook_deliveries(&self, workspace: &str, name: &str) -> Result<DeliveryView> {
        self.webhook(workspace, name).await?;
        // No state yet: declared a moment ago, before its first pass.
        let Some(s) = self.store.delivery_state(workspace, name).await? else {
            return Ok(DeliveryView::default());
        };
        Ok(DeliveryView {
            delivered_seq: s.delivered_seq,
            pending: s.pending,
            oldest_pending_at: s.oldest_pending_at.map(timestamp),
            last_success_at: s.last_success_at.map(timestamp),
            last_failure_at: s.last_failure_at.map(timestamp),
            last_failure: s.last_failure,
            next_attempt_at: s.next_attempt_at.map(timestamp),
            disabled_at: s.disabled_at.map(timestamp),
        })
    }

    /// Delivers the events of a time range to endpoint `name` again (same
    /// ids, oldest first), and lifts a disablement.
    pub async fn replay_webhook(
        &self,
        (workspace, name): (&str, &str),
        body: &[u8],
        actor: &Actor,
    ) -> Result<ReplayView> {
        let range: ReplayRequest = parse(body)?;
        self.check_claim(workspace, actor, false).await?;
        let object = self.webhook(workspace, name).await?;
        let (from, until) = (
            range.from.as_millisecond(),
            range.until.map(|t| t.as_millisecond()),
        );
        if until.is_some_and(|u| u < from) {
            return Err(AdminError::invalid("until: must not be before from"));
        }
        let audit = AuditEntry {
            workspace: Some(workspace.to_string()),
            actor: actor.name.clone(),
            action: "webhook.replayed".into(),
            kind: Some("webhook".into()),
            name: Some(name.to_string()),
            detail: Some(serde_json::json!({"from": range.from, "until": range.until})),
        };
        let since = (workspace, name, object.created_at);
        let events = self.store.replay_webhook(since, from, until, audit).await?;
        Ok(ReplayView { events })
    }
}
