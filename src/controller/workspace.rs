//! Reconciling `Workspace`s.

use std::sync::Arc;

use kube::runtime::controller::Action;

use super::{
    Context,
    error::{Error, Result},
    status::{self, Cond, READY, SYNCED},
    sync,
};
use crate::admin::ObjectKind;
use crate::admin::desired;
use crate::api::{Workspace, WorkspaceDeletionPolicy};

pub async fn apply(ws: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action> {
    let id = ws.workspace_id();
    let current = ws.status.clone().unwrap_or_default();
    let outcome = async {
        let target = ctx.targets.for_workspace(&ws).await?;
        let synced = sync::document(
            &ctx,
            &target,
            ObjectKind::Workspace,
            &id,
            &id,
            &desired::workspace(&ws.spec),
            current.synced_fingerprint.as_deref(),
        )
        .await?;
        Ok::<_, Error>((synced, target))
    }
    .await;

    let generation = ws.metadata.generation;
    let mut new = current.clone();
    new.observed_generation = generation;
    new.workspace_id = Some(id.clone());
    match &outcome {
        Ok((synced, target)) => {
            new.scim_base_url = Some(target.scim_base_url(&id));
            if synced.wrote || new.last_synced_at.is_none() {
                new.last_synced_at = Some(status::now_rfc3339());
            }
            new.synced_fingerprint = Some(synced.fingerprint.clone());
            new.conditions = status::conditions(
                &current.conditions,
                generation,
                vec![
                    Cond::ok(
                        READY,
                        "Synced",
                        format!("workspace {id} is in sync with the identity service"),
                    ),
                    Cond::ok(
                        SYNCED,
                        "Synced",
                        format!("fingerprint {}", synced.fingerprint),
                    ),
                ],
            );
        }
        Err(e) => {
            new.conditions = status::conditions(
                &current.conditions,
                generation,
                vec![Cond::error(READY, e), Cond::error(SYNCED, e)],
            );
        }
    }
    status::patch_if_changed(&ctx, ws.as_ref(), ws.status.as_ref(), &new).await?;

    match outcome {
        Ok((synced, _)) => {
            sync::announce(&ctx, ws.as_ref(), &synced, &format!("workspace {id}")).await;
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

pub async fn cleanup(ws: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action> {
    let id = ws.workspace_id();
    let policy = ws.spec.deletion_policy.unwrap_or_default();
    let Some(target) = ctx.targets.cleanup_target(&ws).await? else {
        return Ok(Action::await_change());
    };
    if policy == WorkspaceDeletionPolicy::Retain {
        // The workspace stays in the service, but this resource no longer
        // owns its id: another may claim it.
        target
            .call("release", target.client.release_workspace(&id))
            .await?;
        return Ok(Action::await_change());
    }
    let cascade = policy == WorkspaceDeletionPolicy::Cascade;
    match target
        .call(
            "delete",
            target
                .client
                .delete_object(ObjectKind::Workspace, &id, &id, cascade),
        )
        .await
    {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if e.status() == Some(reqwest::StatusCode::CONFLICT) => {
            // Dependents still exist: say so in status and wait for them to go.
            let current = ws.status.clone().unwrap_or_default();
            let mut new = current.clone();
            new.conditions = status::conditions(
                &current.conditions,
                ws.metadata.generation,
                vec![Cond::fail(
                    READY,
                    "DeletionBlocked",
                    format!("{e}; or set spec.deletionPolicy: Cascade"),
                )],
            );
            status::patch_if_changed(&ctx, ws.as_ref(), ws.status.as_ref(), &new).await?;
            Err(Error::Service(e))
        }
        Err(e) => Err(Error::Service(e)),
    }
}
