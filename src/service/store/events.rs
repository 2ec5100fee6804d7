//! Lifecycle events: the product-facing projection of the audit log. Every
//! change that matters is audited inside its own write, so the event is
//! derived there too ([`record`], called by `audit::insert`): one place decides
//! which changes are events, and an event exists exactly when its change
//! committed.

use serde_json::{Map, Value, json};

use super::{AuditEntry, Result, Store, WriteTx};

/// An event as stored and as `GET /workspaces/{ws}/events` answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: String,
    pub workspace: String,
    pub seq: i64,
    pub kind: String,
    pub subject: Option<String>,
    pub at: i64,
    pub data: Value,
}

/// Most events one page answers.
pub const MAX_EVENTS_LISTED: i64 = 1000;

/// The event type an audit entry makes, if any.
fn event_type(entry: &AuditEntry) -> Option<&'static str> {
    let action = entry.action.as_str();
    let via_delete = entry.detail.as_ref().is_some_and(|d| d["via"] == "DELETE");
    let created = entry.detail.as_ref().is_some_and(|d| d["created"] == true);
    let member = matches!(entry.kind.as_deref(), Some("User" | "ServiceAccount"));
    Some(match action {
        "user_provisioned" | "service_account_provisioned" => "member.created",
        "user_updated" | "service_account_updated" => "member.updated",
        "user_deprovisioned" | "service_account_deprovisioned" if via_delete => "member.deleted",
        "user_deprovisioned" | "service_account_deprovisioned" => "member.deactivated",
        "user_deleted" | "service_account_deleted" => "member.deleted",
        "user_reactivated" | "service_account_reactivated" => "member.reactivated",
        "user_access_revoked" => "member.access_revoked",
        "user_access_granted" => "member.access_granted",
        "role_changed" if member => "member.role_changed",
        "assignment_changed" if member => "member.assignments_changed",
        "group_created" => "group.created",
        "group_updated" => "group.updated",
        "group_deleted" => "group.deleted",
        "group_members_added" => "group.members_added",
        "group_members_removed" => "group.members_removed",
        "sso-connection.applied" if created => "sso_connection.created",
        "sso-connection.applied" => "sso_connection.updated",
        "sso-connection.deleted" => "sso_connection.deleted",
        "sso-connection.certificate_expiring" => "sso_connection.certificate_expiring",
        "scim-token.registered" => "scim_credential.rotated",
        "scim-token.revoked" => "scim_credential.revoked",
        // Delivered only to endpoints that name them (`sign_in.*`): volume.
        "sign_in" => "sign_in.succeeded",
        // One per source, reason and minute (refusals are aggregated).
        "sign_in_failed" => "sign_in.failed",
        _ => return None,
    })
}

