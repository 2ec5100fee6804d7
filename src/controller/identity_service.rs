//! Reconciling `IdentityService`s: can the operator reach the admin API with the
//! token it was given? And the session-cookie keys it keeps for the service.

use std::sync::Arc;

use kube::runtime::{controller::Action, events::EventType};

use super::{
    Context,
    error::Result,
    session_keys,
    status::{self, Cond, READY},
};
use crate::api::{IdentityService, IdentityServiceStatus};

pub async fn apply(svc: Arc<IdentityService>, ctx: Arc<Context>) -> Result<Action> {
    let outcome: Result<(crate::admin::InfoView, bool)> = async {
        let target = ctx.targets.for_service(&svc).await?;
        let info = target.call("info", target.client.info()).await?;
        let rotated = session_keys::reconcile(&ctx, &svc, &target).await?;
        Ok((info, rotated))
    }
    .await;
    let current = svc.status.clone().unwrap_or_default();
    let generation = svc.metadata.generation;
    let new = match &outcome {
        Ok((info, _)) => IdentityServiceStatus {
            observed_generation: generation,
            service_version: Some(info.version.clone()),
            conditions: status::conditions(
                &current.conditions,
                generation,
                vec![Cond::ok(
                    READY,
                    "Connected",
                    format!(
                        "admin API reachable (idsync {}, {} store)",
                        info.version, info.database
                    ),
                )],
            ),
        },
        Err(e) => IdentityServiceStatus {
            observed_generation: generation,
            service_version: current.service_version.clone(),
            conditions: status::conditions(
                &current.conditions,
                generation,
                vec![Cond::error(READY, e)],
            ),
        },
    };
    status::patch_if_changed(&ctx, svc.as_ref(), svc.status.as_ref(), &new).await?;
    if let Ok((_, true)) = &outcome {
        ctx.event(
            svc.as_ref(),
            EventType::Normal,
            "SessionKeyRotated",
            "made a new session-cookie signing key; the previous keys verify until they expire"
                .into(),
        )
        .await;
    }
    outcome.map(|_| Action::requeue(ctx.next_resync("IdentityService")))
}
