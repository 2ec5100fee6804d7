//! Approvals of elevated roles: the `role-approval` objects of a workspace,
//! read for every recompute of one whose `approvalRequiredRoles` is not
//! empty, resolved to the principals they name.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::{context::WorkspaceCtx, roles::recompute, service::ScimService};
use crate::{
    admin::RoleApprovalDoc,
    service::store::{AuditEntry, ObjectKind, Result, ScimTx, StoredObject, now_millis},
};

/// The roles each principal is approved for now, by SCIM id.
#[derive(Debug, Default)]
pub struct Approvals {
    by_principal: HashMap<String, HashSet<String>>,
}

impl Approvals {
    /// Whether `principal` is approved for `role`.
    pub fn approves(&self, principal: &str, role: &str) -> bool {
        self.by_principal
            .get(principal)
            .is_some_and(|roles| roles.contains(role))
    }

    /// The approvals of `ctx`'s workspace in force at `now`, as `tx` sees
    /// them; none are read when the workspace requires no approval.
    pub async fn load(tx: &mut ScimTx, ctx: &WorkspaceCtx, now: i64) -> Result<Self> {
        if ctx.policy.approval_required_roles.is_empty() {
            return Ok(Self::default());
        }
        let objects = tx.objects_in(ObjectKind::RoleApproval, &ctx.name).await?;
        let live: Vec<RoleApprovalDoc> = objects
            .iter()
            .filter_map(parse)
            .filter(|doc| doc.live_at(now))
            .collect();
        let emails: Vec<String> = live
            .iter()
            .filter_map(|doc| doc.email.as_ref().map(|e| e.to_lowercase()))
            .collect();
        let by_email = match emails.is_empty() {
            true => HashMap::new(),
            false => tx.users_by_email(&ctx.name, &emails).await?,
        };
        let mut approvals = Self::default();
        for doc in live {
            let ids = match (&doc.scim_id, &doc.email) {
                (Some(id), _) => vec![id.clone()],
                (None, Some(email)) => by_email
                    .get(&email.to_lowercase())
                    .cloned()
                    .unwrap_or_default(),
                (None, None) => Vec::new(),
            };
            for id in ids {
                let roles = approvals.by_principal.entry(id).or_default();
                roles.insert(doc.role.clone());
            }
        }
        Ok(approvals)
    }
}

/// A stored approval's document; the admin API validated it, so one that
/// does not parse is an older version's and approves nothing.
pub fn parse(object: &StoredObject) -> Option<RoleApprovalDoc> {
    serde_json::from_value(object.body.clone())
        .inspect_err(|e| {
            tracing::error!(workspace = %object.workspace, approval = %object.name, error = %e,
                "stored role approval does not parse");
        })
        .ok()
}

impl ScimService {
    /// The approval `name` of `workspace` as stored now, if `kind` is
    /// approvals and it exists: the person it names is recomputed after it
    /// changes or goes.
    pub async fn approval_before(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
    ) -> Result<Option<RoleApprovalDoc>> {
        if kind != ObjectKind::RoleApproval {
            return Ok(None);
        }
        let stored = self.store.get_object(kind, workspace, name).await?;
        Ok(stored.as_ref().and_then(parse))
    }

    /// Recomputes, at once and in one write, the principals the approvals
    /// `docs` name (an approval was given, changed or revoked).
    pub async fn approvals_changed(&self, workspace: &str, docs: &[RoleApprovalDoc]) -> Result<()> {
        self.recompute_named(workspace, docs, None)
            .await
            .map(|_| ())
    }

    /// [`Self::approvals_changed`]; for a `lapse`, only in the one write that
    /// claims it, with its audit entry. Answers whether it recomputed.
    async fn recompute_named(
        &self,
        workspace: &str,
        docs: &[RoleApprovalDoc],
        lapse: Option<(&StoredObject, AuditEntry)>,
    ) -> Result<bool> {
        let Some(ctx) = WorkspaceCtx::load(&self.store, workspace).await? else {
            return Ok(false);
        };
        let ctx = WorkspaceCtx {
            actor: Some("role-approval".into()),
            ..ctx
        };
        let now = now_millis();
        let mapping = self.roles.mapping(&self.store, workspace).await?;
        let mut tx = self.store.scim_write().await?;
        if let Some((object, entry)) = &lapse {
            if !tx
                .claim_lapse(workspace, &object.name, &object.fingerprint, now)
                .await?
            {
                return Ok(false); // another replica handled it; dropping rolls back
            }
            tx.audit(entry, now).await?;
        }
        let emails: Vec<String> = docs
            .iter()
            .filter_map(|d| d.email.as_ref().map(|e| e.to_lowercase()))
            .collect();
        let mut ids: Vec<String> = docs.iter().filter_map(|d| d.scim_id.clone()).collect();
        if !emails.is_empty() {
            ids.extend(
                tx.users_by_email(workspace, &emails)
                    .await?
                    .into_values()
                    .flatten(),
            );
        }
        ids.sort();
        ids.dedup();
        let standings = recompute(&mut tx, &ctx, mapping.as_deref(), &ids, now).await?;
        self.session_cache.forget_all(&tx.commit().await?);
        self.count_decisions(workspace, &standings);
        Ok(true)
    }

    /// Demotes the people whose approvals lapsed by `now` (Unix
    /// milliseconds), once per lapse across replicas and restarts, auditing
    /// each; answers how many this call handled.
    pub async fn expire_approvals(&self, now: i64) -> Result<usize> {
        let objects = self
            .store
            .list_objects(ObjectKind::RoleApproval, None)
            .await?;
        let handled = self.store.handled_lapses().await?;
        let mut lapsed = 0;
        for object in &objects {
            let key = (
                object.workspace.clone(),
                object.name.clone(),
                object.fingerprint.clone(),
            );
            if handled.contains(&key) {
                continue;
            }
            let Some(doc) = parse(object) else { continue };
            if doc.live_at(now) {
                continue;
            }
            let entry = AuditEntry {
                workspace: Some(object.workspace.clone()),
                actor: "role-approval".into(),
                action: "role_approval_expired".into(),
                kind: Some(ObjectKind::RoleApproval.as_str().into()),
                name: Some(object.name.clone()),
                detail: Some(json!({"person": doc.person(), "role": doc.role})),
            };
            let docs = std::slice::from_ref(&doc);
            if self
                .recompute_named(&object.workspace, docs, Some((object, entry)))
                .await?
            {
                lapsed += 1;
            }
        }
        Ok(lapsed)
    }
}
