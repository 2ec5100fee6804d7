//! Reconciling `Workspace`s.

use std::sync::Arc;

use kube::runtime::controller::Action;

use super::{
    Context,
    error::{Error, Result},
    metrics::{Kind, Op},
    reconciler::{Reconciler, References, Referent},
    status::{self, Cond, READY, SYNCED},
    sync::{self, Synced},
};
use crate::admin::ObjectKind;
use crate::admin::desired;
use crate::api::{Workspace, WorkspaceDeletionPolicy, WorkspaceStatus};

impl Reconciler for Workspace {
    const KIND: Kind = Kind::Workspace;
    const REFERS_TO: &'static [Referent] = &[Referent::Service];

    async fn apply(ws: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let outcome = sync_workspace(&ctx, &ws).await;
        let new = status_after(&ws, &outcome);
        status::patch_if_changed(&ctx, ws.as_ref(), ws.status.as_ref(), &new).await?;
        let (synced, _) = outcome?;
        let what = format!("workspace {}", ws.workspace_id());
        sync::announce(&ctx, ws.as_ref(), &synced, &what).await;
        Ok(Action::await_change())
    }

    async fn cleanup(ws: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        cleanup(&ctx, &ws).await
    }

    fn references(&self) -> References<'_> {
        References {
            service: Some(&self.spec.service_ref),
            ..Default::default()
        }
    }
}

/// Syncs the workspace document; answers the sync and the SCIM base URL.
async fn sync_workspace(ctx: &Context, ws: &Workspace) -> Result<(Synced, String)> {
    let id = ws.workspace_id();
    let target = ctx.targets.for_workspace(ws).await?;
    let previous = ws
        .status
        .as_ref()
        .and_then(|s| s.synced_fingerprint.as_deref());
    let synced = sync::document(
        ctx,
        &target,
        ObjectKind::Workspace,
        &id,
        &id,
        &desired::workspace(&ws.spec),
        previous,
    )
    .await?;
    Ok((synced, target.scim_base_url(&id)))
}

/// The status a pass leaves.
fn status_after(ws: &Workspace, outcome: &Result<(Synced, String)>) -> WorkspaceStatus {
    let current = ws.status.clone().unwrap_or_default();
    let id = ws.workspace_id();
    let generation = ws.metadata.generation;
    let mut new = WorkspaceStatus {
        observed_generation: generation,
        workspace_id: Some(id.clone()),
        ..current.clone()
    };
    let conditions = match outcome {
        Ok((synced, scim_base_url)) => {
            new.scim_base_url = Some(scim_base_url.clone());
            synced.record(&mut new.synced_fingerprint, &mut new.last_synced_at);
            vec![
                Cond::ok(
                    READY,
                    "Synced",
                    format!("workspace {id} is in sync with the identity service"),
                ),
                synced.condition(),
            ]
        }
        Err(e) => vec![Cond::error(READY, e), Cond::error(SYNCED, e)],
    };
    new.conditions = status::conditions(&current.conditions, generation, conditions);
    new
}

/// Deletes the workspace from the service (or releases its id, with `Retain`).
async fn cleanup(ctx: &Context, ws: &Workspace) -> Result<Action> {
    let id = ws.workspace_id();
    let policy = ws.spec.deletion_policy.unwrap_or_default();
    let Some(target) = ctx.targets.cleanup_target(ws).await? else {
        return Ok(Action::await_change());
    };
    if policy == WorkspaceDeletionPolicy::Retain {
        // The workspace stays in the service, but this resource no longer
        // owns its id: another may claim it.
        target
            .call(Op::ReleaseWorkspace, target.client.release_workspace(&id))
            .await?;
        return Ok(Action::await_change());
    }
    let cascade = policy == WorkspaceDeletionPolicy::Cascade;
    let deleted = target
        .call(
            Op::DeleteObject,
            target
                .client
                .delete_object(ObjectKind::Workspace, &id, &id, cascade),
        )
        .await;
    match deleted {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if e.status() == Some(reqwest::StatusCode::CONFLICT) => {
            // Dependents still exist: say so in status and wait for them to go.
            let new = blocked_status(ws, &format!("{e}; or set spec.deletionPolicy: Cascade"));
            status::patch_if_changed(ctx, ws, ws.status.as_ref(), &new).await?;
            Err(Error::Service(e))
        }
        Err(e) => Err(Error::Service(e)),
    }
}

/// The status of a workspace whose deletion waits for its dependents.
fn blocked_status(ws: &Workspace, message: &str) -> WorkspaceStatus {
    let current = ws.status.clone().unwrap_or_default();
    WorkspaceStatus {
        conditions: status::conditions(
            &current.conditions,
            ws.metadata.generation,
            vec![Cond::fail(READY, "DeletionBlocked", message)],
        ),
        ..current
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::WorkspaceSpec;

    fn workspace(status: Option<WorkspaceStatus>) -> Workspace {
        let spec: WorkspaceSpec = serde_json::from_value(serde_json::json!({
            "serviceRef": {"name": "idsync"},
            "displayName": "Acme",
        }))
        .unwrap();
        let mut ws = Workspace::new("acme", spec);
        ws.metadata.generation = Some(3);
        ws.status = status;
        ws
    }

    fn synced(wrote: bool) -> Synced {
        Synced {
            fingerprint: "abc".into(),
            wrote,
            drift: false,
            endpoints: BTreeMap::new(),
        }
    }

    #[test]
    fn a_sync_makes_the_workspace_ready_with_its_scim_url() {
        let ws = workspace(None);
        let new = status_after(&ws, &Ok((synced(true), "https://id/scim/v2/acme".into())));
        assert_eq!(new.observed_generation, Some(3));
        assert_eq!(new.workspace_id.as_deref(), Some("acme"));
        assert_eq!(
            new.scim_base_url.as_deref(),
            Some("https://id/scim/v2/acme")
        );
        assert_eq!(new.synced_fingerprint.as_deref(), Some("abc"));
        assert!(new.last_synced_at.is_some());
        assert!(status::is_true(&new.conditions, READY));
        assert!(status::is_true(&new.conditions, SYNCED));
    }

    #[test]
    fn a_pass_that_changes_nothing_leaves_the_status_as_it_was() {
        let first = status_after(&workspace(None), &Ok((synced(true), "u".into())));
        let again = status_after(
            &workspace(Some(first.clone())),
            &Ok((synced(false), "u".into())),
        );
        assert_eq!(again, first, "an unchanged status is not written");
    }

    #[test]
    fn a_failure_keeps_the_last_sync_and_says_why() {
        let first = status_after(&workspace(None), &Ok((synced(true), "u".into())));
        let failed = status_after(
            &workspace(Some(first.clone())),
            &Err(Error::config(
                "ServiceNotFound",
                "no IdentityService `idsync`",
            )),
        );
        assert_eq!(failed.synced_fingerprint, first.synced_fingerprint);
        assert_eq!(failed.scim_base_url, first.scim_base_url);
        let ready = failed.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ServiceNotFound")
        );
        assert!(ready.message.contains("no IdentityService"));
    }

    #[test]
    fn a_blocked_deletion_says_what_to_do() {
        let first = status_after(&workspace(None), &Ok((synced(true), "u".into())));
        let blocked = blocked_status(&workspace(Some(first)), "2 connections remain");
        let ready = &blocked.conditions[0];
        assert_eq!(
            (ready.type_.as_str(), ready.reason.as_str()),
            (READY, "DeletionBlocked")
        );
        assert_eq!(blocked.conditions.len(), 1);
    }
}
