//! Reconciling `RoleApproval`s: each is a document of the identity service,
//! which applies it (and its lapse) to the person it names.

use std::sync::Arc;

use kube::{ResourceExt, runtime::controller::Action};

use super::{
    Context,
    error::{Error, Result},
    metrics::Kind,
    reconciler::{Reconciler, References, Referent},
    status::{self, Cond, READY, SYNCED},
    sync::{self, Synced},
};
use crate::admin::{ObjectKind, desired};
use crate::api::{RoleApproval, RoleApprovalStatus};

impl Reconciler for RoleApproval {
    const KIND: Kind = Kind::RoleApproval;
    const REFERS_TO: &'static [Referent] = &[Referent::Workspace];

    async fn apply(ra: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let outcome = sync_approval(&ctx, &ra).await;
        let new = status_after(&ra, &outcome);
        status::patch_if_changed(&ctx, ra.as_ref(), ra.status.as_ref(), &new).await?;
        let synced = outcome?;
        sync::announce(&ctx, ra.as_ref(), &synced, "role approval").await;
        Ok(Action::await_change())
    }

    async fn cleanup(ra: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        // Deleting an approval always revokes it: keeping one in force with
        // no resource left to review would defeat the review.
        sync::delete_document(
            &ctx,
            ra.as_ref(),
            &ra.spec.workspace_ref.name,
            None,
            ObjectKind::RoleApproval,
        )
        .await
    }

    fn references(&self) -> References<'_> {
        References {
            workspace: Some(&self.spec.workspace_ref.name),
            ..Default::default()
        }
    }
}

async fn sync_approval(ctx: &Context, ra: &RoleApproval) -> Result<Synced> {
    let doc = desired::role_approval(&ra.spec).map_err(|e| Error::config("InvalidSpec", e))?;
    let ns = ra.namespace().unwrap_or_default();
    let (ws, target) = ctx
        .targets
        .for_workspace_ref(&ns, &ra.spec.workspace_ref.name)
        .await?;
    let previous = ra
        .status
        .as_ref()
        .and_then(|s| s.synced_fingerprint.as_deref());
    let kind = ObjectKind::RoleApproval;
    let ws_id = ws.workspace_id();
    sync::document(ctx, &target, kind, &ws_id, &ra.name_any(), &doc, previous).await
}

/// The status a pass leaves.
fn status_after(ra: &RoleApproval, outcome: &Result<Synced>) -> RoleApprovalStatus {
    let current = ra.status.clone().unwrap_or_default();
    let generation = ra.metadata.generation;
    let mut new = RoleApprovalStatus {
        observed_generation: generation,
        ..current.clone()
    };
    let conditions = match outcome {
        Ok(synced) => {
            synced.record(&mut new.synced_fingerprint, &mut new.last_synced_at);
            let ready = format!(
                "{} may hold {} once the mapping gives it",
                ra.spec
                    .email
                    .as_deref()
                    .or(ra.spec.scim_id.as_deref())
                    .unwrap_or_default(),
                ra.spec.role
            );
            vec![Cond::ok(READY, "Synced", ready), synced.condition()]
        }
        Err(e) => vec![Cond::error(READY, e), Cond::error(SYNCED, e)],
    };
    new.conditions = status::conditions(&current.conditions, generation, conditions);
    new
}
