//! Reconciling `IdentityService`s: can the operator reach the admin API with the
//! token it was given? And the keys it keeps for the service (session cookies,
//! SAML request signing; see [`super::keyring`]).

use std::{sync::Arc, time::Instant};

use kube::runtime::{controller::Action, events::EventType, reflector::ObjectRef};

use super::{
    Context,
    error::Result,
    keyring::{self, SAML_SIGNING_KEYS, SESSION_KEYS},
    metrics::{Kind, Op},
    reconciler::{Reconciler, References, Referent},
    status::{self, Cond, READY},
};
use crate::api::{ClusterIdentityService, IdentityService, IdentityServiceStatus};

impl Reconciler for IdentityService {
    const KIND: Kind = Kind::IdentityService;
    const REFERS_TO: &'static [Referent] = &[Referent::Secrets];

    async fn apply(svc: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let outcome = async {
            let target = ctx.targets.for_service(&svc).await?;
            check_and_keep_keys(&ctx, &target, &keyring::KeyOwner::of_service(&svc)).await
        }
        .await;
        let new = status_for(svc.status.as_ref(), svc.metadata.generation, &outcome);
        status::patch_if_changed(&ctx, svc.as_ref(), svc.status.as_ref(), &new).await?;
        announce(&ctx, svc.as_ref(), &outcome).await;
        // The periodic resync comes from the resync walk (super::resync).
        outcome.map(|_| Action::await_change())
    }

    /// Deleting an IdentityService removes nothing from the service (its key
    /// Secrets go with it, by owner reference).
    async fn cleanup(_: Arc<Self>, _: Arc<Context>) -> Result<Action> {
        Ok(Action::await_change())
    }

    fn references(&self) -> References<'_> {
        References {
            secrets: vec![self.spec.admin_token_secret_ref.name.clone()],
            ..Default::default()
        }
    }
}

/// A ClusterIdentityService: the same checks and keys, its Secrets in the
/// operator's namespace. No finalizer: deleting it removes nothing from the
/// service (its key Secrets go with it, by owner reference).
pub async fn apply_cluster(svc: Arc<ClusterIdentityService>, ctx: Arc<Context>) -> Result<Action> {
    ctx.targets.caches.ready().await;
    let started = Instant::now();
    let outcome = async {
        let target = ctx.targets.for_cluster_service(&svc).await?;
        let owner = keyring::KeyOwner::of_cluster_service(&svc, &ctx.targets.operator_namespace);
        check_and_keep_keys(&ctx, &target, &owner).await
    }
    .await;
    let new = status_for(svc.status.as_ref(), svc.metadata.generation, &outcome);
    let result = async {
        status::patch_cluster_if_changed(&ctx, svc.as_ref(), svc.status.as_ref(), &new).await?;
        announce(&ctx, svc.as_ref(), &outcome).await;
        outcome.map(|_| Action::await_change())
    }
    .await;
    let kind = Kind::ClusterIdentityService;
    ctx.observe(kind, ObjectRef::from_obj(svc.as_ref()), started, &result);
    result
}

type Checked = (crate::admin::InfoView, Vec<&'static keyring::Keyring>);

/// Whether the admin API answers with the token, and the key rings kept.
async fn check_and_keep_keys(
    ctx: &Context,
    target: &super::target::Target,
    owner: &keyring::KeyOwner,
) -> Result<Checked> {
    let info = target.call(Op::Info, target.client.info()).await?;
    let mut rotated = Vec::new();
    for ring in [&SESSION_KEYS, &SAML_SIGNING_KEYS] {
        if keyring::reconcile(ctx, owner, target, ring).await? {
            rotated.push(ring);
        }
    }
    Ok((info, rotated))
}

fn status_for(
    current: Option<&IdentityServiceStatus>,
    generation: Option<i64>,
    outcome: &Result<Checked>,
) -> IdentityServiceStatus {
    let current = current.cloned().unwrap_or_default();
    match outcome {
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
    }
}

async fn announce<K: kube::Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    outcome: &Result<Checked>,
) {
    if let Ok((_, rotated)) = outcome {
        for ring in rotated {
            let (reason, message) = ring.rotated_event;
            ctx.event(obj, EventType::Normal, reason, message.into())
                .await;
        }
    }
}
