//! Reconciling `RoleMapping`s: inline tests must pass before a mapping is synced.

use std::sync::Arc;

use kube::{
    ResourceExt,
    runtime::{controller::Action, events::EventType},
};

use super::{
    Context,
    error::{Error, Result},
    status::{self, Cond, READY, SYNCED, TESTS_PASSED},
    sync,
};
use crate::admin::ObjectKind;
use crate::admin::desired;
use crate::api::{DeletionPolicy, RoleMapping};
use crate::roles::CompiledMapping;

pub async fn apply(rm: Arc<RoleMapping>, ctx: Arc<Context>) -> Result<Action> {
    let ns = rm.namespace().unwrap_or_default();
    let name = rm.name_any();
    let current = rm.status.clone().unwrap_or_default();
    let generation = rm.metadata.generation;
    let mut new = current.clone();
    new.observed_generation = generation;

    // Tests first: a mapping whose tests fail is never synced; the previous one
    // stays active in the identity service.
    let tests = CompiledMapping::compile_spec(&rm.spec)
        .map_err(|e| Error::config("InvalidMapping", e.to_string()))
        .and_then(|compiled| {
            let failures = compiled.run_tests(&rm.spec.tests);
            if failures.is_empty() {
                Ok(rm.spec.tests.len())
            } else {
                Err(Error::config(
                    "TestsFailed",
                    format!(
                        "{} of {} inline tests fail; the previous mapping stays active: {}",
                        failures.len(),
                        rm.spec.tests.len(),
                        failures
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ))
            }
        });

    let outcome = match &tests {
        Ok(_) => {
            async {
                let (ws, target) = ctx
                    .targets
                    .for_workspace_ref(&ns, &rm.spec.workspace_ref.name)
                    .await?;
                sync::document(
                    &ctx,
                    &target,
                    ObjectKind::RoleMapping,
                    &ws.workspace_id(),
                    &name,
                    &desired::role_mapping(&rm.spec),
                    current.synced_fingerprint.as_deref(),
                )
                .await
            }
            .await
        }
        Err(e) => Err(Error::config(e.reason(), e.to_string())),
    };

    let tests_cond = match &tests {
        Ok(n) => Cond::ok(
            TESTS_PASSED,
            "TestsPassed",
            format!("all {n} inline tests pass"),
        ),
        Err(e) => Cond::error(TESTS_PASSED, e),
    };
    new.tests_passed = match &tests {
        Ok(n) => Some(*n as i32),
        Err(_) => current.tests_passed,
    };
    match &outcome {
        Ok(synced) => {
            new.synced_fingerprint = Some(synced.fingerprint.clone());
            if synced.wrote || new.last_synced_at.is_none() {
                new.last_synced_at = Some(status::now_rfc3339());
            }
            new.conditions = status::conditions(
                &current.conditions,
                generation,
                vec![
                    Cond::ok(
                        READY,
                        "Synced",
                        "the mapping is active in the identity service",
                    ),
                    tests_cond,
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
                vec![Cond::error(READY, e), tests_cond, Cond::error(SYNCED, e)],
            );
        }
    }
    status::patch_if_changed(&ctx, rm.as_ref(), rm.status.as_ref(), &new).await?;

    match outcome {
        Ok(synced) => {
            sync::announce(&ctx, rm.as_ref(), &synced, "role mapping").await;
            Ok(Action::await_change())
        }
        Err(e) => {
            if tests.is_err() && new.conditions != current.conditions {
                ctx.event(
                    rm.as_ref(),
                    EventType::Warning,
                    "TestsFailed",
                    e.to_string(),
                )
                .await;
            }
            Err(e)
        }
    }
}

pub async fn cleanup(rm: Arc<RoleMapping>, ctx: Arc<Context>) -> Result<Action> {
    if rm.spec.deletion_policy == Some(DeletionPolicy::Retain) {
        return Ok(Action::await_change());
    }
    let ns = rm.namespace().unwrap_or_default();
    let Some((ws, target)) = ctx
        .targets
        .for_cleanup(&ns, &rm.spec.workspace_ref.name)
        .await?
    else {
        return Ok(Action::await_change());
    };
    target
        .call(
            "delete",
            target.client.delete_object(
                ObjectKind::RoleMapping,
                &ws.workspace_id(),
                &rm.name_any(),
                false,
            ),
        )
        .await?;
    Ok(Action::await_change())
}
