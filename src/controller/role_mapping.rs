//! Reconciling `RoleMapping`s: inline tests must pass before a mapping is synced.

use std::sync::Arc;

use kube::{
    ResourceExt,
    runtime::{controller::Action, events::EventType},
};

use super::{
    Context,
    error::{Error, Result},
    metrics::Kind,
    reconciler::{Reconciler, References, Referent},
    status::{self, Cond, READY, SYNCED, TESTS_PASSED},
    sync::{self, Synced},
};
use crate::admin::ObjectKind;
use crate::admin::desired;
use crate::api::{RoleMapping, RoleMappingStatus};
use crate::roles::CompiledMapping;

impl Reconciler for RoleMapping {
    const KIND: Kind = Kind::RoleMapping;
    const REFERS_TO: &'static [Referent] = &[Referent::Workspace];

    async fn apply(rm: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        // Tests first: a mapping whose tests fail is never synced; the previous
        // one stays active in the identity service.
        let tests = run_tests(&rm);
        let outcome = match &tests {
            Ok(_) => sync_mapping(&ctx, &rm).await,
            Err(e) => Err(Error::config(e.reason(), e.to_string())),
        };
        let new = status_after(&rm, &tests, &outcome);
        status::patch_if_changed(&ctx, rm.as_ref(), rm.status.as_ref(), &new).await?;
        match outcome {
            Ok(synced) => {
                sync::announce(&ctx, rm.as_ref(), &synced, "role mapping").await;
                Ok(Action::await_change())
            }
            Err(e) => {
                let newly_failing =
                    rm.status.as_ref().map(|s| &s.conditions) != Some(&new.conditions);
                if tests.is_err() && newly_failing {
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

    async fn cleanup(rm: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        sync::delete_document(
            &ctx,
            rm.as_ref(),
            &rm.spec.workspace_ref.name,
            rm.spec.deletion_policy,
            ObjectKind::RoleMapping,
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

/// Compiles the mapping and runs its inline tests; answers how many passed.
fn run_tests(rm: &RoleMapping) -> Result<usize> {
    let compiled = CompiledMapping::compile_spec(&rm.spec)
        .map_err(|e| Error::config("InvalidMapping", e.to_string()))?;
    let failures = compiled.run_tests(&rm.spec.tests);
    if failures.is_empty() {
        return Ok(rm.spec.tests.len());
    }
    let listed = failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::config(
        "TestsFailed",
        format!(
            "{} of {} inline tests fail; the previous mapping stays active: {listed}",
            failures.len(),
            rm.spec.tests.len(),
        ),
    ))
}

async fn sync_mapping(ctx: &Context, rm: &RoleMapping) -> Result<Synced> {
    let ns = rm.namespace().unwrap_or_default();
    let (ws, target) = ctx
        .targets
        .for_workspace_ref(&ns, &rm.spec.workspace_ref.name)
        .await?;
    let previous = rm
        .status
        .as_ref()
        .and_then(|s| s.synced_fingerprint.as_deref());
    sync::document(
        ctx,
        &target,
        ObjectKind::RoleMapping,
        &ws.workspace_id(),
        &rm.name_any(),
        &desired::role_mapping(&rm.spec),
        previous,
    )
    .await
}

/// The status a pass leaves.
fn status_after(
    rm: &RoleMapping,
    tests: &Result<usize>,
    outcome: &Result<Synced>,
) -> RoleMappingStatus {
    let current = rm.status.clone().unwrap_or_default();
    let generation = rm.metadata.generation;
    let mut new = RoleMappingStatus {
        observed_generation: generation,
        ..current.clone()
    };
    let tests_cond = match tests {
        Ok(n) => {
            new.tests_passed = Some(*n as i32);
            Cond::ok(
                TESTS_PASSED,
                "TestsPassed",
                format!("all {n} inline tests pass"),
            )
        }
        Err(e) => Cond::error(TESTS_PASSED, e),
    };
    let conditions = match outcome {
        Ok(synced) => {
            synced.record(&mut new.synced_fingerprint, &mut new.last_synced_at);
            vec![
                Cond::ok(
                    READY,
                    "Synced",
                    "the mapping is active in the identity service",
                ),
                tests_cond,
                synced.condition(),
            ]
        }
        Err(e) => vec![Cond::error(READY, e), tests_cond, Cond::error(SYNCED, e)],
    };
    new.conditions = status::conditions(&current.conditions, generation, conditions);
    new
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::RoleMappingSpec;

    fn mapping(expect: &str) -> RoleMapping {
        let spec: RoleMappingSpec = serde_json::from_value(serde_json::json!({
            "workspaceRef": {"name": "acme"},
            "roles": ["admin", "member"],
            "rules": [{"equals": "Admins", "role": "admin"}],
            "tests": [{"name": "admins", "groups": ["Admins"], "expect": expect}],
        }))
        .unwrap();
        let mut rm = RoleMapping::new("roles", spec);
        rm.metadata.generation = Some(2);
        rm
    }

    fn synced() -> Synced {
        Synced {
            fingerprint: "f1".into(),
            wrote: true,
            drift: false,
            endpoints: BTreeMap::new(),
        }
    }

    #[test]
    fn passing_tests_and_a_sync_make_the_mapping_ready() {
        let rm = mapping("admin");
        let tests = run_tests(&rm);
        assert_eq!(tests.as_ref().ok(), Some(&1));
        let new = status_after(&rm, &tests, &Ok(synced()));
        assert_eq!(new.tests_passed, Some(1));
        for c in [READY, TESTS_PASSED, SYNCED] {
            assert!(status::is_true(&new.conditions, c), "{c}");
        }
    }

    #[test]
    fn a_failing_test_keeps_the_synced_mapping_and_names_the_failure() {
        let good = mapping("admin");
        let synced_status = status_after(&good, &run_tests(&good), &Ok(synced()));
        let mut bad = mapping("member");
        bad.status = Some(synced_status.clone());
        let tests = run_tests(&bad);
        let err = tests.as_ref().unwrap_err();
        assert_eq!(err.reason(), "TestsFailed");
        assert!(err.to_string().contains("admins"), "{err}");
        let outcome = Err(Error::config(err.reason(), err.to_string()));
        let new = status_after(&bad, &tests, &outcome);
        assert_eq!(new.synced_fingerprint, synced_status.synced_fingerprint);
        assert_eq!(new.tests_passed, Some(1), "the last passing count stays");
        assert!(!status::is_true(&new.conditions, READY));
        assert!(!status::is_true(&new.conditions, TESTS_PASSED));
    }
}
