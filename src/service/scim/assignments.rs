//! Role assignments over SCIM: a write's `roles` checked against the
//! workspace's declared types (or left as stored, where SCIM may not manage
//! them), and members' effective assignments recomputed, stored and audited
//! in the transaction that moved them.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{context::WorkspaceCtx, error::ScimError, roles::audit_entry};
use crate::{
    api::{AssignmentHolder, RoleAssignments},
    roles::assignments::{Assignment, of_doc},
    scim::{ScimProblem, schema::ResourceKind},
    service::store::{Result, ScimTx, UserRow},
};

/// Applies the workspace's assignment policy to a document about to be
/// written over `stored` (none for a create). Without a policy `roles` stays
/// an attribute like any other.
pub fn enforce(
    ctx: &WorkspaceCtx,
    kind: ResourceKind,
    doc: &mut Map<String, Value>,
    stored: Option<&Map<String, Value>>,
) -> Result<(), ScimError> {
    let Some(policy) = &ctx.policy.role_assignments else {
        return Ok(());
    };
    let holder = match kind {
        ResourceKind::User => AssignmentHolder::Users,
        ResourceKind::Group => AssignmentHolder::Groups,
        ResourceKind::ServiceAccount => AssignmentHolder::ServiceAccounts,
    };
    if !policy.managed_on(holder) {
        // Ignored like a read-only attribute: what is stored stays.
        match stored.and_then(|s| s.get("roles")) {
            Some(roles) => doc.insert("roles".into(), roles.clone()),
            None => doc.remove("roles"),
        };
        return Ok(());
    }
    policy
        .check(doc)
        .map_err(|e| ScimProblem::invalid_value(e.to_string()).into())
}

/// Whether a write changed the assignments a resource carries itself. Without
/// a policy `roles` moves nobody's assignments, so nothing is recomputed.
pub fn changed(
    ctx: &WorkspaceCtx,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> bool {
    ctx.policy.role_assignments.is_some() && of_doc(before) != of_doc(after)
}

/// A principal's row: pk, kind and SCIM id.
pub type Holder<'a> = (i64, ResourceKind, &'a str);

/// A new principal's effective assignments: their own (they are in no group
/// yet), stored and audited with the insert, without reading anything back.
pub async fn created(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    holder: Holder<'_>,
    doc: &Map<String, Value>,
    now: i64,
) -> Result<()> {
    let Some(policy) = &ctx.policy.role_assignments else {
        return Ok(());
    };
    let own = of_doc(doc);
    let effective = policy.effective([own.as_slice()]);
    store(tx, ctx, holder, &[], &effective, now).await
}

/// Stores a user's new effective assignments and audits the move.
async fn store(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    (pk, kind, user_id): Holder<'_>,
    before: &[Assignment],
    effective: &[Assignment],
    now: i64,
) -> Result<()> {
    if effective == before {
        return Ok(());
    }
    // A list of string pairs always serialises.
    let text = (!effective.is_empty())
        .then(|| serde_json::to_string(effective).expect("strings serialise"));
    tx.set_assignments(pk, text.as_deref()).await?;
    let detail = json!({"from": before, "to": effective, "requestId": ctx.request_id});
    tx.audit(
        &audit_entry(ctx, kind, "assignment_changed", user_id, detail),
        now,
    )
    .await
}

/// Recomputes the effective assignments of `user_ids` (their own and their
/// groups', the highest value per type), writing and auditing each change.
pub async fn recompute(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    policy: &RoleAssignments,
    users: &HashMap<String, UserRow>,
    now: i64,
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = users.keys().cloned().collect();
    let group_docs = tx.group_docs_of(&ctx.name, &ids).await?;
    for (user_id, user) in users {
        // Read with the roles when the workspace declares assignments.
        let Some((doc, stored)) = &user.assignments else {
            continue;
        };
        let own = assignments_in(doc);
        let groups: Vec<Vec<Assignment>> = group_docs
            .get(user_id)
            .into_iter()
            .flatten()
            .map(|d| assignments_in(d))
            .collect();
        let sources = std::iter::once(own.as_slice()).chain(groups.iter().map(Vec::as_slice));
        let effective = policy.effective(sources);
        let before: Vec<Assignment> = stored
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let holder = (user.pk, user.kind, user_id.as_str());
        store(tx, ctx, holder, &before, &effective, now).await?;
    }
    Ok(())
}

/// The assignments in a stored document's text.
fn assignments_in(doc: &str) -> Vec<Assignment> {
    match serde_json::from_str::<Map<String, Value>>(doc) {
        Ok(doc) => of_doc(&doc),
        Err(_) => Vec::new(),
    }
}
