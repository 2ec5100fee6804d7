//! Reconciling `IdentityService`s: can the operator reach the admin API with the
//! token it was given? And the keys it keeps for the service (session cookies,
//! SAML request signing; see [`super::keyring`]).

use std::sync::Arc;

use kube::runtime::{controller::Action, events::EventType};

use super::{
    Context,
    error::Result,
    keyring::{self, SAML_SIGNING_KEYS, SESSION_KEYS},
    status::{self, Cond, READY},
};
use crate::api::{IdentityService, IdentityServiceStatus};

pub async fn apply(svc: Arc<IdentityService>, ctx: Arc<Context>) -> Result<Action> {
    let outcome: Result<(crate::admin::InfoView, Vec<&keyring::Keyring>)> = async {
        let target = ctx.targets.for_service(&svc).await?;
        let info = target.call("info", target.client.info()).await?;
        let mut rotated = Vec::new();
        for ring in [&SESSION_KEYS, &SAML_SIGNING_KEYS] {
            if keyring::reconcile(&ctx, &svc, &target, ring).await? {
                rotated.push(ring);
            }
        }
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
    if let Ok((_, rotated)) = &outcome {
        for ring in rotated {
            let (reason, message) = ring.rotated_event;
            ctx.event(svc.as_ref(), EventType::Normal, reason, message.into())
                .await;
        }
    }
    // The periodic resync comes from the resync walk (super::resync).
    outcome.map(|_| Action::await_change())
}
