//! Reconciling `IdentityService`s: can the operator reach the admin API with the
//! token it was given?

use std::sync::Arc;

use kube::runtime::controller::Action;

use super::{
    Context,
    error::Result,
    status::{self, Cond, READY},
};
use crate::api::{IdentityService, IdentityServiceStatus};

pub async fn apply(svc: Arc<IdentityService>, ctx: Arc<Context>) -> Result<Action> {
    let outcome: Result<crate::admin::InfoView> = async {
        let target = ctx.targets.for_service(&svc).await?;
        Ok(target.call("info", target.client.info()).await?)
    }
    .await;
    let current = svc.status.clone().unwrap_or_default();
    let generation = svc.metadata.generation;
    let new = match &outcome {
        Ok(info) => IdentityServiceStatus {
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
    outcome.map(|_| Action::requeue(ctx.next_resync("IdentityService")))
}