/// Writes the event `entry` makes, if it makes one, in the entry's write.
pub(super) async fn record(tx: &mut WriteTx, entry: &AuditEntry, at: i64) -> Result<()> {
    let (Some(workspace), Some(kind)) = (entry.workspace.as_deref(), event_type(entry)) else {
        return Ok(());
    };
    let data = payload(tx, workspace, kind, entry).await?;
    let seq = tx
        .fetch_one(
            "INSERT INTO event_sequences (workspace, last) VALUES ($1, 1) \
             ON CONFLICT (workspace) DO UPDATE SET last = event_sequences.last + 1 \
             RETURNING last",
            &[workspace.into()],
            |row| row.int("last"),
        )
        .await?;
    let id = event_id(workspace, seq, at);
    let text = data.to_string();
    tx.execute(
        "INSERT INTO events (workspace, seq, id, type, subject, at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            workspace.into(),
            seq.into(),
            id.as_str().into(),
            kind.into(),
            entry.name.as_deref().into(),
            at.into(),
            text.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

/// An event's id: stable (the same on every delivery and read), unique (a
/// workspace's sequence never restarts), and naming no workspace.
fn event_id(workspace: &str, seq: i64, at: i64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{workspace}\n{seq}\n{at}"));
    format!("evt_{}", &hex::encode(digest)[..24])
}

/// What the product needs of the subject: a member or group as it is now in
/// this write, with what changed; never a secret (tokens are named by id).
async fn payload(
    tx: &mut WriteTx,
    workspace: &str,
    kind: &str,
    entry: &AuditEntry,
) -> Result<Value> {
    let detail = entry.detail.clone().unwrap_or(Value::Null);
    let subject = entry.name.as_deref().unwrap_or_default();
    let mut data = match kind.split('.').next() {
        Some("member" | "group") => match snapshot(tx, workspace, subject).await? {
            Some(now) => now,
            // Deleted for good in this write: what the entry kept of it.
            None => json!({"id": subject, "type": entry.kind}),
        },
        Some("scim_credential") => json!({"id": detail["tokenId"], "name": entry.name}),
        Some("sign_in") if kind == "sign_in.succeeded" => json!({
            "id": subject, "email": detail["email"], "role": detail["role"],
            "connection": detail["connection"], "protocol": detail["protocol"],
        }),
        Some("sso_connection") if kind == "sso_connection.certificate_expiring" => json!({
            "name": subject,
            "certificate": {
                "sha256": detail["certificateSha256"], "notAfter": detail["notAfter"],
                "daysLeft": detail["daysLeft"], "expired": detail["expired"],
            },
        }),
        Some("sign_in") => json!({
            "connection": subject, "protocol": detail["protocol"],
            "reason": detail["reason"], "source": detail["source"],
        }),
        _ => json!({"name": subject}),
    };
    let changed = match kind {
        "member.role_changed" => json!({"from": detail["from"], "to": detail["to"]}),
        "member.assignments_changed" => json!({"from": detail["from"], "to": detail["to"]}),
        "member.access_revoked" => json!({"reason": detail["reason"]}),
        "member.updated" | "group.updated" => json!({"attributes": detail["changed"]}),
        "group.members_added" | "group.members_removed" => {
            json!({"members": detail["members"], "count": detail["count"]})
        }
        _ => Value::Null,
    };
    if !changed.is_null() {
        data["changed"] = changed;
    }
    Ok(data)
}

/// A principal or group of `workspace` as this write sees it.
async fn snapshot(tx: &mut WriteTx, workspace: &str, id: &str) -> Result<Option<Value>> {
    tx.fetch_optional(
        "SELECT id, kind, doc, active, role, assignments, access_revoked_at, deleted_at \
         FROM scim_resources WHERE workspace = $1 AND id = $2",
        &[workspace.into(), id.into()],
        |row| {
            let doc: Map<String, Value> =
                serde_json::from_str(&row.text("doc")?).unwrap_or_default();
            let mut out = json!({"id": row.text("id")?, "type": row.text("kind")?});
            for key in ["userName", "displayName", "externalId", "name", "emails"] {
                if let Some(v) = doc.get(key) {
                    out[key] = v.clone();
                }
            }
            if out["type"] != "Group" {
                out["active"] = (row.int("active")? != 0).into();
                out["hasAccess"] = row.opt_int("access_revoked_at")?.is_none().into();
                out["role"] = row.opt_text("role")?.into();
                let assignments = row.opt_text("assignments")?;
                out["assignments"] = assignments
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .unwrap_or_else(|| json!([]));
            }
            out["deleted"] = row.opt_int("deleted_at")?.is_some().into();
            Ok(out)
        },
    )
    .await
}

impl Store {
    /// A workspace's events after `after` (a `seq`), oldest first.
    pub async fn events_after(
        &self,
        workspace: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
        let limit = limit.clamp(1, MAX_EVENTS_LISTED);
        self.read_all(
            &format!(
                "SELECT workspace, seq, id, type, subject, at, data FROM events \
                 WHERE workspace = $1 AND seq > $2 ORDER BY seq LIMIT {limit}"
            ),
            &[workspace.into(), after.into()],
            |row| {
                Ok(EventRecord {
                    id: row.text("id")?,
                    workspace: row.text("workspace")?,
                    seq: row.int("seq")?,
                    kind: row.text("type")?,
                    subject: row.opt_text("subject")?,
                    at: row.int("at")?,
                    // Written by `record`; one it cannot read shows as null.
                    data: serde_json::from_str(&row.text("data")?).unwrap_or(Value::Null),
                })
            },
        )
        .await
    }

    /// Deletes events older than `before`; answers how many.
    pub async fn prune_events(&self, before: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = tx
            .execute("DELETE FROM events WHERE at < $1", &[before.into()])
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, kind: &str, detail: Value) -> AuditEntry {
        AuditEntry {
            workspace: Some("acme".into()),
            actor: "test".into(),
            action: action.into(),
            kind: Some(kind.into()),
            name: Some("x".into()),
            detail: Some(detail),
        }
    }

    #[test]
    fn changes_that_matter_become_events_and_others_do_not() {
        let cases = [
            (
                entry("user_deprovisioned", "User", json!({"via": "DELETE"})),
                Some("member.deleted"),
            ),
            (
                entry("user_deprovisioned", "User", json!({})),
                Some("member.deactivated"),
            ),
            (
                entry("role_changed", "User", json!({})),
                Some("member.role_changed"),
            ),
            (entry("role_changed", "Group", json!({})), None),
            (
                entry("sign_in", "User", json!({})),
                Some("sign_in.succeeded"),
            ),
            (
                entry("sign_in_failed", "SSOConnection", json!({})),
                Some("sign_in.failed"),
            ),
            (entry("sign_out", "User", json!({})), None),
            (entry("webhook.replayed", "webhook", json!({})), None),
        ];
        for (e, want) in cases {
            assert_eq!(event_type(&e), want, "{} {:?}", e.action, e.detail);
        }
    }
}
